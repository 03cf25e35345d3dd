"""Sessions, CSRF comparison and the ALB OIDC verifier (no network: the key source is local)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from partcheck.errors import InvalidInput
from services.review.auth import AlbOidcVerifier, OidcError, SessionSigner, alb_key_source, csrf_ok

pytestmark = pytest.mark.unit

ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/review/abc"


def _padded_alb_token(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], kid: str = "k1") -> str:
    # The ALB encodes its token's parts as base64url *with* padding; verification must accept that.
    def part(d: dict[str, Any]) -> str:
        raw = json.dumps(d).encode()
        if len(raw) % 3 == 0:
            raw = json.dumps({**d, "pad": 1}).encode()  # a length that makes base64 pad
        return base64.urlsafe_b64encode(raw).decode()

    head = part({"alg": "ES256", "kid": kid, "signer": ARN, "typ": "JWT", "client": "review"})
    body = part(claims)
    sig = ECAlgorithm(ECAlgorithm.SHA256).sign(f"{head}.{body}".encode(), key)
    return f"{head}.{body}.{base64.urlsafe_b64encode(sig).decode()}"


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_padded_alb_token_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = _padded_alb_token(key, {"email": "dana@example.com", "exp": int(time.time()) + 60})
    assert token.split(".")[1].endswith("=")
    assert AlbOidcVerifier(ARN, lambda kid: _pem(key)).username(token) == "dana@example.com"


def test_token_without_exp_or_name_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    verifier = AlbOidcVerifier(ARN, lambda kid: _pem(key))
    with pytest.raises(OidcError, match="exp"):
        verifier.username(_padded_alb_token(key, {"email": "x@y.z"}))
    with pytest.raises(OidcError, match="email"):
        verifier.username(_padded_alb_token(key, {"exp": int(time.time()) + 60}))


def test_unsafe_kid_never_reaches_the_key_url() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    asked: list[str] = []
    verifier = AlbOidcVerifier(ARN, lambda kid: asked.append(kid) or _pem(key))
    with pytest.raises(OidcError, match="key id"):
        verifier.username(
            _padded_alb_token(key, {"email": "x@y.z", "exp": int(time.time()) + 60}, kid="../x")
        )
    assert asked == []


def test_key_source_requires_https() -> None:
    with pytest.raises(InvalidInput, match="non-HTTPS"):
        alb_key_source("http://example.invalid/{region}/{kid}", "eu-west-1")("k1")


def test_session_round_trip_expiry_and_revocation() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_s=60)
    session, cookie = signer.issue("alice", now=1000.0)
    assert signer.read(cookie, now=1010.0) == session
    assert signer.read(cookie, now=1061.0) is None
    assert SessionSigner(b"other" * 8, 60).read(cookie, now=1010.0) is None
    for bad in [None, "", "a.b.c", "x" * 5000, cookie + "x"]:
        assert signer.read(bad, now=1010.0) is None
    signer.revoke(session, now=1020.0)
    assert signer.read(cookie, now=1021.0) is None


def test_csrf_comparison() -> None:
    assert csrf_ok("token", "token")
    assert not csrf_ok("token", None)
    assert not csrf_ok("token", "")
    assert not csrf_ok("token", "tokex")
    assert SessionSigner(b"k" * 32, 60).csrf_for("a") == SessionSigner(b"k" * 32, 60).csrf_for("a")
    assert SessionSigner(b"k" * 32, 60).csrf_for("a") != SessionSigner(b"k" * 32, 60).csrf_for("b")

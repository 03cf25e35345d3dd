"""Sessions (HMAC-signed cookies), CSRF tokens and verification of the ALB's OIDC header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from partcheck.errors import InvalidInput

COOKIE_NAME = "partcheck_session"
CSRF_HEADER = "X-CSRF-Token"
OIDC_HEADER = "x-amzn-oidc-data"
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

KeySource = Callable[[str], str]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A logged-in inspector."""

    username: str
    csrf_token: str
    expires_at: float
    sid: str
    stamp: str = ""


class SessionSigner:
    """Stateless sessions: the cookie carries name, CSRF token and expiry, signed with HMAC-SHA256.

    Logout adds the session id to a per-process revocation list until it would expire anyway.
    """

    def __init__(self, secret: bytes, lifetime_s: float) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, username: str, now: float, stamp: str = "") -> tuple[Session, str]:
        """A new session and its cookie value; `stamp` is the account's `UserStore.stamp` at login."""
        s = Session(
            username, secrets.token_urlsafe(32), now + self.lifetime_s, secrets.token_urlsafe(12), stamp
        )
        data = {"u": s.username, "c": s.csrf_token, "e": s.expires_at, "s": s.sid, "g": s.stamp}
        payload = _b64(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        return s, f"{payload}.{self._mac(payload)}"

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, or None if absent, forged, expired or logged out."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            s = Session(
                str(data["u"]), str(data["c"]), float(data["e"]), str(data["s"]), str(data.get("g", ""))
            )
        except (ValueError, KeyError, TypeError):
            return None
        if s.expires_at <= now:
            return None
        with self._lock:
            if s.sid in self._revoked:
                return None
        return s

    def revoke(self, session: Session, now: float) -> None:
        """Refuse this session from now on (in this process)."""
        with self._lock:
            self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
            self._revoked[session.sid] = session.expires_at

    def csrf_for(self, username: str) -> str:
        """A stable CSRF token for header-authenticated (OIDC) inspectors, who have no session cookie."""
        return self._mac(f"csrf:{_b64(username.encode('utf-8'))}")


def csrf_ok(expected: str, sent: str | None) -> bool:
    """Constant-time comparison of the CSRF header with the session's token."""
    return bool(sent) and hmac.compare_digest(expected.encode("utf-8"), (sent or "").encode("utf-8"))


def alb_key_source(url_template: str, region: str, timeout_s: float = 5.0) -> KeySource:
    """Fetch the ALB's PEM public key for a key id from the regional AWS endpoint."""

    def fetch(kid: str) -> str:
        url = url_template.format(region=region, kid=kid)
        if not url.startswith("https://"):
            raise InvalidInput(f"refusing to fetch an ALB key over a non-HTTPS URL: {url}")
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 (https enforced above)
            body: bytes = r.read(16_384)
        return body.decode("ascii")

    return fetch


class OidcError(Exception):
    """The OIDC header was present but could not be trusted."""


class AlbOidcVerifier:
    """Verify `x-amzn-oidc-data`: ES256 signature by the ALB's key, expected signer, not expired."""

    def __init__(
        self, signer_arn: str, key_source: KeySource, username_claim: str = "email", leeway_s: float = 30.0
    ) -> None:
        self.signer_arn = signer_arn
        self._key_source = key_source
        self.username_claim = username_claim
        self.leeway_s = leeway_s
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def _key(self, kid: str) -> str:
        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
        try:
            pem = self._key_source(kid)
        except Exception as exc:  # any fetch failure means the header cannot be verified
            raise OidcError(f"could not get the ALB public key {kid}: {exc}") from exc
        with self._lock:
            self._keys[kid] = pem
        return pem

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; OidcError for anything that does not check out."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"malformed OIDC token: {exc}") from exc
        if header.get("alg") != "ES256":
            raise OidcError(f"unexpected OIDC token algorithm {header.get('alg')!r}")
        if header.get("signer") != self.signer_arn:
            raise OidcError("OIDC token not signed by the configured load balancer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise OidcError("OIDC token has no usable key id")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key(kid),
                algorithms=["ES256"],
                options={"require": ["exp"], "verify_aud": False},
                leeway=self.leeway_s,
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"OIDC token rejected: {exc}") from exc
        return claims

    def username(self, token: str) -> str:
        """The inspector name the verified token carries."""
        claims = self.verify(token)
        name = claims.get(self.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise OidcError(f"OIDC token has no {self.username_claim!r} claim")
        return name


def monotonic_now() -> float:
    """Wall-clock seconds, the time base of sessions and the login limiter."""
    return time.time()

"""Fixtures of the review service tests: a prediction bucket in moto, users, a logged-in client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from partcheck.aws import AwsConfig, client
from services.review.app import create_app
from services.review.settings import ReviewSettings
from services.review.users import UserStore

BUCKET = "review-predictions"
PASSWORD = "correct horse battery"
# Cheap argon2 parameters: the tests exercise the flow, not the hash's cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

ROUTER_META = {
    "model-label": "unclear",
    "confidence": "0.612000",
    "p-defect": "0.388000",
    "model-name": "partcheck-cnn",
    "model-version": "1.2.0",
    "reason": "low confidence",
    "line": "line-3",
    "camera": "cam-1",
    "uploaded-at": "2026-11-25T08:00:00Z",
    "source-key": "line-3/cam-1/2026-11-25/img_0001.jpg",
    "source-etag": "abc",
    "t-ok": "0.900000",
    "t-defect": "0.900000",
}
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def s3(moto: str) -> Any:
    """An S3 client on the reset moto server with the prediction bucket created."""
    c = client("s3", AwsConfig(endpoint_url=moto))
    c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return c


@pytest.fixture
def put_unclear(s3: Any) -> Callable[..., str]:
    """Store an image under unclear/ with router metadata; returns its key."""

    def put(rel: str, body: bytes = JPEG, **meta: str) -> str:
        key = f"unclear/{rel}"
        s3.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=body,
            ContentType="image/jpeg",
            Metadata={**ROUTER_META, **{k.replace("_", "-"): v for k, v in meta.items()}},
        )
        return key

    return put


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    """A user store with alice and bob."""
    store = UserStore(tmp_path / "users.json", hasher=FAST_HASHER)
    store.add("alice", PASSWORD)
    store.add("bob", PASSWORD)
    return store


def make_settings(moto: str, tmp_path: Path, **overrides: Any) -> ReviewSettings:
    """Settings for a test app: local moto, http cookies, no built page unless given."""
    values: dict[str, Any] = {
        "endpoint_url": moto,
        "prediction_bucket": BUCKET,
        "cookie_secure": False,
        "static_dir": tmp_path / "no-build",
        "users_file": tmp_path / "users.json",
        "session_secret": "test-secret",
        "queue_refresh_seconds": 0.0,
        "stats_cache_seconds": 0.0,
    }
    values.update(overrides)
    return ReviewSettings(**values)


@pytest.fixture
def app_factory(moto: str, s3: Any, users: UserStore, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build test clients of a fresh app (several share one bucket, like several instances)."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        key_source = overrides.pop("key_source", None)
        client_ = overrides.pop("s3", s3)
        once = overrides.pop("s3_once", None)
        settings = make_settings(moto, tmp_path, **overrides)
        app = create_app(settings, client_, users=users, key_source=key_source, s3_once=once)
        c = TestClient(app)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def settle(*clients: TestClient) -> None:
    """Wait until each app finished the background steps (audit record, unclear/ delete) of its decisions."""
    for c in clients:
        c.app.state.review.store.settle()  # type: ignore[attr-defined]


def login(c: TestClient, name: str = "alice") -> str:
    """Log a client in and set its CSRF header; returns the token."""
    r = c.post("/api/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token: str = r.json()["csrf_token"]
    c.headers["X-CSRF-Token"] = token
    return token


@pytest.fixture
def alice(app_factory: Callable[..., TestClient]) -> TestClient:
    """A client logged in as alice."""
    c = app_factory()
    login(c, "alice")
    return c

"""Review API against a moto server: auth, queue, claims, decisions, undo, audit, images, page, OIDC."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from services.review import core
from services.review import store as review_store
from services.review.core import encode_id
from services.review.users import UserStoreUnavailable
from tests.services.review.conftest import BUCKET, JPEG, PASSWORD, login, settle

pytestmark = pytest.mark.integration

App = Callable[..., TestClient]


def keys(s3: Any, prefix: str) -> list[str]:
    """Every key under a prefix of the prediction bucket."""
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def audit_records(s3: Any) -> list[dict[str, Any]]:
    """Every audit record, oldest first."""
    return [
        json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in sorted(keys(s3, "audit/"))
    ]


# --- login, sessions, CSRF -------------------------------------------------------------------------


def test_routes_need_a_session_except_login_health_config(app_factory: App, put_unclear: Any) -> None:
    c = app_factory()
    item = encode_id(put_unclear("a.jpg"))
    assert c.get("/api/health").json()["status"] == "ok"
    assert c.get("/api/config").json() == {"undo_seconds": 30, "claim_seconds": 300}
    for method, path in [
        ("get", "/api/me"),
        ("get", "/api/queue"),
        ("get", f"/api/items/{item}"),
        ("get", f"/api/items/{item}/image"),
        ("post", f"/api/items/{item}/claim"),
        ("post", "/api/undo"),
        ("get", "/api/history"),
        ("get", "/api/stats"),
        ("post", "/api/logout"),
    ]:
        r = c.request(method, path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.json() == {"detail": "not logged in"}
    r = c.post(f"/api/items/{item}/decision", json={"label": "ok"})
    assert r.status_code == 401


def test_login_sets_http_only_cookie_and_me_and_logout(app_factory: App) -> None:
    c = app_factory()
    r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["username"] == "alice"
    assert len(body["csrf_token"]) > 20
    cookie = r.headers["set-cookie"]
    assert "partcheck_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # cookie_secure=False in the tests (plain http)
    assert c.get("/api/me").json() == body
    # Logout is state-changing: it needs the CSRF header too.
    assert c.post("/api/logout").status_code == 403
    stolen = c.cookies.get("partcheck_session")
    assert c.post("/api/logout", headers={"X-CSRF-Token": body["csrf_token"]}).status_code == 204
    assert c.get("/api/me").status_code == 401
    # The old cookie value is refused after logout even if replayed.
    c.cookies.set("partcheck_session", stolen or "")
    assert c.get("/api/me").status_code == 401


def test_secure_cookie_by_default(app_factory: App) -> None:
    c = app_factory(cookie_secure=True)
    r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_password_and_forged_cookie(app_factory: App) -> None:
    c = app_factory()
    r = c.post("/api/login", json={"username": "alice", "password": "wrong password"})
    assert r.status_code == 401
    assert r.json()["detail"] == "wrong user name or password"
    assert c.post("/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    login(c)
    value = c.cookies.get("partcheck_session") or ""
    payload, mac = value.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["u"] = "bob"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    # Only the forged cookie: httpx2's jar keeps the server's cookie beside one set by hand.
    c.cookies.clear()
    c.cookies.set("partcheck_session", f"{forged_payload}.{mac}")
    assert c.get("/api/me").status_code == 401


def test_session_from_another_instance_with_the_same_secret(app_factory: App) -> None:
    a, b = app_factory(), app_factory()
    login(a)
    b.cookies.set("partcheck_session", a.cookies.get("partcheck_session") or "")
    assert b.get("/api/me").json()["username"] == "alice"


def test_login_rate_limited_per_username_and_per_ip(app_factory: App) -> None:
    c = app_factory(login_max_failures=3, login_window_seconds=60)
    for _ in range(3):
        assert c.post("/api/login", json={"username": "alice", "password": "nope-nope"}).status_code == 401
    r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "too many failed logins" in r.json()["detail"]
    # The same client address is also blocked for other names (guessing across accounts).
    assert c.post("/api/login", json={"username": "bob", "password": PASSWORD}).status_code == 429


def parallel_logins(
    c: TestClient, users: Any, monkeypatch: pytest.MonkeyPatch, password: str, n: int, check_s: float
) -> list[int]:
    """n logins as alice sent at once, each password check taking check_s; their status codes, sorted."""
    real_verify = users.verify

    def slow_verify(name: str, given: str) -> bool:
        time.sleep(check_s)
        return bool(real_verify(name, given))

    monkeypatch.setattr(users, "verify", slow_verify)

    def attempt(_: int) -> int:
        return c.post("/api/login", json={"username": "alice", "password": password}).status_code

    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(attempt, range(n)))


def test_parallel_wrong_logins_cannot_pass_the_limit_together(
    app_factory: App, users: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = app_factory(login_max_failures=3, login_window_seconds=60)
    # A real argon2 check takes tens of ms; at 0.3 s all fifteen are in flight at once.
    codes = parallel_logins(c, users, monkeypatch, "wrong guess", n=15, check_s=0.3)
    assert codes == [401] * 3 + [429] * 12


def test_inspectors_logging_in_at_once_behind_one_address_all_get_in(
    app_factory: App, users: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = app_factory(login_max_failures=5, login_window_seconds=60)
    assert parallel_logins(c, users, monkeypatch, PASSWORD, n=8, check_s=0.1) == [200] * 8


def test_a_server_fault_during_login_is_no_failed_guess(
    app_factory: App, users: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = app_factory(login_max_failures=3, login_window_seconds=60)
    real_verify = users.verify

    def broken(name: str, password: str) -> bool:
        raise UserStoreUnavailable("user store is unreadable")

    monkeypatch.setattr(users, "verify", broken)
    for _ in range(4):
        assert c.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 503
    monkeypatch.setattr(users, "verify", real_verify)
    assert c.post("/api/login", json={"username": "bob", "password": PASSWORD}).status_code == 200


def test_a_right_password_does_not_count_against_the_limit(app_factory: App) -> None:
    c = app_factory(login_max_failures=2, login_window_seconds=60)
    for _ in range(3):
        assert c.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    assert c.post("/api/login", json={"username": "alice", "password": "nope-nope"}).status_code == 401


def test_removing_an_account_or_resetting_its_password_ends_its_sessions(
    app_factory: App, users: Any
) -> None:
    a, b = app_factory(), app_factory()
    login(a, "alice")
    login(b, "bob")
    users.remove("bob")
    assert b.get("/api/me").status_code == 401
    assert b.get("/api/queue").status_code == 401
    assert a.get("/api/me").status_code == 200
    users.add("alice", "a brand new password", replace=True)
    assert a.get("/api/me").status_code == 401
    r = a.post("/api/login", json={"username": "alice", "password": "a brand new password"})
    assert r.status_code == 200
    assert a.get("/api/me").json()["username"] == "alice"


def test_an_unreadable_user_store_is_503_without_its_path(app_factory: App, users: Any) -> None:
    c = app_factory()
    users.path.write_text("{broken")
    r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 503
    assert str(users.path) not in r.text
    assert "user accounts are unavailable" in r.json()["detail"]


def test_rate_limit_window_passes(app_factory: App) -> None:
    c = app_factory(login_max_failures=2, login_window_seconds=1)
    for _ in range(2):
        c.post("/api/login", json={"username": "alice", "password": "nope-nope"})
    assert c.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 429
    time.sleep(1.1)
    assert c.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_csrf_required_on_state_changing_requests(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    item = encode_id(put_unclear("a.jpg"))
    token = alice.headers.pop("X-CSRF-Token")
    for path, body in [
        (f"/api/items/{item}/claim", None),
        (f"/api/items/{item}/decision", {"label": "ok"}),
        ("/api/undo", None),
    ]:
        r = alice.post(path, json=body)
        assert r.status_code == 403
        assert r.json() == {"detail": "CSRF token missing or invalid"}
        r = alice.post(path, json=body, headers={"X-CSRF-Token": token[:-2] + "xx"})
        assert r.status_code == 403
    assert keys(s3, "unclear/") == ["unclear/a.jpg"]
    assert keys(s3, "human_decided/") == []


# --- queue ----------------------------------------------------------------------------------------


def test_queue_paginates_past_1000_keys_oldest_first(alice: TestClient, s3: Any) -> None:
    def put(i: int) -> None:
        s3.put_object(
            Bucket=BUCKET,
            Key=f"unclear/l/{i:05d}.jpg",
            Body=b"x",
            Metadata={"model-label": "unclear", "confidence": "0.5"},
        )

    # The first 20 are written one by one so their order in time is known.
    for i in range(20):
        put(i)
        time.sleep(0.001)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(20, 1050)))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        r = alice.get("/api/queue", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 1050
        seen += [i["key"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 6
    assert len(seen) == len(set(seen)) == 1050
    # S3 second-resolution timestamps tie; the key breaks ties, so the first keys come first.
    assert seen[0] == "unclear/l/00000.jpg"
    assert set(seen) == {f"unclear/l/{i:05d}.jpg" for i in range(1050)}


def test_queue_orders_by_time_not_key(alice: TestClient, put_unclear: Any) -> None:
    put_unclear("z-old.jpg")
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    put_unclear("a-new.jpg")
    items = alice.get("/api/queue").json()["items"]
    assert [i["name"] for i in items] == ["z-old.jpg", "a-new.jpg"]


def test_queue_item_fields(alice: TestClient, put_unclear: Any) -> None:
    put_unclear("line-3/cam-1/img 1.jpg")
    (item,) = alice.get("/api/queue").json()["items"]
    assert item == {
        "id": encode_id("unclear/line-3/cam-1/img 1.jpg"),
        "key": "unclear/line-3/cam-1/img 1.jpg",
        "name": "img 1.jpg",
        "model_label": "unclear",
        "confidence": 0.612,
        "p_defect": 0.388,
        "model_version": "1.2.0",
        "reason": "low confidence",
        "line": "line-3",
        "camera": "cam-1",
        "uploaded_at": "2026-11-25T08:00:00Z",
        "claimed_by": None,
        "claim_expires_at": None,
    }
    assert alice.get(f"/api/items/{item['id']}").json() == item


def test_bad_cursor_and_limit(alice: TestClient) -> None:
    assert alice.get("/api/queue", params={"cursor": "not-a-cursor"}).status_code == 400
    # Valid base64 and JSON, but no [time, key] pair: once an AttributeError and a 500.
    odd = base64.urlsafe_b64encode(b'[5,"k"]').decode().rstrip("=")
    assert alice.get("/api/queue", params={"cursor": odd}).status_code == 400
    assert alice.get("/api/queue", params={"limit": 0}).status_code == 422
    assert alice.get("/api/queue", params={"limit": 10_000}).status_code == 422


# --- claims ---------------------------------------------------------------------------------------


def test_claim_conflict_and_extension(app_factory: App, put_unclear: Any) -> None:
    a, b = app_factory(), app_factory()
    login(a, "alice")
    login(b, "bob")
    item = encode_id(put_unclear("a.jpg"))
    first = a.post(f"/api/items/{item}/claim")
    assert first.status_code == 200
    assert first.json()["claimed_by"] == "alice"
    r = b.post(f"/api/items/{item}/claim")
    assert r.status_code == 409
    assert r.json()["detail"].startswith("claimed by alice until ")
    time.sleep(0.01)
    again = a.post(f"/api/items/{item}/claim")
    assert again.status_code == 200
    assert again.json()["expires_at"] > first.json()["expires_at"]
    (listed,) = b.get("/api/queue").json()["items"]
    assert listed["claimed_by"] == "alice"
    assert listed["claim_expires_at"] == again.json()["expires_at"]
    # Someone else's live claim also blocks a decision, and nothing moves.
    r = b.post(f"/api/items/{item}/decision", json={"label": "ok"})
    assert r.status_code == 409
    assert "claimed by alice" in r.json()["detail"]


def test_expired_claim_can_be_taken(
    app_factory: App, put_unclear: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = app_factory(claim_seconds=5), app_factory(claim_seconds=5)
    login(a, "alice")
    login(b, "bob")
    item = encode_id(put_unclear("a.jpg"))
    assert a.post(f"/api/items/{item}/claim").status_code == 200
    assert b.post(f"/api/items/{item}/claim").status_code == 409
    # Six seconds later by the service's clock (the claim lasts five), without waiting for them.
    later = datetime.now(UTC) + timedelta(seconds=6)
    monkeypatch.setattr(core, "now_utc", lambda: later)
    r = b.post(f"/api/items/{item}/claim")
    assert r.status_code == 200
    assert r.json()["claimed_by"] == "bob"


def test_claim_unknown_item(alice: TestClient) -> None:
    r = alice.post(f"/api/items/{encode_id('unclear/missing.jpg')}/claim")
    assert r.status_code == 404


# --- decisions ------------------------------------------------------------------------------------


def test_decision_moves_image_with_metadata_and_audit(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    key = put_unclear("line-3/cam-1/img_0001.jpg")
    item = encode_id(key)
    assert alice.post(f"/api/items/{item}/claim").status_code == 200
    r = alice.post(f"/api/items/{item}/decision", json={"label": "defect", "note": "crack, 2 mm / edge"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decided_key"] == "human_decided/line-3/cam-1/defect_img_0001.jpg"
    assert body["decided_by"] == "alice"
    assert body["label"] == "defect"
    decided_at = datetime.fromisoformat(body["decided_at"].replace("Z", "+00:00"))
    undo_until = datetime.fromisoformat(body["undo_until"].replace("Z", "+00:00"))
    assert undo_until - decided_at == timedelta(seconds=30)
    settle(alice)
    assert keys(s3, "unclear/") == []
    assert keys(s3, "claims/") == []
    obj = s3.get_object(Bucket=BUCKET, Key=body["decided_key"])
    assert obj["Body"].read() == JPEG
    assert obj["ContentType"] == "image/jpeg"
    meta = obj["Metadata"]
    assert meta["inspector"] == "alice"
    assert meta["label"] == "defect"
    assert meta["decided-at"] == body["decided_at"]
    assert unquote(meta["note"]) == "crack, 2 mm / edge"
    assert meta["model-label"] == "unclear"
    assert meta["confidence"] == "0.612000"
    assert meta["model-version"] == "1.2.0"
    (record,) = audit_records(s3)
    assert record["action"] == "decision"
    assert record["inspector"] == "alice"
    assert record["label"] == "defect"
    assert record["key"] == key
    assert record["decided_key"] == body["decided_key"]
    assert record["note"] == "crack, 2 mm / edge"
    assert record["confidence"] == 0.612
    assert record["model_version"] == "1.2.0"
    assert record["source_key"] == "line-3/cam-1/2026-11-25/img_0001.jpg"
    (audit_key,) = keys(s3, "audit/")
    assert audit_key.startswith(f"audit/{decided_at:%Y/%m/%d}/")
    # The item is gone from the queue and says who decided it.
    assert alice.get("/api/queue").json()["total"] == 0
    r = alice.get(f"/api/items/{item}")
    assert r.status_code == 404
    assert "already decided by alice as defect" in r.json()["detail"]
    # A second decision overwrites nothing.
    r = alice.post(f"/api/items/{item}/decision", json={"label": "ok"})
    assert r.status_code == 409
    assert r.json()["detail"] == "already decided by alice as defect"
    assert keys(s3, "human_decided/") == [body["decided_key"]]


def test_decision_validation(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    item = encode_id(put_unclear("a.jpg"))
    assert alice.post(f"/api/items/{item}/decision", json={"label": "maybe"}).status_code == 422
    assert (
        alice.post(f"/api/items/{item}/decision", json={"label": "ok", "note": "x" * 501}).status_code == 422
    )
    r = alice.post(f"/api/items/{item}/decision", json={"label": "ok", "note": "bad\x00note"})
    assert r.status_code == 400
    assert (
        alice.post(f"/api/items/{encode_id('unclear/none.jpg')}/decision", json={"label": "ok"}).status_code
        == 404
    )
    assert keys(s3, "unclear/") == ["unclear/a.jpg"]
    assert keys(s3, "decisions/") == []


def test_concurrent_decisions_exactly_one_wins(app_factory: App, put_unclear: Any, s3: Any) -> None:
    # Two app instances (as behind a load balancer) and two inspectors race on one image.
    a, b = app_factory(), app_factory()
    login(a, "alice")
    login(b, "bob")
    for round_ in range(3):
        item = encode_id(put_unclear(f"race-{round_}.jpg"))
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def decide(
            name: str,
            c: TestClient,
            label: str,
            item: str = item,
            barrier: threading.Barrier = barrier,
            results: dict[str, Any] = results,
        ) -> None:
            barrier.wait()
            results[name] = c.post(f"/api/items/{item}/decision", json={"label": label})

        threads = [
            threading.Thread(target=decide, args=("alice", a, "ok")),
            threading.Thread(target=decide, args=("bob", b, "defect")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 409], {n: r.text for n, r in results.items()}
        winner = next(n for n, r in results.items() if r.status_code == 200)
        loser = next(r for r in results.values() if r.status_code == 409)
        assert winner in loser.json()["detail"]
        decided = [k for k in keys(s3, "human_decided/") if k.endswith(f"race-{round_}.jpg")]
        assert len(decided) == 1
        assert s3.head_object(Bucket=BUCKET, Key=decided[0])["Metadata"]["inspector"] == winner
    settle(a, b)
    assert keys(s3, "unclear/") == []
    assert len(audit_records(s3)) == 3


def test_decision_never_overwrites_an_existing_decided_image(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    item = encode_id(put_unclear("a.jpg"))
    s3.put_object(Bucket=BUCKET, Key="human_decided/ok_a.jpg", Body=b"earlier")
    r = alice.post(f"/api/items/{item}/decision", json={"label": "ok"})
    assert r.status_code == 409
    assert "nothing was overwritten" in r.json()["detail"]
    assert s3.get_object(Bucket=BUCKET, Key="human_decided/ok_a.jpg")["Body"].read() == b"earlier"
    assert keys(s3, "unclear/") == ["unclear/a.jpg"]
    assert keys(s3, "decisions/") == []  # the marker is rolled back, so the other label stays possible
    assert alice.post(f"/api/items/{item}/decision", json={"label": "defect"}).status_code == 200


# --- undo -----------------------------------------------------------------------------------------


def test_undo_restores_the_image_and_appends_audit(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    key = put_unclear("d/a.jpg")
    before = s3.head_object(Bucket=BUCKET, Key=key)
    item = encode_id(key)
    decided = alice.post(f"/api/items/{item}/decision", json={"label": "ok", "note": "fine"}).json()
    r = alice.post("/api/undo")
    assert r.status_code == 200
    assert r.json() == {"id": item, "key": key}
    after = s3.head_object(Bucket=BUCKET, Key=key)
    assert after["Metadata"] == before["Metadata"]
    assert after["ContentType"] == "image/jpeg"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == JPEG
    assert keys(s3, "human_decided/") == []
    assert keys(s3, "decisions/") == []
    assert [rec["action"] for rec in audit_records(s3)] == ["decision", "undo"]
    assert audit_records(s3)[1]["decided_key"] == decided["decided_key"]
    assert [i["key"] for i in alice.get("/api/queue").json()["items"]] == [key]
    # Only once.
    r = alice.post("/api/undo")
    assert r.status_code == 409
    assert "nothing to undo" in r.json()["detail"]
    # And the image can be decided again, now the other way.
    assert alice.post(f"/api/items/{item}/decision", json={"label": "defect"}).status_code == 200
    history = alice.get("/api/history").json()["items"]
    assert [(h["action"], h["label"]) for h in history] == [
        ("decision", "defect"),
        ("undo", "ok"),
        ("decision", "ok"),
    ]


def test_undo_is_per_inspector_and_time_limited(app_factory: App, put_unclear: Any, s3: Any) -> None:
    a, b = app_factory(undo_seconds=1), app_factory(undo_seconds=1)
    login(a, "alice")
    login(b, "bob")
    item = encode_id(put_unclear("a.jpg"))
    assert a.post(f"/api/items/{item}/decision", json={"label": "ok"}).status_code == 200
    r = b.post("/api/undo")
    assert r.status_code == 409
    assert r.json()["detail"] == "nothing to undo"
    time.sleep(1.2)
    r = a.post("/api/undo")
    assert r.status_code == 409
    assert "undo window" in r.json()["detail"]
    assert keys(s3, "human_decided/") == ["human_decided/ok_a.jpg"]


# --- ids and images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["../human_decided/ok_a.jpg", "/etc/passwd", "a/../../x", "a//b", "", "a\x00b", "./a.jpg"]
)
def test_traversal_ids_refused(alice: TestClient, put_unclear: Any, s3: Any, raw: str) -> None:
    put_unclear("a.jpg")
    s3.put_object(Bucket=BUCKET, Key="human_decided/ok_a.jpg", Body=b"secret")
    bad = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") or "AA"
    for method, path, body in [
        ("get", f"/api/items/{bad}", None),
        ("get", f"/api/items/{bad}/image", None),
        ("post", f"/api/items/{bad}/claim", None),
        ("post", f"/api/items/{bad}/decision", {"label": "ok"}),
    ]:
        r = alice.request(method, path, json=body)
        assert r.status_code == 400, (raw, path, r.status_code)
        assert r.json()["detail"].startswith("invalid id or key")
    assert keys(s3, "unclear/") == ["unclear/a.jpg"]
    assert keys(s3, "claims/") == []


def test_non_canonical_and_garbage_ids(alice: TestClient) -> None:
    for bad in ["%2e%2e", "!!!", "YQ=", "x" * 2000]:
        assert alice.get(f"/api/items/{bad}").status_code == 400, bad


def test_image_served_before_and_after_decision(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    item = encode_id(put_unclear("a.jpg"))
    s3.put_object(Bucket=BUCKET, Key="okay/secret.jpg", Body=b"not for review")
    r = alice.get(f"/api/items/{item}/image")
    assert r.status_code == 200
    assert r.content == JPEG
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, max-age=300"
    alice.post(f"/api/items/{item}/decision", json={"label": "ok"})
    r = alice.get(f"/api/items/{item}/image")
    assert r.status_code == 200
    assert r.content == JPEG
    assert alice.get(f"/api/items/{encode_id('unclear/secret.jpg')}/image").status_code == 404


def test_image_content_type_sniffed(alice: TestClient, s3: Any) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    s3.put_object(Bucket=BUCKET, Key="unclear/p.png", Body=png)  # no content type from the writer
    r = alice.get(f"/api/items/{encode_id('unclear/p.png')}/image")
    assert r.headers["content-type"] == "image/png"


def test_an_image_over_max_image_bytes_is_decided_and_undone_without_reading_it(
    app_factory: App, put_unclear: Any, s3: Any
) -> None:
    c = app_factory(max_image_bytes=len(JPEG))
    login(c)
    big = JPEG + b"\x01" * 100
    key = put_unclear("big/b.jpg", body=big)
    before = s3.head_object(Bucket=BUCKET, Key=key)
    item = encode_id(key)
    # The browser is refused the bytes, with a reason the page can show...
    r = c.get(f"/api/items/{item}/image")
    assert r.status_code == 400
    assert r.json()["detail"] == (
        f"{key} is too large to show here (object is {len(big)} bytes, over the limit of {len(JPEG)} "
        "set by max_image_bytes); it can still be decided"
    )
    # ...but the inspector can decide it: nothing on the way reads the bytes.
    r = c.post(f"/api/items/{item}/decision", json={"label": "defect", "note": "seen at the line"})
    assert r.status_code == 200, r.text
    decided = r.json()
    settle(c)
    assert keys(s3, "unclear/") == []
    obj = s3.get_object(Bucket=BUCKET, Key="human_decided/big/defect_b.jpg")
    assert obj["Body"].read() == big
    assert obj["ContentType"] == "image/jpeg"
    meta = obj["Metadata"]
    assert meta["inspector"] == "alice"
    assert meta["label"] == "defect"
    assert meta["decided-at"] == decided["decided_at"]
    assert (meta["model-label"], meta["confidence"]) == ("unclear", "0.612000")
    assert meta["model-version"] == "1.2.0"
    assert [(rec["action"], rec["key"]) for rec in audit_records(s3)] == [("decision", key)]
    # The undo brings the same bytes back with the metadata they had.
    r = c.post("/api/undo")
    assert r.status_code == 200, r.text
    after = s3.get_object(Bucket=BUCKET, Key=key)
    assert after["Body"].read() == big
    assert after["Metadata"] == before["Metadata"]
    assert after["ContentType"] == "image/jpeg"
    assert keys(s3, "human_decided/") == []
    assert [rec["action"] for rec in audit_records(s3)] == ["decision", "undo"]


# --- history and stats ----------------------------------------------------------------------------


def test_history_filters(app_factory: App, put_unclear: Any) -> None:
    a, b = app_factory(), app_factory()
    login(a, "alice")
    login(b, "bob")
    for i, (c, label) in enumerate([(a, "ok"), (b, "defect"), (a, "defect")]):
        assert (
            c.post(
                f"/api/items/{encode_id(put_unclear(f'{i}.jpg'))}/decision", json={"label": label}
            ).status_code
            == 200
        )
    settle(a, b)
    everything = a.get("/api/history").json()["items"]
    assert [h["inspector"] for h in everything] == ["alice", "bob", "alice"]
    assert [h["key"] for h in a.get("/api/history", params={"inspector": "alice"}).json()["items"]] == [
        "unclear/2.jpg",
        "unclear/0.jpg",
    ]
    assert len(a.get("/api/history", params={"label": "defect"}).json()["items"]) == 2
    assert len(a.get("/api/history", params={"limit": 1}).json()["items"]) == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert a.get("/api/history", params={"since": future}).json()["items"] == []
    assert a.get("/api/history", params={"label": "maybe"}).status_code == 422


def test_history_pages_back_across_days(alice: TestClient, s3: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(days=1, minutes=2), now - timedelta(days=1, minutes=1)]
    times += [now - timedelta(minutes=m) for m in (3, 2, 1)]
    for i, at in enumerate(times):
        marker = {
            "key": f"unclear/{i}.jpg",
            "decided_key": f"human_decided/ok_{i}.jpg",
            "label": "ok",
            "decided_at": core.iso(at),
            "original_metadata": {},
        }
        record = core.audit_record("decision", marker, at, "bob" if i % 2 else "alice")
        s3.put_object(Bucket=BUCKET, Key=core.audit_key(at, f"{i:032x}"), Body=json.dumps(record).encode())
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = alice.get("/api/history", params=params).json()
        pages.append([h["key"] for h in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        ["unclear/4.jpg", "unclear/3.jpg"],
        ["unclear/2.jpg", "unclear/1.jpg"],
        ["unclear/0.jpg"],
    ]
    # Filters hold across pages: alice decided 0, 2 and 4.
    first = alice.get("/api/history", params={"limit": 2, "inspector": "alice"}).json()
    assert [h["key"] for h in first["items"]] == ["unclear/4.jpg", "unclear/2.jpg"]
    rest = alice.get(
        "/api/history", params={"limit": 2, "inspector": "alice", "cursor": first["next_cursor"]}
    ).json()
    assert ([h["key"] for h in rest["items"]], rest["next_cursor"]) == (["unclear/0.jpg"], None)
    r = alice.get("/api/history", params={"cursor": "decisions/x.json"})
    assert r.status_code == 400
    assert "not a history cursor" in r.json()["detail"]


def test_history_since_in_another_offset_reads_the_utc_day_it_falls_on(alice: TestClient, s3: Any) -> None:
    # The log is laid out by UTC day; 01:00+02:00 is 23:00 UTC of the day before.
    at = (datetime.now(UTC) - timedelta(days=1)).replace(hour=23, minute=30, second=0, microsecond=0)
    marker = {
        "key": "unclear/late.jpg",
        "decided_key": "human_decided/ok_late.jpg",
        "label": "ok",
        "decided_at": core.iso(at),
        "original_metadata": {},
    }
    record = core.audit_record("decision", marker, at, "bob")
    s3.put_object(Bucket=BUCKET, Key=core.audit_key(at, "a" * 32), Body=json.dumps(record).encode())
    since = at - timedelta(minutes=30)
    for offset in (timedelta(0), timedelta(hours=2), timedelta(hours=-5)):
        local = since.astimezone(timezone(offset)).isoformat()
        items = alice.get("/api/history", params={"since": local}).json()["items"]
        assert [h["key"] for h in items] == ["unclear/late.jpg"], local
    later = (at + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert alice.get("/api/history", params={"since": later}).json()["items"] == []


def test_stats(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    for k in ["okay/1.jpg", "okay/2.jpg", "okay/3.jpg", "defect/1.jpg", "rejected/1.bin"]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    put_unclear("u1.jpg", uploaded_at=(datetime.now(UTC) - timedelta(minutes=10)).isoformat())
    put_unclear("u2.jpg")
    alice.post(f"/api/items/{encode_id('unclear/u2.jpg')}/decision", json={"label": "defect"})
    settle(alice)
    stats = alice.get("/api/stats").json()
    assert stats["counts"] == {"okay": 3, "defect": 1, "unclear": 1, "human_decided": 1, "rejected": 1}
    assert stats["defect_rate"] == pytest.approx(2 / 7)
    assert stats["unclear_rate"] == pytest.approx(2 / 7)
    hours = stats["throughput_per_hour"]
    assert len(hours) == 24
    assert hours[-1]["decisions"] == 1
    assert sum(h["decisions"] for h in hours) == 1
    assert 590 < stats["oldest_unclear_age_s"] < 700


def test_stats_empty_bucket(alice: TestClient) -> None:
    stats = alice.get("/api/stats").json()
    assert stats["defect_rate"] == 0
    assert stats["oldest_unclear_age_s"] is None


# --- storage trouble ------------------------------------------------------------------------------


def test_missing_bucket_is_a_clear_503(app_factory: App) -> None:
    c = app_factory(prediction_bucket="no-such-bucket-here")
    login(c)
    r = c.get("/api/queue")
    assert r.status_code == 503
    assert r.json()["detail"].startswith("storage unavailable: bucket no-such-bucket-here does not exist")
    assert c.get("/api/health").status_code == 200


# --- the page -------------------------------------------------------------------------------------


def test_missing_build_page_and_api_still_works(app_factory: App) -> None:
    c = app_factory()
    r = c.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "make install" in r.text
    assert "npm run build" in r.text
    assert c.get("/history").status_code == 200
    assert c.get("/api/health").json()["frontend_built"] is False
    assert c.get("/api/nope").status_code == 404
    assert c.get("/api/nope").json()["detail"]


def test_built_page_served_with_client_routes(app_factory: App, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        "<!doctype html><div id=root></div><script src=/assets/app-1.js></script>"
    )
    (dist / "assets" / "app-1.js").write_text("console.log(1)")
    (dist / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    c = app_factory(static_dir=dist)
    for path in ["/", "/history", "/item/abc", "/dashboard"]:
        r = c.get(path)
        assert r.status_code == 200, path
        assert "id=root" in r.text, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
    r = c.get("/assets/app-1.js")
    assert r.status_code == 200
    assert r.text == "console.log(1)"
    assert "immutable" in r.headers["cache-control"]
    assert c.get("/favicon.svg").text == "<svg/>"
    assert c.get("/assets/missing.js").status_code == 404
    assert "outside" not in c.get("/..%2Fsecret.txt").text
    assert "outside" not in c.get("/assets/..%2F..%2Fsecret.txt").text
    assert c.get("/api/health").json()["frontend_built"] is True


def test_openapi_documents_every_api_route(app_factory: App) -> None:
    schema = app_factory().get("/openapi.json").json()
    paths = schema["paths"]
    for path in [
        "/api/login",
        "/api/logout",
        "/api/me",
        "/api/health",
        "/api/queue",
        "/api/items/{item_id}",
        "/api/items/{item_id}/image",
        "/api/items/{item_id}/claim",
        "/api/items/{item_id}/decision",
        "/api/undo",
        "/api/history",
        "/api/stats",
        "/api/config",
    ]:
        assert path in paths, path
    assert paths["/api/queue"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert "409" in paths["/api/items/{item_id}/decision"]["post"]["responses"]


# --- OIDC behind an ALB ---------------------------------------------------------------------------

ALB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/review/abc"


def _alb_token(
    key: ec.EllipticCurvePrivateKey,
    kid: str = "kid-1",
    signer: str = ALB_ARN,
    exp_s: int = 60,
    email: str = "carol@example.com",
) -> str:
    claims = {"sub": "1234", "email": email, "exp": int(time.time()) + exp_s, "iss": "https://idp.example"}
    return jwt.encode(
        claims,
        key,
        algorithm="ES256",
        headers={"kid": kid, "signer": signer, "client": "review", "typ": "JWT"},
    )


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_oidc_header_verified(app_factory: App) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    fetched: list[str] = []

    def key_source(kid: str) -> str:
        fetched.append(kid)
        if kid != "kid-1":
            raise LookupError(kid)
        return _pem(key)

    c = app_factory(trust_alb_oidc=True, alb_arn=ALB_ARN, key_source=key_source)
    r = c.get("/api/me", headers={"x-amzn-oidc-data": _alb_token(key)})
    assert r.status_code == 200
    assert r.json()["username"] == "carol@example.com"
    csrf = r.json()["csrf_token"]
    assert c.get("/api/me", headers={"x-amzn-oidc-data": _alb_token(key)}).json()["csrf_token"] == csrf
    assert fetched == ["kid-1"]  # the key is cached per kid
    other = ec.generate_private_key(ec.SECP256R1())
    for bad in [
        _alb_token(other),
        _alb_token(key, signer="arn:aws:elasticloadbalancing:other"),
        _alb_token(key, exp_s=-120),
        _alb_token(key, kid="kid-2"),
        "garbage",
        _alb_token(key)[:-4],
    ]:
        r = c.get("/api/me", headers={"x-amzn-oidc-data": bad})
        assert r.status_code == 401
        assert r.json()["detail"] == "OIDC identity could not be verified"
    hs = jwt.encode(
        {"email": "x@y", "exp": int(time.time()) + 60},
        "a-shared-secret-of-at-least-32-bytes!",
        algorithm="HS256",
        headers={"kid": "kid-1", "signer": ALB_ARN},
    )
    assert c.get("/api/me", headers={"x-amzn-oidc-data": hs}).status_code == 401
    # State changes still need the CSRF token.
    assert c.post("/api/undo", headers={"x-amzn-oidc-data": _alb_token(key)}).status_code == 403
    r = c.post("/api/undo", headers={"x-amzn-oidc-data": _alb_token(key), "X-CSRF-Token": csrf})
    assert r.status_code == 409


def test_oidc_header_ignored_when_disabled(app_factory: App) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    c = app_factory(key_source=lambda kid: _pem(key))
    assert c.get("/api/me", headers={"x-amzn-oidc-data": _alb_token(key)}).status_code == 401


def test_oidc_requires_signer_setting(moto: str, tmp_path: Path) -> None:
    from tests.services.review.conftest import make_settings

    with pytest.raises(ValueError, match="ALB_ARN"):
        make_settings(moto, tmp_path, trust_alb_oidc=True)


def test_audit_in_its_own_bucket(app_factory: App, put_unclear: Any, s3: Any) -> None:
    s3.create_bucket(Bucket="review-audit", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    c = app_factory(audit_bucket="review-audit")
    login(c)
    item = encode_id(put_unclear("a.jpg"))
    assert c.post(f"/api/items/{item}/decision", json={"label": "ok"}).status_code == 200
    settle(c)
    assert keys(s3, "audit/") == []
    audit_keys = [o["Key"] for o in s3.list_objects_v2(Bucket="review-audit")["Contents"]]
    assert len(audit_keys) == 1
    assert audit_keys[0].startswith("audit/")
    assert [h["key"] for h in c.get("/api/history").json()["items"]] == ["unclear/a.jpg"]
    assert c.post("/api/undo").status_code == 200
    assert len(s3.list_objects_v2(Bucket="review-audit")["Contents"]) == 2


def test_long_expired_claims_are_cleaned_up(alice: TestClient, put_unclear: Any, s3: Any) -> None:
    put_unclear("a.jpg")
    put_unclear("b.jpg")
    old = {"inspector": "bob", "expires_at": "2026-01-01T00:00:00Z"}
    s3.put_object(Bucket=BUCKET, Key="claims/a.jpg.json", Body=json.dumps(old).encode())
    recent = {"inspector": "bob", "expires_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    s3.put_object(Bucket=BUCKET, Key="claims/b.jpg.json", Body=json.dumps(recent).encode())
    items = {i["name"]: i["claimed_by"] for i in alice.get("/api/queue").json()["items"]}
    assert items == {"a.jpg": None, "b.jpg": "bob"}
    assert keys(s3, "claims/") == ["claims/b.jpg.json"]


def test_cleanup_of_an_abandoned_claim_spares_a_takeover_since_the_listing(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    key = put_unclear("t.jpg")
    old = {"inspector": "bob", "expires_at": "2026-01-01T00:00:00Z"}
    s3.put_object(Bucket=BUCKET, Key="claims/t.jpg.json", Body=json.dumps(old).encode())
    listed = list(store.store.list(BUCKET, "claims/"))
    # Bob's abandoned claim is taken over (compare-and-swap on its ETag) after the listing saw it.
    assert alice.post(f"/api/items/{encode_id(key)}/claim").status_code == 200
    monkeypatch.setattr(review_store, "_listing", lambda *args, **kwargs: listed)
    store._list_claims()
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="claims/t.jpg.json")["Body"].read())
    assert body["inspector"] == "alice"


def test_decision_after_the_queue_page_uses_the_image_as_it_is_now(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    # The page's HEAD lets the marker PUT run beside the GET; a changed image must still win.
    key = put_unclear("c.jpg", model_version="1.0")
    assert [i["model_version"] for i in alice.get("/api/queue").json()["items"]] == ["1.0"]
    put_unclear("c.jpg", model_version="2.0")
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    assert r.status_code == 200, r.text
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/c.jpg.json")["Body"].read())
    assert marker["original_metadata"]["model-version"] == "2.0"
    assert s3.head_object(Bucket=BUCKET, Key="human_decided/ok_c.jpg")["Metadata"]["model-version"] == "2.0"
    settle(alice)
    assert [rec["model_version"] for rec in audit_records(s3)] == ["2.0"]


def test_first_queue_images_served_from_memory_until_replaced(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("first.jpg")
    item = alice.get("/api/queue").json()["items"][0]["id"]
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_get = store.store.get
    asked: list[str] = []

    def counting_get(bucket: str, k: str, max_bytes: int | None = None) -> Any:
        asked.append(k)
        return real_get(bucket, k, max_bytes=max_bytes)

    # The page's first image was loaded while the queue answered: no S3 GET for the browser's request.
    # Wait for that background load itself, not a fixed time: under a loaded CI machine 0.5 s was short,
    # and the load's own GET then landed in `asked`.
    with store._lock:
        loads = list(store._images.values())
    assert loads, "the queue answered without starting to load its first image"
    for load in loads:
        load.result(timeout=10)
    monkeypatch.setattr(store.store, "get", counting_get)
    r = alice.get(f"/api/items/{item}/image")
    assert r.status_code == 200
    assert r.content == JPEG
    assert asked == []
    # Replaced under the same key (a new ETag in the listing): the new bytes, not the cached ones.
    put_unclear("first.jpg", body=JPEG + b"v2")
    deadline = time.monotonic() + 10
    while alice.get(f"/api/items/{item}/image").content != JPEG + b"v2":
        assert time.monotonic() < deadline, "the replaced image was still served after the re-listing"
        alice.get("/api/queue")  # the background re-listing brings the new ETag
        time.sleep(0.1)
    assert key in asked

"""Interrupted moves: an image left in unclear/ beside its decision marker (a crash between the decided
PUT and the delete) is hidden from the queue and its move is finished, or rolled back without a copy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from partcheck.errors import AlreadyExists, StorageUnavailable
from services.review import core
from services.review.core import encode_id
from tests.services.review.conftest import BUCKET, JPEG, ROUTER_META, login, settle
from tests.services.review.test_api import audit_records, keys

pytestmark = pytest.mark.integration

App = Callable[..., TestClient]
AUDIT_KEY = "audit/2026/11/25/20261125T080000.000000Z-0123456789abcdef0123456789abcdef.json"


def interrupted(
    s3: Any,
    rel: str,
    *,
    copy: bool = True,
    age: timedelta = timedelta(minutes=10),
    undo: dict[str, str] | None = None,
) -> str:
    """What a crash after the decided PUT leaves: marker and human_decided copy, image still waiting.

    With `undo`, the marker names an undo that was under way (the image was already back).
    """
    key = f"unclear/{rel}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=JPEG, ContentType="image/jpeg", Metadata=ROUTER_META)
    decided_at = (datetime.now(UTC) - age).isoformat().replace("+00:00", "Z")
    decided_key = f"human_decided/ok_{rel}"
    marker = {
        "key": key,
        "decided_key": decided_key,
        "label": "ok",
        "inspector": "bob",
        "decided_at": decided_at,
        "note": "scratch is dust",
        "original_metadata": ROUTER_META,
        "content_type": "image/jpeg",
        "audit_key": AUDIT_KEY,
        **({"undo": undo} if undo is not None else {}),
    }
    s3.put_object(Bucket=BUCKET, Key=f"decisions/{rel}.json", Body=json.dumps(marker).encode())
    if copy:
        s3.put_object(
            Bucket=BUCKET,
            Key=decided_key,
            Body=JPEG,
            ContentType="image/jpeg",
            Metadata={"inspector": "bob", "decided-at": decided_at, "label": "ok"},
        )
    return key


def fail_writes(monkeypatch: pytest.MonkeyPatch, store: Any, prefix: str) -> Callable[[], None]:
    """Make the review store's PUTs and copies to keys under `prefix` fail like an S3 outage; returns
    what ends it."""
    real_put, real_copy = store.store.put, store.store.copy

    def failing_put(bucket: str, k: str, *args: Any, **kwargs: Any) -> str:
        if k.startswith(prefix):
            raise StorageUnavailable("simulated outage")
        return str(real_put(bucket, k, *args, **kwargs))

    def failing_copy(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        if k.startswith(prefix):
            raise StorageUnavailable("simulated outage")
        return str(real_copy(source, bucket, k, **kwargs))

    monkeypatch.setattr(store.store, "put", failing_put)
    monkeypatch.setattr(store.store, "copy", failing_copy)

    def end() -> None:
        monkeypatch.setattr(store.store, "put", real_put)
        monkeypatch.setattr(store.store, "copy", real_copy)

    return end


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a background outcome."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_queue_hides_an_interrupted_move_and_finishes_it(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    left = interrupted(s3, "left.jpg")
    waiting = put_unclear("waiting.jpg")
    page = alice.get("/api/queue").json()
    assert [i["key"] for i in page["items"]] == [waiting]
    assert page["total"] == 1
    # The leftover is removed in the background; the decision and its record stay as bob made them.
    eventually(lambda: keys(s3, "unclear/") == [waiting])
    assert keys(s3, "human_decided/") == ["human_decided/ok_left.jpg"]
    assert keys(s3, "decisions/") == ["decisions/left.jpg.json"]
    (record,) = audit_records(s3)
    assert keys(s3, "audit/") == [AUDIT_KEY]
    assert record["action"] == "decision"
    assert record["inspector"] == "bob"
    assert record["key"] == left
    assert record["label"] == "ok"
    assert record["note"] == "scratch is dust"
    r = alice.get(f"/api/items/{encode_id(left)}")
    assert r.status_code == 404
    assert "already decided by bob as ok" in r.json()["detail"]


def test_existing_audit_record_is_not_rewritten(alice: TestClient, s3: Any) -> None:
    interrupted(s3, "left.jpg")
    s3.put_object(Bucket=BUCKET, Key=AUDIT_KEY, Body=b'{"action": "decision", "inspector": "bob"}')
    assert alice.get("/api/queue").json()["items"] == []
    eventually(lambda: keys(s3, "unclear/") == [])
    assert (
        s3.get_object(Bucket=BUCKET, Key=AUDIT_KEY)["Body"].read()
        == b'{"action": "decision", "inspector": "bob"}'
    )


def test_deciding_or_claiming_a_leftover_is_409_and_finishes_the_move(alice: TestClient, s3: Any) -> None:
    left = encode_id(interrupted(s3, "left.jpg"))
    r = alice.post(f"/api/items/{left}/claim")
    assert r.status_code == 409
    assert r.json()["detail"] == "already decided by bob as ok"
    r = alice.post(f"/api/items/{left}/decision", json={"label": "defect"})
    assert r.status_code in (404, 409)  # 404 once the move was already finished by the claim
    assert "already decided by bob as ok" in r.json()["detail"]
    eventually(lambda: keys(s3, "unclear/") == [])
    assert keys(s3, "human_decided/") == ["human_decided/ok_left.jpg"]
    assert len(audit_records(s3)) == 1


def test_marker_without_decided_copy_is_rolled_back(alice: TestClient, s3: Any) -> None:
    # A crash between the marker PUT and the decided PUT: the decision never took effect.
    key = interrupted(s3, "half.jpg", copy=False)
    assert alice.get("/api/queue").json()["items"] == []
    eventually(lambda: keys(s3, "decisions/") == [])
    eventually(lambda: [i["key"] for i in alice.get("/api/queue").json()["items"]] == [key])
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "audit/") == []
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "defect"}).status_code == 200


def test_recent_marker_is_hidden_but_left_to_its_decision(alice: TestClient, s3: Any) -> None:
    # Within the undo window the decision (or an undo of it) may still be running on another instance.
    key = interrupted(s3, "fresh.jpg", age=timedelta(seconds=1))
    assert alice.get("/api/queue").json()["total"] == 0
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    assert store.finish_move(key, datetime.now(UTC)) == "too recent"
    assert keys(s3, "unclear/") == [key]
    assert store.finish_move(key, datetime.now(UTC) + timedelta(minutes=5)) == "finished"
    assert keys(s3, "unclear/") == []
    assert [r["action"] for r in audit_records(s3)] == ["decision"]


def test_real_decision_whose_delete_failed_is_finished(
    app_factory: App, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decided PUT succeeded, then the storage refused the delete (as a crash would skip it).
    a = app_factory()
    login(a)
    key = put_unclear("d/x.jpg")
    store = a.app.state.review.store  # type: ignore[attr-defined]
    real_delete = store.store.delete

    def failing_delete(bucket: str, k: str) -> None:
        if k == key:
            raise StorageUnavailable("simulated outage")
        real_delete(bucket, k)

    monkeypatch.setattr(store.store, "delete", failing_delete)
    assert a.post(f"/api/items/{encode_id(key)}/decision", json={"label": "defect"}).status_code == 200
    settle(a)
    assert keys(s3, "unclear/") == [key]
    monkeypatch.setattr(store.store, "delete", real_delete)
    # This instance's later listings show the image again; its marker keeps it out of the queue.
    for _ in range(5):
        assert a.get("/api/queue").json()["total"] == 0
        time.sleep(0.2)
    # A second instance (fresh caches) does not offer it, and finishes it once the undo window is over.
    b = app_factory()
    login(b, "bob")
    assert b.get("/api/queue").json() == {"items": [], "next_cursor": None, "total": 0}
    r = b.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    assert r.status_code == 409
    assert r.json()["detail"] == "already decided by alice as defect"
    b_store = b.app.state.review.store  # type: ignore[attr-defined]
    assert b_store.finish_move(key, datetime.now(UTC) + timedelta(minutes=5)) == "finished"
    assert keys(s3, "unclear/") == []
    assert keys(s3, "human_decided/") == ["human_decided/d/defect_x.jpg"]
    assert [(r["action"], r["inspector"]) for r in audit_records(s3)] == [("decision", "alice")]
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/d/x.jpg.json")["Body"].read())
    assert marker["original_metadata"] == ROUTER_META


UNDO_AUDIT_KEY = "audit/2026/11/25/20261125T080500.000000Z-fedcba9876543210fedcba9876543210.json"


def test_an_undo_stopped_before_removing_the_copy_is_finished(alice: TestClient, s3: Any) -> None:
    undo = {"by": "bob", "at": "2026-11-25T08:05:00Z", "audit_key": UNDO_AUDIT_KEY}
    key = interrupted(s3, "back.jpg", age=timedelta(minutes=20), undo=undo)
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    # The undo started a minute ago by this clock: it may still be running, so it is left alone.
    assert store.finish_move(key, datetime(2026, 11, 25, 8, 6, tzinfo=UTC)) == "too recent"
    assert keys(s3, "human_decided/") == ["human_decided/ok_back.jpg"]
    assert store.finish_move(key, datetime(2026, 11, 25, 8, 10, tzinfo=UTC)) == "undone"
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "human_decided/") == []
    assert keys(s3, "decisions/") == []
    assert keys(s3, "audit/") == [UNDO_AUDIT_KEY]
    (record,) = audit_records(s3)
    assert (record["action"], record["inspector"], record["at"]) == ("undo", "bob", "2026-11-25T08:05:00Z")
    assert record["key"] == key
    assert record["label"] == "ok"
    eventually(lambda: [i["key"] for i in alice.get("/api/queue").json()["items"]] == [key])


def test_an_undo_whose_audit_record_failed_is_recorded_later(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("u/x.jpg")
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "defect"}).status_code == 200
    settle(alice)
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    end_outage = fail_writes(monkeypatch, store, "audit/")
    r = alice.post("/api/undo")
    assert r.status_code == 503
    end_outage()
    # The image is back and its copy gone, but the log lacks the undo: the marker still names it.
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "human_decided/") == []
    assert [rec["action"] for rec in audit_records(s3)] == ["decision"]
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/u/x.jpg.json")["Body"].read())
    assert marker["undo"]["by"] == "alice"
    assert store.finish_move(key, datetime.now(UTC) + timedelta(minutes=5)) == "undone"
    assert [(rec["action"], rec["inspector"]) for rec in audit_records(s3)] == [
        ("decision", "alice"),
        ("undo", "alice"),
    ]
    assert sorted(keys(s3, "audit/"))[1] == marker["undo"]["audit_key"]
    assert keys(s3, "decisions/") == []
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"}).status_code == 200


def test_an_undo_that_cannot_put_the_image_back_leaves_the_decision_as_it_was(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("u/y.jpg")
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"}).status_code == 200
    settle(alice)
    before = s3.get_object(Bucket=BUCKET, Key="decisions/u/y.jpg.json")["Body"].read()
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    end_outage = fail_writes(monkeypatch, store, "unclear/")
    assert alice.post("/api/undo").status_code == 503
    end_outage()
    # Nothing moved, and the marker no longer names the undo that failed.
    assert keys(s3, "unclear/") == []
    assert keys(s3, "human_decided/") == ["human_decided/u/ok_y.jpg"]
    after = s3.get_object(Bucket=BUCKET, Key="decisions/u/y.jpg.json")["Body"].read()
    assert "undo" not in json.loads(after)
    assert json.loads(after) == json.loads(before)
    assert [rec["action"] for rec in audit_records(s3)] == ["decision"]
    assert alice.post("/api/undo").status_code == 200
    assert keys(s3, "unclear/") == [key]


def test_undo_takes_the_newest_decision_even_when_its_audit_record_failed(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = put_unclear("a.jpg"), put_unclear("b.jpg")
    assert alice.post(f"/api/items/{encode_id(a)}/decision", json={"label": "ok"}).status_code == 200
    settle(alice)
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    end_outage = fail_writes(monkeypatch, store, "audit/")
    assert alice.post(f"/api/items/{encode_id(b)}/decision", json={"label": "defect"}).status_code == 200
    settle(alice)
    # While the log still cannot be written, the undo of b fails instead of reaching back to a.
    assert alice.post("/api/undo").status_code == 503
    assert keys(s3, "unclear/") == [b]
    end_outage()
    r = alice.post("/api/undo")
    assert r.status_code == 200, r.text
    assert r.json()["key"] == b
    assert keys(s3, "human_decided/") == ["human_decided/ok_a.jpg"]
    assert [(rec["action"], rec["key"]) for rec in audit_records(s3)] == [
        ("decision", a),
        ("decision", b),
        ("undo", b),
    ]


def test_undo_leaves_other_bytes_waiting_under_the_decided_name_alone(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    key = put_unclear("z.jpg")
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"}).status_code == 200
    settle(alice)
    # Not the decided image (other metadata) waits under its name: the undo must not take it for it.
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"other", Metadata={"source-etag": "elsewhere"})
    r = alice.post("/api/undo")
    assert r.status_code == 409
    assert "already back" in r.json()["detail"]
    assert keys(s3, "human_decided/") == ["human_decided/ok_z.jpg"]
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/z.jpg.json")["Body"].read())
    assert "undo" not in marker


@pytest.mark.parametrize("error", [AlreadyExists("412 on botocore's retry"), StorageUnavailable("500")])
def test_a_decided_copy_that_landed_despite_an_error_counts(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    key = put_unclear("amb.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_copy = store.store.copy

    def landed_then_error(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        out = str(real_copy(source, bucket, k, **kwargs))
        if k.startswith("human_decided/"):
            raise error
        return out

    monkeypatch.setattr(store.store, "copy", landed_then_error)
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    monkeypatch.setattr(store.store, "copy", real_copy)
    settle(alice)
    assert r.status_code == 200, r.text
    assert keys(s3, "human_decided/") == ["human_decided/ok_amb.jpg"]
    assert keys(s3, "unclear/") == []
    assert [(rec["action"], rec["label"]) for rec in audit_records(s3)] == [("decision", "ok")]


def test_a_decided_name_taken_by_another_copy_is_still_refused(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    key = put_unclear("taken.jpg")
    s3.put_object(
        Bucket=BUCKET, Key="human_decided/ok_taken.jpg", Body=b"older", Metadata={"inspector": "bob"}
    )
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "decisions/") == []


def test_undo_on_another_instance_leaves_a_decision_whose_removal_may_still_run(
    alice: TestClient, s3: Any
) -> None:
    # Another instance decided a.jpg just now: its record is in the log, the image not yet removed.
    key = interrupted(s3, "running.jpg", age=timedelta(seconds=2))
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/running.jpg.json")["Body"].read())
    marker["inspector"] = "alice"
    s3.put_object(Bucket=BUCKET, Key="decisions/running.jpg.json", Body=json.dumps(marker).encode())
    at = datetime.now(UTC) - timedelta(seconds=2)
    record = core.audit_record("decision", marker, at, "alice")
    record["decided_at"] = marker["decided_at"]
    s3.put_object(Bucket=BUCKET, Key=core.audit_key(at, "b" * 32), Body=json.dumps(record).encode())
    r = alice.post("/api/undo")
    assert r.status_code == 409, r.text
    assert "already back" in r.json()["detail"]
    # Nothing was taken away: the decision and its image are as the other instance left them.
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "human_decided/") == ["human_decided/ok_running.jpg"]
    after = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/running.jpg.json")["Body"].read())
    assert "undo" not in after


def test_a_landed_decided_copy_is_recognised_by_who_when_and_what_not_by_its_note(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("trim.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_copy = store.store.copy

    def landed_trimmed_then_500(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        if not k.startswith("human_decided/"):
            return str(real_copy(source, bucket, k, **kwargs))
        # S3 trims the whitespace a shortened note can end in: the stored note differs from the sent one.
        meta = {**kwargs.pop("metadata"), "note": "trimmed"}
        real_copy(source, bucket, k, metadata=meta, **kwargs)
        raise StorageUnavailable("500 after storing")

    monkeypatch.setattr(store.store, "copy", landed_trimmed_then_500)
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "defect", "note": "a long note"})
    monkeypatch.setattr(store.store, "copy", real_copy)
    settle(alice)
    assert r.status_code == 200, r.text
    assert keys(s3, "human_decided/") == ["human_decided/defect_trim.jpg"]
    assert keys(s3, "decisions/") == ["decisions/trim.jpg.json"]


def test_an_image_replaced_between_its_head_and_the_decided_copy_is_not_decided(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("swap.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_copy = store.store.copy

    def replaced_first(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        put_unclear("swap.jpg", body=JPEG + b"new")
        return str(real_copy(source, bucket, k, **kwargs))

    monkeypatch.setattr(store.store, "copy", replaced_first)
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == f"{key} changed or left unclear/ while it was decided; nothing was moved"
    # The new bytes wait, undecided and unseen by anyone's decision.
    assert keys(s3, "human_decided/") == []
    assert keys(s3, "decisions/") == []
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == JPEG + b"new"


class ProcessDied(Exception):
    """Not a PartcheckError: no handler of the store catches it, as none runs when the process dies."""


def test_an_undo_that_died_before_the_image_was_back_is_dropped_when_its_marker_is_next_read(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = put_unclear("died.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    decided_at = datetime.now(UTC) - timedelta(minutes=10)
    store.decide(key, "ok", "alice", None, decided_at, 30)
    settle(alice)
    decided_marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/died.jpg.json")["Body"].read())
    real_copy = store.store.copy

    def dies(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        if k.startswith("unclear/"):
            raise ProcessDied
        return str(real_copy(source, bucket, k, **kwargs))

    monkeypatch.setattr(store.store, "copy", dies)
    undo_at = decided_at + timedelta(seconds=5)
    with pytest.raises(ProcessDied):
        store.undo("alice", undo_at, 30)
    monkeypatch.setattr(store.store, "copy", real_copy)
    # What the crash left: the marker names an undo, the image is still only in human_decided/.
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="decisions/died.jpg.json")["Body"].read())
    assert marker["undo"]["by"] == "alice"
    assert keys(s3, "unclear/") == []
    # While the undo could still be running it is left alone.
    assert store.finish_move(key, undo_at + timedelta(seconds=10)) == "too recent"
    # Long after, the next request that reads the marker (the item's 404) has the dead undo dropped:
    # the decision stands as it was, nothing moved, and no undo is claimed or recorded.
    r = alice.get(f"/api/items/{encode_id(key)}")
    assert r.status_code == 404
    assert "already decided by alice as ok" in r.json()["detail"]

    def marker_now() -> dict[str, Any]:
        body = s3.get_object(Bucket=BUCKET, Key="decisions/died.jpg.json")["Body"].read()
        return dict(json.loads(body))

    eventually(lambda: "undo" not in marker_now())
    assert marker_now() == decided_marker
    assert keys(s3, "unclear/") == []
    assert keys(s3, "human_decided/") == ["human_decided/ok_died.jpg"]
    assert [(rec["action"], rec["inspector"]) for rec in audit_records(s3)] == [("decision", "alice")]
    assert store.finish_move(key, datetime.now(UTC)) == "nothing to do"


def test_queue_total_counts_the_images_one_can_decide_on_every_page(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    waiting = [put_unclear(f"q/{i}.jpg") for i in range(5)]
    # Decided elsewhere a moment ago, its removal from unclear/ still on its way: it sorts last, so no
    # first page shows it and no marker check of a page meets it.
    interrupted(s3, "q/9.jpg", age=timedelta(seconds=1))

    def pages() -> list[tuple[list[str], int]]:
        out, cursor = [], None
        while True:
            body = alice.get(
                "/api/queue", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            out.append(([i["key"] for i in body["items"]], body["total"]))
            cursor = body["next_cursor"]
            if cursor is None:
                return out

    seen = pages()
    assert [keys for keys, _ in seen][:3] == [waiting[0:2], waiting[2:4], waiting[4:5]]
    assert [total for _, total in seen] == [5] * len(seen)
    # This instance's own decision and undo count at once, also over a decisions/ listing older than them.
    assert alice.post(f"/api/items/{encode_id(waiting[0])}/decision", json={"label": "ok"}).status_code == 200
    assert [total for _, total in pages()] == [4, 4]
    assert alice.post("/api/undo").status_code == 200
    for _ in range(3):
        assert {total for _, total in pages()} == {5}


def test_the_queue_is_served_while_the_decisions_listing_is_slow_or_fails(
    alice: TestClient, put_unclear: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # decisions/ holds a marker per decision ever made: its listing only refines `total`, so a slow or
    # failing one must not hold up or fail the queue (nor fill the request workers with listings).
    waiting = [put_unclear(f"slow/{i}.jpg") for i in range(3)]
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_list = store.store.list
    gate = threading.Event()
    calls: list[str] = []

    def listing(bucket: str, prefix: str = "", start_after: str | None = None) -> Any:
        if prefix.startswith("decisions/"):
            calls.append(prefix)
            gate.wait(30)
            raise StorageUnavailable("simulated outage")
        return real_list(bucket, prefix, start_after)

    monkeypatch.setattr(store.store, "list", listing)
    try:
        with ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            pages = [pool.submit(alice.get, "/api/queue") for _ in range(2)]
            answers = [p.result(timeout=10) for p in pages]
            assert time.monotonic() - started < 10
    finally:
        gate.set()
    for r in answers:
        assert r.status_code == 200, r.text
        assert [i["key"] for i in r.json()["items"]] == waiting
        assert r.json()["total"] == 3
    assert len(calls) == 1  # one listing for both requests, not one each
    # Failing at once, it still leaves the queue alone.
    r = alice.get("/api/queue")
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 3


def test_the_decisions_listing_is_not_re_listed_at_the_queues_pace(
    alice: TestClient, put_unclear: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One marker per decision ever made: listed at the queue's pace (every request here, the refresh
    # age being 0), a year of markers would cost tens of thousands of LIST requests a working day.
    put_unclear("pace/a.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_list = store.store.list
    calls: list[str] = []

    def listing(bucket: str, prefix: str = "", start_after: str | None = None) -> Any:
        calls.append(prefix)
        return real_list(bucket, prefix, start_after)

    monkeypatch.setattr(store.store, "list", listing)
    for _ in range(5):
        assert alice.get("/api/queue").status_code == 200
        time.sleep(0.1)
    store.settle()
    assert sum(p.startswith("unclear/") for p in calls) >= 3  # the queue itself keeps its pace
    assert sum(p.startswith("decisions/") for p in calls) == 1


def test_a_decided_copy_refused_while_both_its_conditions_hold_is_left_to_finish_move(
    alice: TestClient, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 answers 409 ConditionalRequestConflict (AlreadyExists here, like a 412) while a write to the
    # decided name is under way, such as an earlier attempt of this very copy: the name is still free and
    # the source unchanged, so nothing says the copy failed. Rolling the marker back let that copy land
    # beside a waiting image, and the other label's decision made a second copy.
    key = put_unclear("busy.jpg")
    store = alice.app.state.review.store  # type: ignore[attr-defined]
    real_copy = store.store.copy
    in_flight: list[Callable[[], str]] = []

    def conflicting(source: tuple[str, str], bucket: str, k: str, **kwargs: Any) -> str:
        if k.startswith("human_decided/"):
            in_flight.append(lambda: str(real_copy(source, bucket, k, **kwargs)))
            raise AlreadyExists("409 ConditionalRequestConflict")
        return str(real_copy(source, bucket, k, **kwargs))

    monkeypatch.setattr(store.store, "copy", conflicting)
    r = alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"})
    monkeypatch.setattr(store.store, "copy", real_copy)
    (land,) = in_flight
    land()  # the earlier attempt completes
    assert r.status_code == 503, r.text
    assert keys(s3, "decisions/") == ["decisions/busy.jpg.json"]  # kept for finish_move
    assert alice.post(f"/api/items/{encode_id(key)}/decision", json={"label": "defect"}).status_code == 409
    assert keys(s3, "human_decided/") == ["human_decided/ok_busy.jpg"]
    assert store.finish_move(key, datetime.now(UTC) + timedelta(hours=1)) == "finished"
    assert keys(s3, "unclear/") == []
    assert [(rec["action"], rec["label"]) for rec in audit_records(s3)] == [("decision", "ok")]


def _losing_first_answer(
    c: Any, key: str, s3: Any, deleted: threading.Event, resume: threading.Event, apply: bool
) -> Any:
    """A client whose first DeleteObject of `key` is (with `apply`) carried out, then its answer lost."""
    from botocore.exceptions import ReadTimeoutError

    state = {"lost": False}

    def lose(request: Any, **_: Any) -> None:
        if request.method == "DELETE" and request.url.split("?")[0].endswith(key) and not state["lost"]:
            state["lost"] = True
            if apply:
                s3.delete_object(Bucket=BUCKET, Key=key)
            deleted.set()
            resume.wait(10)
            raise ReadTimeoutError(endpoint_url=request.url)

    c.meta.events.register("before-send.s3.DeleteObject", lose)
    return c


def _clients(moto: str) -> tuple[Any, Any]:
    from partcheck.aws import AwsConfig, client

    aws = AwsConfig(endpoint_url=moto)
    return client("s3", aws), client("s3", aws.model_copy(update={"max_attempts": 0}))


def test_a_removal_whose_answer_was_lost_is_not_repeated_after_an_undo_elsewhere(
    app_factory: App, put_unclear: Any, s3: Any, moto: str
) -> None:
    key = put_unclear("lost.jpg")
    deleted, undone = threading.Event(), threading.Event()
    plain, once = _clients(moto)
    a = app_factory(s3=plain, s3_once=_losing_first_answer(once, key, s3, deleted, undone, apply=True))
    login(a)
    b = app_factory()  # another instance behind the same load balancer
    login(b)
    assert a.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"}).status_code == 200
    assert deleted.wait(10)  # a's delete took effect, its answer is on its way and will be lost
    r = b.post("/api/undo")
    assert r.status_code == 200, r.text
    undone.set()
    settle(a)
    # A blind retry (botocore's) would have deleted the image the undo put back: it would be nowhere.
    assert keys(s3, "unclear/") == [key]
    assert keys(s3, "human_decided/") == []


def test_a_removal_whose_answer_was_lost_is_retried_while_the_decision_stands(
    app_factory: App, put_unclear: Any, s3: Any, moto: str
) -> None:
    key = put_unclear("retry.jpg")
    lost, go = threading.Event(), threading.Event()
    go.set()
    plain, once = _clients(moto)
    a = app_factory(s3=plain, s3_once=_losing_first_answer(once, key, s3, lost, go, apply=False))
    login(a)
    assert a.post(f"/api/items/{encode_id(key)}/decision", json={"label": "ok"}).status_code == 200
    settle(a)
    assert lost.is_set()
    assert keys(s3, "unclear/") == []
    assert keys(s3, "human_decided/") == ["human_decided/ok_retry.jpg"]

"""Unit tests of the SQLite outbox: dedupe rules, claiming, recovery after a crash."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.outbox import ConflictError, Outbox
from agent.status import render_summary, summary

pytestmark = pytest.mark.unit


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.sqlite3")


def test_wal_mode(outbox: Outbox) -> None:
    with outbox._lock:
        assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_content_or_same_key_cannot_be_active_twice(outbox: Outbox) -> None:
    outbox.add(path="/a", name="a", state="pending", sha256="s1", key="k1")
    with pytest.raises(ConflictError):
        outbox.add(path="/b", name="b", state="pending", sha256="s1", key="k2")
    with pytest.raises(ConflictError):
        outbox.add(path="/c", name="c", state="pending", sha256="s2", key="k1")
    # Terminal rows do not count: a skipped file may share anything.
    outbox.add(path="/d", name="d", state="duplicate", sha256="s1", key=None)
    assert outbox.active_by_sha("s1") is not None
    assert outbox.active_by_key("k1") is not None


def test_claim_counts_attempts_and_recover_resets_interrupted_uploads(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    first = Outbox(path)
    row = first.add(path="/a", name="a", state="pending", sha256="s", key="k")
    claimed = first.claim(row.id)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == ("uploading", 1)
    assert claimed.started_at is not None
    assert first.claim(row.id) is None  # already claimed
    first.close()
    second = Outbox(path)  # as after a crash
    assert second.recover() == 1
    again = second.get(row.id)
    assert again is not None
    assert (again.state, again.attempts) == ("pending", 1)


def test_claim_due_respects_retry_time(outbox: Outbox) -> None:
    row = outbox.add(path="/a", name="a", state="pending", sha256="s", key="k", next_attempt=2000.0)
    assert outbox.claim_due(now=1999.0) is None
    assert outbox.next_due() == 2000.0
    claimed = outbox.claim_due(now=2000.0)
    assert claimed is not None
    assert claimed.id == row.id
    outbox.retry_later(row.id, 3000.0, "S3 down")
    assert outbox.counts()["pending"] == 1
    last = outbox.last_error()
    assert last is not None
    assert last.last_error == "S3 down"


def test_waiting_note_is_replaced_by_the_real_record(outbox: Outbox) -> None:
    outbox.note_waiting("/a", "a", "still being written")
    assert outbox.counts()["waiting"] == 1
    outbox.add(path="/a", name="a", state="pending", sha256="s", key="k")
    assert outbox.counts()["waiting"] == 0
    assert outbox.counts()["pending"] == 1


def test_read_only_view(outbox: Outbox) -> None:
    outbox.add(path="/a", name="a", state="skipped", reason="empty file (0 bytes)")
    ro = Outbox(outbox.path, read_only=True)
    assert ro.counts()["skipped"] == 1
    row = ro.latest_for_path("/a")
    assert row is not None
    assert row.reason == "empty file (0 bytes)"


def test_prune_keeps_rows_still_needed_and_unsettled_ones(outbox: Outbox) -> None:
    done = outbox.add(path="/a", name="a", state="pending", sha256="s1", key="k1")
    outbox.done(done.id, "e")
    outbox.disposed(done.id, "archived:/x")
    kept = outbox.add(path="/b", name="b", state="pending", sha256="s2", key="k2")
    outbox.done(kept.id, "e")
    outbox.disposed(kept.id, "kept")
    undisposed = outbox.add(path="/c", name="c", state="pending", sha256="s3", key="k3")
    outbox.done(undisposed.id, "e")
    outbox.add(path="/d", name="d", state="skipped", reason="empty file (0 bytes)")
    outbox.add(path="/e", name="e", state="pending", sha256="s5", key="k5")
    removed = outbox.prune(older_than=time.time() + 1, still_needed=lambda r: r.path == "/b")
    assert removed == 2  # /a (archived) and /d (skipped, file gone)
    assert {r.path for r in outbox.rows()} == {"/b", "/c", "/e"}
    assert outbox.counts(("pending",)) == {"pending": 1}
    assert outbox.prune(older_than=0.0, still_needed=lambda r: False) == 0  # nothing old enough


def test_a_path_that_is_not_utf8_round_trips_and_text_paths_stay_text(outbox: Outbox) -> None:
    bad = "/in/" + os.fsdecode(b"caf\xe9.jpg")  # what os.walk gives for a Latin-1 name
    outbox.note_waiting(bad, os.path.basename(bad), "still being written")
    row = outbox.add(path=bad, name=os.path.basename(bad), state="pending", sha256="s1", key="k1")
    good = outbox.add(path="/in/Prüfung.jpg", name="Prüfung.jpg", state="pending", sha256="s2", key="k2")
    assert outbox.counts(("pending", "waiting")) == {"pending": 2, "waiting": 0}
    found = outbox.latest_for_path(bad)
    assert found is not None
    assert (found.id, found.path, found.name) == (row.id, bad, os.fsdecode(b"caf\xe9.jpg"))
    outbox.disposed(row.id, f"archived:/archive{bad}")
    assert outbox.get(row.id) == outbox.rows()[0]
    assert (outbox.rows()[0].disposed or "").endswith(bad)
    # No schema change: the bad name is stored as its bytes, every valid one as text, exactly as before.
    with outbox._lock:
        kinds = outbox._db.execute("SELECT typeof(path), typeof(name) FROM files ORDER BY id").fetchall()
    assert [tuple(k) for k in kinds] == [("blob", "blob"), ("text", "text")]
    assert outbox.latest_for_path("/in/Prüfung.jpg") == outbox.get(good.id)
    # `partcheck agent status` prints it (stdout is strict UTF-8) with the odd byte escaped.
    text = render_summary(summary(outbox))
    text.encode("utf-8")
    assert "/in/caf\\xe9.jpg" in text

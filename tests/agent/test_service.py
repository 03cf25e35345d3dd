"""Unit tests of the agent's decisions, driven step by step (no threads) against an in-memory object store."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import service
from agent.outbox import Row
from agent.service import Agent
from agent.settings import AgentSettings
from partcheck.errors import AccessDenied, StorageUnavailable
from partcheck.storage import ObjectInfo
from tests.agent.conftest import BUCKET, MemoryStore, jpeg_bytes

pytestmark = pytest.mark.unit

BAD_NAME = b"caf\xe9.jpg"  # Latin-1, as SMB shares and older camera software write it: not valid UTF-8


MakeAgent = Callable[..., Agent]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def make_agent(tmp_path: Path, store: MemoryStore) -> Iterator[MakeAgent]:
    """An agent on tmp_path/inbox that is never started: each test drives its steps itself."""
    agents: list[Agent] = []

    def make(**overrides: Any) -> Agent:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        values: dict[str, Any] = {
            "watch": tmp_path / "inbox", "state_dir": tmp_path / "state", "bucket": BUCKET,
            "stability_wait_s": 0.0, "scan_settle_s": 0.0, "backoff_base_s": 0.5, "backoff_max_s": 30.0,
        }  # fmt: skip
        values.update(overrides)
        agent = Agent(AgentSettings(**values), store)  # type: ignore[arg-type]
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.outbox.close()


def _process(agent: Agent, path: Path | str) -> None:
    agent._process(str(path), time.monotonic())


def _drain(agent: Agent) -> list[str]:
    """What a worker would do with everything scans and the tracker handed on; the paths it processed."""
    done = []
    while True:
        ready = agent.tracker.due().ready
        while not agent._ready.empty():
            path, _at = agent._ready.get()
            with agent._inflight_lock:
                agent._inflight.discard(path)
            ready.append(path)
        if not ready:
            return done
        for path in ready:
            _process(agent, path)
            done.append(path)


def _retry_due(agent: Agent) -> None:
    """S3 is back: run every pending row's retry now."""
    agent._gate_until = 0.0
    while (row := agent.outbox.claim_due(now=time.time() + 3600)) is not None:
        agent._retry(row)


def _row(agent: Agent, path: Path) -> Row:
    row = agent.outbox.latest_for_path(str(path))
    assert row is not None, path
    return row


def _same_bytes_twice(agent: Agent, inbox: Path, data: bytes) -> None:
    """a.jpg, then b.jpg with the same bytes, each handed to a worker: b is recorded as a's duplicate."""
    (inbox / "a.jpg").write_bytes(data)
    (inbox / "b.jpg").write_bytes(data)
    _process(agent, inbox / "a.jpg")
    _process(agent, inbox / "b.jpg")


# ---- duplicates are disposed of only once their original is confirmed ----------------------------------


def test_a_duplicate_is_kept_while_its_original_is_pending(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    agent = make_agent(after_upload="delete")
    inbox, data = tmp_path / "inbox", jpeg_bytes(1)
    store.up = False
    _same_bytes_twice(agent, inbox, data)
    assert _row(agent, inbox / "a.jpg").state == "pending"
    assert _row(agent, inbox / "b.jpg").state == "duplicate"
    for _ in range(2):  # the safety-net rescan, and the same file handed to a worker again
        agent.scan()
        _drain(agent)
        _process(agent, inbox / "b.jpg")
    assert (inbox / "b.jpg").exists()  # the original is not in S3 yet: this may be the only copy
    assert _row(agent, inbox / "b.jpg").disposed is None
    store.up = True
    _retry_due(agent)
    assert _row(agent, inbox / "a.jpg").state == "done"
    assert _row(agent, inbox / "b.jpg").disposed == "deleted"  # now the same action as its original
    assert not any(inbox.iterdir())
    assert [body for body, _m in store.objects.values()] == [data]


def test_a_duplicate_kept_through_a_rescan_is_uploaded_when_its_original_vanishes(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    # a.jpg is renamed to b.jpg while S3 is down: b.jpg is a duplicate of a pending row whose file is gone.
    agent = make_agent(after_upload="delete")
    inbox, data = tmp_path / "inbox", jpeg_bytes(2)
    (inbox / "a.jpg").write_bytes(data)
    store.up = False
    _process(agent, inbox / "a.jpg")
    os.rename(inbox / "a.jpg", inbox / "b.jpg")
    agent.on_moved(str(inbox / "a.jpg"), str(inbox / "b.jpg"))
    _drain(agent)
    assert _row(agent, inbox / "b.jpg").state == "duplicate"
    agent.scan()
    _drain(agent)
    store.up = True
    _retry_due(agent)  # a.jpg: gone, so b.jpg is taken again
    assert _row(agent, inbox / "a.jpg").state == "gone"
    assert _drain(agent) == [str(inbox / "b.jpg")]
    assert _row(agent, inbox / "b.jpg").state == "done"
    assert [body for body, _m in store.objects.values()] == [data]


def test_a_duplicate_is_taken_again_when_its_original_changes_before_upload(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    agent = make_agent(after_upload="keep")
    inbox, data, other = tmp_path / "inbox", jpeg_bytes(3), jpeg_bytes(4)
    store.up = False
    _same_bytes_twice(agent, inbox, data)
    (inbox / "a.jpg").write_bytes(other)
    store.up = True
    _retry_due(agent)  # a.jpg's recorded content is gone: b.jpg holds the only copy
    _drain(agent)
    stored = sorted(body for body, _m in store.objects.values())
    assert stored == sorted([data, other])
    assert _row(agent, inbox / "b.jpg").state == "done"


def test_a_rescan_takes_again_a_duplicate_whose_original_ended_without_upload(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    # As after a crash between the original's "gone" and the release of its duplicates.
    agent = make_agent(after_upload="delete")
    inbox, data = tmp_path / "inbox", jpeg_bytes(5)
    store.up = False
    _same_bytes_twice(agent, inbox, data)
    (inbox / "a.jpg").unlink()
    agent.outbox.finish(_row(agent, inbox / "a.jpg").id, "gone", "deleted before upload")
    store.up = True
    agent.scan()
    _drain(agent)
    _retry_due(agent)
    assert _row(agent, inbox / "b.jpg").state == "done"
    assert [body for body, _m in store.objects.values()] == [data]


# ---- a name that is not UTF-8, and any one file's error, never stops a scan -----------------------------


def _bad_name_file(inbox: Path, data: bytes) -> str:
    try:
        with open(os.path.join(os.fsencode(inbox), BAD_NAME), "wb") as f:
            f.write(data)
    except (OSError, UnicodeError) as exc:  # e.g. ZFS utf8only, some network file systems
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    return os.path.join(str(inbox), os.fsdecode(BAD_NAME))


def test_a_name_that_is_not_utf8_among_good_files_is_tracked_and_uploaded(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(after_upload="keep")
    inbox = tmp_path / "inbox"
    for i in range(20):
        (inbox / f"g{i:02d}.jpg").write_bytes(jpeg_bytes(100 + i))
    bad = _bad_name_file(inbox, jpeg_bytes(99))
    assert agent.scan() == 21
    assert len(agent.tracker) == 21
    assert len(_drain(agent)) == 21
    assert agent.outbox.counts()["done"] == 21
    row = _row(agent, Path(bad))
    assert (row.path, row.name, row.state) == (bad, os.fsdecode(BAD_NAME), "done")
    assert row.key is not None
    assert row.key.endswith("/caf_.jpg")
    body, meta = store.objects[row.key]
    assert body == jpeg_bytes(99)
    assert meta["source-name"] == "caf%E9.jpg"  # the exact original bytes, url-quoted
    agent.scan()  # settled: nothing more to do, and no error
    assert not _drain(agent)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_one_files_unexpected_error_is_logged_once_and_the_scan_goes_on(
    make_agent: MakeAgent, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent()
    inbox = tmp_path / "inbox"
    for i in range(21):
        (inbox / f"g{i:02d}.jpg").write_bytes(jpeg_bytes(200 + i))
    cursed = str(inbox / "g10.jpg")
    real = agent.outbox.latest_for_path

    def latest_for_path(path: str) -> Row | None:
        if path == cursed:
            raise RuntimeError("cannot look this one up")
        return real(path)

    monkeypatch.setattr(agent.outbox, "latest_for_path", latest_for_path)
    assert agent.scan() == 20
    assert agent.scan() == 0  # the others are tracked already; the cursed one fails again, quietly
    assert cursed not in agent.tracker
    assert len(agent.tracker) == 20
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.getMessage(), r.fields["path"]) for r in errors] == [  # type: ignore[attr-defined]
        ("unexpected error scanning a file; the scan goes on", cursed)
    ]
    monkeypatch.setattr(agent.outbox, "latest_for_path", real)
    assert agent.scan() == 1  # fixed: picked up by the next scan


# ---- backoff after very long outages, and rows never stuck in "uploading" -------------------------------


def test_backoff_stays_capped_after_thousands_of_failed_probes(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    agent = make_agent()
    (tmp_path / "inbox" / "a.jpg").write_bytes(jpeg_bytes(6))
    store.up = False
    agent._failures = 5000  # what days of probes during one outage leave behind
    before = time.time()
    _process(agent, tmp_path / "inbox" / "a.jpg")
    row = _row(agent, tmp_path / "inbox" / "a.jpg")
    assert row.state == "pending"
    assert before < row.next_attempt <= time.time() + agent.s.backoff_max_s
    assert agent._gate_until <= time.time() + agent.s.backoff_max_s


def test_backoff_stays_capped_after_thousands_of_attempts_of_one_unreadable_file(
    make_agent: MakeAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent()
    path = tmp_path / "inbox" / "a.jpg"
    path.write_bytes(jpeg_bytes(7))
    _process(agent, path)
    row = _row(agent, path)
    assert row.state == "done"
    agent.outbox._exec("UPDATE files SET state='pending', attempts=5000 WHERE id=?", (row.id,))

    def unreadable(_path: str) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(service, "read_file", unreadable)
    claimed = agent.outbox.claim_due()
    assert claimed is not None
    agent._retry(claimed)
    row = _row(agent, path)
    assert (row.state, row.attempts) == ("pending", 5001)
    assert row.next_attempt <= time.time() + agent.s.backoff_max_s


def test_an_unexpected_error_during_an_upload_puts_the_row_back_to_pending(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    agent = make_agent()
    path = tmp_path / "inbox" / "a.jpg"
    path.write_bytes(jpeg_bytes(8))
    store.fail_with = RuntimeError("a bug in the upload path")
    for attempt in range(2):  # the first upload (claimed at once), then a retry of the pending row
        if attempt == 0:
            agent._guard(agent._process, str(path), time.monotonic())
        else:
            claimed = agent.outbox.claim_due(now=time.time() + 3600)
            assert claimed is not None
            agent._guard(agent._retry, claimed)
        row = _row(agent, path)
        assert row.state == "pending"
        assert time.time() < row.next_attempt <= time.time() + agent.s.backoff_max_s
        assert "a bug in the upload path" in (row.last_error or "")
    store.fail_with = None
    _retry_due(agent)
    assert _row(agent, path).state == "done"


# ---- upload-only credentials ------------------------------------------------------------------------------


def test_upload_only_credentials_and_a_retried_put_that_had_landed_store_one_object(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path
) -> None:
    # The first PUT lands but its answer is lost (a timeout): the outbox retries it, meets its own object
    # (412) and cannot read it back (no s3:GetObject). The retry counts as done; nothing is stored twice.
    class LostAnswer(MemoryStore):
        def put(self, bucket: str, key: str, body: bytes, **kwargs: Any) -> str:
            first = not self.objects
            etag = super().put(bucket, key, body, **kwargs)
            if first:
                raise StorageUnavailable(f"put s3://{bucket}/{key}: Read timeout on endpoint URL")
            return etag

        def head(self, bucket: str, key: str) -> ObjectInfo | None:
            raise AccessDenied(f"head s3://{bucket}/{key}: 403 Forbidden")

    upload_only = LostAnswer()
    agent = make_agent(after_upload="keep")
    agent.uploader.store = upload_only  # type: ignore[assignment]
    path = tmp_path / "inbox" / "img.jpg"
    path.write_bytes(jpeg_bytes(9))
    _process(agent, path)
    assert _row(agent, path).state == "pending"
    _retry_due(agent)
    row = _row(agent, path)
    assert (row.state, row.reason, row.attempts) == ("done", "already present, unverified", 2)
    assert list(upload_only.objects) == [row.key]


def test_a_duplicate_whose_confirmed_original_was_pruned_is_not_uploaded_again(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(after_upload="archive")
    inbox, data = tmp_path / "inbox", jpeg_bytes(11)
    real = agent.disposer.dispose

    def dispose(path: str, *args: Any, **kwargs: Any) -> Any:
        if path.endswith("b.jpg"):
            raise PermissionError(13, "open in another program")  # Windows refuses to move an open file
        return real(path, *args, **kwargs)

    monkeypatch.setattr(agent.disposer, "dispose", dispose)
    _same_bytes_twice(agent, inbox, data)
    assert (_row(agent, inbox / "a.jpg").state, _row(agent, inbox / "b.jpg").state) == ("done", "duplicate")
    # Past the retention a's row would go (its file was archived), but b still waits on it: it stays.
    agent.outbox.prune(time.time() + 1, lambda _row: False)
    assert agent.outbox.get(_row(agent, inbox / "b.jpg").duplicate_of or -1) is not None
    agent.scan()
    _drain(agent)
    assert len(store.objects) == 1, "the same bytes stored twice"
    assert _row(agent, inbox / "b.jpg").state == "duplicate"


def test_a_kept_duplicate_is_not_taken_again_once_its_original_is_pruned(
    make_agent: MakeAgent, store: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(after_upload="keep")
    inbox, data = tmp_path / "inbox", jpeg_bytes(12)
    _same_bytes_twice(agent, inbox, data)
    _process(agent, inbox / "b.jpg")  # the original is done: the duplicate is handled (kept)
    assert _row(agent, inbox / "b.jpg").disposed is not None
    (inbox / "a.jpg").unlink()  # the user tidies up; a's row may now be pruned, b's stays (its file is there)
    monkeypatch.setattr(agent.s, "retention_days", -1.0)  # everything is past the retention
    assert agent.prune() == 1
    assert agent.outbox.latest_for_path(str(inbox / "a.jpg")) is None
    _process(agent, inbox / "b.jpg")  # any later event for b
    assert len(store.objects) == 1, "the same bytes stored twice"

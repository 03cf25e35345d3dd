"""Integration tests of the in-process agent against the moto server over HTTP."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent import service
from agent.service import Agent
from partcheck.stack.config import free_port
from tests.agent.conftest import (
    BUCKET,
    jpeg_bytes,
    objects,
    s3_client,
    sha,
    wait_for,
    wait_idle,
    write_slowly,
)

pytestmark = pytest.mark.integration

StartAgent = Callable[..., Agent]


def _states(agent: Agent) -> dict[str, str]:
    """Path -> latest state."""
    out: dict[str, str] = {}
    for row in agent.outbox.rows():
        out[row.path] = row.state
    return out


def _agent_records(caplog: pytest.LogCaptureFixture, path: Path) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "fields", {}).get("path") == str(path)]


def test_200_files_written_concurrently_each_uploaded_once(
    start_agent: StartAgent, inbox: Path, moto: str
) -> None:
    agent = start_agent()
    # A file written before the watch starts is the start-up scan's, where a pause longer than scan_settle_s
    # looks finished (docs/agent.md, Limits); this test is about the event path.
    wait_for(lambda: agent.watching)
    payloads = {f"img_{i:03d}.jpg": jpeg_bytes(i, 2000 + 37 * i) for i in range(200)}
    names = sorted(payloads)

    def writer(part: list[str]) -> None:
        for name in part:
            i = int(name[4:7])
            if i % 10 == 0:  # slow writers pause longer than the stability wait between chunks
                write_slowly(inbox / name, payloads[name], chunks=4, pause_s=0.3)
            else:
                (inbox / name).write_bytes(payloads[name])

    threads = [threading.Thread(target=writer, args=(names[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: agent.outbox.counts()["done"] == 200, timeout=60)
    stored = objects(moto)
    assert len(stored) == 200
    by_name = {key.rsplit("/", 1)[-1]: (body, meta) for key, (body, meta) in stored.items()}
    assert sorted(by_name) == names
    for name, (body, meta) in by_name.items():
        assert body == payloads[name], name
        assert meta["sha256"] == sha(payloads[name])
        assert meta["source-name"] == name
        assert (meta["line"], meta["camera"]) == ("line-1", "cam-1")
    done = agent.outbox.rows("done")
    assert all(r.reason is None for r in done)  # uploaded by a first PUT, not "already present"
    assert {r.key for r in done} == set(stored)
    # archived after upload (the default action), the inbox empties
    wait_for(lambda: not any(inbox.iterdir()), timeout=10)
    archived = list((agent.disposer.archive).rglob("*.jpg"))
    assert len(archived) == 200


def test_a_writer_that_opens_and_pauses_before_its_first_byte_is_waited_for(
    start_agent: StartAgent, inbox: Path, moto: str
) -> None:
    # A writer thread starved on a busy PC: the file exists, empty or partly written, with no modify event
    # for longer than the stability wait. Its open event, not the stability rule, must decide.
    agent = start_agent()
    assert agent.tracker.close_events  # this machine has inotify; the test is about that path
    wait_for(lambda: agent.watching)  # a file opened before that is the start-up scan's (scan_settle_s)
    data = jpeg_bytes(77, 40_000)
    with open(inbox / "slow.jpg", "wb") as f:
        time.sleep(4 * agent.s.stability_wait_s)
        f.write(data[:10_000])
        f.flush()
        time.sleep(4 * agent.s.stability_wait_s)
        f.write(data[10_000:])
    wait_for(lambda: agent.outbox.counts()["done"] == 1)
    assert [r.state for r in agent.outbox.rows()] == ["done"]  # never taken early (empty or truncated)
    assert [body for body, _m in objects(moto).values()] == [data]


def test_key_layout_metadata_and_unicode_names(start_agent: StartAgent, inbox: Path, moto: str) -> None:
    agent = start_agent(line="line 3", camera="cam-7", prefix="plant-a", after_upload="keep")
    data = jpeg_bytes(1)
    (inbox / "Prüfung 1 (links).jpg").write_bytes(data)
    (inbox / "sub").mkdir()
    (inbox / "sub" / "deep.jpg").write_bytes(jpeg_bytes(2))
    wait_for(lambda: agent.outbox.counts()["done"] == 2)
    stored = objects(moto)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"plant-a/line-3/cam-7/{today}/Prüfung 1 (links).jpg"
    assert set(stored) == {key, f"plant-a/line-3/cam-7/{today}/deep.jpg"}
    body, meta = stored[key]
    assert body == data
    assert meta["source-name"] == "Pr%C3%BCfung%201%20%28links%29.jpg"
    assert meta["line"] == "line-3"
    assert datetime.fromisoformat(meta["capture-time"].replace("Z", "+00:00")) <= datetime.now(UTC)
    # keep: the files stay, and later scans do not upload them again
    wait_idle(agent)
    agent.scan()
    wait_idle(agent)  # whatever the scan handed on has been decided, so a second upload would be a row now
    assert (inbox / "Prüfung 1 (links).jpg").exists()
    assert len(agent.outbox.rows()) == 2


def test_duplicate_content_is_stored_once(start_agent: StartAgent, inbox: Path, moto: str) -> None:
    agent = start_agent()
    data = jpeg_bytes(7)
    (inbox / "a.jpg").write_bytes(data)
    wait_for(lambda: agent.outbox.counts()["done"] == 1)
    (inbox / "b.jpg").write_bytes(data)
    (inbox / "c.jpg").write_bytes(data)
    wait_for(lambda: agent.outbox.counts()["duplicate"] == 2)
    stored = objects(moto)
    assert len(stored) == 1
    dups = agent.outbox.rows("duplicate")
    assert all(r.reason and r.reason.startswith("same content as ") for r in dups)
    wait_for(lambda: not any(inbox.iterdir()))  # duplicates are archived too: their bytes are safe in S3


def test_same_name_same_day_gets_hash_suffix_and_other_days_their_own_date(
    start_agent: StartAgent, inbox: Path, moto: str
) -> None:
    agent = start_agent()
    first, second, third = jpeg_bytes(10), jpeg_bytes(11), jpeg_bytes(12)
    (inbox / "img.jpg").write_bytes(first)
    wait_for(lambda: agent.outbox.counts()["done"] == 1)
    wait_for(lambda: not (inbox / "img.jpg").exists())  # archived
    (inbox / "img.jpg").write_bytes(second)
    wait_for(lambda: agent.outbox.counts()["done"] == 2)
    wait_for(lambda: not (inbox / "img.jpg").exists())
    yesterday = datetime.now(UTC) - timedelta(days=1)
    tmp = inbox / ".img.jpg"
    tmp.write_bytes(third)
    os.utime(tmp, (yesterday.timestamp(), yesterday.timestamp()))
    os.rename(tmp, inbox / "img.jpg")
    wait_for(lambda: agent.outbox.counts()["done"] == 3)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    stored = objects(moto)
    assert stored[f"line-1/cam-1/{today}/img.jpg"][0] == first
    assert stored[f"line-1/cam-1/{today}/img-{sha(second)[:8]}.jpg"][0] == second
    assert stored[f"line-1/cam-1/{yesterday:%Y-%m-%d}/img.jpg"][0] == third


def test_an_object_already_in_s3(start_agent: StartAgent, inbox: Path, moto: str) -> None:
    """Our bytes already there (an upload that landed before a crash) = done; other bytes = suffixed key."""
    s3 = s3_client(moto)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    ours, theirs = jpeg_bytes(20), jpeg_bytes(21)
    s3.put_object(
        Bucket=BUCKET, Key=f"line-1/cam-1/{today}/ours.jpg", Body=ours, Metadata={"sha256": sha(ours)}
    )
    s3.put_object(Bucket=BUCKET, Key=f"line-1/cam-1/{today}/taken.jpg", Body=theirs,
                  Metadata={"sha256": sha(theirs)})  # fmt: skip
    agent = start_agent()
    mine = jpeg_bytes(22)
    (inbox / "ours.jpg").write_bytes(ours)
    (inbox / "taken.jpg").write_bytes(mine)
    wait_for(lambda: agent.outbox.counts()["done"] == 2)
    stored = objects(moto)
    assert len(stored) == 3
    assert stored[f"line-1/cam-1/{today}/taken-{sha(mine)[:8]}.jpg"][0] == mine
    reasons = {r.name: r.reason for r in agent.outbox.rows("done")}
    assert reasons == {"ours.jpg": "already present", "taken.jpg": None}


def test_every_bad_input_gets_one_log_line_and_a_state(
    start_agent: StartAgent, inbox: Path, tmp_path: Path, moto: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="partcheck.agent")
    unreadable = inbox / "locked.jpg"
    real_read = service.read_file

    def read_file(path: str) -> bytes:
        if path == str(unreadable):  # root ignores chmod, so the refusal is simulated for this one file
            raise PermissionError(13, "Permission denied", path)
        return real_read(path)

    monkeypatch.setattr(service, "read_file", read_file)
    agent = start_agent(max_file_bytes=50_000, after_upload="keep")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg_bytes(30))

    unreadable.write_bytes(jpeg_bytes(31))
    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "huge.jpg").write_bytes(jpeg_bytes(32, 60_000))
    (inbox / "notes.jpg").write_text("this is not a picture")
    (inbox / "link.jpg").symlink_to(outside)
    (inbox / "x.jpg.part").write_bytes(jpeg_bytes(33))
    (inbox / "renamed.bin.tmp").write_bytes(jpeg_bytes(34))
    os.rename(inbox / "renamed.bin.tmp", inbox / "camera-raw.bin")  # an image by content, whatever its name
    with open(inbox / "deleted.jpg", "wb") as f:  # deleted while still being written
        f.write(jpeg_bytes(35)[:100])
        f.flush()
        time.sleep(0.3)
        os.unlink(inbox / "deleted.jpg")
    slow = open(inbox / "long-open.jpg", "wb")  # noqa: SIM115 - held open across the test on purpose
    long_data = jpeg_bytes(36)
    slow.write(long_data[:50])
    slow.flush()

    expected = {"locked.jpg": ("failed", "unreadable: permission denied"),
                "empty.jpg": ("skipped", "empty file (0 bytes)"),
                "huge.jpg": ("skipped", "over the limit of 50000"),
                "notes.jpg": ("skipped", "not an image by content"),
                "link.jpg": ("skipped", "symlink, not followed"),
                "deleted.jpg": ("gone", "deleted before"),
                "camera-raw.bin": ("done", None),
                "long-open.jpg": ("waiting", "still being written")}  # fmt: skip

    def all_there() -> bool:
        states = _states(agent)
        return all(states.get(str(inbox / n), (None,)) == s for n, (s, _r) in expected.items())

    wait_for(all_there, timeout=40, describe=lambda: _states(agent))
    rows = {Path(r.path).name: r for r in agent.outbox.rows()}
    for name, (state, reason) in expected.items():
        if reason:
            assert reason in (rows[name].reason or ""), (name, rows[name].reason)
        warnings = [r for r in _agent_records(caplog, inbox / name) if r.levelno >= logging.WARNING]
        assert len(warnings) == (0 if state == "done" else 1), (name, [r.getMessage() for r in warnings])
    assert "x.jpg.part" not in rows

    # the long-open file is uploaded once its writer closes it
    slow.write(long_data[50:])
    slow.close()
    wait_for(lambda: _states(agent).get(str(inbox / "long-open.jpg")) == "done")
    # rescans leave known bad files alone: no new rows, no new log lines
    wait_idle(agent)
    count = len(agent.outbox.rows())
    agent.scan()
    wait_idle(agent)
    assert len(agent.outbox.rows()) == count
    for name in ("locked.jpg", "empty.jpg", "notes.jpg", "link.jpg"):
        assert len([r for r in _agent_records(caplog, inbox / name) if r.levelno >= logging.WARNING]) == 1
    stored = objects(moto)
    assert sorted(k.rsplit("/", 1)[-1] for k in stored) == ["camera-raw.bin", "long-open.jpg"]
    assert stored[next(k for k in stored if k.endswith("long-open.jpg"))][0] == long_data


def test_watched_folder_disappears_and_comes_back(
    start_agent: StartAgent, inbox: Path, moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partcheck.agent")
    agent = start_agent()
    (inbox / "before.jpg").write_bytes(jpeg_bytes(40))
    wait_for(lambda: agent.outbox.counts()["done"] == 1)
    wait_for(lambda: not (inbox / "before.jpg").exists())
    inbox.rmdir()
    wait_for(lambda: not agent.live.watch_present, timeout=5)
    inbox.mkdir()
    (inbox / "after.jpg").write_bytes(jpeg_bytes(41))
    wait_for(lambda: agent.outbox.counts()["done"] == 2, timeout=10)
    (inbox / "later.jpg").write_bytes(jpeg_bytes(42))  # the new folder is watched again
    wait_for(lambda: agent.outbox.counts()["done"] == 3, timeout=10)
    events = [r.getMessage() for r in caplog.records]
    assert events.count("watched folder missing; waiting for it to come back") == 1
    assert events.count("watched folder is back") == 1
    assert len(objects(moto)) == 3


def test_poll_mode_and_metrics_endpoint(start_agent: StartAgent, inbox: Path, moto: str) -> None:
    port = free_port()
    agent = start_agent(poll=True, poll_interval_s=0.2, metrics_port=port, after_upload="delete")
    for i in range(5):
        (inbox / f"p{i}.jpg").write_bytes(jpeg_bytes(50 + i))
    wait_for(lambda: agent.outbox.counts()["done"] == 5)
    wait_for(lambda: not any(inbox.iterdir()))  # delete after upload
    assert agent.tracker.close_events is False
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'partcheck_agent_files_total{outcome="uploaded"} 5.0' in text
    assert "partcheck_agent_upload_seconds_count 5.0" in text
    assert 'partcheck_agent_outbox_files{state="done"}' in text


def test_archive_quota_drops_oldest_first(start_agent: StartAgent, inbox: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    agent = start_agent(archive_dir=archive, archive_quota_mb=0.05)  # 52 KB
    for i in range(8):
        name = inbox / f"q{i}.jpg"
        name.write_bytes(jpeg_bytes(60 + i, 10_000))
        wait_for(lambda i=i: agent.outbox.counts()["done"] == i + 1)
        time.sleep(0.02)
    wait_for(lambda: not any(inbox.iterdir()))
    kept = sorted(p.name for p in archive.rglob("*.jpg"))
    total = sum(p.stat().st_size for p in archive.rglob("*.jpg"))
    assert total <= 0.05 * 1024 * 1024
    assert kept == [f"q{i}.jpg" for i in range(8 - len(kept), 8)]  # the newest survive
    assert 0 < len(kept) < 8


def test_a_duplicate_is_taken_again_when_its_original_vanishes(
    start_agent: StartAgent, inbox: Path, moto: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # S3 unreachable: the original stays pending
    agent = start_agent(endpoint=dead)
    data = jpeg_bytes(70)
    (inbox / "a.jpg").write_bytes(data)
    wait_for(lambda: _states(agent).get(str(inbox / "a.jpg")) == "pending")
    (inbox / "b.jpg").write_bytes(data)
    wait_for(lambda: _states(agent).get(str(inbox / "b.jpg")) == "duplicate")
    # A rescan before the original vanishes (the background ones are timing-dependent: run one, and wait
    # for the worker to finish whatever it handed on). The duplicate must survive it.
    agent.scan()
    wait_for(lambda: not agent._is_inflight(str(inbox / "b.jpg")))
    assert (inbox / "b.jpg").exists()
    dup = agent.outbox.latest_for_path(str(inbox / "b.jpg"))
    assert dup is not None
    assert (dup.state, dup.disposed) == ("duplicate", None)
    (inbox / "a.jpg").unlink()
    wait_for(lambda: _states(agent).get(str(inbox / "a.jpg")) == "gone", timeout=10)
    wait_for(lambda: _states(agent).get(str(inbox / "b.jpg")) in ("pending", "uploading"), timeout=10)
    row = agent.outbox.active_by_sha(sha(data))
    assert row is not None
    assert row.path == str(inbox / "b.jpg")


def test_a_name_that_is_not_utf8_is_uploaded_and_the_start_up_scan_takes_every_file(
    start_agent: StartAgent, inbox: Path, moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    payloads = {f"g{i:02d}.jpg": jpeg_bytes(400 + i) for i in range(20)}
    for name, data in payloads.items():
        (inbox / name).write_bytes(data)
    bad = jpeg_bytes(420)
    try:  # Latin-1 "café.jpg", as from an SMB share or older camera software
        with open(os.path.join(os.fsencode(inbox), b"caf\xe9.jpg"), "wb") as f:
            f.write(bad)
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    agent = start_agent(after_upload="keep")  # the start-up scan finds all 21
    wait_for(lambda: agent.outbox.counts()["done"] == 21, describe=lambda: agent.outbox.counts())
    stored = {k.rsplit("/", 1)[-1]: (body, meta) for k, (body, meta) in objects(moto).items()}
    assert sorted(stored) == sorted([*payloads, "caf_.jpg"])
    assert stored["caf_.jpg"] == (bad, stored["caf_.jpg"][1])
    assert stored["caf_.jpg"][1]["source-name"] == "caf%E9.jpg"
    assert all(stored[n][0] == data for n, data in payloads.items())
    assert {r.name for r in agent.outbox.rows("done")} == {*payloads, os.fsdecode(b"caf\xe9.jpg")}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_state_and_archive_inside_the_watched_folder_are_left_alone(
    start_agent: StartAgent, inbox: Path, moto: str
) -> None:
    agent = start_agent(state_dir=inbox / ".state", archive_dir=inbox / "archive")
    (inbox / "x.jpg").write_bytes(jpeg_bytes(80))
    wait_for(lambda: agent.outbox.counts()["done"] == 1)
    wait_for(lambda: (inbox / "archive").exists() and any((inbox / "archive").rglob("x.jpg")))
    wait_idle(agent)
    agent.scan()
    wait_idle(agent)
    assert len(agent.outbox.rows()) == 1
    assert len(objects(moto)) == 1


def test_a_folder_moved_in_is_uploaded(
    start_agent: StartAgent, inbox: Path, tmp_path: Path, moto: str
) -> None:
    agent = start_agent()
    batch = tmp_path / "batch 7"
    batch.mkdir()
    for i in range(3):
        (batch / f"m{i}.jpg").write_bytes(jpeg_bytes(90 + i))
    os.rename(batch, inbox / "batch 7")
    wait_for(lambda: agent.outbox.counts()["done"] == 3)
    assert sorted(k.rsplit("/", 1)[-1] for k in objects(moto)) == ["m0.jpg", "m1.jpg", "m2.jpg"]


def test_lost_events_are_caught_by_the_rescan(
    start_agent: StartAgent, inbox: Path, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Deaf:
        """An observer that hears nothing, like inotify after a queue overflow."""

        def stop(self) -> None:
            pass

        def join(self, timeout: float | None = None) -> None:
            pass

    monkeypatch.setattr("agent.watch.make_observer", lambda *_a, **_k: Deaf())
    agent = start_agent(rescan_interval_s=0.5)
    (inbox / "unheard.jpg").write_bytes(jpeg_bytes(95))
    wait_for(lambda: agent.outbox.counts()["done"] == 1, timeout=15)
    assert [k.rsplit("/", 1)[-1] for k in objects(moto)] == ["unheard.jpg"]

"""How `partcheck up` starts and ends: other regions, long restores, hang-ups, kills, taken ports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from partcheck.stack.config import free_port
from tests.partcheck.stack.test_up import _start, _stop, _wait

pytestmark = pytest.mark.e2e


def _started(proc: subprocess.Popen[str], state: Path, timeout: float = 60) -> None:
    """Wait until `up` has written stack.json; fail at once, with its output, if it exits instead."""
    _wait(lambda: (state / "stack.json").exists() or proc.poll() is not None, timeout, "the stack to start")
    if proc.poll() is not None:
        out, _ = proc.communicate()
        raise AssertionError(f"`partcheck up` exited with {proc.returncode}:\n{out}")


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill_survivors(pids: set[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _end(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@needs_proc
def test_sighup_stops_every_child_and_a_second_up_is_refused(tmp_path):
    state = tmp_path / ".partcheck"
    proc = _start(tmp_path, free_port(), free_port(), inbox=False)
    second = None
    kids: set[int] = set()
    try:
        _started(proc, state)
        kids = _children(proc.pid)
        assert len(kids) == 4, kids  # moto, router, predict, review
        # The same state folder on other ports: two motos would overwrite each other's snapshot.
        second = _start(tmp_path, free_port(), free_port(), inbox=False)
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 1, out
        assert f"a `partcheck up` (pid {proc.pid}) is already running" in _one_line(out)

        # Closing the terminal: `up` stops the stack as on Ctrl-C, moto saving last.
        proc.send_signal(signal.SIGHUP)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped; state kept" in out
        _wait(lambda: not any(_alive(k) for k in kids), 20, "every child to stop")
    finally:
        _end(second)
        _end(proc)
        _kill_survivors(kids)


@needs_proc
def test_under_nohup_a_hang_up_leaves_the_stack_running(tmp_path):
    state = tmp_path / ".partcheck"
    proc = _start(tmp_path, free_port(), free_port(), inbox=False, nohup=True)
    kids: set[int] = set()
    try:
        _started(proc, state)
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGHUP)  # the terminal closed; `nohup` asked to survive that
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        assert all(_alive(k) for k in kids)
        assert "stopped; state kept" in _stop(proc)
        _wait(lambda: not any(_alive(k) for k in kids), 20, "every child to stop")
    finally:
        _end(proc)
        _kill_survivors(kids)


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_stop_when_up_is_killed(tmp_path):
    proc = _start(tmp_path, free_port(), free_port(), inbox=False)
    kids: set[int] = set()
    try:
        _started(proc, tmp_path / ".partcheck")
        kids = _children(proc.pid)
        assert len(kids) == 4, kids
        proc.kill()  # no handler runs: only the kernel can tell the children
        proc.communicate(timeout=10)
        _wait(lambda: not any(_alive(k) for k in kids), 20, "every child to stop")
    finally:
        _end(proc)
        _kill_survivors(kids)


def test_up_refuses_a_port_another_server_answers_on(tmp_path, moto):
    # An orphaned moto of an earlier stack answers HTTP on the port: `up` must not take it for its own.
    moto_port = int(moto.rsplit(":", 1)[1])
    proc = _start(tmp_path, moto_port, free_port(), inbox=False)
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        _end(proc)
    assert proc.returncode == 1, out
    assert f"cannot start: the moto port 127.0.0.1:{moto_port} is in use" in _one_line(out)
    assert not (tmp_path / ".partcheck" / "stack.json").exists()


def test_restart_in_another_region_keeps_queued_messages(tmp_path):
    region = "eu-central-1"
    state = tmp_path / ".partcheck"
    moto_port, review_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    session = boto3.session.Session(region_name=region)
    sqs, s3 = session.client("sqs", endpoint_url=endpoint), session.client("s3", endpoint_url=endpoint)

    proc = _start(tmp_path, moto_port, review_port, inbox=False, env={"PARTCHECK_REGION": region})
    try:
        _started(proc, state)
        url = sqs.get_queue_url(QueueName="partcheck-predictions-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="parked")  # no worker reads a dead-letter queue
    finally:
        _stop(proc)
    (state / "stack.json").unlink()

    proc = _start(tmp_path, moto_port, review_port, inbox=False, env={"PARTCHECK_REGION": region})
    try:
        _started(proc, state)
        url = sqs.get_queue_url(QueueName="partcheck-predictions-dlq")["QueueUrl"]
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        assert [m["Body"] for m in got] == ["parked"]
        assert s3.get_bucket_location(Bucket="partcheck-inbound")["LocationConstraint"] == region
        config = s3.get_bucket_notification_configuration(Bucket="partcheck-inbound")
        assert config["QueueConfigurations"][0]["QueueArn"].startswith(f"arn:aws:sqs:{region}:")
    finally:
        _stop(proc)


def _snapshot_of(moto_dir: Path, n: int) -> None:
    """A saved state of `n` tiny objects, written as `partcheck moto` writes it."""
    (moto_dir / "blobs").mkdir(parents=True)
    (moto_dir / "blobs" / "tiny.1").write_bytes(b"x")
    objects = [
        {
            "key": f"okay/line-1/2026-12-01/{i:05d}.jpg",
            "blob": "tiny.1",
            "metadata": {},
            "content_type": "image/jpeg",
            "last_modified": "2026-12-01T08:00:00",
        }
        for i in range(n)
    ]
    manifest = {
        "saved_at": "2026-12-01T09:00:00",
        "region": "eu-west-1",
        "buckets": [{"name": "partcheck-predictions", "objects": objects, "notification": {}}],
        "queues": [],
    }
    (moto_dir / "manifest.json").write_text(json.dumps(manifest))


def _logged_at(log: str, pattern: str) -> datetime:
    match = re.search(rf"^(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) .*{pattern}", log, re.MULTILINE)
    assert match, f"no {pattern!r} in the moto log:\n{log}"
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")


def test_a_long_restore_is_waited_for_while_it_progresses(tmp_path):
    state = tmp_path / ".partcheck"
    n, budget = 3000, 2.0
    _snapshot_of(state / "moto", n)
    proc = _start(
        tmp_path, free_port(), free_port(), inbox=False, env={"PARTCHECK_START_SECONDS": str(budget)}
    )
    try:
        _started(proc, state, timeout=120)
        s3 = boto3.session.Session(region_name="eu-west-1").client(
            "s3", endpoint_url=json.loads((state / "stack.json").read_text())["endpoint"]
        )
        assert s3.list_objects_v2(Bucket="partcheck-predictions")["KeyCount"] == 1000  # one page of n
    finally:
        out = _stop(proc)
    assert "moto is restoring its saved state" in out
    log = (state / "logs" / "moto.log").read_text()
    took = (_logged_at(log, f"restored {n} objects") - _logged_at(log, "starting moto")).total_seconds()
    # Only meaningful if a fixed budget of `budget` seconds would have given up on this restore.
    assert took > budget, f"the restore took only {took:.1f} s; use more objects"

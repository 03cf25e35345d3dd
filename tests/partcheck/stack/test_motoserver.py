"""`partcheck moto` as a process: what a client was told is stored survives a kill of the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from partcheck.aws import AwsConfig, client
from partcheck.stack import HEALTH_PATH
from partcheck.stack.config import LOCAL_CREDENTIALS, free_port

pytestmark = pytest.mark.e2e


def _start(state: Path, port: int, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "partcheck", "moto", "--port", str(port), "--state-dir", str(state)),
            *("--region", "eu-west-1", "--snapshot-mode", mode, "--snapshot-seconds", "600"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**__import__("os").environ, **LOCAL_CREDENTIALS},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "moto listening on" in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"moto did not start: {proc.communicate()[0]}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)  # a crash: no chance to write a last snapshot
    proc.communicate(timeout=30)


def _after_crash(tmp_path: Path, mode: str) -> list[str]:
    """Store an object, kill the server at once, start it again: the objects still there."""
    state, port = tmp_path / "moto", free_port()
    aws = AwsConfig(endpoint_url=f"http://127.0.0.1:{port}", region="eu-west-1")
    proc = _start(state, port, mode)
    try:
        # The compose health check's URL: this server keeps its state on disk, and can.
        health = httpx.get(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=10)
        assert (health.status_code, health.json()["snapshots"]) == (200, "ok")
        s3 = client("s3", aws)
        s3.create_bucket(Bucket="crash", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="crash", Key="line-1/part.png", Body=b"photo bytes")
    finally:
        _kill(proc)
    proc = _start(state, port, mode)
    try:
        s3 = client("s3", aws)
        return [o["Key"] for b in s3.list_buckets()["Buckets"] for o in _objects(s3, b["Name"])]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def _objects(s3, bucket: str) -> list[dict]:
    return s3.list_objects_v2(Bucket=bucket).get("Contents", [])


def test_an_answered_upload_survives_a_kill_in_commit_mode(tmp_path):
    assert _after_crash(tmp_path, "commit") == ["line-1/part.png"]


def test_in_interval_mode_a_kill_loses_what_came_since_the_last_snapshot(tmp_path):
    # The same requests with a 600 s interval: nothing was saved before the kill. This is what the
    # commit mode is for, and shows the test above can fail.
    assert _after_crash(tmp_path, "interval") == []


def test_every_answered_upload_of_a_busy_server_survives_a_kill(tmp_path):
    import hashlib
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    state, port = tmp_path / "moto", free_port()
    # One attempt per upload: an answer is the server's word, never a retry's.
    aws = AwsConfig(endpoint_url=f"http://127.0.0.1:{port}", region="eu-west-1", max_attempts=0)
    proc = _start(state, port, "commit")
    answered: dict[str, str] = {}
    lock = threading.Lock()
    try:
        s3 = client("s3", aws)
        s3.create_bucket(Bucket="busy", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        until = time.monotonic() + 1.5

        def upload(thread: int) -> None:
            for i in range(100_000):
                if time.monotonic() > until:
                    return
                body = os.urandom(2000)
                try:
                    s3.put_object(Bucket="busy", Key=f"t{thread}/{i}", Body=body)
                except Exception:  # the kill: what had no answer may or may not be stored
                    return
                with lock:
                    answered[f"t{thread}/{i}"] = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag

        with ThreadPoolExecutor(8) as pool:
            for thread in range(8):
                pool.submit(upload, thread)
            time.sleep(1.0)
            _kill(proc)  # mid-stream: uploads in flight, snapshots being written
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert len(answered) > 50  # the server was busy when it died
    proc = _start(state, port, "commit")
    try:
        s3 = client("s3", aws)
        stored = {
            o["Key"]: o["ETag"].strip('"')
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="busy")
            for o in page.get("Contents", [])
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert {k: stored.get(k) for k in answered} == answered

"""Integration tests of the agent as a real process and of S3 going away: SIGKILL, SIGTERM, an outage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.outbox import Outbox
from agent.service import Agent
from partcheck.stack.config import free_port
from tests.agent.conftest import (
    BUCKET,
    env_with_creds,
    jpeg_bytes,
    make_bucket,
    objects,
    s3_client,
    sha,
    wait_for,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PARTCHECK = Path(sys.executable).parent / "partcheck"


def _spawn(
    cmd: list[str],
    inbox: Path,
    state: Path,
    endpoint: str,
    log: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = (
        env_with_creds()
        | {
            "PARTCHECK_AGENT_BACKOFF_MAX_S": "0.5",
            "PARTCHECK_AGENT_BACKOFF_BASE_S": "0.05",
        }
        | (extra_env or {})
    )
    args = [*cmd, "--watch", str(inbox), "--endpoint-url", endpoint, "--state-dir", str(state),
            "--rescan-interval", "1", "--log-format", "json", "--no-status-line"]  # fmt: skip
    with open(log, "ab") as err:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _count(s3: Any) -> int:
    return int(s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0))


def _done(state: Path) -> int:
    path = state / "outbox.sqlite3"
    if not path.exists():
        return 0
    ob = Outbox(path, read_only=True)
    try:
        return ob.counts()["done"]
    finally:
        ob.close()


def test_sigkill_mid_run_then_restart_loses_nothing_and_duplicates_nothing(moto: str, tmp_path: Path) -> None:
    make_bucket(moto)
    inbox, state, log = tmp_path / "inbox", tmp_path / "state", tmp_path / "agent.log"
    inbox.mkdir()
    first_batch, total = 200, 220
    payloads = {f"k{i:03d}.jpg": jpeg_bytes(100 + i, 30_000) for i in range(total)}
    for name in list(payloads)[:first_batch]:
        (inbox / name).write_bytes(payloads[name])

    # One upload worker and a client built once for polling: a CI run once polled with a fresh client each
    # time (slow under load) and 8 workers finished all the work before the kill landed.
    s3 = s3_client(moto)
    first = _spawn([sys.executable, "-m", "agent"], inbox, state, moto, log, {"PARTCHECK_AGENT_WORKERS": "1"})
    try:
        wait_for(lambda: _count(s3) >= 5, timeout=30, interval=0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    at_kill = _count(s3)
    assert at_kill < first_batch, "the kill came after the work was done; the test proved nothing"
    print(f"objects in S3 at SIGKILL: {at_kill} of {first_batch}")
    for name in list(payloads)[first_batch:]:  # arrive while the agent is down
        (inbox / name).write_bytes(payloads[name])

    second = _spawn([str(PARTCHECK), "agent"], inbox, state, moto, log)
    try:
        wait_for(lambda: _done(state) == total, timeout=90, interval=0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        rc = second.wait(timeout=10)
    assert rc == 0

    stored = objects(moto)
    assert len(stored) == total
    by_name = {k.rsplit("/", 1)[-1]: body for k, (body, _m) in stored.items()}
    assert by_name == payloads
    assert len({sha(b) for b in by_name.values()}) == total
    assert not any(inbox.iterdir())  # every file archived after its upload
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(entry["event"] == "agent stopped" for entry in lines)
    assert sum(1 for e in lines if e["event"] == "agent started") == 2

    result = CliRunner().invoke(app, ["status", "--state-dir", str(state), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["done"] == total
    assert doc["counts"]["pending"] == doc["counts"]["uploading"] == 0
    assert doc["oldest_pending"] is None


def test_sigterm_stops_within_seconds_while_s3_is_unreachable(tmp_path: Path) -> None:
    inbox, state, log = tmp_path / "inbox", tmp_path / "state", tmp_path / "agent.log"
    inbox.mkdir()
    for i in range(5):
        (inbox / f"t{i}.jpg").write_bytes(jpeg_bytes(300 + i))
    dead = f"http://127.0.0.1:{free_port()}"
    proc = _spawn([sys.executable, "-m", "agent"], inbox, state, dead, log)
    try:
        wait_for(lambda: "upload failed; will retry" in log.read_text(), timeout=30, interval=0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=8)
    assert rc == 0
    ob = Outbox(state / "outbox.sqlite3", read_only=True)
    assert ob.counts()["pending"] == 5  # all durable, none lost, none done
    ob.close()
    status = CliRunner().invoke(app, ["status", "--state-dir", str(state)])
    assert "pending 5" in status.output
    assert "Could not connect" in status.output


def test_s3_down_mid_run_then_back_with_a_new_server(
    start_agent: Callable[..., Agent], inbox: Path, moto: str
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    make_bucket(endpoint)
    agent = start_agent(endpoint=endpoint)
    payloads = {f"o{i:03d}.jpg": jpeg_bytes(200 + i, 20_000) for i in range(60)}
    names = list(payloads)
    for name in names[:30]:
        (inbox / name).write_bytes(payloads[name])
    wait_for(lambda: agent.outbox.counts()["done"] >= 10, timeout=30, interval=0.01)
    server.stop()
    for name in names[30:]:
        (inbox / name).write_bytes(payloads[name])
    wait_for(lambda: agent.live.backing_off_until > 0, timeout=10)
    wait_for(lambda: agent.outbox.counts()["pending"] + agent.outbox.counts()["done"] >= 56, timeout=20)
    done_before = {r.name for r in agent.outbox.rows("done")}  # stable: nothing succeeds while S3 is down
    # moto keeps state per process, not per server: empty it (through the session server) and recreate the
    # bucket before the new server opens the port, so nothing lands in between.
    httpx.post(f"{moto}/moto-api/reset", timeout=10).raise_for_status()
    make_bucket(moto)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for(lambda: agent.outbox.counts()["done"] == 60, timeout=30)
        stored = objects(endpoint)
    finally:
        server.stop()
    # what was confirmed before the outage is gone with the old server; everything else is on the new one
    new = {k.rsplit("/", 1)[-1]: body for k, (body, _m) in stored.items()}
    done_before_new_server = {n for n in payloads if n not in new}
    assert done_before_new_server <= done_before
    assert len(done_before_new_server) + len(new) == 60
    assert all(new[n] == payloads[n] for n in new)
    assert all(r.attempts >= 1 for r in agent.outbox.rows("done"))
    assert max(r.attempts for r in agent.outbox.rows("done")) >= 2  # some really were retried
    assert os.environ.get("PARTCHECK_AGENT_WATCH") is None


class _UploadOnlyS3(BaseHTTPRequestHandler):
    """S3 as upload-only credentials see it: conditional PUTs, every read denied. The first PUT is stored
    but answered 503, like a PUT that landed and whose answer was lost: a retry then meets its own object."""

    protocol_version = "HTTP/1.1"
    objects: dict[str, bytes]

    def _answer(self, status: int, code: str = "", headers: dict[str, str] | None = None) -> None:
        body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode() if code else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("If-None-Match") == "*" and self.path in self.objects:
            self._answer(412, "PreconditionFailed")
            return
        first = not self.objects
        self.objects[self.path] = body
        if first:
            self._answer(503, "ServiceUnavailable")
        else:
            self._answer(200, headers={"ETag": '"etag"'})

    def do_HEAD(self) -> None:
        self._answer(403)

    def do_GET(self) -> None:
        self._answer(403, "AccessDenied")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upload_only_s3() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A stub S3 endpoint for upload-only credentials, and the objects it stored (path -> bytes)."""
    objects: dict[str, bytes] = {}
    handler = type("Handler", (_UploadOnlyS3,), {"objects": objects})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", objects
    server.shutdown()
    server.server_close()


def test_upload_only_credentials_and_a_put_that_landed_unanswered_store_one_object(
    upload_only_s3: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    # The agent's client must not retry inside botocore: a retry there meets our own object (412) on the
    # row's first attempt, which without read access looks like someone else's key, so the same bytes
    # would go up again under <stem>-<sha8>. The outbox retries instead, and knows it sent before.
    endpoint, stored = upload_only_s3
    inbox, state, log = tmp_path / "inbox", tmp_path / "state", tmp_path / "agent.log"
    inbox.mkdir()
    data = jpeg_bytes(500)
    (inbox / "img.jpg").write_bytes(data)
    proc = _spawn([sys.executable, "-m", "agent"], inbox, state, endpoint, log,
                  {"PARTCHECK_AGENT_AFTER_UPLOAD": "keep"})  # fmt: skip
    try:
        wait_for(lambda: _done(state) == 1, timeout=30, interval=0.1, describe=log.read_text)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    assert rc == 0
    assert [(path.rsplit("/", 1)[-1], body) for path, body in stored.items()] == [("img.jpg", data)]
    ob = Outbox(state / "outbox.sqlite3", read_only=True)
    try:
        [row] = ob.rows()
    finally:
        ob.close()
    assert (row.state, row.reason, row.attempts) == ("done", "already present, unverified", 2)

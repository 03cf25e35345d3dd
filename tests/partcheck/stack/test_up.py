"""`partcheck up` as a user runs it: images dropped into the inbox end up sorted, and survive a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from partcheck.stack.config import free_port

pytestmark = pytest.mark.e2e
PARTCHECK = [sys.executable, "-m", "partcheck"]


def _status(cwd: Path) -> dict:
    out = subprocess.run(
        [*PARTCHECK, "status", "--json"], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _start(
    cwd: Path,
    moto_port: int,
    review_port: int,
    *,
    inbox: bool = True,
    env: dict[str, str] | None = None,
    nohup: bool = False,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *PARTCHECK,
            "up",
            *(["--inbox", "inbox"] if inbox else []),
            "--moto-port",
            str(moto_port),
            "--review-port",
            str(review_port),
        ],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        # As `nohup` starts it (hang-ups ignored), or as a terminal does (the default action). Set either
        # way: an ignored SIGHUP is inherited, so a suite run under `nohup` would otherwise start every
        # `up` in nohup mode and the hang-up test would wait for an exit that never comes.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL),
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (AssertionError, httpx.HTTPError, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_inbox_to_sorted_and_restart_keeps_everything(tmp_path, sample_images):
    moto_port, review_port = free_port(), free_port()
    proc = _start(tmp_path, moto_port, review_port)
    try:
        _wait(lambda: (tmp_path / ".partcheck" / "stack.json").exists(), 60, "the stack to start")
        _wait(
            lambda: httpx.get(f"http://127.0.0.1:{review_port}/api/health").status_code == 200, 60, "review"
        )
        images = sample_images["defect"][:3] + sample_images["ok"][:3]
        for path in images:
            shutil.copy(path, tmp_path / "inbox" / path.name)
        (tmp_path / "inbox" / "notes.txt").write_text("not an image")

        def all_sorted() -> bool:
            s = _status(tmp_path)
            return s["okay"] + s["defect"] + s["unclear"] == len(images) and s["inbound"] == 0

        _wait(all_sorted, 120, "six images to be sorted")
        before = _status(tmp_path)
        assert before["rejected"] == 0
        assert before["storage"]["snapshots"] == "ok"  # `partcheck up` runs moto with a state folder
        assert before["endpoints"]["review"] == f"http://127.0.0.1:{review_port}"
        assert set(before["queues"]) == {
            "partcheck-uploads",
            "partcheck-uploads-dlq",
            "partcheck-predictions",
            "partcheck-predictions-dlq",
        }
    finally:
        out = _stop(proc)
    assert "stopped; state kept" in out

    proc = _start(tmp_path, moto_port, review_port)
    try:
        _wait(
            lambda: httpx.get(f"http://127.0.0.1:{review_port}/api/health").status_code == 200, 60, "restart"
        )
        after = _status(tmp_path)
        for name in ("okay", "defect", "unclear", "human_decided", "rejected", "inbound"):
            assert after[name] == before[name], name
    finally:
        _stop(proc)

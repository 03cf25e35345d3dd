"""Agent benchmark: 100 KB files into a moto server; files/s and close-to-upload-start delay (p50/p95).

Two phases per finished-file mode: a burst (every file written at once: throughput) and a paced stream
(20 files/s, a fast camera: the delay a file sees when the agent has no backlog). Modes: the default
(inotify close-after-write events) and stability only (size+mtime unchanged for the default stability wait),
which is what Windows, macOS and `--poll` rely on.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proc import cpu_seconds
from partcheck.stack.config import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "partcheck-inbound"
SIZE = 100 * 1024
PACE_PER_S = 20.0


def _jpeg(seed: int, size: int) -> bytes:
    """A valid, unique JPEG of exactly `size` bytes (random COM segments pad a tiny image)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (seed % 256, 80, 40)).save(buf, "JPEG")
    base = buf.getvalue()
    rng = random.Random(seed)
    pad, segments = size - len(base), b""
    while pad > 0:
        body = rng.randbytes(max(1, min(pad, 65000) - 4))
        segments += b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body
        pad -= len(body) + 4
    return base[:2] + segments + base[2:]


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on port {port}")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _outbox_rows(state: Path) -> dict[str, tuple[float | None, float | None, str]]:
    db = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        return {
            p: (s, u, st)
            for p, s, u, st in db.execute("SELECT path, started_at, uploaded_at, state FROM files")
        }
    finally:
        db.close()


def _run_mode(
    endpoint: str, work: Path, mode: str, burst_n: int, paced_n: int, env: dict[str, str], moto_pid: int
) -> dict[str, Any]:
    inbox, state = work / f"inbox-{mode}", work / f"state-{mode}"
    inbox.mkdir()
    env = dict(env)
    if mode == "stability":
        env["PARTCHECK_AGENT_CLOSE_EVENTS"] = "false"
    log = open(work / f"agent-{mode}.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [str(BIN / "partcheck"), "agent", "--watch", str(inbox), "--endpoint-url", endpoint, "--state-dir",
         str(state), "--log-format", "json", "--no-status-line", "--after-upload", "keep"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (state / "outbox.sqlite3").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        # Ready once a probe file is uploaded: the observer starts before the first scan, so whether the scan
        # or an event took the probe, the agent is watching (and its workers and S3 connection are up).
        probe = inbox / "ready-probe.jpg"
        probe.write_bytes(_jpeg(2 * 10**6 + (0 if mode == "native" else 1), SIZE))
        _wait_done(state, {str(probe)}, timeout=60)
        payloads = [_jpeg(i + (0 if mode == "native" else 10**6), SIZE) for i in range(burst_n + paced_n)]
        closed: dict[str, float] = {}

        def write(i: int, phase: str) -> None:
            path = inbox / f"{phase}_{i:05d}.jpg"
            with open(path, "wb") as f:
                f.write(payloads[i])
            closed[str(path)] = time.time()

        cpu0 = (cpu_seconds(agent.pid), cpu_seconds(moto_pid))
        load0 = _load()
        for i in range(burst_n):
            write(i, "burst")
        burst_written = time.time()
        _wait_done(state, set(closed), timeout=120 + burst_n / 10)
        cpu1 = (cpu_seconds(agent.pid), cpu_seconds(moto_pid))
        load1 = _load()
        paced: list[str] = []
        next_at = time.monotonic()
        for i in range(burst_n, burst_n + paced_n):
            next_at += 1 / PACE_PER_S
            time.sleep(max(0.0, next_at - time.monotonic()))
            write(i, "paced")
            paced.append(str(inbox / f"paced_{i:05d}.jpg"))
        _wait_done(state, set(closed), timeout=60)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
    rows = _outbox_rows(state)
    burst_paths = [p for p in closed if "/burst_" in p]
    started: dict[str, float] = {}
    for p in closed:
        start = rows[p][0] if p in rows else None
        if start is not None:
            started[p] = start
    first_close = min(closed[p] for p in burst_paths)
    last_upload = max(rows[p][1] or 0.0 for p in burst_paths)
    delays_burst = [(started[p] - closed[p]) * 1000 for p in burst_paths if p in started]
    delays_paced = [(started[p] - closed[p]) * 1000 for p in paced if p in started]
    return {
        "mode": mode,
        "files": len(closed),
        "uploaded": sum(1 for p in closed if rows.get(p, (None, None, ""))[2] == "done"),
        "burst_files_per_s": burst_n / (last_upload - first_close),
        "burst_write_s": burst_written - first_close,
        "agent_cpu_ms_per_file": (cpu1[0] - cpu0[0]) / burst_n * 1000,
        "moto_cpu_ms_per_file": (cpu1[1] - cpu0[1]) / burst_n * 1000,
        "load_average": [load0, load1],
        "burst_delay_ms": {"p50": _pct(delays_burst, 0.5), "p95": _pct(delays_burst, 0.95)},
        "paced_delay_ms": {"p50": _pct(delays_paced, 0.5), "p95": _pct(delays_paced, 0.95),
                           "max": max(delays_paced, default=float("nan")),
                           "mean": statistics.fmean(delays_paced) if delays_paced else float("nan")},
    }  # fmt: skip


def _wait_done(state: Path, paths: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state / "outbox.sqlite3").exists():
            rows = _outbox_rows(state)
            if all(rows.get(p, (None, None, ""))[2] == "done" for p in paths):
                return
        time.sleep(0.2)
    raise RuntimeError(f"not every file was uploaded within {timeout:.0f} s")


def run(quick: bool) -> dict[str, Any]:
    """Start moto in its own process, run the agent as `partcheck agent` would be run, measure."""
    import boto3
    from botocore.config import Config

    burst_n, paced_n = (200, 60) if quick else (1000, 200)
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "bench")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    env.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    results = []
    with tempfile.TemporaryDirectory(prefix="partcheck-bench-agent-") as tmp:
        for mode in ("native", "stability"):
            # A fresh moto per mode: its per-request cost grows with the objects it holds.
            port = free_port()
            moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            endpoint = f"http://127.0.0.1:{port}"
            try:
                _wait_port(port)
                s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                                  aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                  config=Config(s3={"addressing_style": "path"}))  # fmt: skip
                s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
                results.append(_run_mode(endpoint, Path(tmp), mode, burst_n, paced_n, env, moto.pid))
            finally:
                moto.terminate()
                moto.wait(timeout=10)
    rows: list[dict[str, Any]] = []
    for r in results:
        label = "close events" if r["mode"] == "native" else "stability wait only"
        rows += [
            {"metric": f"{label}: files uploaded", "value": f"{r['uploaded']}/{r['files']}", "unit": "",
             "target": "all", "ok": r["uploaded"] == r["files"]},
            {"metric": f"{label}: throughput, burst of {burst_n}", "value": round(r["burst_files_per_s"], 1),
             "unit": "files/s", "target": ">= 100", "ok": r["burst_files_per_s"] >= 100},
            {"metric": f"{label}: close->upload start p50, paced {PACE_PER_S:.0f}/s",
             "value": round(r["paced_delay_ms"]["p50"], 1), "unit": "ms", "target": "", "ok": None},
            {"metric": f"{label}: close->upload start p95, paced {PACE_PER_S:.0f}/s",
             "value": round(r["paced_delay_ms"]["p95"], 1), "unit": "ms", "target": "<= 500",
             "ok": r["paced_delay_ms"]["p95"] <= 500},
            {"metric": f"{label}: CPU per file, agent / moto (burst)",
             "value": f"{r['agent_cpu_ms_per_file']:.1f} / {r['moto_cpu_ms_per_file']:.1f}", "unit": "ms",
             "target": "", "ok": None},
            {"metric": f"{label}: agent alone, files per CPU-second (1000 / CPU ms per file)",
             "value": round(1000 / r["agent_cpu_ms_per_file"], 1), "unit": "files/s", "target": "",
             "ok": None},
            {"metric": f"{label}: close->upload start p50/p95, burst (queueing included)",
             "value": f"{r['burst_delay_ms']['p50']:.0f}/{r['burst_delay_ms']['p95']:.0f}", "unit": "ms",
             "target": "", "ok": None},
        ]  # fmt: skip
    load = max(max(r["load_average"]) for r in results)
    rows.append({"metric": f"1-min load average during the bursts ({os.cpu_count()} cores)", "value": load,
                 "unit": "", "target": "", "ok": None})  # fmt: skip
    return {"title": f"edge upload agent, {SIZE // 1024} KB files into moto (own process)", "rows": rows,
            "runs": results}  # fmt: skip

"""Pipeline benchmark: images through the local stack (`partcheck up`), upload to sorted.

Two runs on one stack: a burst of N images uploaded as fast as 8 threads can (sustained throughput), then
images offered at a steady 10 per second (latency at the target load). Latency is the router's `sorted-at`
metadata minus the moment the upload returned, on the same clock (S3 listings round LastModified to the
second, too coarse for this).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from partcheck.aws import AwsConfig, client
from partcheck.stack.config import free_port, use_local_credentials

ROOT = Path(__file__).resolve().parents[1]
INBOUND, PREDICTIONS = "partcheck-inbound", "partcheck-predictions"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _wait_sorted(s3: Any, prefix_keys: set[str], timeout: float) -> dict[str, str]:
    """Wait until none of the keys is left in the inbound bucket; return inbound key -> sorted key.

    Polls the inbound side, which shrinks as images are routed, once a second: listing the growing
    prediction bucket four times a second cost moto more CPU than the pipeline it was measuring.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = {
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=INBOUND, Prefix="bench/")
            for o in page.get("Contents", [])
        }
        if not waiting & prefix_keys:
            break
        time.sleep(1.0)
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=PREDICTIONS):
        for o in page.get("Contents", []):
            rel = o["Key"].split("/", 1)[1]
            if rel in prefix_keys:
                found[rel] = o["Key"]
    return found


def _sorted_at(s3: Any, found: dict[str, str]) -> tuple[dict[str, float], list[float]]:
    """When the router wrote each object (epoch seconds), and the predict time it recorded."""
    when: dict[str, float] = {}
    predict_ms: list[float] = []
    for rel, key in found.items():
        meta = s3.head_object(Bucket=PREDICTIONS, Key=key)["Metadata"]
        when[rel] = datetime.fromisoformat(meta["sorted-at"]).timestamp()
        if "predict-ms" in meta:
            predict_ms.append(float(meta["predict-ms"]))
    return when, predict_ms


def _stack_cpu(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each process of the stack, by role; empty where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone between listing and reading
        if int(fields[1]) != root_pid:  # fields[1] is the parent pid
            continue
        args = [a.decode(errors="replace") for a in cmd if a]
        role = " ".join(args[args.index("partcheck") + 1 :][:2]) if "partcheck" in args else args[0]
        out[role.split(" --")[0]] = (int(fields[11]) + int(fields[12])) / tick
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Start a stack in a scratch folder, push images through it, report throughput and latency."""
    n_burst, n_steady, rate = (100, 30, 10.0) if quick else (500, 150, 10.0)
    rounds = 1 if quick else 3
    images = sorted((ROOT / "samples").glob("*.jpeg"))
    bodies = [p.read_bytes() for p in images]
    use_local_credentials()
    moto_port, review_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="partcheck-bench-"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "partcheck",
            "up",
            "--moto-port",
            str(moto_port),
            "--review-port",
            str(review_port),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        deadline = time.monotonic() + 60
        while not (workdir / ".partcheck" / "stack.json").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("stack did not start")
            time.sleep(0.2)
        s3 = client("s3", AwsConfig(endpoint_url=endpoint, max_attempts=10))
        _warm_up(s3, bodies[0])

        throughputs: list[float] = []
        burst_lat: list[float] = []
        predict_ms: list[float] = []
        found: dict[str, str] = {}
        cpu_ms_total: dict[str, float] = {}
        for burst in range(rounds):
            uploaded: dict[str, float] = {}

            def put(i: int, burst: int = burst, uploaded: dict[str, float] = uploaded) -> None:
                key = f"bench/burst{burst}/{i:05d}.jpeg"
                s3.put_object(Bucket=INBOUND, Key=key, Body=bodies[i % len(bodies)])
                uploaded[key] = time.time()

            cpu_before = _stack_cpu(proc.pid)
            started = time.time()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, range(n_burst)))
            found_now = _wait_sorted(s3, set(uploaded), timeout=600)
            cpu_after = _stack_cpu(proc.pid)
            for role, seconds in cpu_after.items():
                cpu_ms_total[role] = (
                    cpu_ms_total.get(role, 0.0) + (seconds - cpu_before.get(role, 0.0)) * 1000
                )
            # Outside the CPU window: reading the routers' timestamps is the benchmark's own work.
            when, ms = _sorted_at(s3, found_now)
            throughputs.append(len(found_now) / (max(when.values()) - started) if when else 0.0)
            burst_lat += [when[k] - uploaded[k] for k in when]
            predict_ms += ms
            found.update(found_now)
        # Per sorted image, each process of the stack: where a burst's CPU goes (the machine has 2 cores).
        cpu_ms = {role: ms / max(len(found), 1) for role, ms in cpu_ms_total.items()}

        steady: dict[str, float] = {}
        for i in range(n_steady):
            key = f"bench/steady/{i:05d}.jpeg"
            t0 = time.time()
            s3.put_object(Bucket=INBOUND, Key=key, Body=bodies[i % len(bodies)])
            steady[key] = time.time()
            time.sleep(max(0.0, 1 / rate - (time.time() - t0)))
        found_steady = _wait_sorted(s3, set(steady), timeout=300)
        steady_when, _ = _sorted_at(s3, found_steady)
        lat = [steady_when[k] - steady[k] for k in steady_when]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    throughput = statistics.median(throughputs)
    p95 = _pct(lat, 0.95) if lat else float("nan")
    rows = [
        {
            "metric": f"bursts: images sorted of {rounds} x {n_burst}",
            "value": len(found),
            "unit": "",
            "target": rounds * n_burst,
            "ok": len(found) == rounds * n_burst,
        },
        {
            "metric": "bursts: throughput of each",
            "value": " / ".join(f"{t:.1f}" for t in throughputs),
            "unit": "images/s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"sustained throughput (median of {rounds} bursts, upload to sorted)",
            "value": throughput,
            "unit": "images/s",
            "target": ">= 50",
            "ok": throughput >= 50,
        },
        {"metric": "burst latency p50", "value": _pct(burst_lat, 0.5), "unit": "s", "target": "", "ok": None},
        {
            "metric": f"latency p50 at {rate:.0f} images/s",
            "value": _pct(lat, 0.5),
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"latency p95 at {rate:.0f} images/s",
            "value": p95,
            "unit": "s",
            "target": "<= 1",
            "ok": p95 <= 1.0,
        },
        {
            "metric": f"latency max at {rate:.0f} images/s",
            "value": max(lat) if lat else float("nan"),
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"steady: images sorted of {n_steady}",
            "value": len(found_steady),
            "unit": "",
            "target": n_steady,
            "ok": len(found_steady) == n_steady,
        },
        *[
            {
                "metric": f"burst: CPU per image in {role}",
                "value": ms,
                "unit": "ms",
                "target": "",
                "ok": None,
            }
            for role, ms in sorted(cpu_ms.items())
        ],
        {
            "metric": "predict time per image (decode+model), median",
            "value": statistics.median(predict_ms) if predict_ms else float("nan"),
            "unit": "ms",
            "target": "",
            "ok": None,
        },
    ]
    return {
        "title": "images through the local stack (moto, predict and router workers)",
        "rows": rows,
        "raw": {
            "burst_throughputs": throughputs,
            "burst_latency_s": burst_lat,
            "steady_latency_s": lat,
            "predict_ms": predict_ms,
            "burst_cpu_ms_per_image": cpu_ms,
            "measured_at": datetime.now(UTC).isoformat(),
        },
    }


def _warm_up(s3: Any, body: bytes) -> None:
    # The first image pays for model loading and connection set-up; keep it out of the numbers.
    s3.put_object(Bucket=INBOUND, Key="bench/warmup.jpeg", Body=body)
    _wait_sorted(s3, {"bench/warmup.jpeg"}, timeout=120)

"""Pipeline benchmark: images through the local stack (`partcheck up`), upload to sorted.

Two runs on one stack: bursts of N images uploaded as fast as 8 threads can (sustained throughput), then
images offered at a steady 10 per second (latency at the target load). At the steady rate, latency ends when
the image is in its destination: one thread HEADs each image's destination key until it answers, so the end
is the first 200 (at most one poll cycle late; the cycle is reported). The router's `sorted-at` stamp, which
it takes while building the metadata, before its copy and the inbound delete, is reported beside it as the
routing decision; the bursts use only that stamp (polling hundreds of keys would load moto), so their rows
say so. S3 listings round LastModified to the second, too coarse for either.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from partcheck.aws import AwsConfig, client
from partcheck.layout import Route
from partcheck.stack.config import free_port, use_local_credentials

ROOT = Path(__file__).resolve().parents[1]
INBOUND, PREDICTIONS = "partcheck-inbound", "partcheck-predictions"
POLL_S = 0.005  # pause between HEAD sweeps over the images still on their way
# Where an image can be routed (an unknown route is looked for under each).
ROUTES = (Route.OKAY, Route.DEFECT, Route.UNCLEAR, Route.REJECTED)


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


class _Arrivals:
    """A thread HEADing each uploaded image's destination until it is there: the end of its latency."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[list[str], float]] = {}  # key -> (candidate destinations, last miss)
        self.arrived: dict[str, float] = {}  # key -> time the first 200 came back
        self.window: dict[str, float] = {}  # key -> that time minus the last 404 before it (the resolution)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)
        self._thread.start()

    def expect(self, key: str, destinations: list[str], uploaded_at: float) -> None:
        """Watch for `key` under any of `destinations` from the moment its upload returned."""
        with self._lock:
            self._pending[key] = (destinations, uploaded_at)

    def finish(self, timeout: float) -> None:
        """Wait for every image still expected (at most `timeout` s), then stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(0.05)
        self._done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._done.is_set():
            with self._lock:
                todo = list(self._pending.items())
            for key, (destinations, last_miss) in todo:
                for dest in destinations:
                    try:
                        self._s3.head_object(Bucket=PREDICTIONS, Key=dest)
                    except ClientError:
                        continue
                    now = time.time()
                    with self._lock:
                        self.arrived[key], self.window[key] = now, now - last_miss
                        del self._pending[key]
                    break
                else:
                    with self._lock:
                        self._pending[key] = (destinations, time.time())
            time.sleep(POLL_S)


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
        # Per sorted image, each process of the stack: where a burst's CPU goes.
        cpu_ms = {role: ms / max(len(found), 1) for role, ms in cpu_ms_total.items()}

        # Each body's route, from the first burst (same bytes, same verdict): one HEAD per poll, not four.
        route_of = {
            j: found[k].split("/", 1)[0]
            for j in range(len(bodies))
            if (k := f"bench/burst0/{j:05d}.jpeg") in found
        }
        arrivals = _Arrivals(client("s3", AwsConfig(endpoint_url=endpoint, max_attempts=1)))
        steady: dict[str, float] = {}
        for i in range(n_steady):
            key = f"bench/steady/{i:05d}.jpeg"
            t0 = time.time()
            s3.put_object(Bucket=INBOUND, Key=key, Body=bodies[i % len(bodies)])
            steady[key] = time.time()
            route = route_of.get(i % len(bodies))
            arrivals.expect(
                key, [f"{r}/{key}" for r in ([route] if route else [r.value for r in ROUTES])], steady[key]
            )
            time.sleep(max(0.0, 1 / rate - (time.time() - t0)))
        arrivals.finish(timeout=300)
        found_steady = _wait_sorted(s3, set(steady), timeout=300)
        steady_when, _ = _sorted_at(s3, found_steady)
        decision = [steady_when[k] - steady[k] for k in steady_when]
        lat = [arrivals.arrived[k] - steady[k] for k in arrivals.arrived]
        window_ms = [w * 1000 for w in arrivals.window.values()]
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
            "metric": f"sustained throughput, median of {rounds} bursts (upload -> last routing decision)",
            "value": throughput,
            "unit": "images/s",
            "target": ">= 50",
            "ok": throughput >= 50,
        },
        {
            "metric": "burst latency p50, upload -> routing decision (sorted-at)",
            "value": _pct(burst_lat, 0.5),
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"upload -> routing decision (sorted-at) p50 / p95 at {rate:.0f} images/s",
            "value": f"{_pct(decision, 0.5):.4f} / {_pct(decision, 0.95):.4f}" if decision else "nan",
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"upload -> in destination p50 at {rate:.0f} images/s",
            "value": _pct(lat, 0.5),
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"upload -> in destination p95 at {rate:.0f} images/s",
            "value": p95,
            "unit": "s",
            "target": "<= 1",
            "ok": p95 <= 1.0,
        },
        {
            "metric": f"upload -> in destination max at {rate:.0f} images/s",
            "value": max(lat) if lat else float("nan"),
            "unit": "s",
            "target": "",
            "ok": None,
        },
        {
            "metric": "in destination: HEAD poll resolution (first 200 - last 404), p50 / max",
            "value": f"{_pct(window_ms, 0.5):.1f} / {max(window_ms):.1f}" if window_ms else "nan",
            "unit": "ms",
            "target": "",
            "ok": None,
        },
        {
            "metric": f"steady: images sorted of {n_steady} (seen in destination / gone from inbound)",
            "value": f"{len(lat)} / {len(found_steady)}",
            "unit": "",
            "target": n_steady,
            "ok": len(found_steady) == n_steady and len(lat) == n_steady,
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
            "steady_decision_latency_s": decision,
            "steady_poll_window_ms": window_ms,
            "predict_ms": predict_ms,
            "burst_cpu_ms_per_image": cpu_ms,
            "measured_at": datetime.now(UTC).isoformat(),
        },
    }


def _warm_up(s3: Any, body: bytes) -> None:
    # The first image pays for model loading and connection set-up; keep it out of the numbers.
    s3.put_object(Bucket=INBOUND, Key="bench/warmup.jpeg", Body=body)
    _wait_sorted(s3, {"bench/warmup.jpeg"}, timeout=120)

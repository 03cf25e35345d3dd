"""Pipeline benchmark: images through the local stack (`partcheck up`), upload to sorted.

Two runs on one stack: a burst of N images uploaded as fast as 8 threads can (sustained throughput), then
images offered at a steady 10 per second (latency at the target load). Latency is the sorted object's
LastModified minus the moment its upload returned, on the same clock.
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
from partcheck.stack.config import use_local_credentials

ROOT = Path(__file__).resolve().parents[1]
INBOUND, PREDICTIONS = "partcheck-inbound", "partcheck-predictions"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _wait_sorted(s3: Any, prefix_keys: set[str], timeout: float) -> dict[str, datetime]:
    """Poll until every key appears under some route; return key -> LastModified."""
    deadline = time.monotonic() + timeout
    found: dict[str, datetime] = {}
    while time.monotonic() < deadline and len(found) < len(prefix_keys):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=PREDICTIONS):
            for o in page.get("Contents", []):
                rel = o["Key"].split("/", 1)[1]
                if rel in prefix_keys:
                    found[rel] = o["LastModified"]
        time.sleep(0.25)
    return found


def run(quick: bool = False) -> dict[str, Any]:
    """Start a stack in a scratch folder, push images through it, report throughput and latency."""
    n_burst, n_steady, rate = (100, 30, 10.0) if quick else (500, 150, 10.0)
    images = sorted((ROOT / "samples").glob("*.jpeg"))
    bodies = [p.read_bytes() for p in images]
    use_local_credentials()
    moto_port, review_port = _free_port(), _free_port()
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
        env={**os.environ, "PARTCHECK_PREDICT_WAIT_SECONDS": "1", "PARTCHECK_ROUTER_WAIT_SECONDS": "1"},
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

        uploaded: dict[str, float] = {}

        def put(i: int) -> None:
            key = f"bench/burst/{i:05d}.jpeg"
            s3.put_object(Bucket=INBOUND, Key=key, Body=bodies[i % len(bodies)])
            uploaded[key] = time.time()

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(n_burst)))
        found = _wait_sorted(s3, set(uploaded), timeout=600)
        burst_s = max(t.timestamp() for t in found.values()) - started
        burst_lat = [found[k].timestamp() - uploaded[k] for k in found]

        steady: dict[str, float] = {}
        for i in range(n_steady):
            key = f"bench/steady/{i:05d}.jpeg"
            t0 = time.time()
            s3.put_object(Bucket=INBOUND, Key=key, Body=bodies[i % len(bodies)])
            steady[key] = time.time()
            time.sleep(max(0.0, 1 / rate - (time.time() - t0)))
        found_steady = _wait_sorted(s3, set(steady), timeout=300)
        lat = [found_steady[k].timestamp() - steady[k] for k in found_steady]
        predict_ms = _predict_ms(s3, list(found)[:100])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    throughput = len(found) / burst_s if burst_s > 0 else 0.0
    p95 = _pct(lat, 0.95) if lat else float("nan")
    rows = [
        {
            "metric": f"burst: images sorted of {n_burst}",
            "value": len(found),
            "unit": "",
            "target": n_burst,
            "ok": len(found) == n_burst,
        },
        {
            "metric": "sustained throughput (burst, upload to sorted)",
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
            "burst_latency_s": burst_lat,
            "steady_latency_s": lat,
            "predict_ms": predict_ms,
            "measured_at": datetime.now(UTC).isoformat(),
        },
    }


def _warm_up(s3: Any, body: bytes) -> None:
    # The first image pays for model loading and connection set-up; keep it out of the numbers.
    s3.put_object(Bucket=INBOUND, Key="bench/warmup.jpeg", Body=body)
    _wait_sorted(s3, {"bench/warmup.jpeg"}, timeout=120)


def _predict_ms(s3: Any, keys: list[str]) -> list[float]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=PREDICTIONS, Prefix=""):
        for o in page.get("Contents", []):
            if o["Key"].split("/", 1)[1] in keys:
                meta = s3.head_object(Bucket=PREDICTIONS, Key=o["Key"])["Metadata"]
                if "predict-ms" in meta:
                    out.append(float(meta["predict-ms"]))
    return out

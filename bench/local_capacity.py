"""How far the local AWS carries a line: moto's memory and snapshot time against the photos it holds.

`python -m bench local_capacity` (not part of `make bench`): in a fresh process, starts the local stack's
patched moto, stores N sample photos (9 KB each, each body distinct) with the router's kind of metadata
under okay/, and after each step times `Snapshotter.save` calls: the first writes the new bodies, the
second follows at once (every object still compared with its cached manifest entry, as while they
arrive), the last follows one that came `SETTLED_S` later (unchanged entries reused as they are): what a
snapshot costs once the photos have settled: in the default commit mode an upload waits for about one
and a half of them, in interval mode one runs every `PARTCHECK_SNAPSHOT_SECONDS`. Each rewrites and
fsyncs the manifest of every object. moto keeps every body in memory, so the resident set grows too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = (1_000, 5_000, 10_000, 25_000, 50_000)
QUICK_STEPS = (1_000, 5_000)
SNAPSHOT_SECONDS = 2.0  # the stack's default interval (PARTCHECK_SNAPSHOT_SECONDS)
PER_DAY = 1_000  # photos a day on the line the docs price (docs/cost.md)
META = {"model-label": "ok", "p-defect": "0.010000", "uploaded-at": "2026-12-06T10:00:00Z"}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(steps: tuple[int, ...]) -> None:
    """The worker: one JSON line per step on stdout."""
    from moto.s3.models import s3_backends

    from partcheck.aws import AwsConfig, client
    from partcheck.stack import motopatch
    from partcheck.stack.config import free_port, use_local_credentials
    from partcheck.stack.keepalive import MotoServer
    from partcheck.stack.persist import ACCOUNT, SETTLED_S, Snapshotter

    use_local_credentials()
    motopatch.apply()
    port = free_port()
    server = MotoServer("127.0.0.1", port)
    server.start()
    s3 = client("s3", AwsConfig(endpoint_url=f"http://127.0.0.1:{port}", region="eu-west-1"))
    s3.create_bucket(Bucket="capacity", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    backend = s3_backends[ACCOUNT]["global"]
    photo = next((ROOT / "samples").glob("*.jpeg")).read_bytes()
    start = _rss_mb()
    n = 0
    with tempfile.TemporaryDirectory(prefix="partcheck-capacity-") as state:
        snapshots = Snapshotter(Path(state), "eu-west-1")
        for target in steps:
            while n < target:
                # Straight into moto's backend: the HTTP path is not what is measured here.
                body = photo + n.to_bytes(4, "big")
                key = backend.put_object("capacity", f"okay/line-1/cam-1/2026-12-06/{n:07d}.jpg", body)
                key.set_metadata(META)
                n += 1
            t0 = time.perf_counter()
            snapshots.save(s3)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            snapshots.save(s3)
            recent = time.perf_counter() - t0
            # Found unchanged SETTLED_S after it was first seen, an object's manifest entry is reused
            # from then on without a look at it.
            time.sleep(SETTLED_S + 0.5)
            snapshots.save(s3)
            # The median of five: one in a few lands on a full garbage collection (~0.3 s at 50,000).
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                snapshots.save(s3)
                times.append(time.perf_counter() - t0)
            steady, slowest = sorted(times)[2], max(times)
            point = {
                "objects": n,
                "rss_mb": _rss_mb() - start,
                "first_s": first,
                "recent_s": recent,
                "steady_s": steady,
                "slowest_of_5_s": slowest,
                "manifest_mb": (Path(state) / "manifest.json").stat().st_size / 1e6,
                "photo_bytes": len(photo),
            }
            print(json.dumps(point), flush=True)
    server.stop()


def run(quick: bool = False) -> dict[str, Any]:
    """Measure in a fresh process (moto's state is per process), then tabulate and extrapolate."""
    steps = QUICK_STEPS if quick else STEPS
    done = subprocess.run(
        [sys.executable, "-m", "bench.local_capacity", ",".join(map(str, steps))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    points = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows: list[dict[str, Any]] = []
    for p in points:
        n = f"{p['objects']:,} photos"
        rows.append({"metric": f"{n}: moto's resident memory added", "value": p["rss_mb"], "unit": "MB"})
        rows.append({"metric": f"{n}: snapshot, all new", "value": p["recent_s"] * 1000, "unit": "ms"})
        rows.append(
            {
                "metric": f"{n}: snapshot, nothing new, median of 5",
                "value": p["steady_s"] * 1000,
                "unit": "ms",
            }
        )
        rows.append(
            {
                "metric": f"{n}: snapshot, nothing new, slowest of 5",
                "value": p["slowest_of_5_s"] * 1000,
                "unit": "ms",
            }
        )
        rows.append({"metric": f"{n}: manifest", "value": p["manifest_mb"], "unit": "MB"})
    last = points[-1]
    thousands = last["objects"] / 1000
    ms_per_1000 = last["steady_s"] * 1000 / thousands
    at_interval = SNAPSHOT_SECONDS * 1000 / ms_per_1000 * 1000
    size = f"{last['photo_bytes'] / 1000:.1f} KB"
    rows += [
        {"metric": f"memory per 1,000 photos of {size}", "value": last["rss_mb"] / thousands, "unit": "MB"},
        {"metric": "snapshot per 1,000 stored objects", "value": ms_per_1000, "unit": "ms"},
        {
            "metric": f"objects at which a snapshot takes the {SNAPSHOT_SECONDS:g} s interval",
            "value": round(at_interval),
            "unit": "objects",
        },
        {
            "metric": f"days of a {PER_DAY:,}-photo line until then",
            "value": round(at_interval / PER_DAY),
            "unit": "days",
        },
    ]
    return {"title": "the local AWS (moto) against the photos it holds", "points": points, "rows": rows}


if __name__ == "__main__":
    _measure(tuple(int(s) for s in sys.argv[1].split(",")))

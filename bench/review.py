"""Review benchmark: 10,000 images waiting in unclear/ on a moto server, the real app over HTTP.

Measures queue (first page) and decision latency as an inspector's loop sees them (fetch the queue,
claim the first item, decide it), and, when the page is built, page load to first image in Chromium.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from partcheck.stack.config import free_port

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-review-predictions"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TARGET_MS = 100.0
PAGE_TARGET_S = 1.0


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _moto() -> Iterator[str]:
    """A moto server in its own process, as in the local stack (in-process it would share our GIL)."""
    import subprocess
    import sys

    import httpx

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _fill(s3: Any, n: int, body: bytes) -> float:
    meta = {
        "model-label": "unclear",
        "confidence": "0.612000",
        "p-defect": "0.388000",
        "model-name": "partcheck-cnn",
        "model-version": "bench",
        "reason": "low confidence",
        "line": "line-1",
        "camera": "cam-1",
        "uploaded-at": "2026-11-25T08:00:00Z",
        "source-key": "line-1/cam-1/x.jpg",
        "source-etag": "e",
        "t-ok": "0.9",
        "t-defect": "0.9",
    }

    def put(i: int) -> None:
        s3.put_object(
            Bucket=BUCKET,
            Key=f"unclear/line-1/cam-1/2026-11-25/img_{i:05d}.jpeg",
            Body=body,
            ContentType="image/jpeg",
            Metadata=meta,
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))
    return time.perf_counter() - started


_TIMELINE_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const rows = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/api/") || e.name.includes("/assets/"))
    .map((e) => [new URL(e.name).pathname.replace(/items\\/[^/]+/, "items/<id>"),
                 Math.round(e.startTime), Math.round(e.responseEnd)]);
  return { html_ms: Math.round(nav ? nav.responseEnd : 0), requests: rows };
}"""


def _page_load(base: str, cookie: str, runs: int) -> tuple[list[float], list[dict[str, Any]]]:
    """Cold loads (fresh browser context) to the first displayed queue image, with each load's
    request timeline (start and end in ms after navigation) to show where the time goes."""
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    timelines: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1366, "height": 768})
                context.add_cookies([{"name": "partcheck_session", "value": cookie, "url": base}])
                page = context.new_page()
                started = time.perf_counter()
                page.goto(base + "/")
                page.wait_for_function(
                    "() => [...document.images].some(i => i.src.includes('/api/items/') && i.complete"
                    " && i.naturalWidth > 0)",
                    timeout=15_000,
                )
                times.append(time.perf_counter() - started)
                timelines.append(page.evaluate(_TIMELINE_JS))
                context.close()
        finally:
            browser.close()
    return times, timelines


def run(quick: bool) -> dict[str, Any]:
    """Queue and decision p95 with 10,000 waiting images (1,000 with --quick); page load when built."""
    import httpx
    from argon2 import PasswordHasher

    from partcheck.aws import AwsConfig, client
    from services.review.app import create_app
    from services.review.settings import ReviewSettings
    from services.review.users import UserStore

    n_images = 1_000 if quick else 10_000
    n_decisions = 30 if quick else 100
    sample = sorted((ROOT / "samples").glob("cast_ok_*.jpeg"))[0].read_bytes()
    static_dir = ROOT / "frontend" / "dist"
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {"images": n_images}
    with _moto() as endpoint, tempfile.TemporaryDirectory() as tmp:
        s3 = client("s3", AwsConfig(endpoint_url=endpoint))
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        raw["fill_s"] = round(_fill(s3, n_images, sample), 1)
        users = UserStore(Path(tmp) / "users.json", hasher=PasswordHasher(time_cost=1, memory_cost=8192))
        users.add("bench", "bench-password")
        settings = ReviewSettings(
            endpoint_url=endpoint,
            prediction_bucket=BUCKET,
            cookie_secure=False,
            static_dir=static_dir,
            users_file=Path(tmp) / "users.json",
            session_secret="bench-secret-bench-secret-bench-secret",  # noqa: S106 (throwaway)
        )
        app = create_app(settings, s3, users=users)
        with _serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
            r = http.post("/api/login", json={"username": "bench", "password": "bench-password"})
            r.raise_for_status()
            http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
            started = time.perf_counter()
            first = http.get("/api/queue", params={"limit": 50})
            first.raise_for_status()
            cold_ms = (time.perf_counter() - started) * 1000
            assert first.json()["total"] == n_images, first.json()["total"]
            queue_ms, claim_ms, decision_ms = [], [], []
            for i in range(n_decisions):
                started = time.perf_counter()
                page = http.get("/api/queue", params={"limit": 50})
                queue_ms.append((time.perf_counter() - started) * 1000)
                page.raise_for_status()
                item = page.json()["items"][0]["id"]
                started = time.perf_counter()
                http.post(f"/api/items/{item}/claim").raise_for_status()
                claim_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                d = http.post(f"/api/items/{item}/decision", json={"label": "ok" if i % 2 else "defect"})
                decision_ms.append((time.perf_counter() - started) * 1000)
                d.raise_for_status()
            total = http.get("/api/queue", params={"limit": 1}).json()["total"]
            assert total == n_images - n_decisions, total
            raw.update(queue_ms=queue_ms, claim_ms=claim_ms, decision_ms=decision_ms)
            rows += [
                {
                    "metric": f"queue first page, cold (lists {n_images:,} keys)",
                    "value": round(cold_ms, 1),
                    "unit": "ms",
                    "target": "",
                    "ok": None,
                },
                {
                    "metric": "queue first page p50",
                    "value": round(statistics.median(queue_ms), 1),
                    "unit": "ms",
                    "target": "",
                    "ok": None,
                },
                {
                    "metric": "queue first page p95",
                    "value": round(_p(queue_ms, 0.95), 1),
                    "unit": "ms",
                    "target": f"< {TARGET_MS:.0f}",
                    "ok": _p(queue_ms, 0.95) < TARGET_MS,
                },
                {
                    "metric": "claim p95",
                    "value": round(_p(claim_ms, 0.95), 1),
                    "unit": "ms",
                    "target": "",
                    "ok": None,
                },
                {
                    "metric": "decision p50",
                    "value": round(statistics.median(decision_ms), 1),
                    "unit": "ms",
                    "target": "",
                    "ok": None,
                },
                {
                    "metric": "decision p95",
                    "value": round(_p(decision_ms, 0.95), 1),
                    "unit": "ms",
                    "target": f"< {TARGET_MS:.0f}",
                    "ok": _p(decision_ms, 0.95) < TARGET_MS,
                },
            ]
            if not (static_dir / "index.html").is_file():
                rows.append(
                    {
                        "metric": "page load to first image: SKIPPED, frontend/dist not built "
                        "(run make install)",
                        "value": "",
                        "unit": "s",
                        "target": "< 1",
                        "ok": None,
                    }
                )
            elif not Path(CHROMIUM).exists():
                rows.append(
                    {
                        "metric": f"page load to first image: SKIPPED, no {CHROMIUM} (make chromium)",
                        "value": "",
                        "unit": "s",
                        "target": "< 1",
                        "ok": None,
                    }
                )
            else:
                loads, timelines = _page_load(
                    base, http.cookies.get("partcheck_session") or "", 3 if quick else 5
                )
                raw["page_load_s"] = loads
                raw["page_load_timelines"] = timelines
                rows.append(
                    {
                        "metric": f"page load to first image, median of {len(loads)} cold loads",
                        "value": round(statistics.median(loads), 3),
                        "unit": "s",
                        "target": f"< {PAGE_TARGET_S:.0f}",
                        "ok": statistics.median(loads) < PAGE_TARGET_S,
                    }
                )
                rows.append(
                    {
                        "metric": "page load to first image, worst",
                        "value": round(max(loads), 3),
                        "unit": "s",
                        "target": "",
                        "ok": None,
                    }
                )
        app.state.review.store.close()
    return {
        "title": f"review service, {n_images:,} images waiting in unclear/ (moto over HTTP)",
        "rows": rows,
        **raw,
    }

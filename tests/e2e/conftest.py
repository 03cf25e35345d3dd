"""Fixtures of the browser tests: the review app on moto, serving the built page, and Debian's Chromium."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from partcheck.stack.config import free_port
from tests.conftest import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

BUCKET = "e2e-predictions"
PASSWORD = "correct horse battery"
DIST = ROOT / "frontend" / "dist"
CHROMIUM = Path(os.environ.get("PARTCHECK_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 768}
TABLET: ViewportSize = {"width": 820, "height": 1180}


def _missing(what: str, how: str) -> None:
    # In CI a missing prerequisite is a broken pipeline, not a reason to skip silently.
    message = f"{what} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.is_file():
        _missing(str(CHROMIUM), "run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait for the page; 5 s is too short on a busy two-core CI machine.
    expect.set_options(timeout=15_000)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def built_page() -> Path:
    """The Vite build the review service serves."""
    if not (DIST / "index.html").is_file():
        _missing("frontend/dist", "run `make frontend-build` (cd frontend && npm ci && npm run build)")
    return DIST


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def s3(moto: str) -> Any:
    """An S3 client on the freshly reset moto server, with the prediction bucket."""
    from partcheck.aws import AwsConfig, client

    c = client("s3", AwsConfig(endpoint_url=moto))
    c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return c


@dataclass(frozen=True)
class Seeded:
    """One image put under unclear/."""

    key: str
    name: str
    truth: str


@pytest.fixture
def seed_unclear(s3: Any, sample_images: dict[str, list[Path]]) -> Callable[[int], list[Seeded]]:
    """Put `n` real sample photos under unclear/ with the router's metadata, oldest first by name."""

    def seed(n: int) -> list[Seeded]:
        pool = [p for pair in zip(sample_images["defect"], sample_images["ok"], strict=False) for p in pair]
        assert len(pool) >= n, f"only {len(pool)} sample images"
        start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
        seeded = []
        for i, path in enumerate(pool[:n]):
            # Keys sort in upload order: the queue orders equal timestamps by key.
            key = f"unclear/line-3/cam-1/2026-11-25/{i:02d}_{path.name}"
            truth = "defect" if "def" in path.name else "ok"
            s3.put_object(
                Bucket=BUCKET,
                Key=key,
                Body=path.read_bytes(),
                ContentType="image/jpeg",
                Metadata={
                    "model-label": "unclear",
                    "confidence": "0.580000",
                    "p-defect": "0.420000",
                    "model-name": "partcheck-cnn",
                    "model-version": "1.0.0",
                    "reason": "between thresholds",
                    "line": "line-3",
                    "camera": "cam-1",
                    "uploaded-at": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                    "source-key": key.removeprefix("unclear/"),
                    "source-etag": "e2e",
                    "t-ok": "0.900000",
                    "t-defect": "0.900000",
                },
            )
            seeded.append(Seeded(key, key.rsplit("/", 1)[1], truth))
        return seeded

    return seed


@pytest.fixture
def review_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """ReviewSettings fields a test sets through indirect parametrisation; none by default."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def review_url(
    moto: str, s3: Any, built_page: Path, tmp_path: Path, review_overrides: dict[str, Any]
) -> Iterator[str]:
    """The review service (real uvicorn on a free port) over moto, with inspectors alice and bob."""
    import uvicorn
    from argon2 import PasswordHasher

    from services.review.app import create_app
    from services.review.settings import ReviewSettings
    from services.review.users import UserStore

    # Cheap argon2 parameters: the tests exercise the page, not the hash's cost.
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users = UserStore(tmp_path / "users.json", hasher=fast)
    users.add("alice", PASSWORD)
    users.add("bob", PASSWORD)
    settings = ReviewSettings(
        endpoint_url=moto,
        prediction_bucket=BUCKET,
        cookie_secure=False,
        static_dir=built_page,
        users_file=tmp_path / "users.json",
        session_secret="e2e-secret",
        queue_refresh_seconds=0.0,
        stats_cache_seconds=0.0,
        undo_seconds=30,
        **review_overrides,
    )
    app = create_app(settings, s3, users=users)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="review-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the review service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh browser contexts (one per inspector), closed after the test."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        ctx = browser.new_context(**{"viewport": DESKTOP, **options})
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def login_with_keyboard(page: Page, url: str, name: str) -> None:
    """Open the page and log in using only the keyboard."""
    page.goto(url)
    page.get_by_label("User name").wait_for()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for what a decision does after its answer (audit record, removal from unclear/)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the decision's background steps did not finish in time"
        time.sleep(0.05)


def list_keys(s3: Any, prefix: str) -> list[str]:
    """Every key under a prefix of the e2e bucket."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)

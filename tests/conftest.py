"""Fixtures shared by every test package: sample images and a moto server over HTTP."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from partcheck.stack.config import free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
EVENTS = Path(__file__).parent / "events"

# Fake credentials: no test may ever reach real AWS.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="eu-west-1",
)
os.environ.pop("AWS_PROFILE", None)
# moto's HTTP server logs every request; failures should show our logs, not thousands of those lines.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def sample_images() -> dict[str, list[Path]]:
    """The committed sample photos by true label."""
    return {
        "defect": sorted(SAMPLES.glob("cast_def_*.jpeg")),
        "ok": sorted(SAMPLES.glob("cast_ok_*.jpeg")),
    }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a real loopback socket for the whole session."""
    from partcheck.stack import motopatch
    from partcheck.stack.keepalive import MotoServer

    motopatch.apply()  # the same server the local stack runs
    port = free_port()
    server = MotoServer("127.0.0.1", port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto(moto_endpoint: str) -> str:
    """The moto endpoint, emptied before each test."""
    import httpx

    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return moto_endpoint

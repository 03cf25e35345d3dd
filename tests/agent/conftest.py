"""Fixtures for the agent tests: unique JPEG bytes, an in-process agent against moto, S3 read-back helpers."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.service import Agent
from agent.settings import AgentSettings
from partcheck.aws import AwsConfig, client
from partcheck.errors import AlreadyExists, StorageUnavailable
from partcheck.storage import ObjectInfo, ObjectStore

BUCKET = "partcheck-inbound"
_BASE: dict[int, bytes] = {}


class MemoryStore:
    """Conditional PUTs into a dict; `up = False` is an S3 outage, `fail_with` an unexpected error."""

    def __init__(self) -> None:
        self.up = True
        self.fail_with: Exception | None = None
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def put(self, bucket: str, key: str, body: bytes, **kwargs: Any) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        if not self.up:
            raise StorageUnavailable(f"put s3://{bucket}/{key}: connection refused")
        if kwargs.get("if_absent") and key in self.objects:
            raise AlreadyExists(f"put s3://{bucket}/{key}: PreconditionFailed")
        self.objects[key] = (body, dict(kwargs.get("metadata") or {}))
        return "etag"

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if key not in self.objects:
            return None
        body, meta = self.objects[key]
        return ObjectInfo(bucket, key, len(body), "etag", metadata=meta)


def jpeg_bytes(seed: int, size: int | None = None) -> bytes:
    """A valid JPEG unique to `seed`, padded with COM segments to `size` bytes when asked."""
    if 0 not in _BASE:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (120, 60, 30)).save(buf, "JPEG", quality=80)
        _BASE[0] = buf.getvalue()
    base = _BASE[0]
    rng = random.Random(seed)
    pad = max(16, (size or 0) - len(base))
    segments = b""
    while pad > 0:
        n = min(pad, 65000)
        body = rng.randbytes(max(1, n - 4))
        segments += b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body
        pad -= len(body) + 4
    return base[:2] + segments + base[2:]


def sha(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def wait_for(
    cond: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, describe: Callable[[], Any] = str
) -> Any:
    """Poll until `cond()` is truthy; fail the test on timeout (with `describe()` to show the state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = describe() if describe is not str else ""
            pytest.fail(f"timed out after {timeout} s waiting for {getattr(cond, '__name__', cond)} {detail}")
        time.sleep(interval)


# Outbox states of a row not decided yet: waiting for its retry time or claimed by a worker (pending,
# uploading), or a file still being written (waiting).
UNFINISHED_STATES = ("pending", "uploading", "waiting")


def agent_idle(agent: Agent) -> bool:
    """Nothing tracked, queued, in a worker's hands or unfinished in the outbox (all handed on is done)."""
    with agent._inflight_lock:  # a path is in flight from its dispatch until its worker has finished it
        inflight = bool(agent._inflight)
    if inflight or len(agent.tracker) or not agent._ready.empty() or agent.live.uploading:
        return False
    # A retry is no path in flight: the row waits in the outbox for its time, then a worker claims it there.
    return not any(agent.outbox.counts(UNFINISHED_STATES).values())


def _busy(agent: Agent) -> str:
    """What keeps the agent from being idle, for a timeout's message."""
    with agent._inflight_lock:
        inflight = sorted(agent._inflight)
    now = time.time()
    rows = [
        f"{r.state} {r.name} (attempts {r.attempts}, due in {r.next_attempt - now:.1f} s, {r.last_error!r})"
        for state in UNFINISHED_STATES
        for r in agent.outbox.rows(state)
    ]
    return (
        f"tracked {len(agent.tracker)}, in flight {inflight}, queued {agent._ready.qsize()}, "
        f"uploading {agent.live.uploading}, unfinished rows {rows}"
    )


def wait_idle(agent: Agent, timeout: float = 20.0, checks: int = 4) -> None:
    """Wait until all the agent was handed is finished, retries included (idle at `checks` polls in a row)."""
    # The main loop takes a path out of the tracker a moment before it marks it in flight, and a worker
    # archives a retried row a moment after marking it done; idle at several polls 50 ms apart (more than
    # one loop tick) does not fall into those gaps.
    seen = 0

    def agent_is_idle() -> bool:
        nonlocal seen
        seen = seen + 1 if agent_idle(agent) else 0
        return seen >= checks

    wait_for(agent_is_idle, timeout=timeout, describe=lambda: _busy(agent))


def s3_client(endpoint: str) -> Any:
    """A plain S3 client on the endpoint."""
    return client("s3", AwsConfig(endpoint_url=endpoint, max_attempts=1))


def make_bucket(endpoint: str) -> None:
    """Create the inbound bucket."""
    s3_client(endpoint).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )


def objects(endpoint: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every object in the inbound bucket: key -> (bytes, metadata)."""
    s3 = s3_client(endpoint)
    out = {}
    for info in ObjectStore(s3).list(BUCKET):
        r = s3.get_object(Bucket=BUCKET, Key=info.key)
        out[info.key] = (r["Body"].read(), dict(r.get("Metadata", {})))
    return out


def write_slowly(path: Path, data: bytes, chunks: int, pause_s: float) -> None:
    """Write a file in chunks with pauses, like a slow camera or network copy."""
    step = max(1, len(data) // chunks)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            time.sleep(pause_s)


def agent_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> AgentSettings:
    """Settings tuned for fast tests (short waits and backoff)."""
    values: dict[str, Any] = {
        "watch": tmp_path / "inbox", "state_dir": tmp_path / "state", "endpoint_url": endpoint,
        "bucket": BUCKET, "stability_wait_s": 0.2, "scan_settle_s": 0.3, "rescan_interval_s": 1.0,
        "backoff_base_s": 0.05, "backoff_max_s": 0.4, "open_warn_s": 1.0, "shutdown_grace_s": 2.0,
    }  # fmt: skip
    values.update(overrides)
    return AgentSettings(**values)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """The watched folder."""
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def start_agent(moto: str, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Start an in-process agent on tmp_path/inbox against the moto server; stopped after the test."""
    make_bucket(moto)
    agents: list[Agent] = []

    def start(endpoint: str | None = None, **overrides: Any) -> Agent:
        settings = agent_settings(tmp_path, endpoint or moto, **overrides)
        agent = Agent(settings, ObjectStore(s3_client(endpoint or moto)))
        agent.start_background()
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.shutdown()


def env_with_creds() -> dict[str, str]:
    """The environment for an agent subprocess (fake credentials from the root conftest)."""
    env = dict(os.environ)
    env.pop("PARTCHECK_AGENT_WATCH", None)
    return env

"""The agent tests' `wait_idle`: it returns only once every row is finished, retries included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import service
from agent.service import Agent
from tests.agent.conftest import MemoryStore, agent_settings, jpeg_bytes, wait_for, wait_idle

pytestmark = pytest.mark.unit

RunAgent = Callable[..., Agent]


@pytest.fixture
def run_agent(tmp_path: Path, inbox: Path) -> Iterator[RunAgent]:
    """A running agent on tmp_path/inbox, uploading into `store` (no S3 needed); stopped after the test."""
    agents: list[Agent] = []

    def run(store: MemoryStore, **overrides: Any) -> Agent:
        agent = Agent(agent_settings(tmp_path, "http://127.0.0.1:9", **overrides), store)  # type: ignore[arg-type]
        agent.start_background()
        agents.append(agent)
        return agent

    yield run
    for agent in agents:
        agent.shutdown()


def _first_put_failed(agent: Agent) -> bool:
    return any(r.last_error for r in agent.outbox.rows())


def test_wait_idle_waits_for_a_row_in_backoff(run_agent: RunAgent, inbox: Path) -> None:
    store = MemoryStore()
    store.up = False
    agent = run_agent(store)
    (inbox / "a.jpg").write_bytes(jpeg_bytes(1))
    wait_for(lambda: _first_put_failed(agent))
    # S3 down: the row only waits in the outbox for its next retry (no path in flight, nothing uploading).
    # Idle it is not: the wait runs out, and its message names the row and why it is still there.
    unfinished = r"timed out after 0\.5 s.*unfinished rows.*pending a\.jpg \(attempts \d+.*connection refused"
    with pytest.raises(pytest.fail.Exception, match=unfinished):
        wait_idle(agent, timeout=0.5)
    store.up = True
    wait_idle(agent)
    assert [r.state for r in agent.outbox.rows()] == ["done"]
    assert len(store.objects) == 1


def test_wait_idle_waits_for_a_retry_a_worker_holds(
    run_agent: RunAgent, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    store.up = False
    reads: list[str] = []

    def read_file(path: str) -> bytes:
        reads.append(path)
        if len(reads) > 1:  # the retry's re-read is slow (a network share): the row is claimed meanwhile
            time.sleep(0.6)
        return Path(path).read_bytes()

    monkeypatch.setattr(service, "read_file", read_file)
    agent = run_agent(store)
    (inbox / "a.jpg").write_bytes(jpeg_bytes(2))
    wait_for(lambda: _first_put_failed(agent))
    store.up = True
    wait_for(lambda: len(reads) > 1)  # a worker took the retry
    wait_idle(agent)
    assert [r.state for r in agent.outbox.rows()] == ["done"]
    assert len(store.objects) == 1

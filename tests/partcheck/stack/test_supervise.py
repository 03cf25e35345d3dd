"""`partcheck up`'s supervisor: crashed children come back after their own backoff; waiting never blocks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from partcheck.stack.up import MAX_BACKOFF_SECONDS, STABLE_SECONDS, Child, supervise

pytestmark = pytest.mark.integration
CRASH = [sys.executable, "-c", "raise SystemExit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[dict[str, Child]]:
    made: dict[str, Child] = {}

    def make(name: str, argv: list[str]) -> Child:
        made[name] = Child(name, argv, dict(os.environ), tmp_path / f"{name}.log")
        return made[name]

    make("looping", CRASH)
    make("fresh", CRASH)
    make("steady", SLEEP)
    yield made
    for child in made.values():
        child.stop(timeout=5)


def _exited(child: Child) -> None:
    assert child.process is not None
    child.process.wait(10)


def test_a_long_backoff_blocks_neither_the_loop_nor_other_children(children):
    looping, fresh, steady = children["looping"], children["fresh"], children["steady"]
    looping.restarts = 10  # deep in a crash loop: its next start waits the longest backoff
    for child in children.values():
        child.start()
    _exited(looping)
    _exited(fresh)
    first_fresh, first_looping, steady_process = fresh.process, looping.process, steady.process

    deadline = time.monotonic() + 2.5
    slowest = 0.0
    while time.monotonic() < deadline:
        started = time.monotonic()
        supervise(list(children.values()))
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)

    # Each pass returns at once, so `up` sees Ctrl-C within its 0.2 s tick, however long a backoff is.
    assert slowest < 0.5
    assert looping.process is first_looping, "restarted before its backoff ran out"
    assert looping.restart_at is not None
    assert looping.restart_at - time.monotonic() > MAX_BACKOFF_SECONDS - 5
    # Meanwhile the other crashed child came back after its own 1 s (and crashed and was rescheduled again).
    assert fresh.process is not first_fresh
    assert fresh.restarts >= 1
    assert steady.process is steady_process
    assert steady.restarts == 0
    assert steady.process is not None
    assert steady.process.poll() is None

    looping.stop(timeout=5)
    assert looping.restart_at is None  # stopping cancels a pending restart


def test_the_backoff_starts_over_after_a_stable_run(children):
    child = children["looping"]
    child.restarts = 6
    child.start()
    _exited(child)
    child.started_at = time.monotonic() - STABLE_SECONDS - 1  # as if it had run for a minute
    supervise([child])
    assert child.restarts == 1
    assert child.restart_at is not None
    assert child.restart_at - time.monotonic() <= 1.0

    # A crash right after that restart keeps backing off.
    child.restart_at = time.monotonic()
    supervise([child])
    _exited(child)
    supervise([child])
    assert child.restarts == 2
    assert child.restart_at is not None
    assert 1.0 < child.restart_at - time.monotonic() <= 2.0

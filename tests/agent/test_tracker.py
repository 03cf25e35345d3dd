"""Unit tests of the finished-file rule with a fake clock and fake file identities."""

from __future__ import annotations

import pytest

from agent.tracker import Identity, Tracker

pytestmark = pytest.mark.unit


class FakeFs:
    """Clock, wall clock and (size, mtime_ns) per path, all under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.files: dict[str, Identity] = {}

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def identity(self, path: str) -> Identity:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def write(self, path: str, size: int) -> None:
        self.files[path] = (size, int(self.now * 1e9))


def tracker(fs: FakeFs, close_events: bool = True) -> Tracker:
    return Tracker(stability_s=0.25, scan_settle_s=2.0, close_events=close_events, open_warn_s=60.0,
                   clock=fs.clock, wall=fs.wall, identity=fs.identity)  # fmt: skip


def test_close_write_is_ready_at_once() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    t.created("a")
    t.modified("a")
    assert t.due().ready == []
    t.closed("a")
    assert t.due().ready == ["a"]
    assert "a" not in t


def test_with_close_events_a_written_file_waits_for_its_close_however_quiet() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    t.created("a")
    t.modified("a")
    fs.now += 30
    assert t.due().ready == []
    fs.now += 31
    due = t.due()
    assert due.ready == []
    assert [p for p, _s in due.long_open] == ["a"]
    assert t.due().long_open == []  # warned once


def test_a_lost_close_event_does_not_strand_a_file() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    t.modified("a")
    fs.now += 61
    t.due()
    fs.now += 600
    assert t.due().ready == ["a"]


def test_without_close_events_size_and_mtime_must_settle() -> None:
    fs = FakeFs()
    t = tracker(fs, close_events=False)
    fs.write("a", 10)
    t.created("a")
    fs.now += 0.2
    fs.write("a", 20)
    t.modified("a")
    assert t.due().ready == []
    fs.now += 0.2
    assert t.due().ready == []
    fs.now += 0.1
    assert t.due().ready == ["a"]


def test_moved_in_file_is_ready_at_once() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a.jpg", 10)
    t.moved_in("a.jpg")
    assert t.due().ready == ["a.jpg"]


def test_created_only_file_with_an_old_mtime_is_ready_quickly_without_close_events() -> None:
    fs = FakeFs()
    t = tracker(fs, close_events=False)
    fs.write("a", 10)
    fs.now += 100  # moved in from outside with its original mtime, no writes seen
    t.created("a")
    fs.now += 0.05
    assert t.due().ready == ["a"]


def test_with_close_events_a_created_file_waits_the_stability_period_even_with_an_old_mtime() -> None:
    # The writer's open event follows the create; taking the file before it would read a file being written.
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    fs.now += 100
    t.created("a")
    fs.now += 0.05
    assert t.due().ready == []
    fs.now += 0.2
    assert t.due().ready == ["a"]


def test_a_created_and_opened_file_waits_for_its_close_however_long_the_writer_pauses() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 0)
    t.created("a")
    t.opened("a")  # the writer has not written a byte yet, and its first modify event may lag
    fs.now += 5.0
    assert t.due().ready == []
    fs.write("a", 4096)
    t.modified("a")
    fs.now += 5.0
    assert t.due().ready == []
    t.closed("a")
    assert t.due().ready == ["a"]


def test_a_read_only_open_and_close_hands_back_to_stability() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    fs.now += 100
    t.created("a")
    t.opened("a")  # a reader (a viewer, an antivirus scanner)
    t.opened("a")  # and a second one
    fs.now += 1.0
    t.closed_nowrite("a")
    assert t.due().ready == []  # one opener is still there
    t.closed_nowrite("a")
    assert t.due().ready == ["a"]  # nobody wrote, and the bytes have been still for a second


def test_after_a_read_only_close_a_recently_written_file_still_needs_its_quiet_period() -> None:
    fs = FakeFs()
    t = tracker(fs)
    t.created("a")
    fs.now += 0.2
    fs.write("a", 10)  # written by something whose events were lost
    t.opened("a")
    t.closed_nowrite("a")
    assert t.due().ready == []
    fs.now += 0.3
    assert t.due().ready == ["a"]


def test_a_read_only_close_does_not_end_the_wait_for_a_file_being_written() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    t.created("a")
    t.opened("a")
    t.modified("a")
    t.opened("a")
    t.closed_nowrite("a")
    t.closed_nowrite("a")  # more read-only closes than opens seen: no harm
    fs.now += 5.0
    assert t.due().ready == []
    t.closed("a")
    assert t.due().ready == ["a"]


def test_opens_of_untracked_files_and_opens_without_close_events_are_ignored() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    t.opened("a")  # the agent's own read of a file it already took
    t.closed_nowrite("a")
    assert len(t) == 0
    p = tracker(fs, close_events=False)
    p.created("a")
    p.opened("a")
    fs.now += 0.3
    assert p.due().ready == ["a"]


def test_scanned_files_wait_longer_than_event_files() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 10)
    assert t.scanned("a") is True
    assert t.scanned("a") is False
    fs.now += 1.0
    assert t.due().ready == []
    fs.now += 1.1
    assert t.due().ready == ["a"]


def test_vanished_and_forgotten() -> None:
    fs = FakeFs()
    t = tracker(fs, close_events=False)
    fs.write("a", 1)
    fs.write("b", 1)
    t.created("a")
    t.created("b")
    del fs.files["a"]
    fs.now += 0.3
    assert t.forget("b") is True
    assert t.forget("b") is False
    due = t.due()
    assert due.vanished == ["a"]
    assert len(t) == 0


def test_busy_paths_are_held_back() -> None:
    fs = FakeFs()
    t = tracker(fs)
    fs.write("a", 1)
    t.closed("a")
    assert t.due(busy=lambda p: p == "a").ready == []
    assert t.due().ready == ["a"]

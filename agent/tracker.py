"""When is a file finished: close-after-write events where the OS has them, else stable size and mtime."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Identity = tuple[int, int]  # (size, mtime_ns)


@dataclass
class _Candidate:
    origin: str  # "event" or "scan": scans know nothing of the writer, so they wait longer
    first_seen: float
    observed: Identity | None = None
    observed_at: float = 0.0
    written: bool = False  # a modify event came and no close-write yet (a read-only close changes nothing)
    opens: int = 0  # opens not yet matched by a read-only close
    finished: bool = False  # close-write or rename into the folder
    warned: bool = False

    @property
    def wrote(self) -> bool:
        """Opened or written, and no close-write yet: wait for the close."""
        return self.written or self.opens > 0


@dataclass
class Due:
    """What one tick found: files ready for upload, files gone, and files written for suspiciously long."""

    ready: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    long_open: list[tuple[str, float]] = field(default_factory=list)


def _identity(path: str) -> Identity:
    st = os.stat(path, follow_symlinks=False)
    return st.st_size, st.st_mtime_ns


class Tracker:
    """Candidate files and the rule that turns them ready; thread-safe, with injectable clocks for tests."""

    def __init__(
        self,
        *,
        stability_s: float,
        scan_settle_s: float,
        close_events: bool,
        open_warn_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        identity: Callable[[str], Identity] = _identity,
    ) -> None:
        self.stability_s = stability_s
        self.scan_settle_s = max(scan_settle_s, stability_s)
        self.close_events = close_events
        self.open_warn_s = open_warn_s
        self._clock = clock
        self._wall = wall
        self._identity = identity
        self._lock = threading.Lock()
        self._c: dict[str, _Candidate] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._c)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._c

    def _get(self, path: str, origin: str) -> _Candidate:
        cand = self._c.get(path)
        if cand is None:
            cand = self._c[path] = _Candidate(origin=origin, first_seen=self._clock())
            self._observe(path, cand)
        elif origin == "event":
            cand.origin = "event"
        return cand

    def _observe(self, path: str, cand: _Candidate) -> None:
        try:
            ident: Identity | None = self._identity(path)
        except OSError:
            ident = None
        if ident != cand.observed or cand.observed_at == 0.0:
            cand.observed, cand.observed_at = ident, self._clock()

    def created(self, path: str) -> None:
        """A file appeared (created, or moved in from outside the watched tree)."""
        with self._lock:
            self._get(path, "event")

    def opened(self, path: str) -> None:
        """A tracked file was opened (inotify IN_OPEN): a writer may hold it, so wait for a close."""
        if not self.close_events:
            return
        with self._lock:
            cand = self._c.get(path)
            # Untracked paths are ignored: the agent's own reads of dispatched files echo back as opens.
            if cand is not None and not cand.finished:
                cand.opens += 1

    def closed_nowrite(self, path: str) -> None:
        """A tracked file was closed without writing: once no opener remains, stability decides again."""
        with self._lock:
            cand = self._c.get(path)
            if cand is None or cand.finished:
                return
            waited = cand.wrote
            cand.opens = max(0, cand.opens - 1)
            if waited and not cand.wrote:
                cand.observed_at = 0.0  # restart the quiet period from now
                self._observe(path, cand)

    def modified(self, path: str) -> None:
        """Bytes were written: with close events, wait for the close."""
        with self._lock:
            cand = self._get(path, "event")
            cand.finished = False
            if self.close_events:
                cand.written = True
            else:
                self._observe(path, cand)  # the stability clock restarts at the last write seen

    def closed(self, path: str) -> None:
        """The writer closed the file (inotify IN_CLOSE_WRITE): finished now."""
        with self._lock:
            cand = self._get(path, "event")
            cand.finished, cand.written, cand.opens = True, False, 0

    def moved_in(self, path: str) -> None:
        """Renamed into place, the usual "write a temp name, then rename" pattern: finished now."""
        self.closed(path)

    def scanned(self, path: str) -> bool:
        """Found by a scan; True if it was not tracked yet."""
        with self._lock:
            if path in self._c:
                return False
            self._get(path, "scan")
            return True

    def forget(self, path: str) -> bool:
        """Stop tracking a path (deleted or handed on); True if it was tracked."""
        with self._lock:
            return self._c.pop(path, None) is not None

    def due(self, busy: Callable[[str], bool] = lambda _p: False) -> Due:
        """Files that are finished now (removed from tracking), plus vanished and long-open ones."""
        out = Due()
        now, wall = self._clock(), self._wall()
        with self._lock:
            for path, cand in list(self._c.items()):
                if busy(path):
                    continue
                if cand.finished:
                    out.ready.append(path)
                    del self._c[path]
                    continue
                if cand.wrote and now - cand.observed_at < self.open_warn_s:
                    continue  # waiting for the close-write event; no need to stat
                wait = self.stability_s if cand.origin == "event" else self.scan_settle_s
                # An old mtime shortens the wait (a file moved in keeps its mtime), except for a file just
                # created while close events are on: its writer's open event comes right after the
                # create, and a file taken before that is read while it is still being written.
                old_enough = (
                    cand.observed is not None
                    and wall - cand.observed[1] / 1e9 >= wait
                    and not (self.close_events and cand.origin == "event" and now - cand.first_seen < wait)
                )
                if (
                    not cand.wrote
                    and now - cand.observed_at < wait
                    and not old_enough
                    and now - cand.first_seen < self.open_warn_s
                ):
                    continue  # too early to decide: a stat now could not make it ready
                before = cand.observed
                self._observe(path, cand)
                if cand.observed is None:
                    out.vanished.append(path)
                    del self._c[path]
                    continue
                quiet = now - cand.observed_at
                if cand.wrote:
                    # A lost close event (inotify overflow) must not strand a file forever: after ten quiet
                    # warning periods with no close, stability decides after all.
                    if quiet >= 10 * self.open_warn_s:
                        out.ready.append(path)
                        del self._c[path]
                    elif quiet >= self.open_warn_s and not cand.warned:
                        cand.warned = True
                        out.long_open.append((path, now - cand.first_seen))
                    continue
                if cand.observed == before and (quiet >= wait or old_enough):
                    out.ready.append(path)
                    del self._c[path]
                elif now - cand.first_seen >= self.open_warn_s and not cand.warned:
                    cand.warned = True
                    out.long_open.append((path, now - cand.first_seen))
        return out

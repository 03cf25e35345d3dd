"""The agent: watch a folder, decide when files are finished, record them in the outbox, upload each once."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.dispose import Disposer
from agent.files import (
    is_temp_name,
    iso_utc,
    object_metadata,
    render_key,
    sniff_image,
    suffixed_name,
)
from agent.logs import emit
from agent.metrics import Metrics
from agent.outbox import ACTIVE_STATES, STATES, ConflictError, Outbox, Row
from agent.s3 import Outcome, Uploader
from agent.settings import AgentSettings
from agent.tracker import Tracker
from partcheck.errors import InvalidInput, PartcheckError
from partcheck.storage import ObjectStore

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
TICK_S = 0.05
_TERMINAL_SAME = ("done", "duplicate", "skipped", "pending", "uploading")
# 2**60 backoff periods is beyond any backoff_max_s; a larger exponent only risks an OverflowError.
_MAX_BACKOFF_EXPONENT = 60
_SMALL_STATES = ("pending", "uploading", "waiting", "failed")


def read_file(path: str) -> bytes:
    """The file's bytes (a seam for tests that cannot make a file unreadable as root)."""
    with open(path, "rb") as f:
        return f.read()


@dataclass
class Live:
    """In-memory figures for the status line and the metrics."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    uploading: int = 0
    done_times: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    last_error: str | None = None
    watch_present: bool = True
    backing_off_until: float = 0.0
    done_base: int = 0
    done_since: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_uploading(self, n: int) -> None:
        """Count PUTs in flight (workers run in parallel)."""
        with self._lock:
            self.uploading += n

    def note_done(self) -> None:
        """One more confirmed upload (shown before the next full count)."""
        with self._lock:
            self.done_since += 1
            self.done_times.append(time.monotonic())

    def rate(self, window_s: float = 10.0) -> float:
        """Uploads per second over the last window."""
        cutoff = time.monotonic() - window_s
        return sum(1 for t in self.done_times if t >= cutoff) / window_s


class Agent:
    """One watched folder uploading into one bucket."""

    def __init__(
        self, settings: AgentSettings, store: ObjectStore, *, metrics: Metrics | None = None
    ) -> None:
        if settings.watch is None:
            raise InvalidInput("no folder to watch: pass --watch DIR or set PARTCHECK_AGENT_WATCH")
        self.s = settings
        self.watch = Path(os.path.abspath(settings.watch))
        self.outbox = Outbox(settings.outbox_path())
        self.uploader = Uploader(store, settings.bucket)
        self.metrics = metrics or Metrics()
        self.live = Live()
        self.tracker = Tracker(
            stability_s=settings.stability_wait_s,
            scan_settle_s=settings.scan_settle_s,
            close_events=settings.close_events and not settings.poll and _has_close_events(),
            open_warn_s=settings.open_warn_s,
        )
        archive = Path(os.path.abspath(settings.archive_path()))
        self.disposer = Disposer(
            settings.after_upload, self.watch, archive, int(settings.archive_quota_mb * 1024 * 1024)
        )
        # Never watch our own state or archive if someone put them inside the watched folder.
        self._excluded = tuple(str(p) + os.sep for p in (Path(os.path.abspath(settings.state_dir)), archive))
        self._ready: queue.Queue[tuple[str, float]] = queue.Queue()
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._stop = threading.Event()
        self._gate_lock = threading.Lock()
        self._gate_until = 0.0  # wall time before which no PUT is tried (S3 failing)
        self._failures = 0
        self._observer: Any = None
        self._observer_error: str | None = None
        self._watch_id: tuple[int, int] | None = None
        self._workers: list[threading.Thread] = []
        self._main: threading.Thread | None = None
        self._scan_request = threading.Event()
        self._settled: dict[str, tuple[int, int]] = {}  # path -> identity known to need nothing more
        self._scan_errors: dict[str, str] = {}  # path -> the unexpected error a scan already logged
        self._counts_at = 0.0
        self._full_counts_at = 0.0
        self._pruned_at = 0.0

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Recover the outbox and start the upload workers (the caller then runs `loop`)."""
        recovered = self.outbox.recover()
        self._refresh_counts(full=True)
        self.metrics.bind_outbox(lambda: self.live.counts, STATES)
        if self.s.metrics_port is not None:
            self.metrics.serve(self.s.metrics_port, self.s.metrics_host)
        emit(
            INFO,
            "agent started",
            watch=str(self.watch),
            bucket=self.s.bucket,
            endpoint=self.s.endpoint_url,
            mode="poll" if self.s.poll else "native",
            close_events=self.tracker.close_events,
            stability_wait_s=self.s.stability_wait_s,
            after_upload=self.s.after_upload,
            outbox=str(self.outbox.path),
            interrupted_uploads=recovered,
            pending=self.live.counts["pending"],
        )
        scanner = threading.Thread(target=self._scanner, name="scanner", daemon=True)
        scanner.start()
        self._workers.append(scanner)
        for i in range(self.s.workers):
            t = threading.Thread(target=self._worker, name=f"upload-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def run(self) -> None:
        """Run until `stop()` (from a signal handler or another thread), then shut down."""
        self.start()
        try:
            self.loop()
        finally:
            self.shutdown()

    def start_background(self) -> None:
        """Run in a thread (tests, benchmarks)."""
        self.start()
        self._main = threading.Thread(target=self.loop, name="agent-main", daemon=True)
        self._main.start()

    @property
    def watching(self) -> bool:
        """True once events are being received (the start-up scan covers files from before)."""
        return self._observer is not None

    def stop(self) -> None:
        """Ask every thread to finish; safe from signal handlers."""
        self._stop.set()

    def shutdown(self) -> None:
        """Stop watching, let uploads in flight finish within the grace period, and close the outbox."""
        self._stop.set()
        self._scan_request.set()
        if self._main is not None:
            self._main.join(timeout=5)
        self._stop_observer()
        deadline = time.monotonic() + self.s.shutdown_grace_s
        for t in self._workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._workers if t.is_alive()]
        # An upload cut off here stays "uploading" and is redone at start (conditional PUT: no duplicate).
        emit(INFO, "agent stopped", abandoned_uploads=len(alive))
        if not alive:
            self.outbox.close()

    # ---- the main loop: watching, stability, rescans -----------------------------------------------------

    def loop(self) -> None:
        """Tick until stopped: keep the observer alive, turn stable files ready, rescan now and then."""
        last_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                self._check_watch_folder()
            self._tick()
            if now - self._counts_at >= 1.0:
                self._counts_at = now
                self._refresh_counts(full=now - self._full_counts_at >= 60.0)
            self._stop.wait(TICK_S)

    def _refresh_counts(self, *, full: bool) -> None:
        """Small states every second (indexed); a full count, which grows with the outbox, once a minute."""
        if full:
            self._full_counts_at = time.monotonic()
            counts = self.outbox.counts()
            with self.live._lock:
                self.live.done_base, self.live.done_since = counts["done"], 0
        else:
            counts = dict(self.live.counts)
            counts.update(self.outbox.counts(_SMALL_STATES))
        counts["done"] = self.live.done_base + self.live.done_since
        self.live.counts = counts

    def _tick(self) -> None:
        due = self.tracker.due(busy=self._is_inflight)
        for path in due.ready:
            self._dispatch(path)
        for path in due.vanished:
            self._record_gone(path, "deleted before it was finished")
        for path, seconds in due.long_open:
            emit(
                WARNING,
                "file still being written; waiting for it to be closed",
                path=path,
                seconds=round(seconds, 1),
            )
            self.outbox.note_waiting(path, Path(path).name, f"still being written after {seconds:.0f} s")

    def _check_watch_folder(self) -> None:
        try:
            st = os.stat(self.watch)
            present, ident = stat.S_ISDIR(st.st_mode), (st.st_dev, st.st_ino)
        except OSError:
            present, ident = False, None
        if not present:
            if self.live.watch_present:
                emit(ERROR, "watched folder missing; waiting for it to come back", watch=str(self.watch))
                self._stop_observer()
            self.live.watch_present = False
            self.metrics.watch_up.set(0)
            return
        if not self.live.watch_present or self._observer is None or ident != self._watch_id:
            if not self.live.watch_present:
                emit(INFO, "watched folder is back", watch=str(self.watch))
            self._stop_observer()
            self._start_observer()
            self._watch_id = ident
            self.live.watch_present = True
            self.metrics.watch_up.set(1)
            self._scan_request.set()  # catch whatever arrived while nobody watched

    def _start_observer(self) -> None:
        from agent.watch import make_observer

        try:
            self._observer = make_observer(self, poll=self.s.poll, poll_interval_s=self.s.poll_interval_s)
            self._observer_error = None
        except OSError as exc:
            # inotify limits or a vanished folder: scans keep working, the next check (1 s) retries.
            if str(exc) != self._observer_error:
                emit(
                    ERROR, "could not start watching; relying on scans", watch=str(self.watch), error=str(exc)
                )
            self._observer_error = str(exc)
            self._observer = None

    def _stop_observer(self) -> None:
        obs, self._observer = self._observer, None
        if obs is not None:
            try:
                obs.stop()
                obs.join(timeout=2)
            except Exception as exc:  # a dying observer must not take the agent with it
                emit(WARNING, "observer did not stop cleanly", error=repr(exc))

    # ---- event intake (called from observer threads) ----------------------------------------------------

    def wanted(self, path: str) -> bool:
        """Paths worth tracking: inside the watch, not ours, not temporary names."""
        if (path + os.sep).startswith(self._excluded):
            return False
        return not is_temp_name(os.path.basename(path))

    def on_created(self, path: str) -> None:
        """A file appeared."""
        if self.wanted(path):
            self.tracker.created(path)

    def on_opened(self, path: str) -> None:
        """A file was opened (a writer may be about to write)."""
        if self.wanted(path):
            self.tracker.opened(path)

    def on_closed_nowrite(self, path: str) -> None:
        """A file was closed without being written."""
        if self.wanted(path):
            self.tracker.closed_nowrite(path)

    def on_modified(self, path: str) -> None:
        """A file was written."""
        if self.wanted(path):
            self.tracker.modified(path)

    def on_closed(self, path: str) -> None:
        """A file was closed after writing: hand it on at once (latency matters here)."""
        if not self.wanted(path):
            return
        if self.tracker.close_events:
            self.tracker.closed(path)
            self._tick()  # at once, from the observer thread: the close-to-upload delay is what counts
        else:
            self.tracker.modified(path)

    def on_moved(self, src: str, dest: str) -> None:
        """A rename: the old name is gone, the new one (e.g. `x.jpg.part` -> `x.jpg`) is finished."""
        self.tracker.forget(src)
        if self.wanted(dest):
            self.tracker.moved_in(dest)
            self._tick()  # at once, from the observer thread: the close-to-upload delay is what counts

    def on_deleted(self, path: str) -> None:
        """A file was deleted before we took it."""
        if self.tracker.forget(path):
            self._record_gone(path, "deleted before upload")

    def _is_inflight(self, path: str) -> bool:
        with self._inflight_lock:
            return path in self._inflight

    def _dispatch(self, path: str) -> None:
        with self._inflight_lock:
            self._inflight.add(path)
        self._ready.put((path, time.monotonic()))

    # ---- scans -------------------------------------------------------------------------------------------

    def _scanner(self) -> None:
        """Scans run in their own thread so a big folder never delays the finished-file decisions."""
        while not self._stop.is_set():
            self._scan_request.wait(timeout=self.s.rescan_interval_s)
            self._scan_request.clear()
            if self._stop.is_set():
                return
            if self.live.watch_present:
                self._guard(self.scan)
            if self.s.retention_days and time.monotonic() - self._pruned_at >= 3600:
                self._pruned_at = time.monotonic()
                self._guard(self.prune)

    def prune(self) -> int:
        """Forget settled rows past the retention whose files left the folder (keeps the outbox small)."""

        def still_needed(row: Row) -> bool:
            try:
                st = os.lstat(row.path)
            except OSError:
                return False
            return (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)

        removed = self.outbox.prune(time.time() - self.s.retention_days * 86400, still_needed)
        if removed:
            emit(INFO, "outbox pruned", removed=removed, retention_days=self.s.retention_days)
        return removed

    def scan(self) -> int:
        """Walk the folder for files events missed (start-up, lost events, after-upload actions not done)."""
        added = 0
        for root, dirs, files in os.walk(self.watch, onerror=lambda _e: None):
            dirs[:] = [d for d in dirs if not d.startswith(".") and self.wanted(os.path.join(root, d))]
            for name in files:
                path = os.path.join(root, name)
                try:
                    added += self._scan_file(path)
                # One file must never stop a scan: the files listed after it would be missed.
                except Exception as exc:
                    self._scan_failed(path, exc)
                else:
                    self._scan_errors.pop(path, None)
        return added

    def _scan_file(self, path: str) -> bool:
        """Look at one file found by a scan; True if it is newly tracked."""
        if not self.wanted(path) or path in self.tracker or self._is_inflight(path):
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if self._settled.get(path) == (st.st_size, st.st_mtime_ns):
            return False
        row = self.outbox.latest_for_path(path)
        if row is not None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns):
            if row.state == "done" and row.disposed is None:
                self._dispatch(path)  # the worker applies the missing after-upload action
                return False
            if row.state == "duplicate" and row.disposed is None and self._original_fate(row) != "waiting":
                self._dispatch(path)  # the worker disposes of it, or takes it again if its original is lost
                return False
            if row.state in _TERMINAL_SAME:
                return False
        if stat.S_ISLNK(st.st_mode):
            self._dispatch(path)
            return False
        return self.tracker.scanned(path)

    def _scan_failed(self, path: str, exc: Exception) -> None:
        """Log a file's unexpected scan error once (rescans repeat it quietly until it changes)."""
        self.live.last_error = repr(exc)
        if self._scan_errors.get(path) == repr(exc):
            return
        self._scan_errors[path] = repr(exc)
        logging.getLogger("partcheck.agent").error(
            "unexpected error scanning a file; the scan goes on",
            exc_info=exc,
            extra={"fields": {"path": path, "error": repr(exc)}},
        )

    # ---- workers -----------------------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                path, ready_at = self._ready.get_nowait()
            except queue.Empty:
                path = None
            if path is None and self._gate_open():
                row = self.outbox.claim_due()
                if row is not None:
                    self._guard(self._retry, row)
                    continue
            if path is None:
                try:
                    path, ready_at = self._ready.get(timeout=0.1)
                except queue.Empty:
                    continue
            try:
                self._guard(self._process, path, ready_at)
            finally:
                with self._inflight_lock:
                    self._inflight.discard(path)

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # one bad file must never kill a worker; the outbox and rescans retry it
            self.live.last_error = repr(exc)
            logging.getLogger("partcheck.agent").exception(
                "unexpected error", extra={"fields": {"args": args}}
            )

    def _process(self, path: str, ready_at: float) -> None:
        """Take a finished file: check it, hash it, record it, upload it."""
        name = os.path.basename(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._record_gone(path, "deleted before upload")
            return
        except OSError as exc:
            self._record(path, name, "failed", f"cannot stat: {exc.strerror or exc}")
            return
        prev = self.outbox.latest_for_path(path)
        identity = (st.st_size, st.st_mtime_ns)
        if prev is not None and (prev.size, prev.mtime_ns) == identity:
            if prev.state == "done":
                self._dispose(prev)
                return
            if prev.state == "duplicate":
                if prev.disposed is not None:
                    return  # its original was uploaded and this copy already handled (kept, archived)
                fate = self._original_fate(prev)
                if fate == "done":
                    self._dispose(prev)
                if fate != "lost":
                    return  # until its original is confirmed this file may hold the only copy: leave it
                self.outbox.forget(prev.id)  # its original will never be uploaded: take this file instead
                prev = None
            elif prev.state in ("pending", "uploading", "skipped"):
                return
        if stat.S_ISLNK(st.st_mode):
            self._record(path, name, "skipped", "symlink, not followed", st=st, prev=prev)
            return
        if not stat.S_ISREG(st.st_mode):
            self._record(path, name, "skipped", "not a regular file", st=st, prev=prev)
            return
        if st.st_size == 0:
            self._record(path, name, "skipped", "empty file (0 bytes)", st=st, prev=prev)
            return
        if st.st_size > self.s.max_file_bytes:
            self._record(
                path,
                name,
                "skipped",
                f"{st.st_size} bytes, over the limit of {self.s.max_file_bytes}",
                st=st,
                prev=prev,
            )
            return
        try:
            data = read_file(path)
        except FileNotFoundError:
            self._record_gone(path, "deleted before upload")
            return
        except PermissionError:
            if time.time() - st.st_mtime < self.s.open_warn_s:
                # Windows refuses reads of a file its writer still holds: a recent file gets more looks.
                self.tracker.scanned(path)
                return
            self._record(path, name, "failed", "unreadable: permission denied", st=st, prev=prev)
            return
        except OSError as exc:
            self._record(path, name, "failed", f"unreadable: {exc.strerror or exc}", st=st, prev=prev)
            return
        if len(data) != st.st_size:
            self.tracker.scanned(path)  # still changing; look again once it has settled
            return
        facts = sniff_image(data, self.s.formats)
        if facts is None:
            self._record(
                path,
                name,
                "skipped",
                f"not an image by content (accepted: {', '.join(self.s.formats)})",
                st=st,
                prev=prev,
            )
            return
        sha = hashlib.sha256(data).hexdigest()
        captured = facts.capture_time or datetime.fromtimestamp(st.st_mtime, UTC)
        for _ in range(3):
            original = self.outbox.active_by_sha(sha)
            if original is not None:
                row = self.outbox.add(
                    path=path,
                    name=name,
                    state="duplicate",
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    key=None,
                    duplicate_of=original.id,
                    reason=f"same content as {original.key}",
                )
                emit(
                    INFO, "duplicate content, not uploaded again", path=path, same_as=original.key, sha256=sha
                )
                self.metrics.files.labels("duplicate").inc()
                if original.state == "done":
                    self._dispose(row)
                return
            key = self._free_key(self._key_for(name, path, captured, sha), sha)
            try:
                row = self.outbox.add(
                    path=path,
                    name=name,
                    state="pending",
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha,
                    key=key,
                    capture_time=iso_utc(captured),
                    content_type=facts.content_type,
                    next_attempt=self._gate_until,
                    claim=self._gate_open(),
                )
                break
            except ConflictError:
                continue  # another worker recorded the same content or key a moment ago: decide again
        else:
            raise PartcheckError(f"could not record {path}: outbox conflicts kept happening")
        emit(DEBUG, "queued", path=path, key=key, sha256=sha, bytes=st.st_size)
        self.metrics.ready_delay.observe(time.monotonic() - ready_at)
        if row.state == "uploading":
            self._put(row, data)

    def _retry(self, row: Row) -> None:
        """A pending row whose time came: re-read the file, check it is the same content, upload."""
        with self._claimed(row):
            self._reread_and_put(row)

    def _reread_and_put(self, row: Row) -> None:
        try:
            data = read_file(row.path)
        except FileNotFoundError:
            self.outbox.finish(row.id, "gone", "deleted before upload")
            emit(ERROR, "file deleted before upload; nothing to send", path=row.path, key=row.key)
            self.metrics.files.labels("gone").inc()
            self._release_duplicates(row.id)
            return
        except OSError as exc:
            self._backoff(row, f"unreadable: {exc.strerror or exc}", gate=False)
            return
        sha = hashlib.sha256(data).hexdigest()
        if sha != row.sha256:
            self.outbox.finish(row.id, "skipped", "content changed before upload; taken again as a new file")
            emit(WARNING, "file changed before upload; taking it again", path=row.path, key=row.key)
            self.tracker.scanned(row.path)
            self._release_duplicates(row.id)
            return
        self._put(row, data)

    def _release_duplicates(self, row_id: int) -> None:
        """Duplicates of a row that will never be uploaded hold the only copy of its bytes: take them."""
        for dup in self.outbox.duplicates_of(row_id):
            self.outbox.forget(dup.id)
            self.tracker.scanned(dup.path)

    def _original_fate(self, dup: Row) -> str:
        """A duplicate's original: "done" (confirmed), "waiting" (to upload) or "lost" (never will be)."""
        original = None if dup.duplicate_of is None else self.outbox.get(dup.duplicate_of)
        if original is None or original.state not in ACTIVE_STATES:
            return "lost"
        return "done" if original.state == "done" else "waiting"

    @contextmanager
    def _claimed(self, row: Row) -> Iterator[None]:
        """Hand a claimed row back to pending if its upload ends in an unexpected error (never stuck)."""
        try:
            yield
        except Exception as exc:
            # Not an S3 error (those back off in _upload): wait the longest backoff so a bug cannot spin.
            self.outbox.release(row.id, time.time() + self.s.backoff_max_s, f"unexpected error: {exc!r}")
            raise

    def _put(self, row: Row, data: bytes) -> None:
        with self._claimed(row):
            self._upload(row, data)

    def _upload(self, row: Row, data: bytes) -> None:
        assert row.key is not None
        assert row.sha256 is not None
        assert row.capture_time is not None
        key = row.key
        self.live.add_uploading(1)
        started = time.monotonic()
        try:
            alternatives = [_with_suffix(row.key, row.sha256, 8), _with_suffix(row.key, row.sha256, 64)]
            while True:
                meta = object_metadata(
                    line=self.s.line,
                    camera=self.s.camera,
                    captured=datetime.fromisoformat(row.capture_time.replace("Z", "+00:00")),
                    sha256=row.sha256,
                    name=row.name,
                )
                try:
                    result = self.uploader.put(
                        key,
                        data,
                        sha256_hex=row.sha256,
                        metadata=meta,
                        content_type=row.content_type or "application/octet-stream",
                        sent_before=row.attempts > 1,
                    )
                except InvalidInput as exc:
                    self.outbox.finish(row.id, "failed", f"S3 refused it: {exc}")
                    emit(ERROR, "upload refused; not retrying", path=row.path, key=key, error=str(exc))
                    self.metrics.files.labels("failed").inc()
                    return
                except PartcheckError as exc:
                    self._backoff(row, str(exc), gate=True)
                    return
                if result.outcome is not Outcome.KEY_TAKEN:
                    break
                if not alternatives:
                    self.outbox.finish(row.id, "failed", "every candidate key holds other content in S3")
                    emit(ERROR, "no free key in S3; not retrying", path=row.path, key=key)
                    return
                new_key = alternatives.pop(0)
                emit(
                    WARNING,
                    "key holds other content in S3; using a hash-suffixed key",
                    path=row.path,
                    key=key,
                    new_key=new_key,
                )
                try:
                    self.outbox.set_key(row.id, new_key)
                except ConflictError:
                    continue
                key = new_key
            self.outbox.done(
                row.id, result.etag, None if result.outcome is Outcome.UPLOADED else result.outcome.value
            )
            with self._gate_lock:
                self._failures = 0
            self.metrics.s3_up.set(1)
            seconds = time.monotonic() - started
            self.metrics.upload_seconds.observe(seconds)
            self.metrics.files.labels("uploaded").inc()
            self.metrics.bytes.inc(len(data))
            self.live.note_done()
            emit(
                INFO,
                "uploaded",
                path=row.path,
                key=key,
                bytes=len(data),
                sha256=row.sha256,
                outcome=result.outcome.value,
                seconds=round(seconds, 3),
                attempts=row.attempts,
            )
        finally:
            self.live.add_uploading(-1)
        self._dispose(replace(row, state="done"))
        for dup in self.outbox.duplicates_of(row.id):
            self._dispose(dup)

    def _backoff(self, row: Row, error: str, *, gate: bool) -> None:
        """Retry later with exponential backoff and jitter; transient S3 errors pause every upload."""
        now = time.time()
        with self._gate_lock:
            if gate and now >= self._gate_until:
                self._failures += 1
            n = self._failures if gate else row.attempts
            exponent = min(max(0, n - 1), _MAX_BACKOFF_EXPONENT)
            delay = min(self.s.backoff_max_s, self.s.backoff_base_s * 2.0**exponent)
            delay = delay / 2 + random.uniform(0, delay / 2)
            if gate:
                self._gate_until = max(self._gate_until, now + delay)
                self.live.backing_off_until = self._gate_until
        self.outbox.retry_later(row.id, now + delay, error)
        self.live.last_error = error
        self.metrics.errors.labels("transient").inc()
        if gate:
            self.metrics.s3_up.set(0)
        emit(
            WARNING,
            "upload failed; will retry",
            path=row.path,
            key=row.key,
            error=error,
            attempt=row.attempts,
            retry_in_s=round(delay, 2),
        )

    def _gate_open(self) -> bool:
        return time.time() >= self._gate_until

    def _key_for(self, name: str, path: str, captured: datetime, sha: str) -> str:
        rel_dir = os.path.relpath(os.path.dirname(path), self.watch)
        return render_key(
            self.s.key_template,
            prefix=self.s.prefix,
            line=self.s.line,
            camera=self.s.camera,
            captured=captured,
            name=name,
            sha256=sha,
            subdir="" if rel_dir == "." else rel_dir.replace(os.sep, "/"),
        )

    def _free_key(self, key: str, sha: str) -> str:
        """The key, or a hash-suffixed one if other content already holds it (same day, same name)."""
        for length in (0, 8, 64):
            candidate = key if length == 0 else _with_suffix(key, sha, length)
            holder = self.outbox.active_by_key(candidate)
            if holder is None or holder.sha256 == sha:
                return candidate
        raise PartcheckError(f"no free key for {key}")

    # ---- outcomes ----------------------------------------------------------------------------------------

    def _record(
        self,
        path: str,
        name: str,
        state: str,
        reason: str,
        *,
        st: os.stat_result | None = None,
        prev: Row | None = None,
    ) -> None:
        """A terminal state with one clear log line (repeats of the same verdict on rescans stay quiet)."""
        size, mtime = (st.st_size, st.st_mtime_ns) if st else (None, None)
        if (
            prev is not None
            and prev.state == state
            and prev.reason == reason
            and (prev.size, prev.mtime_ns) == (size, mtime)
        ):
            return
        self.outbox.add(path=path, name=name, state=state, size=size, mtime_ns=mtime, reason=reason)
        if state == "skipped" and size is not None and mtime is not None:
            self._settled[path] = (size, mtime)
        emit(WARNING if state == "skipped" else ERROR, f"file {state}", path=path, reason=reason)
        self.metrics.files.labels(state).inc()

    def _record_gone(self, path: str, reason: str) -> None:
        prev = self.outbox.latest_for_path(path)
        if prev is not None and prev.state in ("done", "duplicate", "gone"):
            return
        self.outbox.add(path=path, name=os.path.basename(path), state="gone", reason=reason)
        emit(WARNING, "file gone before upload", path=path, reason=reason)
        self.metrics.files.labels("gone").inc()

    def _dispose(self, row: Row) -> None:
        if row.disposed is not None or row.size is None or row.mtime_ns is None or row.sha256 is None:
            return
        date = (row.capture_time or iso_utc(datetime.fromtimestamp(row.mtime_ns / 1e9, UTC)))[:10]
        try:
            how = self.disposer.dispose(row.path, (row.size, row.mtime_ns), date, row.sha256)
        except OSError as exc:
            emit(
                WARNING,
                "after-upload action failed; will retry at the next scan",
                path=row.path,
                action=self.s.after_upload,
                error=str(exc),
            )
            return
        if how is not None:
            self.outbox.disposed(row.id, how)
            if how == "kept":
                self._settled[row.path] = (row.size, row.mtime_ns)


def _with_suffix(key: str, sha: str, length: int) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/{suffixed_name(name, sha, length)}" if head else suffixed_name(name, sha, length)


def _has_close_events() -> bool:
    """Only inotify reports close-after-write; elsewhere stability decides."""
    from watchdog.observers import Observer

    return "Inotify" in getattr(Observer, "__name__", "")

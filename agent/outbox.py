"""The durable outbox: one SQLite row per file seen, so restarts, reboots and S3 outages lose nothing."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.files import is_utf8, raw_name

# pending -> uploading -> done; terminal otherwise: duplicate, skipped, failed, gone; waiting = still written.
ACTIVE_STATES = ("pending", "uploading", "done")
STATES = ("pending", "uploading", "done", "duplicate", "skipped", "failed", "gone", "waiting")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    key TEXT,
    capture_time TEXT,
    content_type TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    duplicate_of INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    uploaded_at REAL,
    etag TEXT,
    disposed TEXT
);
CREATE INDEX IF NOT EXISTS files_path ON files(path);
CREATE INDEX IF NOT EXISTS files_due ON files(state, next_attempt);
CREATE INDEX IF NOT EXISTS files_duplicate_of ON files(duplicate_of);
-- The same content is stored once, and one key holds one content: the database enforces both.
CREATE UNIQUE INDEX IF NOT EXISTS files_active_sha ON files(sha256)
    WHERE state IN ('pending', 'uploading', 'done');
CREATE UNIQUE INDEX IF NOT EXISTS files_active_key ON files(key)
    WHERE state IN ('pending', 'uploading', 'done');
"""


@dataclass(frozen=True)
class Row:
    """One file's record."""

    id: int
    path: str
    name: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    key: str | None
    capture_time: str | None
    content_type: str | None
    state: str
    reason: str | None
    duplicate_of: int | None
    attempts: int
    next_attempt: float
    last_error: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    uploaded_at: float | None
    etag: str | None
    disposed: str | None


def _to_db(value: Any) -> Any:
    """A value SQLite can store: a str that is not valid UTF-8 (a surrogate-escaped name) goes in as bytes."""
    if isinstance(value, str) and not is_utf8(value):
        # SQLite text must be UTF-8. The file system's own bytes (a BLOB, no schema change) round-trip
        # exactly through os.fsdecode, so lookups by path keep working and the row names the real file.
        return raw_name(value)
    return value


def _params(params: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_to_db(v) for v in params)


def _row(r: sqlite3.Row) -> Row:
    # Only values stored by _to_db are BLOBs: every column of this table is text or a number.
    values: dict[str, Any] = {k: os.fsdecode(v) if isinstance(v, bytes) else v for k, v in dict(r).items()}
    return Row(**values)


class ConflictError(Exception):
    """An insert broke the same-content or same-key rule (another worker got there first)."""


class Outbox:
    """Thread-safe access to the outbox database (one connection, WAL, short transactions)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        if read_only:
            self._db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            # WAL + NORMAL: a power cut may forget the last commits, which only repeats idempotent work
            # (an upload answered by PreconditionFailed, a rescan finding the file again), never loses a file.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        with self._lock:
            r = self._db.execute(sql, _params(params)).fetchone()
        return _row(r) if r else None

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, _params(params)).fetchall()]

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, _params(params)).rowcount

    def recover(self) -> int:
        """Return interrupted uploads to pending (the conditional PUT makes repeating them safe)."""
        return self._exec(
            "UPDATE files SET state='pending', next_attempt=0, updated_at=? WHERE state='uploading'",
            (time.time(),),
        )

    def get(self, row_id: int) -> Row | None:
        """One row by id."""
        return self._one("SELECT * FROM files WHERE id=?", (row_id,))

    def latest_for_path(self, path: str) -> Row | None:
        """The newest record of a path."""
        return self._one("SELECT * FROM files WHERE path=? ORDER BY id DESC LIMIT 1", (path,))

    def active_by_sha(self, sha256: str) -> Row | None:
        """The pending, uploading or done record holding this content."""
        return self._one(
            "SELECT * FROM files WHERE sha256=? AND state IN ('pending','uploading','done')", (sha256,)
        )

    def active_by_key(self, key: str) -> Row | None:
        """The pending, uploading or done record using this key."""
        return self._one(
            "SELECT * FROM files WHERE key=? AND state IN ('pending','uploading','done')", (key,)
        )

    def add(
        self,
        *,
        path: str,
        name: str,
        state: str,
        size: int | None = None,
        mtime_ns: int | None = None,
        sha256: str | None = None,
        key: str | None = None,
        capture_time: str | None = None,
        content_type: str | None = None,
        reason: str | None = None,
        duplicate_of: int | None = None,
        next_attempt: float = 0.0,
        claim: bool = False,
    ) -> Row:
        """Record a file (with `claim`, straight as uploading); ConflictError if content or key is active."""
        now = time.time()
        if claim:
            state = "uploading"
        with self._lock:
            # A newer record replaces a "still being written" note for the same path.
            self._db.execute("DELETE FROM files WHERE path=? AND state='waiting'", (_to_db(path),))
            try:
                r = self._db.execute(
                    "INSERT INTO files (path, name, size, mtime_ns, sha256, key, capture_time, content_type,"
                    " state, reason, duplicate_of, next_attempt, created_at, updated_at, attempts,"
                    " started_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING *",
                    (
                        _to_db(path),
                        _to_db(name),
                        size,
                        mtime_ns,
                        sha256,
                        key,
                        capture_time,
                        content_type,
                        state,
                        _to_db(reason),
                        duplicate_of,
                        next_attempt,
                        now,
                        now,
                        1 if claim else 0,
                        now if claim else None,
                    ),
                )
                inserted = r.fetchone()
                r.close()
            except sqlite3.IntegrityError as exc:
                raise ConflictError(str(exc)) from exc
        return _row(inserted)

    def note_waiting(self, path: str, name: str, reason: str) -> None:
        """Record that a file is still being written (shown by `status`), replaced once it is processed."""
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM files WHERE path=? AND state='waiting'", (_to_db(path),))
            self._db.execute(
                "INSERT INTO files (path, name, state, reason, created_at, updated_at)"
                " VALUES (?,?,'waiting',?,?,?)",
                _params((path, name, reason, now, now)),
            )

    def clear_waiting(self, path: str) -> None:
        """Drop a "still being written" note (the file vanished or was handed on)."""
        self._exec("DELETE FROM files WHERE path=? AND state='waiting'", (path,))

    def claim(self, row_id: int) -> Row | None:
        """Move one pending row to uploading, counting the attempt before it is made."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "UPDATE files SET state='uploading', attempts=attempts+1, started_at=COALESCE(started_at, ?),"
                " updated_at=? WHERE id=? AND state='pending' RETURNING *",
                (now, now, row_id),
            )
            r = cur.fetchone()
            cur.close()
        return _row(r) if r else None

    def claim_due(self, now: float | None = None) -> Row | None:
        """Claim the pending row whose retry time came first, if any is due."""
        now = time.time() if now is None else now
        with self._lock:
            r = self._db.execute(
                "SELECT id FROM files WHERE state='pending' AND next_attempt<=?"
                " ORDER BY next_attempt, id LIMIT 1",
                (now,),
            ).fetchone()
            return self.claim(int(r["id"])) if r else None

    def next_due(self) -> float | None:
        """When the earliest pending row becomes due."""
        with self._lock:
            r = self._db.execute("SELECT MIN(next_attempt) AS t FROM files WHERE state='pending'").fetchone()
        return None if r is None or r["t"] is None else float(r["t"])

    def retry_later(self, row_id: int, next_attempt: float, error: str) -> None:
        """Back to pending after a transient error."""
        self._exec(
            "UPDATE files SET state='pending', next_attempt=?, last_error=?, updated_at=? WHERE id=?",
            (next_attempt, error, time.time(), row_id),
        )

    def release(self, row_id: int, next_attempt: float, error: str) -> bool:
        """Back to pending if still uploading (its upload ended in an unexpected error); True if it was."""
        return (
            self._exec(
                "UPDATE files SET state='pending', next_attempt=?, last_error=?, updated_at=?"
                " WHERE id=? AND state='uploading'",
                (next_attempt, error, time.time(), row_id),
            )
            > 0
        )

    def done(self, row_id: int, etag: str | None, reason: str | None = None) -> None:
        """S3 confirmed the object."""
        now = time.time()
        self._exec(
            "UPDATE files SET state='done', etag=?, reason=?, uploaded_at=?, updated_at=? WHERE id=?",
            (etag, reason, now, now, row_id),
        )

    def finish(self, row_id: int, state: str, reason: str) -> None:
        """End a row in a terminal state other than done (failed, gone, skipped)."""
        self._exec(
            "UPDATE files SET state=?, reason=?, last_error=COALESCE(?, last_error), updated_at=? WHERE id=?",
            (state, reason, reason if state == "failed" else None, time.time(), row_id),
        )

    def set_key(self, row_id: int, key: str) -> None:
        """Move a row to another key (the first one was taken by other content)."""
        try:
            self._exec("UPDATE files SET key=?, updated_at=? WHERE id=?", (key, time.time(), row_id))
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc

    def forget(self, row_id: int) -> None:
        """Drop a row whose decision no longer holds (a duplicate whose original vanished)."""
        self._exec("DELETE FROM files WHERE id=?", (row_id,))

    def disposed(self, row_id: int, how: str) -> None:
        """Record what the after-upload action did with the file."""
        self._exec("UPDATE files SET disposed=?, updated_at=? WHERE id=?", (how, time.time(), row_id))

    def duplicates_of(self, row_id: int) -> list[Row]:
        """Duplicate rows waiting for their original's upload before their own after-upload action."""
        return self._all(
            "SELECT * FROM files WHERE duplicate_of=? AND state='duplicate' AND disposed IS NULL", (row_id,)
        )

    def counts(self, states: tuple[str, ...] | None = None) -> dict[str, int]:
        """Rows per state (all states, or only those asked for: cheap for the small ones via the index)."""
        wanted = states or STATES
        with self._lock:
            if states:
                marks = ",".join("?" * len(states))
                rows = self._db.execute(
                    f"SELECT state, COUNT(*) AS n FROM files WHERE state IN ({marks}) GROUP BY state",  # noqa: S608
                    states,
                ).fetchall()
            else:
                rows = self._db.execute("SELECT state, COUNT(*) AS n FROM files GROUP BY state").fetchall()
        out = dict.fromkeys(wanted, 0)
        out.update({r["state"]: int(r["n"]) for r in rows})
        return out

    def prune(self, older_than: float, still_needed: Callable[[Row], bool], batch: int = 500) -> int:
        """Delete settled rows untouched since `older_than` unless `still_needed(row)` says keep."""
        removed, last_id = 0, 0
        while True:
            rows = self._all(
                "SELECT * FROM files WHERE id>? AND updated_at<? AND ("
                " state IN ('skipped', 'gone', 'failed')"
                " OR (state IN ('done', 'duplicate') AND disposed IS NOT NULL))"
                # An original stays while a duplicate still waits for it: its fate decides the duplicate's.
                " AND NOT EXISTS (SELECT 1 FROM files d WHERE d.duplicate_of=files.id"
                " AND d.state='duplicate' AND d.disposed IS NULL) ORDER BY id LIMIT ?",
                (last_id, older_than, batch),
            )
            if not rows:
                return removed
            last_id = rows[-1].id
            doomed = [(r.id,) for r in rows if not still_needed(r)]
            with self._lock:
                self._db.executemany("DELETE FROM files WHERE id=?", doomed)
            removed += len(doomed)

    def oldest_pending(self) -> Row | None:
        """The pending or uploading row waiting longest."""
        return self._one(
            "SELECT * FROM files WHERE state IN ('pending','uploading') ORDER BY created_at LIMIT 1"
        )

    def last_error(self) -> Row | None:
        """The most recently updated row carrying an error."""
        return self._one("SELECT * FROM files WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1")

    def rows(self, state: str | None = None) -> list[Row]:
        """Every row (of one state), oldest first."""
        if state:
            return self._all("SELECT * FROM files WHERE state=? ORDER BY id", (state,))
        return self._all("SELECT * FROM files ORDER BY id")

    def uploaded_since(self, since: float) -> tuple[int, int]:
        """Files and bytes uploaded since a time."""
        with self._lock:
            r = self._db.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS b FROM files"
                " WHERE state='done' AND uploaded_at>=?",
                (since,),
            ).fetchone()
        return int(r["n"]), int(r["b"])

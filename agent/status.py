"""What the agent is doing: `partcheck agent status` from the outbox, and the live status line."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.files import printable
from agent.outbox import Outbox

if TYPE_CHECKING:
    from agent.service import Agent


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _shown(text: str | None) -> str | None:
    # A file name that is not valid UTF-8 must not stop `status` from printing (stdout is strict UTF-8).
    return None if text is None else printable(text)


def summary(outbox: Outbox, now: float | None = None) -> dict[str, Any]:
    """Counts per state, the oldest file still waiting, the last error and the last hour's uploads."""
    now = time.time() if now is None else now
    oldest = outbox.oldest_pending()
    err = outbox.last_error()
    files, size = outbox.uploaded_since(now - 3600)
    return {
        "outbox": str(outbox.path),
        "counts": outbox.counts(),
        "oldest_pending": None
        if oldest is None
        else {
            "path": printable(oldest.path),
            "key": oldest.key,
            "since": _when(oldest.created_at),
            "age_s": round(now - oldest.created_at, 1),
            "attempts": oldest.attempts,
            "last_error": _shown(oldest.last_error),
        },
        "last_error": None
        if err is None
        else {
            "path": printable(err.path),
            "state": err.state,
            "error": _shown(err.last_error),
            "at": _when(err.updated_at),
        },
        "uploaded_last_hour": {"files": files, "bytes": size},
    }


def bucket_note(problem: str) -> str:
    """The line `status` prints when the bucket setting is not a bucket yet."""
    return f"bucket not configured yet, the agent will not start: {problem}"


def render_summary(doc: dict[str, Any]) -> str:
    """The summary as a few lines of text."""
    counts = doc["counts"]
    lines = [f"outbox {doc['outbox']}", "  " + "  ".join(f"{k} {v}" for k, v in counts.items())]
    bucket = doc.get("bucket")
    if bucket and not bucket["configured"]:
        lines.append(f"  {bucket_note(bucket['problem'])}")
    hour = doc["uploaded_last_hour"]
    lines.append(f"  uploaded in the last hour: {hour['files']} files, {hour['bytes'] / 1e6:.1f} MB")
    oldest = doc["oldest_pending"]
    if oldest:
        lines.append(
            f"  oldest pending: {oldest['path']} since {oldest['since']} ({oldest['age_s']:.0f} s,"
            f" {oldest['attempts']} attempts)"
        )
    else:
        lines.append("  nothing pending")
    err = doc["last_error"]
    if err:
        lines.append(f"  last error: {err['error']} ({err['path']}, {err['state']}, {err['at']})")
    return "\n".join(lines)


def status_line(agent: Agent) -> str:
    """One line for the terminal: queued, uploading, done, failed, rate, and any trouble."""
    c = agent.live.counts
    queued = len(agent.tracker) + c.get("pending", 0)
    parts = [
        f"queued {queued}",
        f"uploading {agent.live.uploading}",
        f"done {c.get('done', 0)}",
        f"failed {c.get('failed', 0)}",
        f"skipped {c.get('skipped', 0)}",
        f"duplicate {c.get('duplicate', 0)}",
        f"{agent.live.rate():.1f} files/s",
    ]
    wait = agent.live.backing_off_until - time.time()
    if wait > 0:
        parts.append(f"S3 unavailable, retry in {wait:.0f} s")
    if not agent.live.watch_present:
        parts.append("watched folder missing")
    return " | ".join(parts)

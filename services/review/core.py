"""Pure core of the review service: ids, queue order, claim rules, decision keys, metadata and audit shapes.

Nothing here touches AWS, the environment or the clock: callers pass `now` in.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import posixpath
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, unquote

from partcheck.errors import InvalidInput, InvalidKey
from partcheck.layout import (
    AUDIT_PREFIX,
    DECISIONS_PREFIX,
    HumanLabel,
    Route,
    cut_escaped,
    decision_marker_key,
    fit_metadata,
    human_decided_key,
    relative_key,
    validate_relative_key,
)

CLAIMS_PREFIX = "claims/"
MAX_ID_CHARS = 1500
MAX_NOTE_CHARS = 500
# S3 caps user metadata at 2 KB in all; the note is cut in metadata (the audit record keeps it whole).
_META_NOTE_MAX = 600
_META_SAFE = " :/-_.,=+@"
_LIMITER_SWEEP = 10_000

Action = Literal["decision", "undo"]
ModelLabel = Literal["ok", "defect", "unclear"]


def now_utc() -> datetime:
    """The current time, timezone-aware (adapters call it; the core takes `now` as a parameter)."""
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: object) -> datetime | None:
    """A timezone-aware datetime from ISO 8601 text, or None when absent, unreadable or not text."""
    # Cursors, markers and audit records are JSON from outside this process: anything may be there.
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# --- ids -------------------------------------------------------------------------------------------


def encode_id(unclear_key: str) -> str:
    """Opaque URL-safe id of an image under unclear/ (its relative key, base64url without padding)."""
    rel = relative_key(Route.UNCLEAR, unclear_key)
    return base64.urlsafe_b64encode(rel.encode("utf-8")).decode("ascii").rstrip("=")


def decode_id(item_id: str) -> str:
    """The unclear/ key an id stands for; InvalidKey for anything that is not a safe relative key."""
    if not item_id or len(item_id) > MAX_ID_CHARS:
        raise InvalidKey("item id is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(item_id + "=" * (-len(item_id) % 4))
        rel = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey(f"item id {item_id[:40]!r} is not valid") from exc
    # Reject non-canonical encodings so one key has exactly one id.
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != item_id:
        raise InvalidKey(f"item id {item_id[:40]!r} is not valid")
    return Route.UNCLEAR.prefix + validate_relative_key(rel)


# --- queue -----------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Listed:
    """One object of the unclear/ listing, ordered oldest first."""

    last_modified: datetime
    key: str
    etag: str = ""


def order_queue(entries: Iterable[Listed]) -> list[Listed]:
    """Oldest first; the key breaks ties so the order is stable across listings."""
    return sorted(entries, key=lambda e: (e.last_modified, e.key))


def encode_cursor(entry: Listed) -> str:
    """Opaque cursor pointing just after `entry`."""
    raw = json.dumps([iso(entry.last_modified), entry.key], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Position a cursor stands for; InvalidInput for a malformed one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("cursor is not valid") from exc
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidInput("cursor is not valid")
    t, key = parse_iso(value[0]), value[1]
    if t is None or not isinstance(key, str):
        raise InvalidInput("cursor is not valid")
    return t, key


def page_after(ordered: Sequence[Listed], cursor: str | None, limit: int) -> tuple[list[Listed], str | None]:
    """One page of an ordered queue after `cursor`, and the next cursor (None at the end).

    The cursor is a position, not an index, so items decided meanwhile do not shift later pages.
    """
    start = 0
    if cursor:
        t, key = decode_cursor(cursor)
        start = bisect.bisect_right([(e.last_modified, e.key) for e in ordered], (t, key))
    page = list(ordered[start : start + limit])
    more = start + limit < len(ordered)
    return page, (encode_cursor(page[-1]) if page and more else None)


# --- metadata --------------------------------------------------------------------------------------


def _float(value: str | None, default: float = 0.0) -> float:
    try:
        f = float(value) if value is not None else default
    except ValueError:
        return default
    return min(1.0, max(0.0, f)) if f == f else default


def meta_value(meta: Mapping[str, str], name: str) -> str | None:
    """A router metadata value, URL-unquoted, or None when absent or empty."""
    value = meta.get(name)
    return unquote(value) if value else None


def item_fields(key: str, meta: Mapping[str, str], last_modified: datetime) -> dict[str, Any]:
    """The Item fields the router's metadata yields (claims are added by the caller)."""
    label = meta_value(meta, "model-label")
    uploaded = parse_iso(meta_value(meta, "uploaded-at")) or last_modified
    return {
        "id": encode_id(key),
        "key": key,
        "name": posixpath.basename(key),
        "model_label": label if label in ("ok", "defect", "unclear") else "unclear",
        "confidence": _float(meta_value(meta, "confidence")),
        "p_defect": _float(meta_value(meta, "p-defect")),
        "model_version": meta_value(meta, "model-version") or "",
        "reason": meta_value(meta, "reason"),
        "line": meta_value(meta, "line"),
        "camera": meta_value(meta, "camera"),
        "uploaded_at": iso(uploaded),
    }


def _q(value: str) -> str:
    return quote(value, safe=_META_SAFE)


def decided_metadata(
    original: Mapping[str, str], inspector: str, decided_at: datetime, label: HumanLabel, note: str | None
) -> dict[str, str]:
    """S3 metadata of a human_decided/ object: who decided what, when, and what the model had said."""
    meta = {
        "inspector": _q(inspector),
        "decided-at": iso(decided_at),
        "label": label,
        "model-label": original.get("model-label", ""),
        "confidence": original.get("confidence", ""),
        "p-defect": original.get("p-defect", ""),
        "model-name": original.get("model-name", ""),
        "model-version": original.get("model-version", ""),
    }
    for name in ("source-key", "uploaded-at", "line", "camera"):
        if original.get(name):
            meta[name] = original[name]
    if note:
        # Cut on a whole escape and character: `%C3%A9` cut to `%C3%A` would not decode back.
        meta["note"] = cut_escaped(_q(note), _META_NOTE_MAX)
    return {k: v for k, v in fit_metadata(meta, ("note",)).items() if v}


def validate_note(note: str | None) -> str | None:
    """A note with surrounding space trimmed; InvalidInput when over 500 characters or binary."""
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note is longer than {MAX_NOTE_CHARS} characters")
    if any(ord(c) < 0x20 and c not in "\n\t" for c in note):
        raise InvalidInput("note contains control characters")
    return note or None


# --- claims ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Who holds an item and until when."""

    inspector: str
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        """Whether the claim still holds at `now`."""
        return self.expires_at > now

    def to_json(self) -> bytes:
        """Serialised claim object."""
        return json.dumps({"inspector": self.inspector, "expires_at": iso(self.expires_at)}).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes) -> Claim | None:
        """Parse a claim object; None for garbage (treated as no claim)."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Claim | None:
        """A claim from parsed JSON; None for garbage (treated as no claim)."""
        if not isinstance(data, dict):
            return None
        try:
            expires = parse_iso(data["expires_at"])
            inspector = data["inspector"]
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if expires is None or not isinstance(inspector, str):
            return None
        return cls(inspector, expires)


ClaimOutcome = Literal["grant", "extend", "conflict"]


def claim_outcome(existing: Claim | None, inspector: str, now: datetime) -> ClaimOutcome:
    """Claim rules: free or expired items are granted, one's own extended, others' live claims refused."""
    if existing is None or not existing.live(now):
        return "grant"
    return "extend" if existing.inspector == inspector else "conflict"


def claim_conflict(claim: Claim) -> str:
    """The 409 message for a live claim held by someone else."""
    return f"claimed by {claim.inspector} until {claim.expires_at.astimezone(UTC):%H:%M:%S} UTC"


def claim_key(unclear_key: str) -> str:
    """Where the claim of an unclear image is stored."""
    return f"{CLAIMS_PREFIX}{relative_key(Route.UNCLEAR, unclear_key)}.json"


# --- decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionKeys:
    """Every key one decision touches."""

    unclear_key: str
    decided_key: str
    marker_key: str
    claim_key: str


def decision_keys(unclear_key: str, label: HumanLabel) -> DecisionKeys:
    """Keys of a decision on an unclear image; both labels share one marker so only one decision can win."""
    return DecisionKeys(
        unclear_key,
        human_decided_key(unclear_key, label),
        decision_marker_key(unclear_key),
        claim_key(unclear_key),
    )


def marker_record(
    keys: DecisionKeys,
    label: HumanLabel,
    inspector: str,
    decided_at: datetime,
    note: str | None,
    original_meta: Mapping[str, str],
    content_type: str | None,
    audit_key: str,
) -> dict[str, Any]:
    """The decision marker: enough to explain a 409 and to undo the decision exactly."""
    return {
        "key": keys.unclear_key,
        "decided_key": keys.decided_key,
        "label": label,
        "inspector": inspector,
        "decided_at": iso(decided_at),
        "note": note,
        "original_metadata": dict(original_meta),
        "content_type": content_type,
        "audit_key": audit_key,
    }


def marked_key(marker_key: str) -> str | None:
    """The unclear/ key a decision marker stands for (the inverse of `decision_marker_key`), or None."""
    if not marker_key.startswith(DECISIONS_PREFIX) or not marker_key.endswith(".json"):
        return None
    return Route.UNCLEAR.prefix + marker_key[len(DECISIONS_PREFIX) : -len(".json")]


def undo_intent(inspector: str, at: datetime, audit_key: str) -> dict[str, str]:
    """What the decision marker records of an undo before it moves anything."""
    return {"by": inspector, "at": iso(at), "audit_key": audit_key}


def parse_undo_intent(value: object) -> tuple[str, datetime, str] | None:
    """(inspector, time, audit key) of a marker's undo, or None when it names none (or a malformed one)."""
    if not isinstance(value, dict):
        return None
    by, at, key = value.get("by"), value.get("at"), value.get("audit_key")
    if not (isinstance(by, str) and by and isinstance(at, str) and isinstance(key, str)):
        return None
    when = parse_iso(at)
    if when is None or not key.startswith(AUDIT_PREFIX) or audit_time(key) is None:
        return None
    return by, when, key


def already_decided(marker: Mapping[str, Any] | None) -> str:
    """The 409/404 message for an image someone already decided."""
    if not marker:
        return "already decided"
    return f"already decided by {marker.get('inspector', 'someone')} as {marker.get('label', '?')}"


def undo_refusal(last: Mapping[str, Any] | None, now: datetime, undo_seconds: int) -> str | None:
    """Why an undo is refused, or None when the inspector's last action is a decision within the window."""
    if not last or last.get("action") != "decision":
        return "nothing to undo"
    decided = parse_iso(last.get("decided_at"))
    if decided is None:
        return "nothing to undo"
    if now - decided > timedelta(seconds=undo_seconds):
        return f"the undo window of {undo_seconds} s has passed"
    return None


# --- audit -----------------------------------------------------------------------------------------

_STAMP = "%Y%m%dT%H%M%S.%fZ"


def audit_key(at: datetime, uid: str) -> str:
    """`audit/YYYY/MM/DD/<timestamp>-<uuid>.json`; the timestamp sorts lexically by time."""
    at = at.astimezone(UTC)
    return f"{AUDIT_PREFIX}{at:%Y/%m/%d}/{at.strftime(_STAMP)}-{uid}.json"


def audit_day_prefix(day: datetime) -> str:
    """Listing prefix of one UTC day of audit records."""
    return f"{AUDIT_PREFIX}{day.astimezone(UTC):%Y/%m/%d}/"


def audit_time(key: str) -> datetime | None:
    """The time encoded in an audit key, or None for a key not written by this service."""
    name = posixpath.basename(key)
    try:
        return datetime.strptime(name.split("-", 1)[0], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def audit_record(action: Action, marker: Mapping[str, Any], at: datetime, by: str) -> dict[str, Any]:
    """One audit log entry for a decision or its undo, built from the decision marker."""
    meta = marker.get("original_metadata") or {}
    confidence = meta_value(meta, "confidence")
    return {
        "action": action,
        "at": iso(at),
        "inspector": by,
        "key": marker["key"],
        "id": encode_id(marker["key"]),
        "decided_key": marker["decided_key"],
        "label": marker["label"],
        "note": marker.get("note"),
        "decided_at": marker["decided_at"],
        "model_label": meta_value(meta, "model-label"),
        "confidence": _float(confidence) if confidence is not None else None,
        "p_defect": _float(meta_value(meta, "p-defect")) if meta.get("p-defect") else None,
        "model_name": meta_value(meta, "model-name"),
        "model_version": meta_value(meta, "model-version"),
        "source_key": meta_value(meta, "source-key"),
        "line": meta_value(meta, "line"),
        "camera": meta_value(meta, "camera"),
    }


def history_matches(
    record: Mapping[str, Any], inspector: str | None, label: str | None, since: datetime | None
) -> bool:
    """Whether an audit record passes the history filters."""
    if inspector and record.get("inspector") != inspector:
        return False
    if label and record.get("label") != label:
        return False
    at = parse_iso(record.get("at"))
    return not (since and (at is None or at < since))


# --- stats -----------------------------------------------------------------------------------------


def hourly_throughput(decision_times: Iterable[datetime], now: datetime) -> list[dict[str, Any]]:
    """Decisions per hour for the last 24 hours, oldest hour first, always 24 entries."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [top - timedelta(hours=23 - i) for i in range(24)]
    counts = dict.fromkeys(hours, 0)
    for t in decision_times:
        h = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if h in counts:
            counts[h] += 1
    return [{"hour": iso(h), "decisions": counts[h]} for h in hours]


def rates(counts: Mapping[str, int], human_defect: int) -> tuple[float, float]:
    """(defect rate, unclear rate) over every image the pipeline has sorted.

    Human-decided images count as unclear (the model could not decide them) and, when judged
    defective, as defects; rejected images count in the denominator only.
    """
    total = sum(counts.get(r.value, 0) for r in Route)
    if total == 0:
        return 0.0, 0.0
    defects = counts.get(Route.DEFECT.value, 0) + human_defect
    unclear = counts.get(Route.UNCLEAR.value, 0) + counts.get(Route.HUMAN_DECIDED.value, 0)
    return defects / total, unclear / total


def human_label(decided_key: str) -> HumanLabel | None:
    """The label encoded in a human_decided/ name (`ok_...` or `defect_...`)."""
    name = posixpath.basename(decided_key)
    if name.startswith("ok_"):
        return "ok"
    if name.startswith("defect_"):
        return "defect"
    return None


# --- login rate limit ------------------------------------------------------------------------------


class LoginLimiter:
    """Failed logins per key (username, client address) in a sliding window; thread-safe, clock passed in."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}
        self._next_sweep = 0.0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _wait(self, keys: Iterable[str], now: float) -> int | None:
        wait = 0.0
        for key in keys:
            q = self._prune(key, now)
            if len(q) >= self.max_failures:
                wait = max(wait, q[0] + self.window_s - now)
            if not q:
                self._failures.pop(key, None)
        return max(1, int(wait + 0.999)) if wait > 0 else None

    def _append(self, keys: Iterable[str], now: float) -> None:
        if len(self._failures) > _LIMITER_SWEEP and now >= self._next_sweep:
            # Names sprayed once are never checked again; sweep them (at most once per window)
            # so memory stays bounded without scanning on every attempt.
            self._next_sweep = now + self.window_s
            for stale in [k for k, q in self._failures.items() if not q or q[-1] <= now - self.window_s]:
                del self._failures[stale]
        for key in keys:
            self._prune(key, now).append(now)

    def retry_after(self, keys: Iterable[str], now: float) -> int | None:
        """Seconds to wait when any key is over the limit, else None."""
        with self._lock:
            return self._wait(keys, now)

    def begin(self, keys: Iterable[str], now: float, block_s: float = 3.0) -> int | None:
        """Admit one attempt, or return the seconds to wait when a key is over the limit.

        An attempt in flight counts towards the limit until it ends (`end`): parallel guesses cannot all
        pass a check that none of them has failed yet. Rather than being refused, an attempt that would
        only pass the limit with those in flight waits for them (at most `block_s`, then 1 s to wait), so
        inspectors logging in at once behind one address are served, one check after another.
        """
        keys = list(keys)
        deadline = time.monotonic() + block_s
        with self._cond:
            while True:
                wait = self._wait(keys, now)
                if wait is not None:
                    return wait
                held = (len(self._failures.get(k, ())) + self._in_flight.get(k, 0) for k in keys)
                if all(n < self.max_failures for n in held):
                    for k in keys:
                        self._in_flight[k] = self._in_flight.get(k, 0) + 1
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 1
                self._cond.wait(remaining)

    def end(self, keys: Iterable[str], now: float, failed: bool) -> None:
        """An admitted attempt is over; a failed one counts (one the server could not check does not)."""
        keys = list(keys)
        with self._cond:
            for k in keys:
                left = self._in_flight.get(k, 0) - 1
                if left > 0:
                    self._in_flight[k] = left
                else:
                    self._in_flight.pop(k, None)
            if failed:
                self._append(keys, now)
            self._cond.notify_all()

    def succeed(self, key: str) -> None:
        """Forget a key's failures after a successful login."""
        with self._lock:
            self._failures.pop(key, None)

"""The review service's S3 adapter: queue index, claims, decisions, undo, audit log and stats.

Everything shared between app instances lives in the prediction bucket (claims/, decisions/, undo/,
audit/); what this process caches (listings, metadata per ETag, audit records) is only a speed-up.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from partcheck.errors import AlreadyExists, InvalidKey, NotFound, PartcheckError, StorageUnavailable
from partcheck.layout import HumanLabel, Route, relative_key
from partcheck.storage import ObjectInfo, ObjectStore
from services.review import core
from services.review.core import Claim, Listed

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_META_CACHE = 50_000
_MAX_AUDIT_CACHE = 100_000
_CLAIMS_TTL_S = 1.0
_PREFETCH = 10
_STALE_CLAIM = timedelta(minutes=10)
_JSON = "application/json"


class ConflictError(PartcheckError):
    """The request lost to another inspector (claim or decision) or has nothing to act on: HTTP 409."""


class Gone(NotFound):
    """The item is no longer waiting in unclear/; the message says what became of it."""


@dataclass(frozen=True)
class Decision:
    """A decision that took effect."""

    unclear_key: str
    label: HumanLabel
    decided_key: str
    decided_by: str
    decided_at: datetime
    undo_until: datetime


@dataclass(frozen=True)
class Image:
    """Image bytes to send to the browser."""

    body: bytes
    content_type: str
    etag: str


def _listing(
    store: ObjectStore, bucket: str, prefix: str, start_after: str | None = None
) -> list[ObjectInfo]:
    """A whole listing; a missing bucket is a configuration fault (503), not a missing item (404)."""
    try:
        return list(store.list(bucket, prefix, start_after))
    except NotFound as exc:
        raise StorageUnavailable(f"bucket {bucket} does not exist or cannot be listed ({exc})") from exc


def _sniff(body: bytes) -> str | None:
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"BM"):
        return "image/bmp"
    if body[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


class Refreshing(Generic[T]):
    """A value recomputed in the background once older than its maximum age; readers never wait for a
    refresh except the very first one (stale-while-revalidate).

    The maximum age is at least `DUTY` times the last computation's duration, so an expensive listing
    (10,000 keys from a slow endpoint) never keeps the storage busy more than a tenth of the time.
    """

    DUTY = 10.0

    def __init__(self, compute: Callable[[], T], max_age_s: float, executor: ThreadPoolExecutor) -> None:
        self._compute = compute
        self.max_age_s = max_age_s
        self._executor = executor
        self._value: T | None = None
        self._at = 0.0
        self._took = 0.0
        self._pending: Future[None] | None = None
        self._lock = threading.Lock()

    def _timed(self) -> T:
        started = time.monotonic()
        value = self._compute()
        with self._lock:
            self._took = time.monotonic() - started
        return value

    def _run(self) -> None:
        try:
            value = self._timed()
        except PartcheckError as exc:
            log.warning("background refresh failed: %s", exc)
            return
        with self._lock:
            self._value, self._at = value, time.monotonic()

    @property
    def effective_max_age_s(self) -> float:
        """How old the value may grow before a refresh starts."""
        return max(self.max_age_s, self.DUTY * self._took)

    def get(self) -> T:
        """The current value, computing it now only if there is none yet."""
        with self._lock:
            value, at = self._value, self._at
            stale = value is not None and time.monotonic() - at > self.effective_max_age_s
            if stale and (self._pending is None or self._pending.done()):
                # While shutting down the executor refuses work; the current value will do.
                with contextlib.suppress(RuntimeError):
                    self._pending = self._executor.submit(self._run)
        if value is None:
            computed = self._timed()
            with self._lock:
                self._value, self._at = computed, time.monotonic()
            return computed
        return value


class QueueIndex:
    """The unclear/ listing, ordered oldest first, re-listed in the background; this process's own
    decisions and undos show at once, also over a listing that was already under way."""

    def __init__(
        self, store: ObjectStore, bucket: str, max_age_s: float, executor: ThreadPoolExecutor
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._lock = threading.Lock()
        self._seq = 0
        self._changes: list[tuple[int, str, Listed | None]] = []
        self._cached: Refreshing[tuple[int, list[Listed]]] = Refreshing(self._list, max_age_s, executor)

    def _list(self) -> tuple[int, list[Listed]]:
        with self._lock:
            started = self._seq
        now = datetime.now(UTC)
        listed = [
            Listed(o.last_modified or now, o.key, o.etag)
            for o in _listing(self._store, self._bucket, Route.UNCLEAR.prefix)
        ]
        return started, core.order_queue(listed)

    def entries(self) -> list[Listed]:
        """Every waiting image, oldest first."""
        started, ordered = self._cached.get()
        with self._lock:
            # Changes older than the listing are in it already; the newer ones are laid over it.
            self._changes = [c for c in self._changes if c[0] > started]
            pending = {key: entry for _, key, entry in self._changes}
        if not pending:
            return ordered
        out = [e for e in ordered if e.key not in pending]
        for entry in pending.values():
            if entry is not None:
                bisect.insort(out, entry)
        return out

    def _change(self, key: str, entry: Listed | None) -> None:
        with self._lock:
            self._seq += 1
            self._changes.append((self._seq, key, entry))

    def removed(self, key: str) -> None:
        """This process moved `key` out of unclear/."""
        self._change(key, None)

    def restored(self, entry: Listed) -> None:
        """This process put `entry` back into unclear/."""
        self._change(entry.key, entry)


class ReviewStore:
    """Review operations over one prediction bucket (and an audit bucket, possibly the same)."""

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        audit_bucket: str,
        *,
        queue_max_age_s: float = 5.0,
        stats_max_age_s: float = 10.0,
        max_image_bytes: int = 25 * 1024 * 1024,
        workers: int = 8,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.audit_bucket = audit_bucket
        self.max_image_bytes = max_image_bytes
        # boto3's default pool holds 10 connections; more workers would only queue on it.
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="review-s3")
        self.index = QueueIndex(store, bucket, queue_max_age_s, self.executor)
        self._meta: dict[tuple[str, str], ObjectInfo] = {}
        self._audit: dict[str, dict[str, Any]] = {}
        self._claim_seq = 0
        self._claim_changes: list[tuple[int, str, Claim | None]] = []
        self._claims: Refreshing[tuple[int, dict[str, Claim]]] = Refreshing(
            self._list_claims, _CLAIMS_TTL_S, self.executor
        )
        self._claim_objs: dict[tuple[str, str], Claim | None] = {}
        self._lock = threading.Lock()
        self.stats_cache: Refreshing[dict[str, Any]] = Refreshing(
            self._compute_stats, stats_max_age_s, self.executor
        )

    def close(self) -> None:
        """Stop the worker threads."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- small helpers -----------------------------------------------------------------------------

    def _get_json(self, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            obj = self.store.get(bucket, key, max_bytes=256 * 1024)
        except NotFound:
            return None
        try:
            data = json.loads(obj.body)
        except ValueError:
            log.warning("s3://%s/%s is not JSON; ignored", bucket, key)
            return None
        return (data, obj.info.etag) if isinstance(data, dict) else None

    def _put_json(self, bucket: str, key: str, data: dict[str, Any], **kwargs: Any) -> str:
        return self.store.put(
            bucket, key, json.dumps(data, ensure_ascii=False).encode("utf-8"), content_type=_JSON, **kwargs
        )

    def _head_cached(self, entry: Listed) -> ObjectInfo | None:
        with self._lock:
            info = self._meta.get((entry.key, entry.etag))
        if info is not None:
            return info
        info = self.store.head(self.bucket, entry.key)
        if info is not None:
            with self._lock:
                if len(self._meta) > _MAX_META_CACHE:
                    self._meta.clear()
                self._meta[(info.key, info.etag)] = info
        return info

    def marker(self, unclear_key: str) -> dict[str, Any] | None:
        """The decision marker of an image, if someone decided it."""
        found = self._get_json(self.bucket, core.decision_keys(unclear_key, "ok").marker_key)
        return found[0] if found else None

    def _gone(self, unclear_key: str) -> Gone:
        marker = self.marker(unclear_key)
        if marker:
            return Gone(f"not waiting in unclear/ any more: {core.already_decided(marker)}")
        return Gone(f"no image {unclear_key} in unclear/")

    # --- queue and items ---------------------------------------------------------------------------

    def _list_claims(self) -> tuple[int, dict[str, Claim]]:
        with self._lock:
            started = self._claim_seq
        out: dict[str, Claim] = {}
        for o in _listing(self.store, self.bucket, core.CLAIMS_PREFIX):
            with self._lock:
                known = (o.key, o.etag) in self._claim_objs
                claim = self._claim_objs.get((o.key, o.etag))
            if not known:
                found = self._get_json(self.bucket, o.key)
                claim = Claim.from_dict(found[0]) if found else None
                with self._lock:
                    if len(self._claim_objs) > _MAX_META_CACHE:
                        self._claim_objs.clear()
                    self._claim_objs[(o.key, o.etag)] = claim
            if claim is not None and claim.expires_at < datetime.now(UTC) - _STALE_CLAIM:
                # Abandoned long ago; removing it keeps this listing short. A concurrent takeover's
                # If-Match then finds no object and retries as a fresh claim.
                self._quietly(self.store.delete, self.bucket, o.key)
                continue
            if claim is not None and o.key.endswith(".json"):
                out[Route.UNCLEAR.prefix + o.key[len(core.CLAIMS_PREFIX) : -len(".json")]] = claim
        return started, out

    def claims(self, now: datetime) -> dict[str, Claim]:
        """Live claims by unclear key, from a claims/ listing refreshed in the background every second,
        with this process's own claims and releases laid over it (as the queue index does)."""
        started, listed = self._claims.get()
        with self._lock:
            self._claim_changes = [c for c in self._claim_changes if c[0] > started]
            pending = {key: claim for _, key, claim in self._claim_changes}
        merged: dict[str, Claim | None] = {**listed, **pending}
        return {k: c for k, c in merged.items() if c is not None and c.live(now)}

    def _claim_changed(self, unclear_key: str, claim: Claim | None) -> None:
        with self._lock:
            self._claim_seq += 1
            self._claim_changes.append((self._claim_seq, unclear_key, claim))

    def _item(self, info: ObjectInfo, claim: Claim | None) -> dict[str, Any]:
        item = core.item_fields(info.key, info.metadata, info.last_modified or datetime.now(UTC))
        item["claimed_by"] = claim.inspector if claim else None
        item["claim_expires_at"] = core.iso(claim.expires_at) if claim else None
        return item

    def queue_page(self, cursor: str | None, limit: int, now: datetime) -> dict[str, Any]:
        """One page of waiting images with the router's metadata (HEAD only for the page, cached by ETag)."""
        entries = self.index.entries()
        page, next_cursor = core.page_after(entries, cursor, limit)
        claims_f = self.executor.submit(self.claims, now)
        infos = list(self.executor.map(self._head_cached, page))
        claims = claims_f.result()
        if page:
            # Items slide into the page as others are decided: have their metadata ready by then.
            end = bisect.bisect_right(entries, page[-1])
            for entry in entries[end : end + _PREFETCH]:
                self.executor.submit(self._head_cached, entry)
        items = [self._item(info, claims.get(info.key)) for info in infos if info is not None]
        return {"items": items, "next_cursor": next_cursor, "total": len(entries)}

    def item(self, unclear_key: str, now: datetime) -> dict[str, Any]:
        """One waiting image; Gone (with who decided it, when known) if it left unclear/."""
        info = self.store.head(self.bucket, unclear_key)
        if info is None:
            raise self._gone(unclear_key)
        return self._item(info, self.claims(now).get(unclear_key))

    def image(self, unclear_key: str) -> Image:
        """The image of an item, from unclear/ or, once decided, from human_decided/."""
        try:
            obj = self.store.get(self.bucket, unclear_key, max_bytes=self.max_image_bytes)
        except NotFound:
            marker = self.marker(unclear_key)
            decided = marker.get("decided_key") if marker else None
            if not isinstance(decided, str):
                raise self._gone(unclear_key) from None
            try:
                relative_key(Route.HUMAN_DECIDED, decided)
            except InvalidKey:
                log.error("decision marker of %s points outside human_decided/: %r", unclear_key, decided)
                raise Gone(f"no image for {unclear_key}") from None
            obj = self.store.get(self.bucket, decided, max_bytes=self.max_image_bytes)
        content_type = obj.info.content_type or ""
        if not content_type.startswith("image/"):
            content_type = _sniff(obj.body) or "application/octet-stream"
        return Image(obj.body, content_type, obj.info.etag)

    # --- claims ------------------------------------------------------------------------------------

    def claim(self, unclear_key: str, inspector: str, now: datetime, seconds: int) -> Claim:
        """Hold an item for `seconds`; ConflictError when another inspector holds a live claim."""
        key = core.claim_key(unclear_key)
        head_f = self.executor.submit(self.store.head, self.bucket, unclear_key)
        found = self._get_json(self.bucket, key)
        if head_f.result() is None:
            raise self._gone(unclear_key)
        mine = Claim(inspector, now + timedelta(seconds=seconds))
        for attempt in range(3):
            if attempt:
                found = self._get_json(self.bucket, key)
            try:
                if found is None:
                    self.store.put(self.bucket, key, mine.to_json(), content_type=_JSON, if_absent=True)
                else:
                    existing = Claim.from_dict(found[0])
                    if core.claim_outcome(existing, inspector, now) == "conflict" and existing:
                        raise ConflictError(core.claim_conflict(existing))
                    # Compare-and-swap: replacing an expired or own claim fails if anyone wrote meanwhile.
                    self.store.put(self.bucket, key, mine.to_json(), content_type=_JSON, if_match=found[1])
            except (AlreadyExists, NotFound):
                continue
            self._claim_changed(unclear_key, mine)
            return mine
        raise ConflictError("the claim changed hands while taking it; try again")

    # --- decisions ---------------------------------------------------------------------------------

    def decide(
        self,
        unclear_key: str,
        label: HumanLabel,
        inspector: str,
        note: str | None,
        now: datetime,
        undo_seconds: int,
    ) -> Decision:
        """Move an image to human_decided/ exactly once: the decision marker is the race guard.

        Requests are few on purpose (GET, marker PUT, decided PUT, then audit PUT and DELETE side by
        side): claims are advisory and read from the shared listing, the marker decides.
        """
        keys = core.decision_keys(unclear_key, label)
        claims_f = self.executor.submit(self.claims, now)
        try:
            obj = self.store.get(self.bucket, unclear_key, max_bytes=self.max_image_bytes)
        except NotFound:
            marker = self.marker(unclear_key)
            if marker:
                raise ConflictError(core.already_decided(marker)) from None
            raise Gone(f"no image {unclear_key} in unclear/") from None
        claim = claims_f.result().get(unclear_key)
        if claim and core.claim_outcome(claim, inspector, now) == "conflict":
            raise ConflictError(core.claim_conflict(claim))
        audit_key = core.audit_key(now, uuid.uuid4().hex)
        marker = core.marker_record(
            keys, label, inspector, now, note, obj.info.metadata, obj.info.content_type, audit_key
        )
        try:
            self._put_json(self.bucket, keys.marker_key, marker, if_absent=True)
        except AlreadyExists:
            raise ConflictError(core.already_decided(self.marker(unclear_key))) from None
        try:
            self.store.put(
                self.bucket,
                keys.decided_key,
                obj.body,
                metadata=core.decided_metadata(obj.info.metadata, inspector, now, label, note),
                content_type=obj.info.content_type,
                if_absent=True,
            )
        except AlreadyExists:
            self.store.delete(self.bucket, keys.marker_key)
            raise ConflictError(f"{keys.decided_key} already exists; nothing was overwritten") from None
        except PartcheckError:
            self.store.delete(self.bucket, keys.marker_key)
            raise
        record = core.audit_record("decision", marker, now, inspector)
        with self._lock:
            self._audit[audit_key] = record
        steps: list[Future[Any]] = [
            self.executor.submit(self._put_json, self.audit_bucket, audit_key, record, if_absent=True),
            self.executor.submit(self.store.delete, self.bucket, unclear_key),
        ]
        # A claim left behind would only sit in claims/; nobody waits for its removal.
        self.executor.submit(self._quietly, self.store.delete, self.bucket, keys.claim_key)
        for f in steps:
            # The decision has taken effect; a failed side step is logged, the marker keeps every detail.
            try:
                f.result()
            except PartcheckError as exc:
                log.error("decision on %s: follow-up step failed: %s", unclear_key, exc)
        self.index.removed(unclear_key)
        self._claim_changed(unclear_key, None)
        return Decision(
            unclear_key, label, keys.decided_key, inspector, now, now + timedelta(seconds=undo_seconds)
        )

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except PartcheckError as exc:
            log.warning("background step failed: %s", exc)

    def _last_action(self, inspector: str, now: datetime, undo_seconds: int) -> dict[str, Any] | None:
        """The inspector's newest audit record within the undo window (plus slack for clock skew)."""
        since = now - timedelta(seconds=undo_seconds + 5)
        keys: list[str] = []
        for day in sorted({since.date(), now.date()}):
            prefix = core.audit_day_prefix(datetime(day.year, day.month, day.day, tzinfo=UTC))
            after = core.audit_key(since, "") if day == since.date() else None
            keys += [o.key for o in _listing(self.store, self.audit_bucket, prefix, after)]
        keys.sort(reverse=True)
        for record in self.executor.map(self._record, keys):
            if record and record.get("inspector") == inspector:
                return record
        return None

    def undo(self, inspector: str, now: datetime, undo_seconds: int) -> str:
        """Put the inspector's last decision back into unclear/ (within the window); returns the key.

        The last decision is found in the audit log's last seconds, so undo works on any instance.
        """
        last = self._last_action(inspector, now, undo_seconds)
        refusal = core.undo_refusal(last, now, undo_seconds)
        if refusal or last is None:
            raise ConflictError(refusal or "nothing to undo")
        unclear_key = str(last.get("key", ""))
        try:
            keys = core.decision_keys(unclear_key, "ok")
        except InvalidKey:
            raise ConflictError("nothing to undo") from None
        marker = self.marker(unclear_key)
        if (
            not marker
            or marker.get("inspector") != inspector
            or marker.get("decided_at") != last.get("decided_at")
        ):
            raise ConflictError("nothing to undo: the decision was already undone or replaced")
        decided_key = str(marker["decided_key"])
        relative_key(Route.HUMAN_DECIDED, decided_key)
        try:
            obj = self.store.get(self.bucket, decided_key, max_bytes=self.max_image_bytes)
        except NotFound:
            raise ConflictError(f"nothing to undo: {decided_key} is gone") from None
        original = {k: str(v) for k, v in (marker.get("original_metadata") or {}).items()}
        try:
            etag = self.store.put(
                self.bucket,
                unclear_key,
                obj.body,
                metadata=original,
                content_type=marker.get("content_type") or obj.info.content_type,
                if_absent=True,
            )
        except AlreadyExists:
            raise ConflictError(f"nothing to undo: {unclear_key} is already back") from None
        audit_key = core.audit_key(now, uuid.uuid4().hex)
        record = core.audit_record("undo", marker, now, inspector)
        with self._lock:
            self._audit[audit_key] = record
        steps: list[Future[Any]] = [
            self.executor.submit(self._put_json, self.audit_bucket, audit_key, record, if_absent=True),
            self.executor.submit(self.store.delete, self.bucket, decided_key),
            self.executor.submit(self.store.delete, self.bucket, keys.marker_key),
        ]
        for f in steps:
            f.result()
        self.index.restored(Listed(now, unclear_key, etag))
        return unclear_key

    # --- audit log ---------------------------------------------------------------------------------

    def _record(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._audit:
                return self._audit[key]
        found = self._get_json(self.audit_bucket, key)
        record = found[0] if found else None
        if record is not None:
            with self._lock:
                if len(self._audit) > _MAX_AUDIT_CACHE:
                    self._audit.clear()
                self._audit[key] = record
        return record

    def _day_keys(self, day: datetime) -> list[str]:
        keys = [o.key for o in _listing(self.store, self.audit_bucket, core.audit_day_prefix(day))]
        return sorted(keys, reverse=True)

    def history(
        self,
        limit: int,
        inspector: str | None,
        label: str | None,
        since: datetime | None,
        now: datetime,
        days: int,
    ) -> list[dict[str, Any]]:
        """Audit records newest first, filtered, reading back at most `days` days."""
        out: list[dict[str, Any]] = []
        oldest = now - timedelta(days=days - 1)
        if since and since > oldest:
            oldest = since
        day = now
        while day.date() >= oldest.date() and len(out) < limit:
            keys = self._day_keys(day)
            for chunk_start in range(0, len(keys), 32):
                chunk = keys[chunk_start : chunk_start + 32]
                for record in self.executor.map(self._record, chunk):
                    if record and core.history_matches(record, inspector, label, since):
                        out.append(record)
                        if len(out) >= limit:
                            return out
            day -= timedelta(days=1)
        return out

    # --- stats -------------------------------------------------------------------------------------

    def _count(self, route: Route) -> tuple[int, int]:
        n = human_defect = 0
        for o in _listing(self.store, self.bucket, route.prefix):
            n += 1
            if route is Route.HUMAN_DECIDED and core.human_label(o.key) == "defect":
                human_defect += 1
        return n, human_defect

    def _throughput(self, now: datetime) -> list[dict[str, Any]]:
        times: list[datetime] = []
        for day in (now - timedelta(days=1), now):
            keys = [
                k
                for k in self._day_keys(day)
                if (t := core.audit_time(k)) is not None and now - t < timedelta(hours=24)
            ]
            for key, record in zip(keys, self.executor.map(self._record, keys), strict=True):
                t = core.audit_time(key)
                if record and t and record.get("action") == "decision":
                    times.append(t)
        return core.hourly_throughput(times, now)

    def _compute_stats(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        routes = [r for r in Route if r is not Route.UNCLEAR]
        counted = dict(zip(routes, self.executor.map(self._count, routes), strict=True))
        entries = self.index.entries()
        counts = {r.value: counted[r][0] for r in routes}
        counts[Route.UNCLEAR.value] = len(entries)
        defect_rate, unclear_rate = core.rates(counts, counted[Route.HUMAN_DECIDED][1])
        oldest_age: float | None = None
        if entries:
            info = self._head_cached(entries[0])
            uploaded = None
            if info is not None:
                uploaded = core.parse_iso(core.meta_value(info.metadata, "uploaded-at"))
            oldest_age = max(0.0, (now - (uploaded or entries[0].last_modified)).total_seconds())
        return {
            "counts": counts,
            "defect_rate": defect_rate,
            "unclear_rate": unclear_rate,
            "throughput_per_hour": self._throughput(now),
            "oldest_unclear_age_s": oldest_age,
            "computed_at": core.iso(now),
        }

    def stats(self) -> dict[str, Any]:
        """Counts, rates, hourly throughput and oldest waiting age (recomputed in the background)."""
        return self.stats_cache.get()

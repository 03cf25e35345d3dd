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
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from partcheck.errors import (
    AlreadyExists,
    InvalidInput,
    InvalidKey,
    NotFound,
    PartcheckError,
    StorageUnavailable,
)
from partcheck.layout import AUDIT_PREFIX, DECISIONS_PREFIX, HumanLabel, Route, relative_key
from partcheck.storage import ObjectInfo, ObjectStore, StoredObject
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
# How long a marker check of a waiting image is trusted before it is re-checked (in the background).
_MARKER_TTL_S = 30.0
# How long the queue's first page waits for the first decisions/ listing (it refines `total` only), and
# how old that listing may grow before it is re-listed.
_FIRST_MARKER_LISTING_WAIT_S = 2.0
_MARKER_LISTING_MAX_AGE_S = 300.0
_FOLLOW_UP_WAIT_S = 10.0
# A decision's removal from unclear/: attempts, and the pause before the first retry (doubling after).
_REMOVE_ATTEMPTS = 5
_REMOVE_BACKOFF_S = 0.5
# The first images of the queue are what every inspector's page asks for first: kept in memory.
_EARLY_IMAGES = 3
_IMAGE_CACHE_BYTES = 64 * 1024 * 1024
_IMAGE_CACHE_COUNT = 64


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

    def peek(self, wait_s: float = 0.0) -> T | None:
        """The current value without computing it in the caller: the first computation also runs in the
        background, once for all callers, and is waited for at most `wait_s`; None until it succeeds."""
        with self._lock:
            value, at = self._value, self._at
            due = value is None or time.monotonic() - at > self.effective_max_age_s
            if due and (self._pending is None or self._pending.done()):
                with contextlib.suppress(RuntimeError):
                    self._pending = self._executor.submit(self._run)
            pending = self._pending
        if value is None and pending is not None:
            with contextlib.suppress(TimeoutError):
                pending.result(wait_s)
            with self._lock:
                value = self._value
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


@dataclass(frozen=True)
class _OwnDecision:
    """A decision this process made: its audit record, and the background steps that write it."""

    audit_key: str
    record: dict[str, Any]
    follow_up: Future[None]


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
        totals_max_age_s: float = 600.0,
        max_image_bytes: int = 25 * 1024 * 1024,
        workers: int = 10,
        repair_after_s: float = 90.0,
        once: ObjectStore | None = None,
    ) -> None:
        self.store = store
        # The same storage through a client that makes one attempt per call: a decision's removal from
        # unclear/ retries itself, looking first whether an undo has begun (`_remove_from_unclear`).
        self.once = once or store
        self.bucket = bucket
        self.audit_bucket = audit_bucket
        self.max_image_bytes = max_image_bytes
        # boto3's default pool holds 10 connections; more workers would only queue on it. Requests
        # get their own workers, so their S3 calls never wait behind background work (prefetching,
        # a decision's follow-up steps, re-listings).
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers - 4), thread_name_prefix="review-bg")
        self.now_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="review-req")
        self.index = QueueIndex(store, bucket, queue_max_age_s, self.executor)
        # The images with a decision marker, for the queue's `total`: a page's marker checks only
        # cover the pages read so far. decisions/ holds a marker per decision ever made, and the
        # listing only settles a rare case (a move interrupted, or decided elsewhere and not yet
        # removed) in a counter, so it is re-listed every few minutes, not with the queue: at the
        # queue's pace a year of markers (~19 LIST pages) would cost ~55,000 LISTs a working day.
        self._decided: Refreshing[tuple[float, frozenset[str]]] = Refreshing(
            self._list_markers, max(queue_max_age_s, _MARKER_LISTING_MAX_AGE_S), self.executor
        )
        self._meta: dict[tuple[str, str], ObjectInfo] = {}
        self._latest: dict[str, ObjectInfo] = {}
        # unclear key -> (monotonic time of the check, whether a decision marker exists)
        self._markers: dict[str, tuple[float, bool]] = {}
        self._marked: set[str] = set()
        self._repairing: set[str] = set()
        # Each inspector's newest decision here: undo waits for its follow-up, and must not miss it when
        # its audit PUT failed and the log's newest record is an older decision.
        self._own_decisions: dict[str, _OwnDecision] = {}
        self._pending: set[Future[None]] = set()
        self._images: OrderedDict[tuple[str, str], Future[Image | None]] = OrderedDict()
        self._image_bytes = 0
        # Interrupted moves are finished only once no decision or undo can still be in flight.
        self.repair_after = timedelta(seconds=repair_after_s)
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
        # okay/, defect/, human_decided/ and rejected/ hold every image ever sorted (~365 LIST pages
        # after a year at 1,000 images a day): listed at their own, slower pace, not at the dashboard's.
        self.totals_cache: Refreshing[dict[str, Any]] = Refreshing(
            self._compute_totals, totals_max_age_s, self.executor
        )

    def close(self) -> None:
        """Let started decisions finish their follow-up steps, then stop the worker threads."""
        self.settle()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.now_pool.shutdown(wait=False, cancel_futures=True)

    def settle(self, timeout: float = _FOLLOW_UP_WAIT_S) -> None:
        """Wait for the follow-up steps (audit record, removal from unclear/) of decisions taken so far."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            with contextlib.suppress(Exception):
                f.result(timeout)

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
                    self._latest.clear()
                self._meta[(info.key, info.etag)] = info
                self._latest[info.key] = info
        return info

    def marker(self, unclear_key: str) -> dict[str, Any] | None:
        """The decision marker of an image, if someone decided it."""
        found = self._get_json(self.bucket, core.decision_keys(unclear_key, "ok").marker_key)
        if found and "undo" in found[0]:
            # An undo named in a marker is running, or died half-way (maybe before the image was back,
            # where no queue read meets it): finish_move tells which once none can still run.
            self._start_finishing(unclear_key)
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
                # Abandoned long ago; removing it keeps this listing short. Only the version listed is
                # deleted: a takeover since the listing replaced it and must survive. A takeover racing
                # the delete finds no object for its If-Match and retries as a fresh claim.
                try:
                    self.store.delete(self.bucket, o.key, if_match=o.etag)
                except AlreadyExists:
                    pass  # taken over since the listing: live again
                except PartcheckError as exc:
                    log.warning("removing the abandoned claim %s failed: %s", o.key, exc)
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

    # --- decision markers of waiting images ----------------------------------------------------------

    def _check_marker(self, unclear_key: str) -> bool:
        """HEAD the image's decision marker and remember the answer; a marker beside a waiting image
        is a move that was interrupted (a crash, a failed delete), so finishing it is started too."""
        found = self.store.head(self.bucket, core.decision_keys(unclear_key, "ok").marker_key) is not None
        with self._lock:
            if len(self._markers) > _MAX_META_CACHE:
                self._markers.clear()
            self._markers[unclear_key] = (time.monotonic(), found)
            if found:
                self._marked.add(unclear_key)
            else:
                self._marked.discard(unclear_key)
        if found:
            self._start_finishing(unclear_key)
        return found

    def _marker_now(self, unclear_key: str) -> bool:
        """Whether the image has a decision marker: the last check if recent, else a HEAD now."""
        with self._lock:
            seen = self._markers.get(unclear_key)
        if seen is not None and time.monotonic() - seen[0] <= _MARKER_TTL_S:
            if seen[1]:
                self._start_finishing(unclear_key)
            return seen[1]
        return self._check_marker(unclear_key)

    def _set_marker(self, unclear_key: str, found: bool) -> None:
        with self._lock:
            self._markers[unclear_key] = (time.monotonic(), found)
            if found:
                self._marked.add(unclear_key)
            else:
                self._marked.discard(unclear_key)

    def _marked_on(self, page: list[Listed]) -> set[str]:
        """Keys of `page` that have a decision marker: checked now when never checked, otherwise from
        the last check, re-checked in the background once it is older than _MARKER_TTL_S."""
        now = time.monotonic()
        unknown: list[str] = []
        out: set[str] = set()
        with self._lock:
            known = {e.key: self._markers.get(e.key) for e in page}
            stale = [k for k in self._marked if now - self._markers.get(k, (0.0, True))[0] > _MARKER_TTL_S]
        for key, seen in known.items():
            if seen is None:
                unknown.append(key)
                continue
            if seen[1]:
                out.add(key)
                with self._lock:
                    self._marked.add(key)
            if now - seen[0] > _MARKER_TTL_S:
                stale.append(key)
        for key in set(stale):
            # Refresh the time first so one stale answer starts one re-check, not one per request.
            with self._lock:
                self._markers[key] = (now, key in self._marked)
            with contextlib.suppress(RuntimeError):
                self.executor.submit(self._quietly, self._check_marker, key)
        for key, found in zip(unknown, self.now_pool.map(self._check_marker, unknown), strict=True):
            if found:
                out.add(key)
        return out

    def _list_markers(self) -> tuple[float, frozenset[str]]:
        """The unclear/ keys that have a decision marker, and when (monotonic) the listing started."""
        started = time.monotonic()
        listed = (core.marked_key(o.key) for o in _listing(self.store, self.bucket, DECISIONS_PREFIX))
        return started, frozenset(k for k in listed if k is not None)

    def _note_listed_markers(self, entries: list[Listed], listed_at: float, decided: frozenset[str]) -> None:
        """Take the decisions/ listing's word on waiting images, except where this process checked (or
        decided, or undid) since the listing started: its own answer is newer."""
        found: list[str] = []
        with self._lock:
            for e in entries:
                has = e.key in decided
                seen = self._markers.get(e.key)
                # An image never checked and without a marker is left to its page's own check (a HEAD
                # now, rather than the listing's older word); a known state that did not change keeps
                # its time, so the re-check that also finishes an interrupted move stays due.
                if (seen is None and not has) or (
                    seen is not None and (seen[0] >= listed_at or seen[1] == has)
                ):
                    continue
                self._markers[e.key] = (listed_at, has)
                if has:
                    self._marked.add(e.key)
                    found.append(e.key)
                else:
                    self._marked.discard(e.key)
        for key in found:
            # As when a page's check finds the marker: the move may have been interrupted.
            self._start_finishing(key)

    def _listed_markers(self) -> tuple[float, frozenset[str]]:
        """The last decisions/ listing, for `_waiting`; empty while there is none yet."""
        # Only the count of waiting images needs it (a marker per decision ever made): its first run is
        # waited for briefly, and a slow or failing one leaves the count to the pages' own checks.
        return self._decided.peek(_FIRST_MARKER_LISTING_WAIT_S) or (0.0, frozenset())

    def _waiting(self, decided: tuple[float, frozenset[str]]) -> list[Listed]:
        """The queue index without images whose decision marker is known (interrupted moves, decisions
        elsewhere whose removal has not shown yet): whatever images one could decide, on any page."""
        entries = self.index.entries()
        self._note_listed_markers(entries, *decided)
        with self._lock:
            marked = set(self._marked)
        if not marked:
            return entries
        present = {e.key for e in entries if e.key in marked}
        with self._lock:
            # Gone from unclear/ (the move finished): no need to check them again.
            self._marked -= marked - present
        return [e for e in entries if e.key not in present]

    def queue_page(self, cursor: str | None, limit: int, now: datetime) -> dict[str, Any]:
        """One page of waiting images with the router's metadata (HEAD only for the page, cached by ETag).

        Images already carrying a decision marker are left out (their move was interrupted and is
        being finished); the page is then taken again so it stays full. `total` counts the images left,
        on every page alike: a decisions/ listing (re-listed every 5 minutes) names the marked ones
        that no page has reached.
        """
        claims_f = self.now_pool.submit(self.claims, now)
        decided_f = self.now_pool.submit(self._listed_markers)
        for _ in range(5):
            entries = self._waiting(decided_f.result())
            page, next_cursor = core.page_after(entries, cursor, limit)
            heads = [self.now_pool.submit(self._head_cached, e) for e in page]
            marked = self._marked_on(page)
            if not marked:
                break
        infos = [f.result() for f in heads]
        claims = claims_f.result()
        if page:
            # Items slide into the page as others are decided: have their metadata ready by then.
            end = bisect.bisect_right(entries, page[-1])
            for entry in entries[end : end + _PREFETCH]:
                self.executor.submit(self._head_cached, entry)
                if entry.key not in self._markers:
                    self.executor.submit(self._quietly, self._check_marker, entry.key)
        items = [
            self._item(info, claims.get(info.key))
            for info in infos
            if info is not None and info.key not in marked
        ]
        if cursor is None:
            for info in infos[:_EARLY_IMAGES]:
                if info is not None:
                    self._image_load(info.key, info.etag)
        return {"items": items, "next_cursor": next_cursor, "total": len(entries)}

    def item(self, unclear_key: str, now: datetime) -> dict[str, Any]:
        """One waiting image; Gone (with who decided it, when known) if it left unclear/."""
        marker_f = self.now_pool.submit(self._marker_now, unclear_key)
        info = self.store.head(self.bucket, unclear_key)
        if info is None or marker_f.result():
            raise self._gone(unclear_key)
        return self._item(info, self.claims(now).get(unclear_key))

    def _image_load(self, key: str, etag: str) -> Future[Image | None]:
        """The waiting image `key` at `etag`, loaded once in the background and kept while the cache
        has room (oldest dropped first); None when it changed or left meanwhile."""
        with self._lock:
            found = self._images.get((key, etag))
            if found is not None:
                self._images.move_to_end((key, etag))
                return found

        holder: list[Future[Image | None]] = []

        def load() -> Image | None:
            try:
                obj = self.store.get(self.bucket, key, max_bytes=self.max_image_bytes)
            except PartcheckError:
                return None
            if obj.info.etag != etag:
                return None
            image = self._as_image(obj.body, obj.info.content_type, obj.info.etag)
            with self._lock:
                # Counted only while this very load is still cached (it may have been dropped).
                if self._images.get((key, etag)) is holder[0]:
                    self._image_bytes += len(image.body)
                    self._trim_images()
            return image

        with self._lock:
            future = self._images.get((key, etag))
            if future is None:
                future = self.executor.submit(load)
                holder.append(future)
                self._images[(key, etag)] = future
                self._trim_images()
        return future

    def _trim_images(self) -> None:
        """Drop the oldest cached images beyond the cache's size (call with the lock held)."""
        while len(self._images) > 1 and (
            self._image_bytes > _IMAGE_CACHE_BYTES or len(self._images) > _IMAGE_CACHE_COUNT
        ):
            _, old = self._images.popitem(last=False)
            self._image_bytes -= self._cached_size(old)

    @staticmethod
    def _cached_size(future: Future[Image | None]) -> int:
        if not future.done() or future.cancelled() or future.exception() is not None:
            return 0
        image = future.result()
        return len(image.body) if image else 0

    def _drop_image(self, key: str) -> None:
        with self._lock:
            for k in [k for k in self._images if k[0] == key]:
                self._image_bytes -= self._cached_size(self._images.pop(k))

    @staticmethod
    def _as_image(body: bytes, content_type: str | None, etag: str) -> Image:
        content_type = content_type or ""
        if not content_type.startswith("image/"):
            content_type = _sniff(body) or "application/octet-stream"
        return Image(body, content_type, etag)

    def image(self, unclear_key: str) -> Image:
        """The image of an item, from unclear/ or, once decided, from human_decided/.

        The queue's first images are served from memory when this process loaded them (keyed by the
        ETag of the latest HEAD, so a replaced image is fetched anew once the listing shows it).
        """
        with self._lock:
            latest = self._latest.get(unclear_key)
            cached = self._images.get((unclear_key, latest.etag)) if latest else None
        if cached is not None:
            with contextlib.suppress(Exception):
                image = cached.result(_FOLLOW_UP_WAIT_S)
                if image is not None:
                    return image
        try:
            obj = self._browser_get(unclear_key, "; it can still be decided")
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
            obj = self._browser_get(decided, "")
        return self._as_image(obj.body, obj.info.content_type, obj.info.etag)

    def _browser_get(self, key: str, then: str) -> StoredObject:
        """An image's bytes for the browser; over max_image_bytes a 400 saying so (only showing it needs
        the bytes: decisions and undos copy inside S3)."""
        try:
            return self.store.get(self.bucket, key, max_bytes=self.max_image_bytes)
        except InvalidInput as exc:
            limit = f"{exc} set by max_image_bytes"
            raise InvalidInput(f"{key} is too large to show here ({limit}){then}") from exc

    # --- claims ------------------------------------------------------------------------------------

    def claim(self, unclear_key: str, inspector: str, now: datetime, seconds: int) -> Claim:
        """Hold an item for `seconds`; ConflictError when another inspector holds a live claim."""
        key = core.claim_key(unclear_key)
        head_f = self.now_pool.submit(self.store.head, self.bucket, unclear_key)
        marker_f = self.now_pool.submit(self._marker_now, unclear_key)
        found = self._get_json(self.bucket, key)
        if head_f.result() is None:
            raise self._gone(unclear_key)
        if marker_f.result():
            raise ConflictError(core.already_decided(self.marker(unclear_key)))
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

        Two round trips before the answer: a HEAD of the image beside the marker PUT (when the
        queue page's HEAD is cached; otherwise one after the other), then the copy to human_decided/
        inside S3, so the image's bytes never pass through here and its size does not matter. From
        then on the decision holds; the audit record and the removal from unclear/ follow in the
        background, in that order, and `finish_move` completes them after a crash (the marker names
        the audit record).
        """
        keys = core.decision_keys(unclear_key, label)
        claim = self.claims(now).get(unclear_key)
        if claim and core.claim_outcome(claim, inspector, now) == "conflict":
            raise ConflictError(core.claim_conflict(claim))
        audit_key = core.audit_key(now, uuid.uuid4().hex)
        with self._lock:
            cached = self._latest.get(unclear_key)
        head_f = self.now_pool.submit(self.store.head, self.bucket, unclear_key)
        marker: dict[str, Any] | None = None
        marker_etag: str | None = None
        lost = False
        if cached is not None:
            marker = core.marker_record(
                keys, label, inspector, now, note, cached.metadata, cached.content_type, audit_key
            )
            try:
                marker_etag = self._put_json(self.bucket, keys.marker_key, marker, if_absent=True)
            except AlreadyExists:
                lost = True
        try:
            info = head_f.result()
        except PartcheckError:
            if marker_etag is not None:
                self.store.delete(self.bucket, keys.marker_key)
            raise
        if info is None:
            if marker_etag is not None:
                # Nobody else's marker existed, so nobody decided it: the image was removed otherwise.
                self.store.delete(self.bucket, keys.marker_key)
            found = self.marker(unclear_key)
            if found:
                raise ConflictError(core.already_decided(found))
            raise Gone(f"no image {unclear_key} in unclear/")
        stale = (
            cached is None
            or info.etag != cached.etag
            or info.metadata != cached.metadata
            or info.content_type != cached.content_type
        )
        if not lost and stale:
            fresh = core.marker_record(
                keys, label, inspector, now, note, info.metadata, info.content_type, audit_key
            )
            try:
                if marker_etag is None:
                    marker_etag = self._put_json(self.bucket, keys.marker_key, fresh, if_absent=True)
                else:
                    # The image changed since its HEAD was cached: our own marker gets its metadata.
                    marker_etag = self._put_json(self.bucket, keys.marker_key, fresh, if_match=marker_etag)
            except AlreadyExists:
                lost = True
            marker = fresh
        if lost or marker is None:
            self._start_finishing(unclear_key)
            raise ConflictError(core.already_decided(self.marker(unclear_key)))
        decided_meta = core.decided_metadata(info.metadata, inspector, now, label, note)
        try:
            # Only the bytes the marker describes (their ETag) may be copied: an image replaced since
            # the HEAD is refused (412), not decided unseen.
            self.store.copy(
                (self.bucket, unclear_key),
                self.bucket,
                keys.decided_key,
                metadata=decided_meta,
                content_type=info.content_type,
                if_absent=True,
                source_etag=info.etag,
            )
        except PartcheckError as exc:
            # An error does not say the copy failed: S3 may have stored it and then answered 5xx, or
            # botocore's retry of a stored copy got 412. A copy with this decision's metadata is ours.
            landed = self._decided_copy(keys.decided_key, decided_meta)
            if landed is None:
                raise  # unknown: the marker stays, and finish_move finishes or rolls back later
            refused = isinstance(exc, AlreadyExists)
            if landed == "none" and refused and self._source_at(unclear_key, info.etag):
                # Refused though the name is free and the source unchanged: S3's 409 for a write under
                # way there (an earlier attempt of this copy may still land). Unknown, as above.
                raise StorageUnavailable(
                    f"copy of {unclear_key} to {keys.decided_key} conflicted with a write under way; "
                    "the decision is settled in the background"
                ) from exc
            if landed != "ours":
                self.store.delete(self.bucket, keys.marker_key)
                if isinstance(exc, AlreadyExists) and landed == "other":
                    raise ConflictError(
                        f"{keys.decided_key} already exists; nothing was overwritten"
                    ) from None
                if isinstance(exc, AlreadyExists | NotFound):
                    # The source's ETag no longer matched, or the image left unclear/ after the HEAD.
                    raise ConflictError(
                        f"{unclear_key} changed or left unclear/ while it was decided; nothing was moved"
                    ) from None
                raise
            log.warning("decision on %s: the decided copy answered %s but had landed", unclear_key, exc)
        record = core.audit_record("decision", marker, now, inspector)
        with self._lock:
            self._audit[audit_key] = record
        self.index.removed(unclear_key)
        # Should the delete fail, a later listing shows the image again: the marker keeps it hidden.
        self._set_marker(unclear_key, True)
        self._claim_changed(unclear_key, None)
        self._drop_image(unclear_key)
        follow_up = self.executor.submit(self._follow_up, keys, audit_key, record)
        with self._lock:
            self._own_decisions[inspector] = _OwnDecision(audit_key, record, follow_up)
            self._pending.add(follow_up)
        follow_up.add_done_callback(self._done)
        return Decision(
            unclear_key, label, keys.decided_key, inspector, now, now + timedelta(seconds=undo_seconds)
        )

    def _decided_copy(self, decided_key: str, metadata: Mapping[str, str]) -> str | None:
        """What decided_key holds: "ours" (this decision's copy: same inspector, time, label), "other",
        "none", or None when S3 cannot tell."""
        try:
            info = self.store.head(self.bucket, decided_key)
        except PartcheckError:
            return None
        if info is None:
            return "none"
        # Who, when and what identify the decision; the note may come back changed (S3 trims the
        # whitespace a shortened note can end in).
        ours = all(
            info.metadata.get(name) == metadata.get(name) for name in ("inspector", "decided-at", "label")
        )
        return "ours" if ours else "other"

    def _source_at(self, unclear_key: str, etag: str) -> bool:
        """Whether the image may still hold `etag` (True when S3 cannot tell): a copy refused on its
        source's ETag is only known refused once the HEAD shows other bytes or none."""
        try:
            info = self.store.head(self.bucket, unclear_key)
        except PartcheckError:
            return True
        return info is not None and info.etag == etag

    def _follow_up(self, keys: core.DecisionKeys, audit_key: str, record: dict[str, Any]) -> None:
        """After the decided PUT: the audit record first, only then the unclear/ object goes, so a
        crash in between leaves the image beside its marker, where `finish_move` finds it."""
        try:
            self._put_json(self.audit_bucket, audit_key, record, if_absent=True)
        except AlreadyExists:
            pass  # finish_move on another instance wrote the same record from the marker
        except PartcheckError as exc:
            log.error("decision on %s: audit record not written yet: %s", keys.unclear_key, exc)
            return
        try:
            self._remove_from_unclear(keys, str(record["decided_at"]))
        except PartcheckError as exc:
            log.error("decision on %s: not removed from unclear/ yet: %s", keys.unclear_key, exc)
        # A claim left behind would only sit in claims/.
        self._quietly(self.store.delete, self.bucket, keys.claim_key)

    def _remove_from_unclear(self, keys: core.DecisionKeys, decided_at: str) -> None:
        """Delete a decided image from unclear/, one attempt at a time, and not again once undone.

        An attempt whose answer is lost may still have deleted the image; an undo on any instance can
        then put it back, and a blind retry (botocore's own) would delete the only copy left, the
        decided one being gone with the undo. So each retry first reads the marker: gone, naming an
        undo or another decision, the image is no longer this decision's to remove.
        """
        error: PartcheckError | None = None
        for attempt in range(_REMOVE_ATTEMPTS):
            if attempt:
                time.sleep(_REMOVE_BACKOFF_S * 2 ** (attempt - 1))
                found = self._get_json(self.bucket, keys.marker_key)
                if found is None or "undo" in found[0] or found[0].get("decided_at") != decided_at:
                    log.info("decision on %s undone before its removal from unclear/", keys.unclear_key)
                    return
            try:
                self.once.delete(self.bucket, keys.unclear_key)
                return
            except StorageUnavailable as exc:
                error = exc
        assert error is not None
        raise error

    def _done(self, f: Future[None]) -> None:
        with self._lock:
            self._pending.discard(f)

    # --- interrupted moves -------------------------------------------------------------------------

    def _start_finishing(self, unclear_key: str) -> None:
        with self._lock:
            if unclear_key in self._repairing:
                return
            self._repairing.add(unclear_key)

        def run() -> None:
            try:
                self.finish_move(unclear_key, datetime.now(UTC))
            except PartcheckError as exc:
                log.warning("finishing the interrupted move of %s failed: %s", unclear_key, exc)
            finally:
                with self._lock:
                    self._repairing.discard(unclear_key)

        try:
            self.executor.submit(run)
        except RuntimeError:  # shutting down
            with self._lock:
                self._repairing.discard(unclear_key)

    def finish_move(self, unclear_key: str, now: datetime) -> str:
        """Complete a move that stopped with the image still in unclear/ beside its decision marker.

        With the decided copy in human_decided/ the decision holds: the audit record is written if
        missing, then the unclear/ object is deleted. Without it the decision never took effect: the
        marker is removed and the image waits again. A marker that names an undo belongs to an undo that
        stopped after putting the image back: the copy, if any, is removed, the undo's audit record is
        written if missing and the marker removed. A marker that names an undo while the image is not
        back, its decided copy still there, belongs to an undo that died before the PUT back: the undo
        is struck from the marker and the decision stands, as after an undo that failed with an error.
        Markers whose decision or undo started less than `repair_after` ago are left alone, since it
        may still be running.
        Returns what was done: "finished", "undone", "undo dropped", "rolled back", "too recent" or
        "nothing to do".
        """
        keys = core.decision_keys(unclear_key, "ok")
        found = self._get_json(self.bucket, keys.marker_key)
        if not found:
            self._set_marker(unclear_key, False)
            return "nothing to do"
        marker, marker_etag = found
        undo = core.parse_undo_intent(marker.get("undo"))
        decided_at = core.parse_iso(marker.get("decided_at"))
        started = undo[1] if undo is not None else decided_at
        if started is not None and now - started < self.repair_after:
            return "too recent"
        decided_key = str(marker.get("decided_key", ""))
        try:
            relative_key(Route.HUMAN_DECIDED, decided_key)
        except InvalidKey:
            log.error("decision marker of %s points outside human_decided/: %r", unclear_key, decided_key)
            return "nothing to do"
        if self.store.head(self.bucket, unclear_key) is None:
            if "undo" not in marker or self.store.head(self.bucket, decided_key) is None:
                return "nothing to do"
            decision = {k: v for k, v in marker.items() if k != "undo"}
            try:
                # Compare-and-swap: a marker changed since it was read is someone else's to settle.
                self._put_json(self.bucket, keys.marker_key, decision, if_match=marker_etag)
            except AlreadyExists:
                return "nothing to do"
            log.warning("dropped the undo of %s that stopped before the image was back", unclear_key)
            return "undo dropped"
        if undo is not None:
            by, at, undo_audit_key = undo
            self.store.delete(self.bucket, decided_key)
            self._ensure_audit(undo_audit_key, core.audit_record("undo", marker, at, by))
            self.store.delete(self.bucket, keys.marker_key)
            self._set_marker(unclear_key, False)
            log.warning("finished the interrupted undo of %s by %s", unclear_key, by)
            return "undone"
        if self.store.head(self.bucket, decided_key) is None:
            log.warning("decision on %s never completed (no %s): it waits again", unclear_key, decided_key)
            self.store.delete(self.bucket, keys.marker_key)
            self._set_marker(unclear_key, False)
            return "rolled back"
        audit_key = str(marker.get("audit_key") or "")
        if audit_key.startswith(AUDIT_PREFIX) and core.audit_time(audit_key) is not None:
            at = decided_at or now
            self._ensure_audit(
                audit_key, core.audit_record("decision", marker, at, str(marker.get("inspector", "")))
            )
        else:
            log.error("decision marker of %s names no audit record; none written", unclear_key)
        self.store.delete(self.bucket, unclear_key)
        self.index.removed(unclear_key)
        log.warning("finished the interrupted move of %s to %s", unclear_key, decided_key)
        return "finished"

    def _ensure_audit(self, audit_key: str, record: dict[str, Any]) -> None:
        """Write an audit record unless it is already there (another instance may have written it)."""
        if self.store.head(self.audit_bucket, audit_key) is None:
            with contextlib.suppress(AlreadyExists):
                self._put_json(self.audit_bucket, audit_key, record, if_absent=True)

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except PartcheckError as exc:
            log.warning("background step failed: %s", exc)

    def _last_action(
        self, inspector: str, now: datetime, undo_seconds: int
    ) -> tuple[str, dict[str, Any]] | None:
        """The inspector's newest audit record (key, record) within the undo window plus clock-skew slack."""
        since = now - timedelta(seconds=undo_seconds + 5)
        keys: list[str] = []
        for day in sorted({since.date(), now.date()}):
            prefix = core.audit_day_prefix(datetime(day.year, day.month, day.day, tzinfo=UTC))
            after = core.audit_key(since, "") if day == since.date() else None
            keys += [o.key for o in _listing(self.store, self.audit_bucket, prefix, after)]
        keys.sort(reverse=True)
        for key, record in zip(keys, self.now_pool.map(self._record, keys), strict=True):
            if record and record.get("inspector") == inspector:
                return key, record
        return None

    def undo(self, inspector: str, now: datetime, undo_seconds: int) -> str:
        """Put the inspector's last decision back into unclear/ (within the window); returns the key.

        The last decision is found in the audit log's last seconds, so undo works on any instance.
        """
        with self._lock:
            own = self._own_decisions.get(inspector)
        if own is not None:
            # The audit record of the decision must be in the log before the log is searched.
            with contextlib.suppress(Exception):
                own.follow_up.result(_FOLLOW_UP_WAIT_S)
        found_last = self._last_action(inspector, now, undo_seconds)
        if own is not None and (found_last is None or own.audit_key > found_last[0]):
            # This instance's newest decision is missing from the log (its audit PUT failed): that is
            # the one the inspector sees offered. Its record goes in first, so the log shows the
            # decision before its undo; if storage is still down the undo fails with it.
            self._ensure_audit(own.audit_key, own.record)
            found_last = (own.audit_key, own.record)
        if (
            own is not None
            and found_last is not None
            and found_last[0] == own.audit_key
            and not own.follow_up.done()
        ):
            # Its removal from unclear/ may still be retrying: putting the image back now would race it.
            raise StorageUnavailable("your last decision is still being stored; try undo again in a moment")
        last = found_last[1] if found_last else None
        # Only a decision made here whose background steps have ended can have left its image in
        # unclear/ with nothing still on its way to delete it; elsewhere a follow-up may be running.
        settled_here = (
            own is not None
            and found_last is not None
            and found_last[0] == own.audit_key
            and own.follow_up.done()
        )
        refusal = core.undo_refusal(last, now, undo_seconds)
        if refusal or last is None:
            raise ConflictError(refusal or "nothing to undo")
        unclear_key = str(last.get("key", ""))
        try:
            keys = core.decision_keys(unclear_key, "ok")
        except InvalidKey:
            raise ConflictError("nothing to undo") from None
        found = self._get_json(self.bucket, keys.marker_key)
        marker, marker_etag = found if found else (None, None)
        if (
            not marker
            or marker.get("inspector") != inspector
            or marker.get("decided_at") != last.get("decided_at")
        ):
            raise ConflictError("nothing to undo: the decision was already undone or replaced")
        decided_key = str(marker["decided_key"])
        relative_key(Route.HUMAN_DECIDED, decided_key)
        decided = self.store.head(self.bucket, decided_key)
        if decided is None:
            raise ConflictError(f"nothing to undo: {decided_key} is gone")
        audit_key = core.audit_key(now, uuid.uuid4().hex)
        # The marker names the undo before anything moves: an undo that stops half-way is then finished
        # by `finish_move`, its audit record included, instead of being taken for a half-made decision.
        # The compare-and-swap also turns a second undo racing this one into a clean 409.
        intent = {**marker, "undo": core.undo_intent(inspector, now, audit_key)}
        try:
            intent_etag = self._put_json(self.bucket, keys.marker_key, intent, if_match=marker_etag)
        except AlreadyExists:
            raise ConflictError("nothing to undo: the decision was already undone or replaced") from None
        original = {k: str(v) for k, v in (marker.get("original_metadata") or {}).items()}
        try:
            # Copied inside S3 like the decision: an image of any size can be undone.
            etag = self.store.copy(
                (self.bucket, decided_key),
                self.bucket,
                unclear_key,
                metadata=original,
                content_type=marker.get("content_type") or decided.content_type,
                if_absent=True,
            )
        except AlreadyExists:
            # The marker was ours (compare-and-swap above), so no other undo brought it back. If this
            # instance made the decision and its follow-up has ended, the removal from unclear/ never
            # ran (it stopped at a failed audit PUT or delete): the waiting object is the decided one if
            # it carries the original metadata. Anywhere else its removal may still be on its way, and
            # taking it for returned would lose the image once the decided copy is gone.
            try:
                there = self.store.head(self.bucket, unclear_key)
            except PartcheckError:
                self._drop_intent(keys.marker_key, marker, intent_etag)
                raise
            if not settled_here or there is None or there.metadata != original:
                self._drop_intent(keys.marker_key, marker, intent_etag)
                raise ConflictError(f"nothing to undo: {unclear_key} is already back") from None
            etag = there.etag
        except PartcheckError:
            # Nothing moved: the decision stands, so its marker must not keep naming an undo that a
            # later return of the image to unclear/ would have finish_move complete.
            self._drop_intent(keys.marker_key, marker, intent_etag)
            raise
        # The decided copy goes before the marker: a crash in between leaves the marker (with this undo
        # in it) beside the image, which finish_move completes; the reverse order would leave a stray
        # copy that blocks the next decision with the same label.
        self.store.delete(self.bucket, decided_key)
        record = core.audit_record("undo", marker, now, inspector)
        with self._lock:
            self._audit[audit_key] = record
        # One after the other: the marker is what lets finish_move write a record that failed here.
        with contextlib.suppress(AlreadyExists):  # finish_move wrote it from the marker meanwhile
            self._put_json(self.audit_bucket, audit_key, record, if_absent=True)
        self.store.delete(self.bucket, keys.marker_key)
        self._set_marker(unclear_key, False)
        self.index.restored(Listed(now, unclear_key, etag))
        return unclear_key

    def _drop_intent(self, marker_key: str, marker: dict[str, Any], intent_etag: str) -> None:
        """Put back the marker as the undo read it, unless it changed since (best effort)."""
        with contextlib.suppress(PartcheckError):
            self._put_json(self.bucket, marker_key, marker, if_match=intent_etag)

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
        before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Audit records newest first, filtered, reading back at most `days` days, and the next page's cursor.

        A page starts after `before`, the key of the previous page's last record (None: the newest); the
        cursor returned is this page's last key when the page is full, else None.
        """
        self.settle()  # this process's latest decisions belong in the log it reads
        out: list[dict[str, Any]] = []
        # The log is laid out by UTC day: a `since` in another offset would skip the day it falls on.
        now = now.astimezone(UTC)
        since = since.astimezone(UTC) if since is not None else None
        oldest = now - timedelta(days=days - 1)
        if since and since > oldest:
            oldest = since
        day = now
        if before is not None:
            start = core.audit_time(before)
            if not before.startswith(AUDIT_PREFIX) or start is None:
                raise InvalidInput(f"not a history cursor: {before[:80]!r}")
            day = min(day, start)
        while day.date() >= oldest.date():
            keys = [k for k in self._day_keys(day) if before is None or k < before]
            for chunk_start in range(0, len(keys), 32):
                chunk = keys[chunk_start : chunk_start + 32]
                for key, record in zip(chunk, self.now_pool.map(self._record, chunk), strict=True):
                    if record and core.history_matches(record, inspector, label, since):
                        out.append(record)
                        if len(out) >= limit:
                            return out, key
            day -= timedelta(days=1)
        return out, None

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

    def _compute_totals(self) -> dict[str, Any]:
        """Objects under every prefix but unclear/ (whole listings), and the human defect decisions."""
        now = datetime.now(UTC)
        routes = [r for r in Route if r is not Route.UNCLEAR]
        counted = dict(zip(routes, self.executor.map(self._count, routes), strict=True))
        return {
            "counts": {r.value: counted[r][0] for r in routes},
            "human_defect": counted[Route.HUMAN_DECIDED][1],
            "computed_at": core.iso(now),
        }

    def _compute_stats(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        # The queue's own count (its `total`): images with a decision marker are not waiting any more.
        waiting = self._waiting(self._listed_markers())
        oldest_age: float | None = None
        if waiting:
            info = self._head_cached(waiting[0])
            uploaded = None
            if info is not None:
                uploaded = core.parse_iso(core.meta_value(info.metadata, "uploaded-at"))
            oldest_age = max(0.0, (now - (uploaded or waiting[0].last_modified)).total_seconds())
        return {
            "unclear": len(waiting),
            "throughput_per_hour": self._throughput(now),
            "oldest_unclear_age_s": oldest_age,
            "computed_at": core.iso(now),
        }

    def stats(self) -> dict[str, Any]:
        """Counts, rates, hourly throughput and oldest waiting age (recomputed in the background)."""
        # The whole-prefix totals are taken as they are while a refresh runs in the background: only
        # the very first request waits for those listings (beside the first fresh part).
        totals_f = self.now_pool.submit(self.totals_cache.get)
        fresh = self.stats_cache.get()
        totals = totals_f.result()
        counts = {**totals["counts"], Route.UNCLEAR.value: fresh["unclear"]}
        defect_rate, unclear_rate = core.rates(counts, totals["human_defect"])
        return {
            "counts": counts,
            "defect_rate": defect_rate,
            "unclear_rate": unclear_rate,
            "throughput_per_hour": fresh["throughput_per_hour"],
            "oldest_unclear_age_s": fresh["oldest_unclear_age_s"],
            "computed_at": fresh["computed_at"],
            "totals_computed_at": totals["computed_at"],
        }

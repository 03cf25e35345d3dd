"""Router adapter logic shared by the Lambda handler and the local worker: message in, object moved."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from partcheck.errors import AlreadyExists, NotFound, StorageUnavailable
from partcheck.layout import Route, decision_marker_key
from partcheck.messages import PredictionMessage
from partcheck.storage import ObjectInfo, ObjectStore
from partcheck.thresholds import Thresholds
from services.router.core import alternate_key, destination_key, object_metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    """What became of one message."""

    status: str  # moved | already-done | stale | gone | decided
    destination: str | None


class _Source(NamedTuple):
    """An inbound object left to delete, and the ETag it must still have (None: unconditionally)."""

    bucket: str
    key: str
    etag: str | None


def route_message(
    body: str, store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None = None
) -> Moved:
    """Move the message's image to its destination exactly once; idempotent under redelivery.

    A move is a conditional server-side copy to the destination (never overwriting, only the predicted
    bytes) followed by a delete of the source while it still holds the copied bytes, so a duplicate
    message, or a retry after a crash between the two steps, finds the copy already there and only
    finishes the delete, and bytes uploaded under the key meanwhile stay for their own event.
    """
    moved, source = _place(body, store, prediction_bucket, thresholds)
    if source is not None:
        try:
            store.delete(source.bucket, source.key, if_match=source.etag)
        except AlreadyExists:
            _newer_bytes_kept(source.bucket, source.key)
    return moved


def route_messages(
    bodies: Sequence[str], store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None = None
) -> list[Exception | None]:
    """Route several messages, deleting their sources in one call per bucket; one outcome per body.

    The same two steps as `route_message`, in two passes: every destination is written first, then the
    sources go, each only while it holds the copied bytes. A source that could not be deleted fails only
    its own message, whose redelivery finds the destination written and finishes the delete.
    """
    outcomes: list[Exception | None] = [None] * len(bodies)
    etags: dict[str, dict[str, str | None]] = {}
    messages_of: dict[tuple[str, str], list[int]] = {}
    for i, body in enumerate(bodies):
        try:
            _, source = _place(body, store, prediction_bucket, thresholds)
        except Exception as exc:
            outcomes[i] = exc
            continue
        if source is not None:
            # Copies run in order, so a key copied twice (re-uploaded within the batch) can only still hold
            # the bytes copied last: the earlier ones are already gone from the source.
            etags.setdefault(source.bucket, {})[source.key] = source.etag
            messages_of.setdefault((source.bucket, source.key), []).append(i)
    for bucket, wanted in etags.items():
        for key, error in store.delete_many(bucket, wanted).items():
            if isinstance(error, AlreadyExists):
                _newer_bytes_kept(bucket, key)
                continue
            for i in messages_of[(bucket, key)]:
                outcomes[i] = StorageUnavailable(f"delete s3://{bucket}/{key}: {error}")
    return outcomes


def _newer_bytes_kept(bucket: str, key: str) -> None:
    # Not a failure: the predicted bytes are routed; the ones uploaded since bring their own event.
    log.info("s3://%s/%s holds newer bytes than the ones routed; left for their own event", bucket, key)


def _place(
    body: str, store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None
) -> tuple[Moved, _Source | None]:
    """Write the destination of one message; returns the outcome and the source left to delete.

    The write is a server-side copy that S3 refuses (412) when the destination exists or when the source
    is no longer the predicted bytes, so the image never passes through the router. Only a refusal
    needs a closer look, which costs a HEAD or two.
    """
    message = PredictionMessage.from_json(body)
    dest = destination_key(message.key, message.prediction, thresholds)
    source = (message.bucket, message.key)
    # A message without an ETag (older predict) copied whatever the key held; its delete stays plain.
    predicted = _Source(message.bucket, message.key, message.etag)
    unclear = dest.startswith(Route.UNCLEAR.prefix)
    decided = _decision(store, prediction_bucket, dest, message) if unclear else "none"
    if decided == "other" and message.etag:
        # The review keys a decision by name, so under the decided name these bytes could never be decided;
        # a second name (as for any taken name) lets an inspector decide them and keeps the old decision.
        dest = alternate_key(dest, message.etag)
        decided = _decision(store, prediction_bucket, dest, message)
    if decided == "same":
        # An inspector already decided this image; a redelivered message must not bring it back. The
        # source goes only if it still holds the predicted bytes: newer bytes bring their own event.
        current = _current_source(message, store, prediction_bucket, dest)
        if isinstance(current, Moved):
            return current, None
        return Moved("decided", None), predicted
    metadata = object_metadata(message, thresholds)
    content_type = message.content_type or mimetypes.guess_type(message.key)[0]
    try:
        store.copy(
            source,
            prediction_bucket,
            dest,
            metadata=metadata,
            content_type=content_type,
            if_absent=True,
            source_etag=message.etag,
        )
    except NotFound:
        if store.head(*source) is not None:
            raise StorageUnavailable(f"copy to s3://{prediction_bucket}/{dest} failed: not found") from None
        return _source_gone(message, store, prediction_bucket, dest), None
    except AlreadyExists:
        return _refused(message, store, prediction_bucket, dest, metadata, content_type)
    log.info("moved s3://%s/%s -> s3://%s/%s", message.bucket, message.key, prediction_bucket, dest)
    return Moved("moved", dest), predicted


def _decision(
    store: ObjectStore, bucket: str, dest: str, message: PredictionMessage
) -> Literal["none", "same", "other"]:
    """Whether an inspector decided `dest`: not at all, these very bytes, or other bytes under its name.

    A marker for other bytes (an image uploaded again under a decided name) must not make the router
    delete the new image unseen: it goes to `unclear/` like any other, under a second name.
    """
    try:
        raw = store.get(bucket, decision_marker_key(dest)).body
    except NotFound:
        return "none"
    try:
        marker = json.loads(raw)
        decided_etag = marker["original_metadata"]["source-etag"]
    except (ValueError, TypeError, KeyError):
        log.warning("unreadable decision marker for %s; routing the image as not decided", dest)
        return "other"
    if message.etag and decided_etag == message.etag:
        return "same"
    log.warning("decision marker for %s is about other bytes; routing the new image", dest)
    return "other"


def _refused(
    message: PredictionMessage,
    store: ObjectStore,
    bucket: str,
    dest: str,
    metadata: dict[str, str],
    content_type: str | None,
) -> tuple[Moved, _Source | None]:
    """Why a conditional copy was refused: a duplicate, newer source bytes, or another image's name."""
    source = (message.bucket, message.key)
    current = _current_source(message, store, bucket, dest)
    if isinstance(current, Moved):
        return current, None
    # The bytes seen here are the ones copied, by this attempt or an earlier one.
    seen = _Source(message.bucket, message.key, current.etag)
    existing = store.head(bucket, dest)
    if existing is None:
        # Neither condition holds any more: a concurrent write conflicted (S3's 409); try again later.
        raise StorageUnavailable(f"conditional copy to s3://{bucket}/{dest} conflicted; retry")
    if existing.metadata.get("source-etag") == current.etag:
        # Copied by an earlier delivery of this message that did not get to delete the source.
        return Moved("moved", dest), seen
    # A different image already holds this name: keep both, under a second name.
    final = alternate_key(dest, current.etag)
    try:
        store.copy(
            source,
            bucket,
            final,
            metadata=metadata,
            content_type=content_type,
            if_absent=True,
            source_etag=current.etag,
        )
    except AlreadyExists:
        # Either an earlier attempt stored this very image there, or the source changed since the HEAD
        # above (the copy's source condition failed): only the first is a move.
        held = store.head(bucket, final)
        if held is None or held.metadata.get("source-etag") != current.etag:
            raise StorageUnavailable(
                f"copy of s3://{message.bucket}/{message.key} to s3://{bucket}/{final} was refused and "
                "nothing of these bytes is there; retry"
            ) from None
    log.info("moved s3://%s/%s -> s3://%s/%s (name taken)", message.bucket, message.key, bucket, final)
    return Moved("moved", final), seen


def _current_source(
    message: PredictionMessage, store: ObjectStore, bucket: str, dest: str
) -> ObjectInfo | Moved:
    """The source as it is now, or why this message has nothing left to move (gone, or newer bytes)."""
    current = store.head(message.bucket, message.key)
    if current is None:
        return _source_gone(message, store, bucket, dest)
    if message.etag and current.etag != message.etag:
        # The key was overwritten after this prediction; the new bytes bring their own event.
        log.info("stale prediction for s3://%s/%s (etag changed), skipped", message.bucket, message.key)
        return Moved("stale", None)
    return current


def _source_gone(message: PredictionMessage, store: ObjectStore, bucket: str, dest: str) -> Moved:
    if store.head(bucket, dest) is not None:
        return Moved("already-done", dest)
    # Moved elsewhere already (an earlier delivery, a later decision) or deleted by an operator.
    log.warning(
        "s3://%s/%s is gone and %s does not exist; nothing to move", message.bucket, message.key, dest
    )
    return Moved("gone", None)

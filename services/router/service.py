"""Router adapter logic shared by the Lambda handler and the local worker: message in, object moved."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from partcheck.errors import AlreadyExists, NotFound, StorageUnavailable
from partcheck.layout import Route, decision_marker_key
from partcheck.messages import PredictionMessage
from partcheck.storage import ObjectStore
from partcheck.thresholds import Thresholds
from services.router.core import alternate_key, destination_key, object_metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    """What became of one message."""

    status: str  # moved | already-done | stale | gone | decided
    destination: str | None


def route_message(
    body: str, store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None = None
) -> Moved:
    """Move the message's image to its destination exactly once; idempotent under redelivery.

    A move is a conditional write of the destination (never overwriting) followed by a delete of the
    source, so a duplicate message, or a retry after a crash between the two steps, finds the copy
    already there and only finishes the delete.
    """
    moved, source = _place(body, store, prediction_bucket, thresholds)
    if source is not None:
        store.delete(*source)
    return moved


def route_messages(
    bodies: Sequence[str], store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None = None
) -> list[Exception | None]:
    """Route several messages, deleting their sources in one call per bucket; one outcome per body.

    The same two steps as `route_message`, in two passes: every destination is written first, then the
    sources go. A source that could not be deleted fails only its own message, whose redelivery finds
    the destination written and finishes the delete.
    """
    outcomes: list[Exception | None] = [None] * len(bodies)
    sources: dict[str, dict[str, list[int]]] = {}
    for i, body in enumerate(bodies):
        try:
            _, source = _place(body, store, prediction_bucket, thresholds)
        except Exception as exc:
            outcomes[i] = exc
            continue
        if source is not None:
            sources.setdefault(source[0], {}).setdefault(source[1], []).append(i)
    for bucket, keys in sources.items():
        for key, reason in store.delete_many(bucket, list(keys)).items():
            for i in keys.get(key, []):
                outcomes[i] = StorageUnavailable(f"delete s3://{bucket}/{key}: {reason}")
    return outcomes


def _place(
    body: str, store: ObjectStore, prediction_bucket: str, thresholds: Thresholds | None
) -> tuple[Moved, tuple[str, str] | None]:
    """Write the destination of one message; returns the outcome and the source left to delete."""
    message = PredictionMessage.from_json(body)
    dest = destination_key(message.key, message.prediction, thresholds)
    try:
        source = store.get(message.bucket, message.key)
    except NotFound:
        return _source_gone(message, store, prediction_bucket, dest), None
    if message.etag and source.info.etag != message.etag:
        # The key was overwritten after this prediction; the new bytes bring their own event.
        log.info("stale prediction for s3://%s/%s (etag changed), skipped", message.bucket, message.key)
        return Moved("stale", None), None
    if dest.startswith(Route.UNCLEAR.prefix) and store.head(prediction_bucket, decision_marker_key(dest)):
        # An inspector already decided this image; a redelivered message must not bring it back.
        return Moved("decided", None), (message.bucket, message.key)
    metadata = object_metadata(message, thresholds)
    content_type = source.info.content_type or "application/octet-stream"
    final = dest
    try:
        store.put(
            prediction_bucket, dest, source.body, metadata=metadata, content_type=content_type, if_absent=True
        )
    except AlreadyExists:
        existing = store.head(prediction_bucket, dest)
        if existing is None or existing.metadata.get("source-etag") != source.info.etag:
            # A different image already holds this name: keep both, under a second name.
            final = alternate_key(dest, source.info.etag)
            # AlreadyExists here: this very image was stored under the second name by an earlier attempt.
            with contextlib.suppress(AlreadyExists):
                store.put(
                    prediction_bucket,
                    final,
                    source.body,
                    metadata=metadata,
                    content_type=content_type,
                    if_absent=True,
                )
    log.info("moved s3://%s/%s -> s3://%s/%s", message.bucket, message.key, prediction_bucket, final)
    return Moved("moved", final), (message.bucket, message.key)


def _source_gone(message: PredictionMessage, store: ObjectStore, bucket: str, dest: str) -> Moved:
    if store.head(bucket, dest) is not None:
        return Moved("already-done", dest)
    # Moved elsewhere already (an earlier delivery, a later decision) or deleted by an operator.
    log.warning(
        "s3://%s/%s is gone and %s does not exist; nothing to move", message.bucket, message.key, dest
    )
    return Moved("gone", None)

"""Predict adapter logic shared by the Lambda handler and the local worker: S3 event in, message out."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote_plus

from pydantic import ValidationError

from partcheck.errors import (
    InvalidImage,
    InvalidInput,
    ModelError,
    NotFound,
    PartcheckError,
    StorageUnavailable,
)
from partcheck.layout import validate_relative_key
from partcheck.messages import PredictionMessage
from partcheck.storage import ObjectStore, Queue
from services.predict.core import Classifier

log = logging.getLogger(__name__)

# S3 notifications fire for PUT, POST, COPY and multipart completion; anything else is not an upload.
CREATED_EVENT = "ObjectCreated:"
FORWARDED_METADATA = ("line", "camera", "capture-time", "sha256", "source-name")
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """One object-created record of an S3 event notification."""

    bucket: str
    key: str
    etag: str | None
    size: int | None
    event_time: str | None


def parse_s3_event(event: Any) -> tuple[list[Upload], list[str]]:
    """The uploads in an S3 event notification and descriptions of records that are not uploads.

    InvalidInput if it is not an S3 notification at all; S3's test event holds no records.
    """
    if not isinstance(event, dict):
        raise InvalidInput("S3 event is not a JSON object")
    if event.get("Event") == "s3:TestEvent":
        return [], []
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidInput("S3 event has no Records list")
    uploads, others = [], []
    for record in records:
        try:
            name = _required(record["eventName"], str, "eventName")
            bucket = _required(record["s3"]["bucket"]["name"], str, "bucket name")
            obj = record["s3"]["object"]
            raw_key = _required(obj["key"], str, "object key")
            source = record.get("eventSource")
            etag = obj.get("eTag")
        except KeyError as exc:
            raise InvalidInput(f"malformed S3 event record: missing {exc}") from exc
        except (TypeError, AttributeError) as exc:
            raise InvalidInput(f"malformed S3 event record: not the S3 shape ({exc})") from exc
        if source not in (None, "aws:s3") or not name.startswith(CREATED_EVENT):
            others.append(f"{source} {name} s3://{bucket}/{raw_key}")
            continue
        # Checked here, where the record is at fault, so a hand-written event fails alone: later a
        # wrong type would surface as an error in the middle of the batch.
        size = _optional(obj.get("size"), int, "size")
        event_time = _optional(record.get("eventTime"), str, "eventTime")
        # Keys arrive URL-encoded with '+' for spaces.
        uploads.append(Upload(bucket, unquote_plus(raw_key), _optional(etag, str, "eTag"), size, event_time))
    return uploads, others


def _required(value: Any, kind: type[T], field: str) -> T:
    # bool is an int to isinstance, but never a size.
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise InvalidInput(
        f"malformed S3 event record: {field} is {type(value).__name__} {value!r:.40}, not {kind.__name__}"
    )


def _optional(value: Any, kind: type[T], field: str) -> T | None:
    return None if value is None else _required(value, kind, field)


@dataclass(frozen=True)
class _Fetched:
    """An uploaded image read from S3, waiting for the model."""

    body: bytes
    common: dict[str, Any]
    started: float
    fetched: float


def _fetch(upload: Upload, store: ObjectStore, max_image_bytes: int) -> PredictionMessage | _Fetched | None:
    """Read one upload: a finished `rejected` message, the bytes for the model, or None when it is gone."""
    started = time.perf_counter()
    base: dict[str, Any] = {
        "bucket": upload.bucket,
        "key": upload.key,
        "event_time": upload.event_time,
        "predicted_at": datetime.now(UTC).isoformat(),
    }
    try:
        validate_relative_key(upload.key)
    except InvalidInput as exc:
        # No prefix can hold such a key safely, so it waits in the dead-letter queue; the object stays put.
        raise InvalidInput(f"s3://{upload.bucket}/{upload.key!r}: {exc}") from exc
    if upload.size is not None and upload.size > max_image_bytes:
        return PredictionMessage(
            outcome="rejected",
            etag=upload.etag,
            size=upload.size,
            rejection_reason=f"object is {upload.size} bytes, over the limit of {max_image_bytes}",
            **base,
        )
    try:
        obj = store.get(upload.bucket, upload.key, max_bytes=max_image_bytes)
    except NotFound:
        log.info("s3://%s/%s is gone; already routed", upload.bucket, upload.key)
        return None
    except InvalidInput as exc:
        return PredictionMessage(
            outcome="rejected", etag=upload.etag, size=upload.size, rejection_reason=str(exc), **base
        )
    metadata = {k: v for k, v in obj.info.metadata.items() if k in FORWARDED_METADATA}
    common = {
        **base,
        "etag": obj.info.etag,
        "size": obj.info.size,
        "content_type": obj.info.content_type,
        "metadata": metadata,
    }
    if obj.info.size == 0:
        return PredictionMessage(outcome="rejected", rejection_reason="empty object (0 bytes)", **common)
    return _Fetched(obj.body, common, started, time.perf_counter())


def _classified(fetched: Sequence[_Fetched], classifier: Classifier) -> list[PredictionMessage | Exception]:
    """Run the model once over every fetched image; one message each, or what stopped it, in order."""
    if not fetched:
        return []
    t0 = time.perf_counter()
    try:
        results = classifier.predict_many([f.body for f in fetched])
        if len(results) != len(fetched):
            raise ModelError(f"classifier gave {len(results)} results for {len(fetched)} images")
    except InvalidInput as exc:
        # Bad images come back one by one; a refusal of the whole call says nothing about any message,
        # so they are retried, never dead-lettered together.
        return [ModelError(f"classifier failed on the batch: {exc}")] * len(fetched)
    except Exception as exc:
        # Model or Rekognition unavailable: only the events with an image here are retried.
        return [exc] * len(fetched)
    per_image = (time.perf_counter() - t0) * 1000 / len(fetched)
    out: list[PredictionMessage | Exception] = []
    for f, result in zip(fetched, results, strict=True):
        try:
            if isinstance(result, InvalidImage):
                message = PredictionMessage(
                    outcome="rejected", rejection_reason=f"not a usable image: {result}", **f.common
                )
            elif isinstance(result, InvalidInput):
                # About the call, not this image (InvalidImage is handled above): retried, never poison.
                out.append(ModelError(f"classifier refused the call: {result}"))
                continue
            elif isinstance(result, PartcheckError):
                out.append(result)  # not classified this time (throttled, unavailable): retried alone
                continue
            else:
                timings = {"fetch": (f.fetched - f.started) * 1000, "classify": per_image}
                message = PredictionMessage(
                    outcome="classified", prediction=result, timings_ms=timings, **f.common
                )
        except ValidationError as exc:
            out.append(_invalid_message(f.common, exc))
            continue
        out.append(message)
    return out


def _invalid_message(common: dict[str, Any], exc: ValidationError) -> InvalidInput:
    return InvalidInput(
        f"s3://{common.get('bucket')}/{common.get('key')!r}: no valid prediction message: "
        f"{exc.errors(include_url=False)}"
    )


def predict_upload(
    upload: Upload,
    store: ObjectStore,
    classifier: Classifier,
    max_image_bytes: int,
) -> PredictionMessage | None:
    """Classify one uploaded object; None when it is already gone (a duplicate event after routing)."""
    fetched = _fetch(upload, store, max_image_bytes)
    if not isinstance(fetched, _Fetched):
        return fetched
    message = _classified([fetched], classifier)[0]
    if isinstance(message, Exception):
        raise message
    return message


def predict_events(
    events: Sequence[Any],
    store: ObjectStore,
    classifier: Classifier,
    predictions: Queue,
    max_image_bytes: int,
) -> tuple[list[Exception | None], int]:
    """Classify the uploads of several S3 events as one model batch and send their predictions in batches.

    Returns one outcome per event and how many predictions were sent. An outcome is None when
    every prediction of the event was sent, InvalidInput when the event can never succeed (for the
    dead-letter queue), another error when it should be retried. A retried event re-sends predictions
    already sent; the router treats the duplicates as done. Nothing one event does fails another.
    """
    outcomes: list[Exception | None] = [None] * len(events)
    sent = 0
    unsupported: dict[int, list[str]] = {}
    ready: list[tuple[int, PredictionMessage]] = []
    fetched: list[tuple[int, _Fetched]] = []
    for i, event in enumerate(events):
        try:
            uploads, others = parse_s3_event(event)
            for upload in uploads:
                item = _fetch(upload, store, max_image_bytes)
                if isinstance(item, _Fetched):
                    fetched.append((i, item))
                elif item is not None:
                    ready.append((i, item))
        except PartcheckError as exc:
            outcomes[i] = exc
            continue
        except ValidationError as exc:
            outcomes[i] = InvalidInput(
                f"S3 event gives no valid prediction message: {exc.errors(include_url=False)}"
            )
            continue
        except Exception as exc:
            # A bug must not fail the other messages: this one alone is retried, then redriven.
            outcomes[i] = exc
            continue
        if others:
            unsupported[i] = others
    fetched = [(i, f) for i, f in fetched if outcomes[i] is None]
    ready = [(i, m) for i, m in ready if outcomes[i] is None]
    classified = _classified([f for _, f in fetched], classifier)
    for (i, _), result in zip(fetched, classified, strict=True):
        if isinstance(result, Exception):
            outcomes[i] = outcomes[i] or result
        else:
            ready.append((i, result))
    # An event with one failed image sends none, so the retry does not duplicate its other images.
    ready = [(i, m) for i, m in ready if outcomes[i] is None]
    failed = predictions.send_batch([m.to_json() for _, m in ready])
    for n, (i, message) in enumerate(ready):
        if n in failed:
            outcomes[i] = outcomes[i] or StorageUnavailable(f"prediction not sent: {failed[n]}")
            continue
        sent += 1
        label = message.prediction.label if message.prediction else "rejected"
        log.info("predicted s3://%s/%s: %s", message.bucket, message.key, label)
    for i, others in unsupported.items():
        # Not an upload: nothing to classify, but an unexpected event deserves a look in the DLQ.
        outcomes[i] = outcomes[i] or InvalidInput(f"unsupported S3 event records: {'; '.join(others)}")
    return outcomes, sent


def handle_s3_event(
    event: Any, store: ObjectStore, classifier: Classifier, predictions: Queue, max_image_bytes: int
) -> int:
    """Classify every upload in one S3 event and send its predictions; returns how many were sent."""
    (outcome,), sent = predict_events([event], store, classifier, predictions, max_image_bytes)
    if outcome is not None:
        raise outcome
    return sent


def predict_bodies(
    bodies: Sequence[str],
    store: ObjectStore,
    classifier: Classifier,
    predictions: Queue,
    max_image_bytes: int,
) -> list[Exception | None]:
    """SQS bodies that carry S3 events, handled as one batch: one outcome per body (see predict_events)."""
    outcomes: list[Exception | None] = [None] * len(bodies)
    events, index = [], []
    for i, body in enumerate(bodies):
        try:
            events.append(parse_body(body))
            index.append(i)
        except InvalidInput as exc:
            outcomes[i] = exc
    results, _ = predict_events(events, store, classifier, predictions, max_image_bytes)
    for i, outcome in zip(index, results, strict=True):
        outcomes[i] = outcome
    return outcomes


def parse_body(body: str) -> Any:
    """Decode an SQS body that carries an S3 event notification."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError also covers an integer over Python's digit limit, RecursionError absurd nesting.
        raise InvalidInput(f"message body is not JSON: {exc}") from exc

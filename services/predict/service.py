"""Predict adapter logic shared by the Lambda handler and the local worker: S3 event in, message out."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from partcheck.errors import InvalidImage, InvalidInput, NotFound
from partcheck.layout import validate_relative_key
from partcheck.messages import PredictionMessage
from partcheck.storage import ObjectStore, Queue
from services.predict.core import Classifier, classify

log = logging.getLogger(__name__)

# S3 notifications fire for PUT, POST, COPY and multipart completion; anything else is not an upload.
CREATED_EVENT = "ObjectCreated:"
FORWARDED_METADATA = ("line", "camera", "capture-time", "sha256", "source-name")


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
            name = str(record["eventName"])
            bucket = str(record["s3"]["bucket"]["name"])
            raw_key = str(record["s3"]["object"]["key"])
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"malformed S3 event record: missing {exc}") from exc
        if record.get("eventSource") not in (None, "aws:s3") or not name.startswith(CREATED_EVENT):
            others.append(f"{record.get('eventSource')} {name} s3://{bucket}/{raw_key}")
            continue
        obj = record["s3"]["object"]
        # Keys arrive URL-encoded with '+' for spaces.
        uploads.append(
            Upload(bucket, unquote_plus(raw_key), obj.get("eTag"), obj.get("size"), record.get("eventTime"))
        )
    return uploads, others


def predict_upload(
    upload: Upload,
    store: ObjectStore,
    classifier: Classifier,
    max_image_bytes: int,
) -> PredictionMessage | None:
    """Classify one uploaded object; None when it is already gone (a duplicate event after routing)."""
    started = time.perf_counter()
    now = datetime.now(UTC).isoformat()
    base: dict[str, Any] = {
        "bucket": upload.bucket,
        "key": upload.key,
        "event_time": upload.event_time,
        "predicted_at": now,
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
    fetched = time.perf_counter()
    metadata = {k: v for k, v in obj.info.metadata.items() if k in FORWARDED_METADATA}
    common = {**base, "etag": obj.info.etag, "size": obj.info.size, "metadata": metadata}
    if obj.info.size == 0:
        return PredictionMessage(outcome="rejected", rejection_reason="empty object (0 bytes)", **common)
    try:
        prediction = classify(obj.body, classifier)
    except InvalidImage as exc:
        return PredictionMessage(outcome="rejected", rejection_reason=f"not a usable image: {exc}", **common)
    done = time.perf_counter()
    timings = {"fetch": (fetched - started) * 1000, "classify": (done - fetched) * 1000}
    return PredictionMessage(outcome="classified", prediction=prediction, timings_ms=timings, **common)


def handle_s3_event(
    event: Any, store: ObjectStore, classifier: Classifier, predictions: Queue, max_image_bytes: int
) -> int:
    """Classify every upload in an S3 event and send its prediction; returns how many were sent."""
    uploads, others = parse_s3_event(event)
    sent = 0
    for upload in uploads:
        message = predict_upload(upload, store, classifier, max_image_bytes)
        if message is None:
            continue
        predictions.send(message.to_json())
        label = message.prediction.label if message.prediction else "rejected"
        log.info("predicted s3://%s/%s: %s", upload.bucket, upload.key, label)
        sent += 1
    if others:
        # Not an upload: nothing to classify, but an unexpected event deserves a look in the DLQ.
        raise InvalidInput(f"unsupported S3 event records: {'; '.join(others)}")
    return sent


def parse_body(body: str) -> Any:
    """Decode an SQS body that carries an S3 event notification."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"message body is not JSON: {exc}") from exc

"""Lambda entry point of predict: S3 event notifications, directly or wrapped in SQS messages."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from partcheck.aws import client
from partcheck.consumer import DeadLetters, handle_sqs_batch, queue_url_from_arn
from partcheck.storage import ObjectStore, Queue
from services.predict.core import Classifier
from services.predict.service import handle_s3_event, predict_bodies
from services.predict.settings import PredictSettings

logging.getLogger().setLevel(logging.INFO)


@dataclass(frozen=True)
class Runtime:
    """Everything an invocation needs, built once per Lambda container."""

    store: ObjectStore
    predictions: Queue
    classifier: Classifier
    dead_letters: DeadLetters
    queue_url_of: Callable[[str], str]
    max_image_bytes: int


@functools.cache
def runtime() -> Runtime:
    """Settings, clients and the model, loaded on the first invocation and reused afterwards."""
    from services.predict.backends import load_classifier

    settings = PredictSettings()
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    rekognition = client("rekognition", settings.aws()) if settings.backend == "rekognition" else None
    return Runtime(
        ObjectStore(s3),
        Queue.by_name(sqs, settings.predictions_queue),
        load_classifier(settings, rekognition),
        DeadLetters(sqs),
        queue_url_from_arn(sqs),
        settings.max_image_bytes,
    )


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """S3 notification (direct trigger) or an SQS batch of them (queue trigger, partial failures)."""

    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":

        def on_bodies(bodies: Sequence[str]) -> list[Exception | None]:
            return predict_bodies(bodies, rt.store, rt.classifier, rt.predictions, rt.max_image_bytes)

        return handle_sqs_batch(event, on_bodies, rt.dead_letters, rt.queue_url_of)
    # A direct S3 invocation is retried by Lambda as a whole on error; each record is idempotent.
    handle_s3_event(event, rt.store, rt.classifier, rt.predictions, rt.max_image_bytes)
    return {"status": "ok", "records": len(records)}


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The function's handler."""
    return handle(event, runtime())

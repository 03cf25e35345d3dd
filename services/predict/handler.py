"""Lambda entry point of predict: S3 event notifications, directly or wrapped in SQS messages."""

from __future__ import annotations

import logging
from typing import Any

from partcheck.aws import client
from partcheck.consumer import DeadLetters, handle_sqs_batch, queue_url_from_arn
from partcheck.storage import ObjectStore, Queue
from services.predict.backends import load_classifier
from services.predict.service import handle_s3_event, parse_body
from services.predict.settings import PredictSettings

logging.getLogger().setLevel(logging.INFO)

# Module scope: built once per Lambda container, reused across invocations.
SETTINGS = PredictSettings()
_s3 = client("s3", SETTINGS.aws())
_sqs = client("sqs", SETTINGS.aws())
STORE = ObjectStore(_s3)
PREDICTIONS = Queue.by_name(_sqs, SETTINGS.predictions_queue)
CLASSIFIER = load_classifier(SETTINGS, client("rekognition", SETTINGS.aws())
                             if SETTINGS.backend == "rekognition" else None)
DEAD_LETTERS = DeadLetters(_sqs)
QUEUE_URL_OF = queue_url_from_arn(_sqs)


def _handle_event(event: Any) -> None:
    handle_s3_event(event, STORE, CLASSIFIER, PREDICTIONS, SETTINGS.max_image_bytes)


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """S3 notification (direct trigger) or an SQS batch of them (queue trigger, partial failures)."""
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return handle_sqs_batch(event, lambda body: _handle_event(parse_body(body)), DEAD_LETTERS,
                                QUEUE_URL_OF)
    # A direct S3 invocation is retried by Lambda as a whole on error; records are idempotent.
    _handle_event(event)
    return {"status": "ok", "records": len(records)}

"""Lambda entry point of the router: SQS batches of predictions, reporting only failed records."""

from __future__ import annotations

import logging
from typing import Any

from partcheck.aws import client
from partcheck.consumer import DeadLetters, handle_sqs_batch, queue_url_from_arn
from partcheck.storage import ObjectStore
from services.router.service import route_message
from services.router.settings import RouterSettings

logging.getLogger().setLevel(logging.INFO)

SETTINGS = RouterSettings()
_sqs = client("sqs", SETTINGS.aws())
STORE = ObjectStore(client("s3", SETTINGS.aws()))
THRESHOLDS = SETTINGS.thresholds()
DEAD_LETTERS = DeadLetters(_sqs)
QUEUE_URL_OF = queue_url_from_arn(_sqs)


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """Route each prediction; failed records come back as `batchItemFailures` for SQS to redeliver."""
    return handle_sqs_batch(event, _route, DEAD_LETTERS, QUEUE_URL_OF)


def _route(body: str) -> None:
    route_message(body, STORE, SETTINGS.prediction_bucket, THRESHOLDS)

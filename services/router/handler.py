"""Lambda entry point of the router: SQS batches of predictions, reporting only failed records."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from partcheck.aws import client
from partcheck.consumer import DeadLetters, handle_sqs_batch, queue_url_from_arn
from partcheck.storage import ObjectStore
from partcheck.thresholds import Thresholds
from services.router.service import route_messages
from services.router.settings import RouterSettings

logging.getLogger().setLevel(logging.INFO)


@dataclass(frozen=True)
class Runtime:
    """Everything an invocation needs, built once per Lambda container."""

    store: ObjectStore
    prediction_bucket: str
    thresholds: Thresholds | None
    dead_letters: DeadLetters
    queue_url_of: Callable[[str], str]


@functools.cache
def runtime() -> Runtime:
    """Settings and clients, built on the first invocation and reused afterwards."""
    settings = RouterSettings()
    sqs = client("sqs", settings.aws())
    return Runtime(
        ObjectStore(client("s3", settings.aws())),
        settings.prediction_bucket,
        settings.thresholds(),
        DeadLetters(sqs),
        queue_url_from_arn(sqs),
    )


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, list[dict[str, str]]]:
    """Route each prediction; failed records come back as `batchItemFailures` for SQS to redeliver."""

    def on_bodies(bodies: Sequence[str]) -> list[Exception | None]:
        return route_messages(bodies, rt.store, rt.prediction_bucket, rt.thresholds)

    return handle_sqs_batch(event, on_bodies, rt.dead_letters, rt.queue_url_of)


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """The function's handler."""
    return handle(event, runtime())

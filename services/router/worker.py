"""Local worker of the router: long-polls the predictions queue."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from partcheck.aws import client
from partcheck.consumer import DeadLetters, run_until_signalled, run_worker
from partcheck.storage import ObjectStore, Queue
from services.router.service import route_messages
from services.router.settings import RouterSettings

log = logging.getLogger(__name__)


def run(settings: RouterSettings, stop: threading.Event) -> None:
    """Route predictions until `stop` is set."""
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    store = ObjectStore(s3)
    queue = Queue.by_name(sqs, settings.predictions_queue)
    thresholds = settings.thresholds()
    log.info("router worker on %s -> s3://%s", queue.url, settings.prediction_bucket)

    def handle(bodies: Sequence[str]) -> list[Exception | None]:
        return route_messages(bodies, store, settings.prediction_bucket, thresholds)

    run_worker(
        queue,
        handle,
        DeadLetters(sqs),
        stop,
        settings.polling(),
    )


def main() -> None:
    """Entry point: settings from the environment, stop on SIGTERM/SIGINT."""
    settings = RouterSettings()
    run_until_signalled(lambda stop: run(settings, stop))

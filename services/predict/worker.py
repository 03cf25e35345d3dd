"""Local worker of predict: long-polls the uploads queue that S3 notifications feed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from partcheck.aws import client
from partcheck.consumer import DeadLetters, run_until_signalled, run_worker
from partcheck.storage import ObjectStore, Queue
from services.predict.core import Classifier
from services.predict.service import predict_bodies
from services.predict.settings import PredictSettings

log = logging.getLogger(__name__)


def run(settings: PredictSettings, stop: threading.Event, classifier: Classifier | None = None) -> None:
    """Consume S3 notifications until `stop` is set; the configured model unless one is given."""
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    if classifier is None:
        from services.predict.backends import load_classifier

        rekognition = client("rekognition", settings.aws()) if settings.backend == "rekognition" else None
        classifier = load_classifier(settings, rekognition)
    store = ObjectStore(s3)
    uploads = Queue.by_name(sqs, settings.uploads_queue)
    predictions = Queue.by_name(sqs, settings.predictions_queue)
    log.info("predict worker: %s %s on %s", classifier.name, classifier.version, uploads.url)

    def handle(bodies: Sequence[str]) -> list[Exception | None]:
        return predict_bodies(bodies, store, classifier, predictions, settings.max_image_bytes)

    run_worker(
        uploads,
        handle,
        DeadLetters(sqs),
        stop,
        settings.polling(),
    )


def main() -> None:
    """Entry point: settings from the environment, stop on SIGTERM/SIGINT."""
    settings = PredictSettings()
    run_until_signalled(lambda stop: run(settings, stop))

"""What the stack holds right now: objects per prefix, queue depths, endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from partcheck.aws import aws_errors
from partcheck.layout import Route
from partcheck.stack import HEALTH_PATH
from partcheck.stack.bootstrap import DLQ_SUFFIX
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore, Queue

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def snapshot_health(endpoint: str) -> dict[str, Any]:
    """What the local AWS says of its snapshots (`HEALTH_PATH`); `unknown` from any other endpoint."""
    try:
        body = httpx.get(endpoint.rstrip("/") + HEALTH_PATH, timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return {"snapshots": "unknown"}
    return body if isinstance(body, dict) and "snapshots" in body else {"snapshots": "unknown"}


def stack_status(
    s3: S3Client, sqs: SQSClient, settings: StackSettings, review_url: str | None
) -> dict[str, Any]:
    """Counts per prediction-bucket prefix, inbound backlog, queue depths; the `status --json` document."""
    store = ObjectStore(s3)
    counts = {route.value: 0 for route in Route}
    for obj in store.list(settings.prediction_bucket):
        top = obj.key.split("/", 1)[0]
        if top in counts:
            counts[top] += 1
    inbound = sum(1 for _ in store.list(settings.inbound_bucket))
    queues: dict[str, Any] = {}
    for name in (settings.uploads_queue, settings.predictions_queue):
        for q in (name, name + DLQ_SUFFIX):
            with aws_errors(f"queue {q}"):
                url = sqs.get_queue_url(QueueName=q)["QueueUrl"]
            queues[q] = Queue(sqs, url).counts()
    return {
        **counts,
        "inbound": inbound,
        "queues": queues,
        # A full disk makes moto hold uploads unanswered in commit mode: status says why.
        "storage": snapshot_health(settings.local_endpoint),
        "endpoints": {"s3": settings.local_endpoint, "sqs": settings.local_endpoint, "review": review_url},
        "buckets": {"inbound": settings.inbound_bucket, "prediction": settings.prediction_bucket},
    }

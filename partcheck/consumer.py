"""At-least-once SQS consumption shared by the local workers and the Lambda handlers.

A handler raises InvalidInput for a message that can never succeed: it goes straight to the dead-letter
queue with its reason, because waiting for maxReceiveCount would only delay the same answer. Any other
error leaves the message for redelivery after its visibility timeout.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partcheck.aws import aws_errors
from partcheck.errors import InvalidInput, PartcheckError, StorageUnavailable
from partcheck.storage import Queue, QueueMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)
# One outcome per body, in order: None = done, InvalidInput = poison (dead-letter), other = retry later.
BatchHandler = Callable[[Sequence[str]], list[Exception | None]]


@dataclass(frozen=True)
class Polling:
    """How a worker long-polls: messages per receive, wait, visibility timeout, parallel consumers."""

    batch_size: int = 10
    wait_s: int = 20
    visibility_s: int | None = None
    concurrency: int = 8


class DeadLetters:
    """Sends poison messages to a queue's dead-letter queue, found through its redrive policy."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    def url_for(self, source_queue_url: str) -> str:
        """The dead-letter queue URL of a source queue."""
        if source_queue_url not in self._urls:
            with aws_errors(f"redrive policy of {source_queue_url}"):
                attrs = self._sqs.get_queue_attributes(
                    QueueUrl=source_queue_url, AttributeNames=["RedrivePolicy"]
                )["Attributes"]
                policy = json.loads(attrs.get("RedrivePolicy") or "{}")
                if "deadLetterTargetArn" not in policy:
                    raise StorageUnavailable(f"queue {source_queue_url} has no dead-letter queue")
                name = policy["deadLetterTargetArn"].rsplit(":", 1)[-1]
                self._urls[source_queue_url] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[source_queue_url]

    def send(self, source_queue_url: str, body: str, reason: str) -> None:
        """Park a message in the dead-letter queue with the reason as a message attribute."""
        with aws_errors("send to dead-letter queue"):
            self._sqs.send_message(
                QueueUrl=self.url_for(source_queue_url),
                MessageBody=body or "<empty>",
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
                    "source_queue": {"DataType": "String", "StringValue": source_queue_url},
                },
            )


def settle(queue_url: str, body: str, outcome: Exception | None, dead_letters: DeadLetters) -> bool:
    """True when a message is finished: done, or parked in the dead-letter queue with its reason."""
    if outcome is None:
        return True
    if isinstance(outcome, InvalidInput):
        log.warning("poison message to dead-letter queue: %s", outcome, extra={"queue": queue_url})
        try:
            dead_letters.send(queue_url, body, str(outcome))
        except PartcheckError as exc:
            # The message reappears and is handled again, idempotently.
            log.warning("could not dead-letter a message: %s", exc, extra={"queue": queue_url})
            return False
        return True
    if isinstance(outcome, PartcheckError):
        log.warning("message left for redelivery: %s", outcome, extra={"queue": queue_url})
    else:
        # A bug must not kill the worker; the message is retried and lands in the DLQ by redrive.
        log.error("unexpected error, message left for redelivery", exc_info=outcome)
    return False


def _outcomes(handler: BatchHandler, bodies: list[str]) -> list[Exception | None]:
    try:
        outcomes = handler(bodies)
    except InvalidInput as exc:
        # Poison is a verdict on one message; a whole batch failing says nothing about each of them, so
        # they are retried (and redriven if it persists) instead of all being dead-lettered at once.
        failure = PartcheckError(f"batch handler failed: {exc}")
        failure.__cause__ = exc
        return [failure] * len(bodies)
    except Exception as exc:
        return [exc] * len(bodies)
    if len(outcomes) != len(bodies):
        error = RuntimeError(f"handler gave {len(outcomes)} outcomes for {len(bodies)} messages")
        return [error] * len(bodies)
    return outcomes


def run_worker(
    queue: Queue,
    handler: BatchHandler,
    dead_letters: DeadLetters,
    stop: threading.Event,
    polling: Polling | None = None,
) -> None:
    """Long-poll `queue` with `polling.concurrency` consumers until `stop` is set; ack only after success.

    Each received batch goes to the handler at once, so a handler can batch its own work (the predict
    worker runs the model once per batch and sends its predictions ten to a call).

    Several independent consumers, not one poller feeding a pool: a long poll returns as soon as any
    message is there, so under a steady trickle batches hold one or two messages and a single poller
    would serialise the whole worker on its receive round trips.
    """
    polling = polling or Polling()
    consumers = [
        threading.Thread(
            target=_consume,
            args=(queue, handler, dead_letters, stop, polling),
            name=f"consumer-{i}",
            daemon=True,
        )
        for i in range(polling.concurrency)
    ]
    for thread in consumers:
        thread.start()
    for thread in consumers:
        thread.join()


def _consume(
    queue: Queue,
    handler: BatchHandler,
    dead_letters: DeadLetters,
    stop: threading.Event,
    polling: Polling,
) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            messages = queue.receive(polling.batch_size, polling.wait_s, polling.visibility_s)
            backoff = 0.5
        except PartcheckError as exc:
            log.warning("receive failed, retrying in %.1fs: %s", backoff, exc)
            stop.wait(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 30.0)
            continue
        if not messages:
            continue
        outcomes = _outcomes(handler, [m.body for m in messages])
        finished = [
            m.receipt_handle
            for m, outcome in zip(messages, outcomes, strict=True)
            if _settled(queue.url, m, outcome, dead_letters)
        ]
        if finished:
            try:
                queue.delete_batch(finished)
            except PartcheckError as exc:
                # They reappear after their visibility timeout and are handled again, idempotently; the
                # error says how many of them were not deleted.
                log.warning("could not acknowledge every finished message: %s", exc)


def _settled(
    queue_url: str, message: QueueMessage, outcome: Exception | None, dead_letters: DeadLetters
) -> bool:
    try:
        return settle(queue_url, message.body, outcome, dead_letters)
    except Exception:
        log.exception("could not settle message %s", message.message_id)
    return False


def handle_sqs_batch(
    event: dict[str, Any],
    handler: BatchHandler,
    dead_letters: DeadLetters,
    queue_url_of: Callable[[str], str],
) -> dict[str, list[dict[str, str]]]:
    """Lambda SQS batch: report only the records that must be retried (`ReportBatchItemFailures`)."""
    records = event.get("Records", [])
    bodies = [str(record.get("body", "")) for record in records]
    failures: list[dict[str, str]] = []
    for record, body, outcome in zip(records, bodies, _outcomes(handler, bodies), strict=True):
        message_id = record.get("messageId", "")
        try:
            done = settle(queue_url_of(record.get("eventSourceARN", "")), body, outcome, dead_letters)
        except Exception:
            log.exception("record %s failed", message_id)
            done = False
        if not done:
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def queue_url_from_arn(sqs: SQSClient) -> Callable[[str], str]:
    """Resolve an SQS ARN (arn:aws:sqs:region:account:name) to its URL, cached."""
    cache: dict[str, str] = {}

    def resolve(arn: str) -> str:
        if arn not in cache:
            parts = arn.split(":")
            if len(parts) != 6:
                raise InvalidInput(f"not an SQS ARN: {arn!r}")
            with aws_errors(f"resolve {arn}"):
                cache[arn] = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
                    "QueueUrl"
                ]
        return cache[arn]

    return resolve


def run_until_signalled(target: Callable[[threading.Event], None], grace_s: float = 5.0) -> None:
    """Run a worker loop in a thread until SIGTERM/SIGINT, then give it `grace_s` to finish its batch.

    A worker blocked in a 20-second long poll holds no work, and every handler is idempotent, so
    abandoning it after the grace period loses nothing: unfinished messages reappear after their
    visibility timeout.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target(stop)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    thread = threading.Thread(target=guarded, name="worker", daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    thread.join(grace_s)
    if errors:
        raise errors[0]

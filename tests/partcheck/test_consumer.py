"""At-least-once consumption: how handler outcomes become acknowledgements, retries and dead letters."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from partcheck.consumer import Polling, handle_sqs_batch, run_worker
from partcheck.errors import InvalidInput, StorageUnavailable
from partcheck.storage import QueueMessage

pytestmark = pytest.mark.unit


class _DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, source_queue_url: str, body: str, reason: str) -> None:
        self.sent.append((body, reason))


def _sqs_event(bodies: Sequence[str]) -> dict[str, object]:
    return {
        "Records": [
            {"messageId": f"m{n}", "body": body, "eventSource": "aws:sqs", "eventSourceARN": "arn"}
            for n, body in enumerate(bodies)
        ]
    }


def test_poison_from_the_handler_dead_letters_only_that_message() -> None:
    dead = _DeadLetters()

    def handler(bodies: Sequence[str]) -> list[Exception | None]:
        return [InvalidInput("bad") if b == "bad" else None for b in bodies]

    result = handle_sqs_batch(_sqs_event(["a", "bad", "b"]), handler, dead, lambda arn: "url")
    assert result == {"batchItemFailures": []}
    assert dead.sent == [("bad", "bad")]


def test_invalid_input_raised_for_the_whole_batch_retries_every_message_instead_of_dead_lettering() -> None:
    dead = _DeadLetters()

    def handler(bodies: Sequence[str]) -> list[Exception | None]:
        raise InvalidInput("Request has invalid parameters")

    result = handle_sqs_batch(_sqs_event(["a", "b"]), handler, dead, lambda arn: "url")
    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    assert dead.sent == []


class _Queue:
    """Gives one batch, then stops the worker; its delete fails for some messages, as SQS's can."""

    url = "https://sqs.example/q"

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.deleted: list[list[str]] = []

    def receive(self, max_messages: int, wait_s: int, visibility_s: int | None) -> list[QueueMessage]:
        if self.deleted:
            self.stop.set()
            return []
        return [QueueMessage(f"id{n}", f"h{n}", "body", 1) for n in range(3)]

    def delete_batch(self, receipt_handles: list[str]) -> None:
        self.deleted.append(receipt_handles)
        raise StorageUnavailable(f"1 of {len(receipt_handles)} messages not deleted from {self.url}")


def test_a_partly_failed_acknowledgement_is_logged_with_what_failed(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    queue = _Queue(stop)
    with caplog.at_level(logging.WARNING, logger="partcheck.consumer"):
        run_worker(
            queue,
            lambda bodies: [None] * len(bodies),
            _DeadLetters(),
            stop,
            Polling(wait_s=0, concurrency=1),
        )
    assert queue.deleted == [["h0", "h1", "h2"]]
    [record] = [r for r in caplog.records if "acknowledge" in r.getMessage()]
    assert "1 of 3 messages not deleted" in record.getMessage()
    assert "could not acknowledge 3 messages" not in record.getMessage()

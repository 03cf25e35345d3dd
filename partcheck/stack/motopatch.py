"""Two hot paths of moto's server that grow with the backlog or with every request, made constant-time.

Found by profiling the moto process under `python -m bench pipeline` (py-spy, docs/pipeline.md):

- `SQSBackend.receive_message` checks each message it hands out against the queue's retention period by
  calling `get_queue_attributes`, which builds *every* attribute, including three approximate message
  counts that each scan the whole queue. A receive of 10 from a backlog of n costs ~30 n message visits:
  38 % of moto's CPU in a 500-image burst, and the reason throughput fell as the backlog grew.
- `SQSBackend.send_message` reads one flag from `queue.attributes`, which again counts the whole queue
  three times: every S3 notification and every prediction paid O(backlog). While a send runs, the three
  counts are skipped (0) in that thread only; `GetQueueAttributes` from any other request is unchanged.
- every request asks `backends.list_of_moto_modules()`, which lists moto's package folder and stats each
  entry (about 200 system calls), while holding the dispatcher's lock.

Both replacements return what the originals return; only the local stack and the tests' server use them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_applied = False
_sending = threading.local()
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


def apply() -> None:
    """Patch the running process's moto (idempotent); call before starting a moto server."""
    global _applied
    if _applied:
        return
    import moto.backends as backends
    from moto.core.utils import unix_time
    from moto.sqs.models import Queue, SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
        return bool(retain_until > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    for name in _COUNTS:
        setattr(Queue, name, property(_skipped_while_sending(getattr(Queue, name).fget)))
    send_message = SQSBackend.send_message

    @functools.wraps(send_message)
    def send_without_counts(self: Any, *args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _sending.active = False

    SQSBackend.send_message = send_without_counts  # type: ignore[method-assign]

    # The folder listing cannot change while the process runs (moto is imported once).
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)
    _applied = True


def _skipped_while_sending(count: Callable[[Any], int]) -> Callable[[Any], int]:
    def fget(queue: Any) -> int:
        return 0 if getattr(_sending, "active", False) else count(queue)

    return fget

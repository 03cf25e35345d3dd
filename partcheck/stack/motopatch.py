"""moto's server made to scale with the pipeline's load, to keep every message, and to copy as S3 does.

The hot paths below grow with the backlog or cost on every request; each is now cheap.

Found by profiling the moto process under `python -m bench pipeline` (py-spy, docs/pipeline.md):

- `SQSBackend.receive_message` checks each message it hands out against the queue's retention period by
  calling `get_queue_attributes`, which builds *every* attribute, including three approximate message
  counts that each scan the whole queue. A receive of 10 from a backlog of n costs ~30 n message visits:
  38 % of moto's CPU in a 500-image burst, and the reason throughput fell as the backlog grew.
- `SQSBackend.send_message` reads one flag from `queue.attributes`, which again counts the whole queue
  three times: every S3 notification and every prediction paid O(backlog). While a send runs, the three
  counts are skipped (0) in that thread only; `GetQueueAttributes` from any other request is unchanged.
- `Queue.messages`, the visible messages that every receive (and every long-poll wake-up, for every
  waiting consumer, on every new message) scans, read the clock twice per message; it now reads it once
  per scan, and a waiting consumer stops at the first visible message, looking from the newest.
- every request matches its host name against every service's URL patterns, and asks
  `backends.list_of_moto_modules()`, which lists moto's package folder and stats each
  entry (about 200 system calls), while holding the dispatcher's lock.

Each replacement returns what the original returns; only the local stack and the tests' server use them.

A thread-safety bug is fixed too: `Queue.delete_message` rebuilds the message list without the queue's
lock and then assigns it, so a message sent meanwhile (an S3 notification) vanished, and of two
concurrent deletes the later assignment brought the other's message back. Under the pipeline bench
this lost one upload notification in 1,500 (the image stayed in the inbound bucket with no message
anywhere) and re-delivered acknowledged ones. Deletes now hold the lock that sends already take.

One gap in moto's S3 is filled the same way: CopyObject ignores `If-None-Match: *` (copy only if the
destination key is free) and `x-amz-copy-source-if-match` (copy only if the source still has this ETag).
AWS honours both and the router's move relies on them, so here they answer 412 as S3 does.
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
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
        return bool(retain_until > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    delete_message = Queue.delete_message

    @functools.wraps(delete_message)
    def locked_delete(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            delete_message(self, receipt_handle)

    Queue.delete_message = locked_delete  # type: ignore[method-assign]

    def visible_messages(queue: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]

    def any_visible(queue: Any) -> bool:
        now = unix_time_millis()
        return any(now > m.visible_at and not now < m.delayed_until for m in reversed(queue._messages))

    def wait_for_messages(self: Any, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait_for(lambda: any_visible(self), timeout=timeout)

    Queue.messages = property(visible_messages)  # type: ignore[method-assign,assignment]
    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]

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

    _conditional_copy()
    _cached_backend_lookup()

    # The folder listing cannot change while the process runs (moto is imported once).
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)
    _applied = True


def _skipped_while_sending(count: Callable[[Any], int]) -> Callable[[Any], int]:
    def fget(queue: Any) -> int:
        return 0 if getattr(_sending, "active", False) else count(queue)

    return fget


def _conditional_copy() -> None:
    from urllib.parse import unquote, urlparse

    from moto.s3.exceptions import MissingKey, PreconditionFailed
    from moto.s3.responses import S3Response

    copy_object = S3Response.copy_object

    @functools.wraps(copy_object)
    def checked_copy(self: Any) -> Any:
        destination_free = self.headers.get("If-None-Match") != "*" or (
            self.backend.get_object(self.bucket_name, self.parse_key_name()) is None
        )
        if not destination_free:
            raise PreconditionFailed("If-None-Match")
        wanted = self.headers.get("x-amz-copy-source-if-match")
        if wanted:
            path = urlparse(str(self.headers.get("x-amz-copy-source"))).path
            src_bucket, src_key = unquote(path).lstrip("/").split("/", 1)
            current = self.backend.get_object(src_bucket, src_key)
            if current is None:
                raise MissingKey(key=src_key)
            if wanted.strip('"') != current.etag.strip('"'):
                raise PreconditionFailed("x-amz-copy-source-If-Match")
        return copy_object(self)

    S3Response.copy_object = checked_copy  # type: ignore[method-assign]


def _cached_backend_lookup() -> None:
    # Which backend serves a host name is a pure function of the name and moto's static URL patterns,
    # but moto matches it against every service's regular expressions on every request.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lookup = DomainDispatcherApplication.get_backend_for_host
    cache: dict[str | None, Any] = {}

    @functools.wraps(lookup)
    def cached(self: Any, host: str | None) -> Any:
        if host not in cache:
            cache[host] = lookup(self, host)
        return cache[host]

    DomainDispatcherApplication.get_backend_for_host = cached  # type: ignore[method-assign]

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

Costs every request paid for answers that never change (measured per request type, docs/pipeline.md):

- moto's Flask apps run in debug mode, so each request that reads its form built a new class (flask's
  `attach_enctype_error_multidict`, a friendlier KeyError for multipart fields): ~30 % of a GetObject;
- each action call listed the response class's methods with `inspect.getmembers`;
- a receipt handle was 185 separate `random.choice` calls (a tenth of a ReceiveMessage);
- ISO 8601 timestamps (LastModified of a copy or listing) went through dateutil's general parser;
- `camelcase_to_underscores`, a character-by-character loop, ran for each of a queue's ~20 attribute
  names on every message sent (a third of a SendMessageBatch) and for every action name;
- `Queue.delete_message` asked every message of the queue, twice, for the list of its handles: a
  DeleteMessageBatch of 10 on a backlog of n made 20 n calls; one C-speed pass finds the message now.

Each replacement returns what the original returns; only the local stack and the tests' server use them.

A thread-safety bug is fixed too: `Queue.delete_message` rebuilds the message list without the queue's
lock and then assigns it, so a message sent meanwhile (an S3 notification) vanished, and of two
concurrent deletes the later assignment brought the other's message back. Under the pipeline bench
this lost one upload notification in 1,500 (the image stayed in the inbound bucket with no message
anywhere) and re-delivered acknowledged ones. Deletes now hold the lock that sends already take.

One gap in moto's S3 is filled the same way: CopyObject ignores `If-None-Match: *` (copy only if the
destination key is free) and `x-amz-copy-source-if-match` (copy only if the source still has this ETag).
AWS honours both and the router's move relies on them, so here they answer 412 as S3 does.
DeleteObjects likewise ignores the `ETag` of each object (delete only if the object still has it), which
the router's batch delete of sources relies on: such an object is kept and reported under `Errors` with
`PreconditionFailed` (or `NoSuchKey` if absent, as moto's conditional DeleteObject answers).
"""

from __future__ import annotations

import functools
import re
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

    Queue.delete_message = _locked_indexed_delete(Queue.delete_message)  # type: ignore[method-assign]

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
    _conditional_batch_delete()
    _cached_backend_lookup()
    _no_debug_form_helper()
    _cached_method_names()
    _fast_receipt_handles()
    _fast_timestamps()
    _cached_camelcase()

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


def _conditional_batch_delete() -> None:
    import xmltodict  # type: ignore[import-untyped]
    from moto.core.responses import ActionResult
    from moto.s3.responses import S3Response

    delete_keys = S3Response._bucket_response_delete_keys

    @functools.wraps(delete_keys)
    def checked_delete_keys(self: Any, bucket_name: str, authenticated: bool = True) -> Any:
        request = xmltodict.parse(self.body, strip_whitespace=False)
        objects = request["Delete"].get("Object", [])
        objects = objects if isinstance(objects, list) else [objects]
        kept: list[Any] = []
        refused: list[dict[str, str]] = []
        for obj in objects:
            wanted = obj.get("ETag") if authenticated else None
            if not wanted:
                kept.append(obj)
                continue
            current = self.backend.get_object(bucket_name, obj["Key"])
            if current is None:
                refused.append({"Key": obj["Key"], "Code": "NoSuchKey", "Message": "The key does not exist."})
            elif wanted != "*" and wanted.strip('"') != current.etag.strip('"'):
                message = "At least one of the pre-conditions you specified did not hold"
                refused.append({"Key": obj["Key"], "Code": "PreconditionFailed", "Message": message})
            else:
                kept.append(obj)
        if not refused:
            return delete_keys(self, bucket_name, authenticated)
        if not kept:  # moto refuses a request without objects as malformed
            self.data["Action"] = "DeleteObjects"
            return self.serialized(ActionResult({"Deleted": [], "Errors": refused}))
        request["Delete"]["Object"] = kept
        self.body = xmltodict.unparse(request)
        serialized = self.serialized

        def with_refused(result: Any) -> Any:
            result.result["Errors"].extend(refused)
            return serialized(result)

        self.serialized = with_refused  # this request's own response object
        return delete_keys(self, bucket_name, authenticated)

    S3Response._bucket_response_delete_keys = checked_delete_keys  # type: ignore[method-assign]


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


def _locked_indexed_delete(delete_message: Callable[..., None]) -> Callable[..., None]:
    """`Queue.delete_message` under the queue's lock, finding the message in one pass at C speed.

    moto calls `had_receipt_handle` on every message twice (each call builds a list of all the handles the
    message ever had), so a `DeleteMessageBatch` of 10 on a backlog of n cost 20 n Python calls.
    """
    from operator import attrgetter

    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    current_handle = attrgetter("receipt_handle")

    @functools.wraps(delete_message)
    def delete(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            if receipt_handle in self.deleted_messages:
                return  # already deleted: moto (and SQS) accept a second delete
            messages = self._messages
            try:
                i = list(map(current_handle, messages)).index(receipt_handle)
            except ValueError:
                # An older receipt handle of a message received again since: moto accepts those too.
                i = next((n for n, m in enumerate(messages) if receipt_handle in m._old_receipt_handles), -1)
                if i < 0:
                    raise ReceiptHandleIsInvalid() from None
            message = messages[i]
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            # A new list, as moto assigns one: a receive iterating the old list is not disturbed.
            self._messages = messages[:i] + messages[i + 1 :]

    return delete


def _no_debug_form_helper() -> None:
    # moto's Flask apps run in debug mode, where every request that reads its form (nearly all of them)
    # gets its `files` dict replaced by an instance of a class created for that request, only to word a
    # KeyError on a multipart field better: class creation (through typing's Generic) was ~30 % of a
    # GetObject's CPU. moto never indexes `files` outside multipart uploads, which the helper skips anyway.
    import flask.debughelpers

    flask.debughelpers.attach_enctype_error_multidict = lambda request: None


def _cached_method_names() -> None:
    # moto lists the response class's methods with `inspect.getmembers` on every call of an action;
    # the classes do not change once the server runs.
    import moto.core.responses

    responses: Any = moto.core.responses
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)


def _fast_receipt_handles() -> None:
    # 185 letters drawn one call each through a generator; `choices` draws the same alphabet in one call.
    import string

    import moto.sqs.models
    from moto.moto_api._internal import mock_random

    def generate_receipt_handle() -> str:
        return "".join(mock_random.choices(string.ascii_lowercase, k=185))

    models: Any = moto.sqs.models
    models.generate_receipt_handle = generate_receipt_handle


def _fast_timestamps() -> None:
    # Timestamps moto keeps as ISO 8601 strings were parsed by dateutil's general parser for every
    # response that carries one (LastModified of a copy, of each listed object).
    import moto.core.serialize

    serialize: Any = moto.core.serialize
    serialize.parse_to_aware_datetime = _fast_iso8601(serialize.parse_to_aware_datetime)


def _cached_camelcase() -> None:
    # A pure function of its argument, looping over each character in Python; moto calls it for every
    # queue attribute each time a queue's attributes are built (every SendMessage, once per message of a
    # batch: a third of a SendMessageBatch) and for every action name. Modules imported it by name.
    import sys

    import moto.core.utils

    original = moto.core.utils.camelcase_to_underscores
    cached = functools.wraps(original)(functools.lru_cache(maxsize=4096)(original))
    for module in [moto.core.utils, *(m for n, m in list(sys.modules.items()) if n.startswith("moto."))]:
        if getattr(module, "camelcase_to_underscores", None) is original:
            module.camelcase_to_underscores = cached  # type: ignore[attr-defined]


_ISO8601_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?(Z|\+00:00)")


def _fast_iso8601(to_datetime: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """botocore's `parse_to_aware_datetime`, with UTC ISO 8601 strings read by `fromisoformat`."""
    from datetime import datetime

    utc = to_datetime("1970-01-01T00:00:00Z").tzinfo  # dateutil's tzutc, as botocore returns it

    @functools.wraps(to_datetime)
    def parse(value: Any) -> Any:
        if isinstance(value, str) and _ISO8601_UTC.fullmatch(value):
            # dateutil's result exactly: the same fields, tzinfo the same tzutc.
            return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=utc)
        return to_datetime(value)

    return parse

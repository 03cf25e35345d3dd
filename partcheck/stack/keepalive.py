"""An HTTP/1.1 keep-alive request handler for moto's WSGI app.

Werkzeug's development server, which moto's `ThreadedMotoServer` uses, answers every request with
`Connection: close`: each S3 or SQS call then costs a TCP connection and a new server thread, and the
client opens a new connection too. Measured on this machine (`bench/`, docs/pipeline.md) that was a
large share of moto's CPU per request. Werkzeug closes because `http.server` cannot tell where an
unread request body ends; here the body is read through a reader bounded by Content-Length, and
whatever the application left unread is drained before the next request line, so keeping the
connection open is safe. Requests without a length (chunked uploads, HTTP/1.0) keep werkzeug's own
handling and its close.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import BaseWSGIServer, make_server

from partcheck.stack import HEALTH_PATH


class _BoundedBody(io.RawIOBase):
    """The request body: at most Content-Length bytes of the socket stream, counted."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)[: self.remaining]
        data = self._stream.read(len(view))
        if not data:
            raise ConnectionError("client closed the connection inside the request body")
        view[: len(data)] = data
        self.remaining -= len(data)
        return len(data)

    def drain(self) -> None:
        """Read and discard what the application did not read, up to the next request."""
        while self.remaining > 0:
            data = self._stream.read(min(self.remaining, 1 << 20))
            if not data:
                raise ConnectionError("client closed the connection inside the request body")
            self.remaining -= len(data)


class KeepAliveHandler(MotoRequestHandler):
    """MotoRequestHandler whose connections stay open between requests."""

    # Idle keep-alive connections are closed after this many seconds (clients reconnect transparently).
    timeout = 75
    # Headers and body leave in separate writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK (~40 ms) on a connection that stays open.
    disable_nagle_algorithm = True

    def handle_expect_100(self) -> bool:
        """Accept the request; its `100 Continue` is written by `run_wsgi`, as werkzeug's own does.

        http.server wrote one here and werkzeug's `run_wsgi` a second, so each upload got two.
        """
        return True

    def log_error(self, format: str, *args: Any) -> None:
        """Errors as werkzeug logs them, except the normal end of an idle kept-alive connection."""
        if format.startswith("Request timed out"):
            return
        super().log_error(format, *args)

    def run_wsgi(self) -> None:
        """Serve one request, leaving the connection open when its framing allows it."""
        length = self.headers.get("Content-Length")
        if (
            self.request_version != "HTTP/1.1"
            or "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            or (length is not None and not length.strip().isdigit())
        ):
            super().run_wsgi()
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        body = _BoundedBody(self.rfile, int(length or 0))
        environ["wsgi.input"] = io.BufferedReader(body)
        environ["wsgi.input_terminated"] = True
        state: dict[str, Any] = {"status": None, "headers": None, "sent": False, "chunked": False}

        def write(data: bytes) -> None:
            if not state["sent"]:
                state["sent"] = True
                code_str, _, msg = str(state["status"]).partition(" ")
                code = int(code_str)
                self.send_response(code, msg)
                keys = set()
                for key, value in state["headers"]:
                    self.send_header(key, value)
                    keys.add(key.lower())
                if not (
                    "content-length" in keys
                    or environ["REQUEST_METHOD"] == "HEAD"
                    or 100 <= code < 200
                    or code in (204, 304)
                ):
                    # Without a length the response must be chunked, or the client could not find its end.
                    state["chunked"] = True
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
            if data:
                if state["chunked"]:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                else:
                    self.wfile.write(data)
            self.wfile.flush()

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info and state["sent"]:
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"], state["headers"] = status, headers
            return write

        def execute(app: Any) -> None:
            result = app(environ, start_response)
            try:
                for data in result:
                    write(data)
                if not state["sent"]:
                    write(b"")
                if state["chunked"]:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            finally:
                if hasattr(result, "close"):
                    result.close()

        try:
            execute(self.server.app)
            body.drain()
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
        except Exception as exc:
            if self.server.passthrough_errors:
                raise
            # The stream's state is unknown after a failure: answer if still possible, then close.
            self.close_connection = True
            if not state["sent"]:
                # The client may be gone or the socket broken; there is then nobody to tell.
                with contextlib.suppress(Exception):
                    execute(InternalServerError())
            self.server.log("error", f"Error on request: {exc!r}")


# SQS actions that change nothing a snapshot keeps (a receive only hides messages for a while: lost in a
# crash, they are delivered again, as SQS may anyway).
_SQS_READS = frozenset(
    f"AmazonSQS.{action}"
    for action in (
        "ReceiveMessage",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListQueues",
        "ListQueueTags",
        "ListDeadLetterSourceQueues",
    )
)


def _brings_data_in(environ: dict[str, Any]) -> bool:
    """Whether a change must be on disk before it is answered: anything but a deletion or queue traffic.

    A client may discard what it was told is stored (the agent archives an uploaded photo; an inspector
    moves on from a decision and its audit record). Losing a deletion or a message only repeats work:
    the object is still there, and a restore sends the event again for every inbound object no message
    names (`Snapshotter.restore`), so workers redo what the crash undid. Unknown kinds wait, to be safe.
    """
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("AmazonSQS."):
        return False
    method = environ.get("REQUEST_METHOD")
    if method == "DELETE":
        return False
    query = str(environ.get("QUERY_STRING", ""))
    return not (method == "POST" and "delete" in query.split("&"))  # DeleteObjects: a batch delete


class NotSaved(RuntimeError):
    """The server stopped before a snapshot held this request's change: it was not acknowledged."""


class Changes:
    """Counts the requests that may have changed moto's state, so an idle server need not be saved.

    With `durable`, a request that brings data in (`_brings_data_in`: an object written or copied, a
    bucket created or configured) is answered only once a snapshot that began after it was handled is on disk
    (group commit: every request that arrived while one snapshot ran waits for the next one together),
    so what a client was told is stored survives a crash of the server, not only a Ctrl-C. Deletions
    and queue traffic go into the next snapshot without waiting for it, and start none of their own
    before the saver's interval: at the pipeline's pace they were half of all snapshots.
    """

    def __init__(self, durable: bool = False, persisted: bool | None = None) -> None:
        self.durable = durable
        self.persisted = durable if persisted is None else persisted  # a saver records to disk
        self._failing: tuple[float, str] | None = None  # since (monotonic), the last error
        self._count = 0
        self._saved = 0
        self._awaited = 0  # the newest change a request waits to see saved
        self._closed = False
        self._cond = threading.Condition()

    @property
    def count(self) -> int:
        """How many such requests have completed so far."""
        with self._cond:
            return self._count

    def saved(self, upto: int) -> None:
        """Record that a snapshot holds every change counted up to `upto`; their requests are answered."""
        with self._cond:
            if upto > self._saved:
                self._saved = upto
                self._cond.notify_all()

    def snapshot_failed(self, error: BaseException) -> None:
        """Record a failed snapshot: health answers 503, naming `error`, until one succeeds."""
        with self._cond:
            since = self._failing[0] if self._failing else time.monotonic()
            self._failing = (since, f"{type(error).__name__}: {error}")

    def snapshot_succeeded(self) -> None:
        """Record a snapshot on disk: health is good again."""
        with self._cond:
            self._failing = None

    def health(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and body of `HEALTH_PATH`: 503 while snapshots fail, when changes cannot be stored."""
        with self._cond:
            failing, waiting = self._failing, self._count - self._saved
        if not self.persisted:
            return 200, {"snapshots": "off"}
        if failing is not None:
            since, error = failing
            failing_for = round(time.monotonic() - since, 1)
            body = {"snapshots": "failing", "failing_for_s": failing_for, "error": error}
            return 503, {**body, "changes_not_saved": waiting}
        return 200, {"snapshots": "ok", "changes_not_saved": waiting}

    def close(self) -> None:
        """Stop waiting: requests not yet saved get an error instead of an answer that would be untrue."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for_change(self, since: int, timeout: float) -> int | None:
        """The count as soon as a request waits for a change after `since`, or after `timeout` seconds
        if any change came since (None if none did, or once closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._awaited > since or self._closed, timeout)
            return self._count if self._count > since and not self._closed else None

    def _add(self) -> int:
        with self._cond:
            self._count += 1
            self._cond.notify_all()
            return self._count

    def _wait_saved(self, n: int) -> None:
        with self._cond:
            if n > self._awaited:
                self._awaited = n
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._saved >= n or self._closed)
            if self._saved < n:
                raise NotSaved("the local AWS is stopping; this change may not be stored, send it again")

    def wrap(self, app: Any) -> Any:
        """The WSGI app, counting each request that may change state once it has been handled."""

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
                code, body = self.health()
                data = json.dumps(body).encode()
                reason = "OK" if code == 200 else "Service Unavailable"
                start_response(
                    f"{code} {reason}",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
                )
                return [data]
            mutating = environ.get("REQUEST_METHOD") not in ("GET", "HEAD") and (
                environ.get("HTTP_X_AMZ_TARGET") not in _SQS_READS
            )
            try:
                result = app(environ, start_response)
            finally:
                # After the handler: a snapshot that reads the count first then sees the change too.
                n = self._add() if mutating else 0
            if n and self.durable and _brings_data_in(environ):
                try:
                    # Before the response's first byte: both request handlers send status and headers
                    # only when the body is written, after this returns.
                    self._wait_saved(n)
                except NotSaved:
                    if hasattr(result, "close"):
                        result.close()
                    raise
            return result

        return counted


class MotoServer:
    """moto's WSGI app on a threaded werkzeug server with keep-alive connections (start, stop)."""

    def __init__(self, host: str, port: int, changes: Changes | None = None) -> None:
        self._host, self._port = host, port
        self._changes = changes
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a background thread; returns once the port accepts connections."""
        app = DomainDispatcherApplication(create_backend_app)
        if self._changes is not None:
            app = self._changes.wrap(app)
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=KeepAliveHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

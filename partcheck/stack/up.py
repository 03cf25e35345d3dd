"""`partcheck up`: moto, bootstrap, predict and router workers, review and the agent as local processes."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from rich.console import Console
from rich.table import Table

from partcheck.aws import client
from partcheck.stack.bootstrap import bootstrap
from partcheck.stack.config import StackSettings, persisted_secret, use_local_credentials

STACK_FILE = "stack.json"
LOCK_FILE = "up.lock"
# A child that ran this long was healthy: its next crash backs off from 1 s again, not from 30 s.
STABLE_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_RESTORING = re.compile(rb"restoring: (\d+) of (\d+) objects and messages")
_LISTENING = b"moto listening on "
console = Console()


@functools.cache
def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when `up` dies, however it dies; None elsewhere.

    Children run in their own sessions (so Ctrl-C reaches only `up`, which stops them in order); without
    this, a SIGKILLed `up` would leave them all running, holding the ports.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # SIGTERM, not SIGKILL: moto then still writes its snapshot.
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # `up` died between fork and prctl: no signal will ever come

    return preexec


@dataclass
class Child:
    """One supervised process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)
    restart_at: float | None = None  # when a crashed child is due to start again
    log_offset: int = 0  # size of the log when the current process started

    def start(self) -> None:
        """Start (or restart) the process, appending to its log file."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.log_offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # It only calls prctl between fork and exec, so it cannot deadlock on a lock another thread held;
            # `up` starts every child from its main thread, the thread whose end PDEATHSIG watches.
            preexec_fn=_die_with_parent(),
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) and cancel a pending restart."""
        self.restart_at = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        """Wait for a terminated process, SIGKILL it after `timeout` seconds, close its log."""
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        self.terminate()
        self.reap(timeout)


def _partcheck(*args: str) -> list[str]:
    return [sys.executable, "-m", "partcheck", *args]


def _say(message: str) -> None:
    """Print, unless the terminal is gone (after SIGHUP): stopping the children matters more."""
    with contextlib.suppress(OSError):
        console.print(message)


def wait_for_moto(moto: Child, url: str, stall_seconds: float, cancelled: Callable[[], bool]) -> str | None:
    """Wait until our own moto child listens; None then, else why not.

    There is no fixed deadline: restoring a large snapshot takes minutes, and moto reports its progress.
    It fails when the child exits, or writes nothing for `stall_seconds`.
    """
    assert moto.process is not None
    offset, seen = moto.log_offset, b""
    last_progress = time.monotonic()
    told_at = 0.0
    listening = False
    while not listening:
        if cancelled():
            return "stopped while moto was starting"
        if (code := moto.process.poll()) is not None:
            return f"moto exited ({code}) while starting"
        now = time.monotonic()
        with open(moto.log_path, "rb") as log:
            log.seek(offset)
            new = log.read()
        if new:
            offset += len(new)
            last_progress = now
            seen = seen[-4096:] + new
            listening = _LISTENING in seen
            progress = _RESTORING.findall(new)
            if progress and now - told_at >= 10:
                done, total = (int(n) for n in progress[-1])
                _say(f"moto is restoring its saved state ({done:,} of {total:,} objects and messages)…")
                told_at = now
        elif now - last_progress > stall_seconds:
            return f"moto showed no progress for {stall_seconds:g} s (PARTCHECK_START_SECONDS)"
        if not listening:
            time.sleep(0.1)
    # It says it listens; one answer over HTTP confirms the endpoint reaches it.
    deadline = time.monotonic() + stall_seconds
    while time.monotonic() < deadline:
        if (code := moto.process.poll()) is not None:
            return f"moto exited ({code}) while starting"
        try:
            httpx.get(url, timeout=1.0)
            return None
        except httpx.HTTPError:
            time.sleep(0.1)
    return f"moto says it listens, but {url} does not answer"


def _claim(state: Path) -> IO[str] | str:
    """Hold the state folder's lock while this process lives; the message naming its holder if taken.

    The kernel drops the lock however `up` ends, so it never goes stale the way a recorded pid can.
    """
    import fcntl  # POSIX only, like the rest of `up` (run_stack refuses Windows before this)

    lock = open(state / LOCK_FILE, "a+")  # noqa: SIM115 - held until this process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        return f"a `partcheck up` (pid {holder}) is already running with the state folder {state}"
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _busy_ports(settings: StackSettings) -> list[str]:
    """Why the stack's ports cannot be ours: an earlier stack's orphans or another program listen there."""
    busy = []
    for what, port in (("moto", settings.moto_port), ("review", settings.review_port)):
        try:
            family = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                # What the servers set too: a port left in TIME_WAIT by our own last run counts as free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((settings.host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                busy.append(f"the {what} port {settings.host}:{port} is in use")
            else:
                busy.append(f"{what} cannot listen on {settings.host}:{port} ({exc.strerror or exc})")
    return busy


def plan(settings: StackSettings, inbox: Path | None) -> list[Child]:
    """The processes of the stack in start order; moto, the first, is stopped last."""
    state = settings.state_dir.resolve()
    logs = state / "logs"
    endpoint = settings.local_endpoint
    # moto accepts any credentials; fake ones make sure nothing real is ever used by accident.
    use_local_credentials()
    base_env = {**os.environ, "AWS_DEFAULT_REGION": settings.region, "PYTHONUNBUFFERED": "1"}
    svc = {
        "PARTCHECK_PREDICT_ENDPOINT_URL": endpoint,
        "PARTCHECK_PREDICT_REGION": settings.region,
        "PARTCHECK_PREDICT_UPLOADS_QUEUE": settings.uploads_queue,
        "PARTCHECK_PREDICT_PREDICTIONS_QUEUE": settings.predictions_queue,
        "PARTCHECK_ROUTER_ENDPOINT_URL": endpoint,
        "PARTCHECK_ROUTER_REGION": settings.region,
        "PARTCHECK_ROUTER_PREDICTIONS_QUEUE": settings.predictions_queue,
        "PARTCHECK_ROUTER_PREDICTION_BUCKET": settings.prediction_bucket,
        "PARTCHECK_REVIEW_ENDPOINT_URL": endpoint,
        "PARTCHECK_REVIEW_REGION": settings.region,
        "PARTCHECK_REVIEW_PREDICTION_BUCKET": settings.prediction_bucket,
        "PARTCHECK_REVIEW_HOST": settings.host,
        "PARTCHECK_REVIEW_PORT": str(settings.review_port),
        "PARTCHECK_REVIEW_USERS_FILE": str(state / "users.json"),
        # Kept in the state folder so that inspectors stay logged in across restarts.
        "PARTCHECK_REVIEW_SESSION_SECRET": persisted_secret(state / "session-secret"),
        # Plain http on localhost: a Secure cookie would never be sent back.
        "PARTCHECK_REVIEW_COOKIE_SECURE": "false",
    }
    env = {**base_env, **svc}
    children = [
        Child(
            "moto",
            _partcheck(
                "moto",
                "--host",
                settings.host,
                "--port",
                str(settings.moto_port),
                "--state-dir",
                str(state / "moto"),
                # The queues bootstrap creates live in settings.region; moto snapshots and restores them.
                "--region",
                settings.region,
                "--snapshot-mode",
                str(settings.snapshot_mode),
                "--snapshot-seconds",
                str(settings.snapshot_seconds),
            ),
            base_env,
            logs / "moto.log",
        ),
        Child("router", _partcheck("serve", "router"), env, logs / "router.log"),
        Child("predict", _partcheck("serve", "predict"), env, logs / "predict.log"),
        Child("review", _partcheck("serve", "review"), env, logs / "review.log"),
    ]
    if inbox is not None:
        children.append(
            Child(
                "agent",
                _partcheck(
                    "agent",
                    "--watch",
                    str(inbox.resolve()),
                    "--endpoint-url",
                    endpoint,
                    "--bucket",
                    settings.inbound_bucket,
                    "--state-dir",
                    str(state / "agent"),
                ),
                env,
                logs / "agent.log",
            )
        )
    return children


def run_stack(settings: StackSettings, inbox: Path | None) -> int:
    """Start everything, print the endpoints, supervise until Ctrl-C (or SIGTERM/SIGHUP), stop cleanly."""
    if sys.platform == "win32":
        # Process groups, file locks and the children's parent-death signal are POSIX: say so in one line.
        console.print("[red]`partcheck up` runs on Linux and macOS; on Windows use `docker compose up`[/red]")
        return 2
    state = settings.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    lock = _claim(state)
    if isinstance(lock, str):
        console.print(f"[red]cannot start: {lock}; stop it first[/red]")
        return 1
    if busy := _busy_ports(settings):
        console.print(
            f"[red]cannot start: {'; '.join(busy)}. Is an earlier stack still running? Stop it, or choose "
            "other ports (--moto-port, --review-port).[/red]"
        )
        lock.close()
        return 1
    if inbox is not None:
        inbox.mkdir(parents=True, exist_ok=True)
    children = plan(settings, inbox)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # SIGHUP too: closing the terminal or losing the SSH session must stop the stack, not orphan it;
    # unless it is ignored (`nohup partcheck up &`), which asks for exactly the opposite.
    stop_on = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stop_on.append(signal.SIGHUP)
    for sig in stop_on:
        signal.signal(sig, _stop)
    moto, rest = children[0], children[1:]
    try:
        moto.start()
        failure = wait_for_moto(
            moto, f"{settings.local_endpoint}/moto-api/", settings.start_seconds, lambda: stopping
        )
        if failure:
            _say(f"[red]{failure}; see {moto.log_path}[/red]")
            return 1
        bootstrap(client("s3", settings.aws()), client("sqs", settings.aws()), settings)
        for child in rest:
            child.start()
        review_url = f"http://{settings.host}:{settings.review_port}"
        (state / STACK_FILE).write_text(
            json.dumps(
                {
                    "endpoint": settings.local_endpoint,
                    "review": review_url,
                    "region": settings.region,
                    "inbound_bucket": settings.inbound_bucket,
                    "prediction_bucket": settings.prediction_bucket,
                    "uploads_queue": settings.uploads_queue,
                    "predictions_queue": settings.predictions_queue,
                    "pid": os.getpid(),
                },
                indent=2,
            )
        )
        _print_endpoints(settings, inbox, review_url, state)
        while not stopping:
            time.sleep(0.2)
            if not stopping:
                supervise(children)
        return 0
    finally:
        _say("stopping…")
        # The workers all at once (each may wait out a long poll), moto last so that it saves everything.
        for child in rest:
            child.terminate()
        for child in reversed(rest):
            child.reap(timeout=8)
        moto.stop(timeout=15)
        _say(f"stopped; state kept in {state}")
        lock.close()


def supervise(children: list[Child]) -> None:
    """Schedule a crashed child's restart with its own backoff and start those due; never blocks."""
    now = time.monotonic()
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.start()
        elif child.process is not None and child.process.poll() is not None:
            _schedule_restart(child, now)


def _schedule_restart(child: Child, now: float) -> None:
    code = child.process.returncode if child.process else None
    if child.log:
        child.log.close()
    if now - child.started_at >= STABLE_SECONDS:
        child.restarts = 0
    # Back off on a crash loop instead of spinning; the log says why it died.
    delay = min(2.0**child.restarts, MAX_BACKOFF_SECONDS)
    child.restarts += 1
    child.restart_at = now + delay
    _say(f"[yellow]{child.name} exited ({code}); restarting in {delay:g}s — see {child.log_path}[/yellow]")


def _print_endpoints(settings: StackSettings, inbox: Path | None, review_url: str, state: Path) -> None:
    table = Table(title="partcheck local stack", show_header=False)
    table.add_row("S3 / SQS endpoint", settings.local_endpoint)
    table.add_row("review page", review_url)
    table.add_row("inbound bucket", settings.inbound_bucket)
    table.add_row("prediction bucket", settings.prediction_bucket)
    table.add_row("inbox (watched)", str(inbox.resolve()) if inbox else "— (no agent)")
    table.add_row("state and logs", str(state))
    console.print(table)
    # Both name this stack's state folder: the defaults (./.partcheck) would miss a custom one.
    users = shlex.quote(str(state / "users.json"))
    status = "partcheck status" + (
        "" if state == Path(".partcheck").resolve() else f" --state-dir {shlex.quote(str(state))}"
    )
    console.print(
        f"Add an inspector: partcheck users add NAME --password-stdin --store {users}   ·   "
        f"Counts: {status}   ·   Stop: Ctrl-C"
    )


def read_stack_file(state_dir: Path) -> dict[str, str]:
    """The endpoints a running (or last) stack in this working directory recorded."""
    path = state_dir / STACK_FILE
    return json.loads(path.read_text()) if path.exists() else {}

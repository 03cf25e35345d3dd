"""`partcheck up`: moto, bootstrap, predict and router workers, review and the agent as local processes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from rich.console import Console
from rich.table import Table

from partcheck.aws import client
from partcheck.stack.bootstrap import bootstrap
from partcheck.stack.config import StackSettings, use_local_credentials

STACK_FILE = "stack.json"
console = Console()


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

    def start(self) -> None:
        """Start (or restart) the process, appending to its log file."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()


def _partcheck(*args: str) -> list[str]:
    return [sys.executable, "-m", "partcheck", *args]


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def _session_secret(state: Path) -> str:
    """A per-installation secret, kept so that inspectors stay logged in across restarts."""
    path = state / "session-secret"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def plan(settings: StackSettings, inbox: Path | None) -> list[Child]:
    """The processes of the stack in start order; the last ones are stopped first."""
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
        "PARTCHECK_REVIEW_SESSION_SECRET": _session_secret(state),
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
    """Start everything, print the endpoints, supervise until Ctrl-C, stop cleanly."""
    state = settings.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    if inbox is not None:
        inbox.mkdir(parents=True, exist_ok=True)
    children = plan(settings, inbox)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    moto, rest = children[0], children[1:]
    try:
        moto.start()
        if not _wait_http(f"{settings.local_endpoint}/moto-api/", 30):
            console.print(f"[red]moto did not start; see {moto.log_path}[/red]")
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
            time.sleep(0.5)
            for child in children:
                if child.process and child.process.poll() is not None and not stopping:
                    _restart(child)
        return 0
    finally:
        console.print("stopping…")
        for child in reversed(children):
            child.stop(timeout=15 if child.name == "moto" else 8)
        console.print(f"stopped; state kept in {state}")


def _restart(child: Child) -> None:
    code = child.process.returncode if child.process else None
    if child.log:
        child.log.close()
    # Back off on a crash loop instead of spinning; the log says why it died.
    delay = min(2**child.restarts, 30)
    console.print(
        f"[yellow]{child.name} exited ({code}); restarting in {delay}s — see {child.log_path}[/yellow]"
    )
    time.sleep(delay)
    child.restarts += 1
    child.start()


def _print_endpoints(settings: StackSettings, inbox: Path | None, review_url: str, state: Path) -> None:
    table = Table(title="partcheck local stack", show_header=False)
    table.add_row("S3 / SQS endpoint", settings.local_endpoint)
    table.add_row("review page", review_url)
    table.add_row("inbound bucket", settings.inbound_bucket)
    table.add_row("prediction bucket", settings.prediction_bucket)
    table.add_row("inbox (watched)", str(inbox.resolve()) if inbox else "— (no agent)")
    table.add_row("state and logs", str(state))
    console.print(table)
    console.print(
        "Add an inspector: partcheck users add NAME --password-stdin   ·   "
        "Counts: partcheck status   ·   Stop: Ctrl-C"
    )


def read_stack_file(state_dir: Path) -> dict[str, str]:
    """The endpoints a running (or last) stack in this working directory recorded."""
    path = state_dir / STACK_FILE
    return json.loads(path.read_text()) if path.exists() else {}

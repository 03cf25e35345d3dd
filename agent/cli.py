"""`partcheck agent` commands: run the upload agent, or read its outbox."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Edge upload agent: watched folder to the inbound bucket.", no_args_is_help=False)

Opt = typer.Option


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    watch: Annotated[Path | None, Opt("--watch", help="folder to watch (recursive)")] = None,
    bucket: Annotated[str | None, Opt(help="inbound bucket")] = None,
    prefix: Annotated[str | None, Opt(help="first key segment")] = None,
    endpoint_url: Annotated[str | None, Opt(help="S3 endpoint (local stack); unset = AWS")] = None,
    region: Annotated[str | None, Opt(help="AWS region")] = None,
    line: Annotated[str | None, Opt(help="production line (key segment, metadata)")] = None,
    camera: Annotated[str | None, Opt(help="camera (key segment, metadata)")] = None,
    poll: Annotated[bool | None, Opt("--poll/--no-poll", help="poll instead of OS events")] = None,
    state_dir: Annotated[Path | None, Opt(help="outbox and default archive folder")] = None,
    config: Annotated[Path | None, Opt(help="TOML config file", envvar="PARTCHECK_AGENT_CONFIG")] = None,
    after_upload: Annotated[str | None, Opt(help="keep, archive or delete")] = None,
    archive_dir: Annotated[Path | None, Opt(help="archive folder")] = None,
    archive_quota_mb: Annotated[float | None, Opt(help="archive size limit in MB (0 = none)")] = None,
    stability_wait_s: Annotated[
        float | None, Opt("--stability-wait", help="seconds unchanged = finished")
    ] = None,
    rescan_interval_s: Annotated[float | None, Opt("--rescan-interval", help="seconds between scans")] = None,
    workers: Annotated[int | None, Opt(help="parallel uploads")] = None,
    metrics_port: Annotated[int | None, Opt(help="serve Prometheus /metrics on this port")] = None,
    log_format: Annotated[str | None, Opt(help="auto, json or text")] = None,
    status_line: Annotated[
        bool | None, Opt("--status-line/--no-status-line", help="live status line")
    ] = None,
) -> None:
    """Watch a folder and upload every finished image to the inbound bucket exactly once."""
    if ctx.invoked_subcommand is not None:
        return
    overrides: dict[str, Any] = {
        "watch": watch, "bucket": bucket, "prefix": prefix, "endpoint_url": endpoint_url, "region": region,
        "line": line, "camera": camera, "poll": poll, "state_dir": state_dir, "after_upload": after_upload,
        "archive_dir": archive_dir, "archive_quota_mb": archive_quota_mb,
        "stability_wait_s": stability_wait_s, "rescan_interval_s": rescan_interval_s,
        "workers": workers, "metrics_port": metrics_port,
        "log_format": log_format, "status_line": status_line,
    }  # fmt: skip
    settings = _load_settings(config, **overrides)
    if settings.watch is None:
        typer.echo("nothing to watch: pass --watch DIR (or set PARTCHECK_AGENT_WATCH)", err=True)
        raise typer.Exit(2)
    _run(settings)


def _load_settings(config: Path | None, *, check_bucket: bool = True, **overrides: Any) -> Any:
    """Settings, or exit 2 with one clear line (never a traceback) if they are invalid."""
    from pydantic import ValidationError

    from agent.settings import load_settings
    from partcheck.errors import InvalidInput

    try:
        return load_settings(config, check_bucket=check_bucket, **overrides)
    except (ValidationError, InvalidInput) as exc:
        typer.echo(f"invalid agent settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def s3_client(settings: Any) -> Any:
    """The agent's S3 client: one HTTP attempt per call, as the outbox does the retrying."""
    from partcheck.aws import AwsConfig, client

    # No botocore retries (max_attempts counts retries; 0 = one attempt). A PUT retried inside botocore
    # whose first try had landed meets its own object (412), which upload-only credentials cannot tell
    # from someone else's; the outbox counts its attempts, so it knows when that can be ours. Its backoff
    # handles outages of any length.
    aws = AwsConfig(endpoint_url=settings.endpoint_url, region=settings.region, max_attempts=0,
                    connect_timeout_s=3.0, read_timeout_s=30.0)  # fmt: skip
    return client("s3", aws)


def _run(settings: Any) -> None:
    from agent.logs import setup_logging
    from agent.service import Agent
    from agent.status import status_line
    from partcheck.storage import ObjectStore

    tty = sys.stderr.isatty()
    try:
        agent = Agent(settings, ObjectStore(s3_client(settings)))
    except (OSError, sqlite3.Error) as exc:
        typer.echo(f"cannot open the outbox at {settings.outbox_path()}: {exc}", err=True)
        raise typer.Exit(2) from exc
    setup_logging(settings.log_format if settings.log_format != "auto" else ("text" if tty else "json"))

    def _stop(_signum: int, _frame: Any) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGBREAK"):  # Windows service wrappers stop a console program with Ctrl+Break
        signal.signal(signal.SIGBREAK, _stop)
    show_line = settings.status_line if settings.status_line is not None else tty
    if not show_line:
        agent.run()
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    class _Line:
        def __rich__(self) -> Text:
            return Text(status_line(agent), style="bold")

    with Live(_Line(), console=Console(stderr=True), refresh_per_second=2, redirect_stderr=True):
        agent.run()


@app.command()
def status(
    state_dir: Annotated[Path | None, Opt(help="the agent's state folder")] = None,
    config: Annotated[Path | None, Opt(help="TOML config file", envvar="PARTCHECK_AGENT_CONFIG")] = None,
    as_json: Annotated[bool, Opt("--json", help="print JSON")] = False,
) -> None:
    """Counts per state, oldest pending file and last error, read from the outbox."""
    from agent.outbox import Outbox
    from agent.settings import bucket_problem
    from agent.status import bucket_note, render_summary, summary

    # Reading the local outbox needs no bucket: a config still holding the shipped placeholder is reported
    # here, not refused (starting the agent with it still is).
    settings = _load_settings(config, check_bucket=False, state_dir=state_dir)
    problem = bucket_problem(settings.bucket)
    path = settings.outbox_path()
    if not path.exists():
        typer.echo(f"no outbox at {path}: the agent has not run with this state folder", err=True)
        if problem:
            typer.echo(bucket_note(problem), err=True)
        raise typer.Exit(1)
    outbox = Outbox(path, read_only=True)
    try:
        doc = summary(outbox)
    finally:
        outbox.close()
    doc["bucket"] = {"name": settings.bucket, "configured": problem is None, "problem": problem}
    typer.echo(json.dumps(doc, indent=2) if as_json else render_summary(doc))

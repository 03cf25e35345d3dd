"""`partcheck up`, `status`, `moto`, `bootstrap` and `serve`: the local stack's commands."""

from __future__ import annotations

import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from partcheck.errors import PartcheckError
from partcheck.stack import SnapshotMode


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # moto's server logs every request at INFO; keep the stack's logs about partcheck.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def up(
    inbox: Annotated[Path | None, typer.Option(help="folder the upload agent watches")] = None,
    moto_port: Annotated[int | None, typer.Option(help="local S3/SQS port (default 4566)")] = None,
    review_port: Annotated[int | None, typer.Option(help="review page port (default 8000)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="state folder (default ./.partcheck)")] = None,
) -> None:
    """Start the local stack: moto, predict, router, review and the agent; Ctrl-C stops it, state is kept."""
    from partcheck.stack.config import StackSettings
    from partcheck.stack.up import run_stack

    overrides = {
        k: v
        for k, v in {"moto_port": moto_port, "review_port": review_port, "state_dir": state_dir}.items()
        if v is not None
    }
    settings = StackSettings(**overrides)  # type: ignore[arg-type]
    raise typer.Exit(run_stack(settings, inbox))


def status(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    state_dir: Annotated[
        Path, typer.Option(help="state folder of the stack", envvar="PARTCHECK_STATE_DIR")
    ] = Path(".partcheck"),
) -> None:
    """Counts per prefix, inbound backlog and queue depths of the stack started from this folder."""
    from rich.console import Console
    from rich.table import Table

    from partcheck.aws import client
    from partcheck.stack.config import StackSettings, use_local_credentials
    from partcheck.stack.status import stack_status
    from partcheck.stack.up import read_stack_file

    recorded = read_stack_file(state_dir)
    if recorded or not os.environ.get("PARTCHECK_ENDPOINT_URL"):
        use_local_credentials()
    fields = ("inbound_bucket", "prediction_bucket", "uploads_queue", "predictions_queue", "region")
    found: dict[str, Any] = {k: recorded[k] for k in fields if k in recorded}
    settings = StackSettings(
        state_dir=state_dir,
        endpoint_url=recorded.get("endpoint"),
        **found,
    )
    try:
        doc = stack_status(
            client("s3", settings.aws()), client("sqs", settings.aws()), settings, recorded.get("review")
        )
    except PartcheckError as exc:
        typer.echo(
            f"cannot read the stack at {settings.local_endpoint}: {exc}. Is `partcheck up` running?", err=True
        )
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"partcheck at {settings.local_endpoint}")
    table.add_column("where")
    table.add_column("count", justify="right")
    for name in ("inbound", "okay", "defect", "unclear", "human_decided", "rejected"):
        table.add_row(name, str(doc[name]))
    for name, q in doc["queues"].items():
        table.add_row(f"queue {name}", f"{q['visible']} visible, {q['in_flight']} in flight")
    storage = doc["storage"]
    if storage["snapshots"] == "failing":
        shown = f"[red]FAILING for {storage['failing_for_s']} s: {storage['error']}[/red]"
    elif storage["snapshots"] == "ok":
        shown = f"ok, {storage['changes_not_saved']} changes not yet on disk"
    else:
        shown = str(storage["snapshots"])
    table.add_row("moto snapshots", shown)
    Console().print(table)


def moto(
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 4566,
    state_dir: Annotated[Path | None, typer.Option(help="keep state here across restarts")] = None,
    region: Annotated[str, typer.Option(help="region of the SQS queues")] = "eu-west-1",
    snapshot_seconds: Annotated[
        float,
        typer.Option(help="interval: how often state is saved; commit: the longest a deletion waits for one"),
    ] = 2.0,
    snapshot_mode: Annotated[
        SnapshotMode,
        typer.Option(
            help="commit: an upload or copy is answered once a snapshot holds it; interval: every "
            "--snapshot-seconds"
        ),
    ] = SnapshotMode.COMMIT,
) -> None:
    """Run the local AWS (moto server) with its state persisted under --state-dir."""
    _logging()
    # Before the slow imports: `partcheck up` waits for signs of progress, not for a fixed time.
    logging.getLogger(__name__).info("starting moto for %s on %s:%d", region, host, port)
    from partcheck.stack.motoserver import serve_moto

    serve_moto(host, port, state_dir, region, snapshot_seconds, snapshot_mode=snapshot_mode)


def bootstrap() -> None:
    """Create buckets, queues with dead-letter queues and the S3 -> SQS notification (idempotent)."""
    from partcheck.aws import client
    from partcheck.stack.bootstrap import bootstrap as run_bootstrap
    from partcheck.stack.config import StackSettings

    settings = StackSettings()
    resources = run_bootstrap(client("s3", settings.aws()), client("sqs", settings.aws()), settings)
    typer.echo(
        json.dumps(
            {
                "buckets": [settings.inbound_bucket, settings.prediction_bucket],
                "queues": resources.queue_urls,
            },
            indent=2,
        )
    )


class Service(StrEnum):
    """Long-running services."""

    predict = "predict"
    router = "router"
    review = "review"


def serve(
    service: Annotated[Service, typer.Argument(help="which service")],
    session_secret_file: Annotated[
        Path | None,
        typer.Option(
            help="review: keep the session secret in this file (created on first start) unless "
            "PARTCHECK_REVIEW_SESSION_SECRET is set, so a restart logs nobody out"
        ),
    ] = None,
) -> None:
    """Run one service as a local process, configured from its PARTCHECK_<SERVICE>_ environment."""
    _logging()
    if session_secret_file is not None and not os.environ.get("PARTCHECK_REVIEW_SESSION_SECRET"):
        from partcheck.stack.config import persisted_secret

        os.environ["PARTCHECK_REVIEW_SESSION_SECRET"] = persisted_secret(session_secret_file)
    if service is Service.predict:
        from services.predict.worker import main
    elif service is Service.router:
        from services.router.worker import main
    else:
        from services.review.main import serve as main
    main()

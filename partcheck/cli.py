"""The `partcheck` command; each group lives beside the code it drives and imports heavy modules lazily."""

from __future__ import annotations

import typer

from agent.cli import app as agent_app
from partcheck.cost import cost
from partcheck.errors import PartcheckError
from partcheck.stack.cli import bootstrap, moto, serve, status, up
from services.predict.cli import audit_data, check_model, evaluate, predict, train
from services.review.cli import users_app

app = typer.Typer(
    help="partcheck: automated visual quality inspection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(up)
app.command()(status)
app.command()(moto)
app.command()(bootstrap)
app.command()(serve)
app.command()(predict)
app.command()(train)
app.command("check-model")(check_model)
app.command()(evaluate)
app.command("audit-data")(audit_data)
app.command()(cost)
app.add_typer(agent_app, name="agent")
app.add_typer(users_app, name="users")


def main() -> None:
    """Console entry point: partcheck's own errors end in one clear line and exit code 2."""
    try:
        app()
    except PartcheckError as exc:
        typer.echo(f"partcheck: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(2) from exc

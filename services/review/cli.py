"""`partcheck users` commands: manage the review service's inspector accounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from services.review.users import UserStore

users_app = typer.Typer(help="Inspector accounts of the review service.", no_args_is_help=True)

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="PARTCHECK_REVIEW_USERS_FILE",
        help="user store file (the review service's PARTCHECK_REVIEW_USERS_FILE)",
    ),
]
DEFAULT_STORE = Path(".partcheck") / "users.json"


def _store(path: Path) -> UserStore:
    from services.review.users import UserStore

    return UserStore(path)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="inspector name")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="set a new password for an existing user")
    ] = False,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Add an inspector (password from stdin with --password-stdin, else prompted twice)."""
    from partcheck.errors import PartcheckError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        _store(store).add(name, password, replace=replace)
    except PartcheckError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{'updated' if replace else 'added'} {name} in {store}")


@users_app.command("list")
def list_users(store: StoreOpt = DEFAULT_STORE) -> None:
    """List inspectors, one per line with the creation time."""
    from partcheck.errors import PartcheckError

    try:
        users = _store(store).list()
    except PartcheckError as exc:
        raise _fail(str(exc)) from exc
    if not users:
        typer.echo(f"no users in {store}", err=True)
    for u in users:
        typer.echo(f"{u.name}\t{u.created_at}")


@users_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="inspector name")], store: StoreOpt = DEFAULT_STORE
) -> None:
    """Remove an inspector."""
    from partcheck.errors import PartcheckError

    try:
        _store(store).remove(name)
    except PartcheckError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"removed {name} from {store}")

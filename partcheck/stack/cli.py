"""`partcheck up` and `partcheck status`."""

import typer


def up() -> None:
    """Start the local stack."""
    raise typer.Exit("not implemented yet")


def status() -> None:
    """Show the local stack's buckets and queues."""
    raise typer.Exit("not implemented yet")

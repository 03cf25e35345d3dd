"""`partcheck cost`: monthly cost of this deployment beside the original design."""

import typer


def cost() -> None:
    """Estimate the monthly AWS cost."""
    raise typer.Exit("not implemented yet")

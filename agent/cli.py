"""`partcheck agent` commands."""

import typer

app = typer.Typer(help="Edge upload agent: watched folder to the inbound bucket.")

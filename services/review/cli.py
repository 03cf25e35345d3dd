"""`partcheck users` commands."""

import typer

users_app = typer.Typer(help="Inspector accounts of the review service.")

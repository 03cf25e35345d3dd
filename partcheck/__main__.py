"""`python -m partcheck` is the `partcheck` command."""

from partcheck.cli import app

app(prog_name="partcheck")

"""`python -m agent ...`, the same as `partcheck agent ...`."""

from agent.cli import app

app(prog_name="partcheck agent")

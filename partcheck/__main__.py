"""`python -m partcheck` is the `partcheck` command."""

from partcheck.cli import main

main()

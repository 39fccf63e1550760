"""`python -m culturesim.cli`: the same command line as the `culturesim` script."""

from culturesim.cli import app

app()

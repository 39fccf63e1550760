"""`culturesim report RUN_DIR`: write the run's static HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from culturesim.cli.common import console, door


def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (culturesim run, or a stage's).")
    ],
) -> None:
    """Write RUN_DIR/report/index.html: summary, dialogue browser, probe, training, evaluation."""
    from culturesim.report.build import build_report

    with door():
        index = build_report(run_dir)
    console.print(f"report: {index} (open it in a browser; it works offline)", markup=False)

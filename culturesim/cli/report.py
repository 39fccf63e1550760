"""`culturesim report RUN_DIR`: write the run's static HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (culturesim run, or a stage's).")
    ],
) -> None:
    """Write RUN_DIR/report/index.html: summary, dialogue browser, probe, training, evaluation."""
    from culturesim.report.build import build_report

    try:
        index = build_report(run_dir)
    except FileNotFoundError as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error
    console.print(f"report: {index} (open it in a browser; it works offline)")

"""`culturesim runs …`: commands about run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.cli.common import console, errors

runs_app = typer.Typer(help="Inspect and check run directories.", no_args_is_help=True)


@runs_app.command("verify")
def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or a `culturesim run` one).")],
    quarantine: Annotated[
        bool, typer.Option(help="Move unreadable lines to quarantine.jsonl (nothing is deleted).")
    ] = False,
) -> None:
    """Check manifests, record ids, duplicates and lineage; exit 1 when something is wrong."""
    from culturesim.verify import run_dirs, verify_run

    if not run_dir.is_dir():
        errors.print(f"[bold red]error:[/] {run_dir} is not a directory")
        raise typer.Exit(code=1)
    found = run_dirs(run_dir)
    if not found:
        errors.print(
            f"[bold red]error:[/] {run_dir} has no manifest.json, nor stage folders with one"
        )
        raise typer.Exit(code=1)
    problems = 0
    table = Table("run", "records", "problems", title="Run check")
    details = Table("run", "file", "line", "kind", "problem", title="Problems")
    for folder in found:
        check = verify_run(folder, quarantine=quarantine)
        problems += len(check.problems)
        table.add_row(
            str(folder),
            ", ".join(f"{k} {v}" for k, v in sorted(check.counts.items())) or "none",
            str(len(check.problems))
            + (f" ({check.quarantined} quarantined)" if check.quarantined else ""),
        )
        for p in check.problems:
            details.add_row(p.run, p.file, "" if p.line is None else str(p.line), p.kind, p.message)
    console.print(table)
    if problems:
        console.print(details)
        raise typer.Exit(code=1)
    console.print(f"{run_dir}: ok")

"""`culturesim run CONFIG`: the whole loop from one YAML file, resumable stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from culturesim.cli.common import console, debug_enabled, errors, fail, models


def run(
    config: Annotated[Path, typer.Argument(help="A run config (see examples/demo.yaml).")],
    stages: Annotated[
        str | None,
        typer.Option(help="Only these stages, comma-separated (simulate,probe,judge,…)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan with counts; run nothing.")
    ] = False,
    override: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field, e.g. --set models.actor=./my-model."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Run stages again even if the stage log says they are done.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the dialogues an earlier run listed as failed.")
    ] = False,
) -> None:
    """Simulate, probe, judge, build the corpus, fine-tune, evaluate and report, in order."""
    from culturesim.context import StageFailed
    from culturesim.models.base import ModelError
    from culturesim.pipeline.config import RunConfigError, load_run_config
    from culturesim.pipeline.runner import (
        choose_stages,
        context_for,
        input_problems,
        model_reproducibility,
        plan,
        run_stages,
    )
    from culturesim.store import ManifestMismatch, RunStore

    try:
        settings = load_run_config(config, override or [])
        settings = settings.model_copy(update={"retry_failed": retry_failed})
        chosen = choose_stages(settings, stages)
        planned = plan(settings, chosen, force=force)
    except (RunConfigError, StageFailed, ValueError, OSError) as error:
        raise fail(str(error)) from error
    table = Table("stage", "work", "status", title=f"Plan for {settings.out}")
    for stage in planned:
        table.add_row(stage.name, stage.work, stage.status)
    console.print(table)
    problems = input_problems(settings)
    for problem in problems:
        errors.print(f"[bold red]error:[/] {escape(problem)}")
    if problems:
        raise fail(f"{config}: fix the {len(problems)} problem(s) above before running")
    if dry_run:
        return
    ctx = context_for(settings, models=models(), console=console)
    layout = ctx.layout
    try:
        RunStore.open(
            layout.root,
            {"command": "run", **settings.identity()},
            seed=settings.seed,
            notes={"reproducibility": model_reproducibility(settings)},
        )
    except ManifestMismatch as error:
        raise fail(str(error)) from error
    (layout.root / "config.yaml").write_text(
        yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
    )
    resume = f"`culturesim run {config}" + (f" --stages {stages}" if stages else "") + "`"
    try:
        rows = run_stages(settings, chosen, force=force, ctx=ctx)
    except (StageFailed, ModelError, ValueError, OSError, LookupError) as error:
        if debug_enabled():
            raise
        raise fail(f"{error}. Fix it and rerun {resume} to go on.") from error
    except KeyboardInterrupt:
        errors.print(f"[yellow]interrupted:[/] what was written is kept; rerun {resume} to resume.")
        raise typer.Exit(code=130) from None
    summary = Table("stage", "seconds", "requests", "tokens", "counts", title="Run")
    for row in rows:
        summary.add_row(
            row["stage"],
            f"{row['seconds']:.0f}",
            str(row["requests"]),
            str(row["prompt_tokens"] + row["completion_tokens"]),
            _short(row.get("counts", {})),
        )
    console.print(summary)
    if "report" in chosen:
        console.print(f"report: {layout.report / 'index.html'}")


def _short(counts: dict[str, object]) -> str:
    text = ", ".join(f"{k} {v}" for k, v in counts.items())
    return text if len(text) < 90 else text[:87] + "…"

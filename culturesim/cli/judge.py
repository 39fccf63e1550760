"""`culturesim judge RUN_DIR`: judge dialogues and instances, apply filters, report reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.agents.judge.stage import JudgeSection
from culturesim.cli.common import (
    CultureDirOption,
    ModelHelp,
    PromptsDirOption,
    build_section,
    command_context,
    console,
    door,
    fail,
)
from culturesim.models.base import DEFAULT_MODEL


def judge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with dialogues or instances.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help=f"The judge model: {ModelHelp}")
    ] = DEFAULT_MODEL,
    second_judge: Annotated[
        str | None, typer.Option(help="A second judge model, for agreement (Cohen's kappa).")
    ] = None,
    position_check: Annotated[
        bool | None, typer.Option(help="Judge each dialogue again with the participants swapped.")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(help="Extra dialogue filter, e.g. quality=good (repeatable)."),
    ] = None,
    rule: Annotated[str | None, typer.Option(help="clca (CLCA's drop rule) or none.")] = None,
    on_unparseable: Annotated[str | None, typer.Option(help="drop or keep.")] = None,
    instance_rule: Annotated[
        str | None,
        typer.Option(help="Instances: all_yes, or confident_no (drop on a very confident no)."),
    ] = None,
    rubrics_dir: Annotated[
        list[Path] | None, typer.Option(help="Your rubric YAML files or folders.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="generate (parse the answer) or score (label probabilities).")
    ] = None,
    attempts: Annotated[int | None, typer.Option(min=1)] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=8)] = None,
    prompts_dir: PromptsDirOption = None,
    culture_dir: CultureDirOption = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats", help="No model calls: decide and report from the verdicts already written."
        ),
    ] = False,
) -> None:
    """Judge a run's dialogues (CLCA's three calls) and instances; write verdicts and decisions."""
    from culturesim.agents.judge.stage import decide_from_verdicts, run
    from culturesim.context import ModelRoles, RunLayout

    if not (run_dir / "manifest.json").exists():
        raise fail(f"{run_dir} is not a run directory (no manifest.json)")
    section = build_section(
        JudgeSection,
        {
            "mode": mode,
            "rule": rule,
            "thresholds": threshold,
            "on_unparseable": on_unparseable,
            "instance_rule": instance_rule,
            "position_check": position_check,
            "second_judge": second_judge,
            "attempts": attempts,
            "max_new_tokens": max_new_tokens,
            "rubrics_dirs": [str(p) for p in rubrics_dir] if rubrics_dir else None,
        },
    )
    ctx = command_context(
        RunLayout(run_dir, inputs=(run_dir,)),
        roles=ModelRoles(judge=model),
        prompts_dir=prompts_dir,
        culture_dir=culture_dir,
    )
    with door():
        report = (
            decide_from_verdicts(section, run_dir)
            if stats
            else run(section, ctx).counts[run_dir.name]
        )
    table = Table("culture", "kept", "dropped", "unparseable", "yield", title="Dialogue filter")
    for culture, row in sorted(report["dialogues_by_culture"].items()):
        total = sum(row.values())
        table.add_row(
            culture,
            str(row.get("kept", 0)),
            str(row.get("dropped", 0)),
            str(row.get("unparseable", 0)),
            f"{row.get('kept', 0) / total:.0%}",
        )
    if report["dialogues_by_culture"]:
        console.print(table)
    if any(report["instances"].values()):
        console.print(f"instances: {report['instances']}", markup=False)
    console.print(
        f"verdicts by {report['judge']}: {report['verdicts']}, unparseable {report['unparseable']}",
        markup=False,
    )
    for dimension, value in report.get("position_agreement", {}).items():
        kappa = report["position_kappa"][dimension]
        console.print(f"position check {dimension}: same label {value:.0%} (kappa {kappa:.2f})")
    for key, values in report.items():
        if key.startswith("kappa_vs_"):
            other = key.removeprefix("kappa_vs_")
            for dimension, kappa in values.items():
                agree = report[f"agreement_vs_{other}"][dimension]
                console.print(
                    f"{report['judge']} vs {other} on {dimension}: kappa {kappa:.2f}, "
                    f"agreement {agree:.0%}",
                    markup=False,
                )
    console.print(f"wrote {run_dir}/verdict.jsonl, decision.jsonl, judge_stats.json", markup=False)

"""`culturesim judge RUN_DIR`: judge dialogues and instances, apply filters, report reliability."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def judge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with dialogues or instances.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The judge model.")] = "smollm2",
    second_judge: Annotated[
        str | None, typer.Option(help="A second judge model, for agreement (Cohen's kappa).")
    ] = None,
    position_check: Annotated[
        bool, typer.Option(help="Judge each dialogue again with the participants swapped.")
    ] = False,
    threshold: Annotated[
        list[str] | None, typer.Option(help="Extra dialogue filter, e.g. quality=good.")
    ] = None,
    rule: Annotated[str, typer.Option(help="clca (CLCA's drop rule) or none.")] = "clca",
    on_unparseable: Annotated[str, typer.Option(help="drop or keep.")] = "drop",
    rubrics_dir: Annotated[
        list[Path] | None, typer.Option(help="Your rubric YAML files or folders.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="generate (parse the answer) or score (label probabilities).")
    ] = "generate",
    attempts: Annotated[int, typer.Option(min=1)] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=8)] = 120,
    stats: Annotated[
        bool, typer.Option("--stats", help="Only report on the verdicts already written.")
    ] = False,
) -> None:
    """Judge a run's dialogues (CLCA's three calls) and instances; write verdicts and decisions."""
    from culturesim.judge.filters import (
        FilterPolicy,
        Threshold,
        agreement,
        decide_dialogues,
        decide_instances,
    )
    from culturesim.judge.judge import Judge, judge_dialogues, judge_instances
    from culturesim.judge.rubrics import RubricError, load_rubrics
    from culturesim.models.base import ModelError
    from culturesim.models.registry import build_model
    from culturesim.records import Answer, Dialogue, Episode, Instance, Question, Verdict
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.store import RunStore

    if not (run_dir / "manifest.json").exists():
        errors.print(f"[bold red]error:[/] {run_dir} is not a run directory (no manifest.json)")
        raise typer.Exit(code=1)
    try:
        rubrics = load_rubrics(rubrics_dir or [])
        policy = FilterPolicy(
            rule, tuple(Threshold.parse(t) for t in threshold or []), on_unparseable
        )
    except (RubricError, ValueError) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error
    store = RunStore(run_dir)
    cultures = load_cultures()
    dialogues = store.read(Dialogue)
    episodes = {e.id: e for e in store.read(Episode)}
    instances = store.read(Instance)

    primary = ""
    if not stats:
        judges = [model] + ([second_judge] if second_judge else [])
        for spec in judges:
            try:
                lm = build_model(spec, cache_path=run_dir / "cache.sqlite")
            except ModelError as error:
                errors.print(f"[bold red]error:[/] {error}")
                raise typer.Exit(code=1) from error
            try:
                judge_agent = Judge(
                    lm, max_attempts=attempts, max_new_tokens=max_new_tokens, mode=mode
                )
            except ValueError as error:
                errors.print(f"[bold red]error:[/] {error}")
                raise typer.Exit(code=1) from error
            done = store.done_ids(Verdict)
            variants = ["default"] + (["swapped"] if position_check and spec == model else [])
            for variant in variants:
                todo = [
                    d
                    for d in dialogues
                    if Verdict(
                        target_id=d.id, rubric="clca_meta", judge=judge_agent.name, variant=variant
                    ).id
                    not in done
                ]
                with console.status(
                    f"judging {len(todo)} dialogue(s) ({variant}) with {lm.model_id}"
                ):
                    store.append_many(
                        judge_dialogues(
                            judge_agent, todo, episodes, cultures, rubrics, variant=variant
                        )
                    )
            todo_instances = [
                i
                for i in instances
                if Verdict(target_id=i.id, rubric="culturespa_instance", judge=judge_agent.name).id
                not in done
            ]
            if todo_instances:
                questions = {q.id: q for q in store.read(Question)}
                answers = {a.id: a for a in store.read(Answer)}
                with console.status(f"judging {len(todo_instances)} instance(s)"):
                    store.append_many(
                        judge_instances(
                            judge_agent,
                            todo_instances,
                            questions,
                            answers,
                            cultures,
                            rubrics["culturespa_instance"],
                        )
                    )
            if spec == model:
                primary = judge_agent.name

    verdicts = store.read(Verdict)
    primary_id = (
        primary or (Counter(v.judge for v in verdicts).most_common(1) or [(model, 0)])[0][0]
    )
    mine = [v for v in verdicts if v.judge == primary_id]
    dialogue_decisions = decide_dialogues(mine, policy)
    instance_decisions = decide_instances(mine, on_unparseable=on_unparseable)
    # Decisions are derived from the verdicts, so they are rewritten whole on every run.
    (run_dir / "filter_decisions.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "target_id": d.target_id,
                    "status": d.status,
                    "reason": d.reason,
                    "judge": primary_id,
                }
            )
            + "\n"
            for d in dialogue_decisions + instance_decisions
        )
    )
    by_culture: dict[str, dict[str, int]] = {}
    dialogue_culture = {
        d.id: episodes[d.episode_id].scenario.culture for d in dialogues if d.episode_id in episodes
    }
    for decision in dialogue_decisions:
        row = by_culture.setdefault(dialogue_culture.get(decision.target_id, "?"), {})
        row[decision.status] = row.get(decision.status, 0) + 1
    table = Table("culture", "kept", "dropped", "unparseable", "yield", title="Dialogue filter")
    for culture, row in sorted(by_culture.items()):
        total = sum(row.values())
        table.add_row(
            culture,
            str(row.get("kept", 0)),
            str(row.get("dropped", 0)),
            str(row.get("unparseable", 0)),
            f"{row.get('kept', 0) / total:.0%}",
        )
    if by_culture:
        console.print(table)
    if instance_decisions:
        counts = {
            s: sum(d.status == s for d in instance_decisions)
            for s in ("kept", "dropped", "unparseable")
        }
        console.print(f"instances: {counts}")
    unreadable = sum(bool(v.parse_error) for v in mine)
    console.print(f"verdicts by {primary_id}: {len(mine)}, unparseable {unreadable}")
    report: dict[str, object] = {
        "judge": primary_id,
        "verdicts": len(mine),
        "unparseable": unreadable,
        "dialogues": {
            s: sum(d.status == s for d in dialogue_decisions)
            for s in ("kept", "dropped", "unparseable")
        },
        "instances": {
            s: sum(d.status == s for d in instance_decisions)
            for s in ("kept", "dropped", "unparseable")
        },
    }
    position = agreement(verdicts, (primary_id, "default"), (primary_id, "swapped"))
    if position:
        report["position_agreement"] = {r.dimension: round(r.agreement, 3) for r in position}
        for r in position:
            console.print(
                f"position check {r.dimension}: same label {r.agreement:.0%} of {r.items} (kappa {r.kappa:.2f})"
            )
    others = sorted({v.judge for v in verdicts} - {primary_id})
    for other in others:
        pair = agreement(verdicts, (primary_id, "default"), (other, "default"))
        report[f"kappa_vs_{other}"] = {r.dimension: round(r.kappa, 3) for r in pair}
        for r in pair:
            console.print(
                f"{primary_id} vs {other} on {r.dimension}: kappa {r.kappa:.2f}, agreement {r.agreement:.0%} ({r.items} items)"
            )
    (run_dir / "judge_stats.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {run_dir}/verdict.jsonl, filter_decisions.jsonl, judge_stats.json")

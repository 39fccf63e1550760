"""`culturesim simulate`: run scenarios for cultures as persona-agent conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.agents.roleplay.stage import SimulateSection
from culturesim.cli.common import (
    CultureDirOption,
    ModelHelp,
    PromptsDirOption,
    build_section,
    command_context,
    console,
    default,
    door,
    errors,
)
from culturesim.models.base import DEFAULT_MODEL

S = SimulateSection


def simulate(
    out: Annotated[Path, typer.Option(help="Run directory (resumable).")],
    config: Annotated[
        Path | None, typer.Option(help="YAML with these settings (a 'simulate:' section or flat).")
    ] = None,
    scenarios: Annotated[
        str | None,
        typer.Option(
            help=f"Scenario ids, tag:NAME, situation:NAME, or 'all' {default(S, 'scenarios')}."
        ),
    ] = None,
    cultures: Annotated[
        str | None,
        typer.Option(
            help=f"Cultures, comma-separated; JPN+MEX for a mixed cast {default(S, 'cultures')}."
        ),
    ] = None,
    per_episode: Annotated[
        int | None, typer.Option(help=f"Dialogue samples per episode {default(S, 'per_episode')}.")
    ] = None,
    episodes_per_scenario: Annotated[
        int | None, typer.Option(help=f"Casts per scenario {default(S, 'episodes_per_scenario')}.")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=ModelHelp)] = DEFAULT_MODEL,
    seed: Annotated[int, typer.Option()] = 0,
    temperature: Annotated[float | None, typer.Option(help=default(S, "temperature"))] = None,
    top_p: Annotated[float | None, typer.Option(help=default(S, "top_p"))] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help=default(S, "max_new_tokens"))] = None,
    action_mode: Annotated[
        str | None, typer.Option(help=f"structured or free {default(S, 'action_mode')}.")
    ] = None,
    allow_leave_after: Annotated[
        int | None,
        typer.Option(help=f"Turns before 'leave' is allowed {default(S, 'allow_leave_after')}."),
    ] = None,
    max_turns: Annotated[
        int | None, typer.Option(help="Cap on every scenario's turn limit.")
    ] = None,
    intents: Annotated[bool | None, typer.Option("--intents/--no-intents")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help=f"Conversations in flight {default(S, 'concurrency')}.")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help=default(S, "max_batch_size"))] = None,
    scenario_dir: Annotated[
        list[str] | None, typer.Option("--scenario-dir", help="Your template folder (repeatable).")
    ] = None,
    culture_dir: CultureDirOption = None,
    prompts_dir: PromptsDirOption = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the dialogues listed in failed.jsonl.")
    ] = False,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            min=0, help="Shard the episodes over N Ray actors, each with a model replica."
        ),
    ] = None,
) -> None:
    """Simulate conversations between persona agents; write Episode and Dialogue records."""
    from culturesim.agents.roleplay.stage import run
    from culturesim.context import ModelRoles, RunLayout

    section = build_section(
        SimulateSection,
        {
            "scenarios": scenarios,
            "cultures": cultures,
            "per_episode": per_episode,
            "episodes_per_scenario": episodes_per_scenario,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "action_mode": action_mode,
            "allow_leave_after": allow_leave_after,
            "max_turns": max_turns,
            "intents": intents,
            "concurrency": concurrency,
            "max_batch_size": max_batch_size,
            "scenario_dirs": scenario_dir,
            "culture_dirs": [str(p) for p in culture_dir] if culture_dir else None,
            "ray_actors": ray_actors,
        },
        config,
        key="simulate",
    )
    ctx = command_context(
        RunLayout.for_stage("simulate", out),
        roles=ModelRoles(actor=model),
        prompts_dir=prompts_dir,
        seed=seed,
        retry_failed=retry_failed,
    )
    try:
        with door():
            result = run(section, ctx)
    except typer.Exit as stop:
        if stop.exit_code == 130:
            errors.print(
                f"dialogues written so far are safely in {out}/dialogue.jsonl; the ones in "
                "flight were dropped whole. Rerun the same command to resume."
            )
        raise
    c = result.counts
    table = Table(
        "episodes", "dialogues written", "already done", "failed", "stop reasons", "tok/s"
    )
    table.add_row(
        str(c["episodes"]),
        str(c["written"]),
        str(c["already_done"]),
        str(c["failed"]),
        ", ".join(f"{k} {v}" for k, v in c["stop_reasons"].items()),
        str(c["tokens_per_second"]),
    )
    console.print(table)
    if result.written:
        console.print(
            f"wrote {out}/dialogue.jsonl (rerun the same command to resume)", markup=False
        )
    else:
        console.print(f"nothing new to write in {out}/dialogue.jsonl", markup=False)
    if c["left_failed"]:
        console.print(
            f"[yellow]{c['left_failed']} dialogue(s) failed on an earlier run and were left "
            "alone; add --retry-failed to run them again[/]"
        )
    if c["failed"]:
        errors.print(
            f"[yellow]{c['failed']} dialogue(s) failed (listed in {out}/failed.jsonl); "
            "rerun with --retry-failed to try them again[/]"
        )
        raise typer.Exit(code=3)

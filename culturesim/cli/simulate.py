"""`culturesim simulate`: run scenarios for cultures as persona-agent conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


class SimulateConfig(BaseModel):
    """The simulate stage's settings; the same keys work on the command line and in YAML."""

    model_config = ConfigDict(extra="forbid")

    scenarios: str = "all"
    cultures: str = "JPN,MEX"
    per_episode: int = Field(default=2, ge=1)
    episodes_per_scenario: int = Field(default=1, ge=1)
    model: str = "smollm2"
    seed: int = 0
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.7, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=96, ge=8)
    action_mode: str = Field(default="structured", pattern="^(structured|free)$")
    allow_leave_after: int = Field(default=2, ge=0)
    max_turns: int | None = Field(default=None, ge=1)
    intents: bool = True
    concurrency: int = Field(default=32, ge=1)
    max_batch_size: int = Field(default=32, ge=1)
    scenario_dirs: list[str] = Field(default_factory=list)
    culture_dirs: list[str] = Field(default_factory=list)
    variables: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the config ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping of settings")
    return data.get("simulate", data)


def simulate(
    out: Annotated[Path, typer.Option(help="Run directory (resumable).")],
    config: Annotated[
        Path | None, typer.Option(help="YAML with these settings (a 'simulate:' section or flat).")
    ] = None,
    scenarios: Annotated[
        str | None, typer.Option(help="Scenario ids, comma-separated, or 'all'.")
    ] = None,
    cultures: Annotated[
        str | None, typer.Option(help="Cultures, comma-separated; JPN+MEX for a mixed cast.")
    ] = None,
    per_episode: Annotated[int | None, typer.Option(help="Dialogue samples per episode.")] = None,
    episodes_per_scenario: Annotated[int | None, typer.Option(help="Casts per scenario.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    top_p: Annotated[float | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    action_mode: Annotated[str | None, typer.Option(help="structured or free.")] = None,
    max_turns: Annotated[
        int | None, typer.Option(help="Cap on every scenario's turn limit.")
    ] = None,
    intents: Annotated[bool | None, typer.Option("--intents/--no-intents")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Conversations in flight.")] = None,
    max_batch_size: Annotated[int | None, typer.Option()] = None,
    scenario_dir: Annotated[list[str] | None, typer.Option(help="Your template folder.")] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the dialogues listed in failed.jsonl.")
    ] = False,
    ray_actors: Annotated[
        int,
        typer.Option(
            min=0, help="Shard the episodes over N Ray actors, each with a model replica."
        ),
    ] = 0,
) -> None:
    """Simulate conversations between persona agents; write Episode and Dialogue records."""
    from culturesim.models.base import ModelError
    from culturesim.models.registry import build_model
    from culturesim.roleplay.conversation import RolePlaySettings
    from culturesim.roleplay.simulation import SimulationSettings, Simulator
    from culturesim.scenarios.cultures import CultureFileError, load_cultures
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioError, ScenarioLibrary
    from culturesim.store import ManifestMismatch, RunStore

    given = {
        "scenarios": scenarios,
        "cultures": cultures,
        "per_episode": per_episode,
        "episodes_per_scenario": episodes_per_scenario,
        "model": model,
        "seed": seed,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "action_mode": action_mode,
        "max_turns": max_turns,
        "intents": intents,
        "concurrency": concurrency,
        "max_batch_size": max_batch_size,
        "scenario_dirs": scenario_dir,
    }
    try:
        base = load_config(config) if config is not None else {}
        settings = SimulateConfig.model_validate(
            {**base, **{k: v for k, v in given.items() if v is not None}}
        )
    except ValidationError as error:
        from culturesim.yamlfiles import validation_problems

        where = f"{config}: " if config is not None else ""
        errors.print(f"[bold red]error:[/] {where}{validation_problems(error)}")
        raise typer.Exit(code=1) from error
    except ValueError as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error
    try:
        library = ScenarioLibrary(settings.scenario_dirs)
        known = load_cultures(settings.culture_dirs)
        episodes = build_episodes(
            library,
            library.select(settings.scenarios),
            culture_groups(settings.cultures, known),
            per_scenario=settings.episodes_per_scenario,
            seed=settings.seed,
            variables=settings.variables,
        )
        # Resource settings do not change what is generated, so a run may resume with others.
        identity = settings.model_dump(exclude={"concurrency", "max_batch_size"})
        store = RunStore.open(out, {"command": "simulate", **identity}, seed=settings.seed)
        lm = None if ray_actors else build_model(settings.model, cache_path=out / "cache.sqlite")
    except (ScenarioError, CultureFileError, ManifestMismatch, ModelError, ValueError) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error
    simulation_settings = SimulationSettings(
        per_episode=settings.per_episode,
        concurrency=settings.concurrency,
        max_batch_size=settings.max_batch_size,
        annotate_intents=settings.intents,
        seed=settings.seed,
        roleplay=RolePlaySettings(
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            action_mode=settings.action_mode,
            allow_leave_after=settings.allow_leave_after,
            max_turns=settings.max_turns,
        ),
    )
    try:
        if ray_actors:
            from culturesim.roleplay.ray_shards import simulate_with_ray

            summary = simulate_with_ray(
                settings.model,
                store,
                episodes,
                simulation_settings,
                actors=ray_actors,
                retry_failed=retry_failed,
            )
        else:
            assert lm is not None
            simulator = Simulator(lm, store, simulation_settings, cultures=known)
            summary = simulator.run(episodes, retry_failed=retry_failed)
    except KeyboardInterrupt:
        written = len(store.done_ids("dialogue"))
        errors.print(
            f"[yellow]stopped:[/] {written} dialogue(s) are safely in {out}/dialogue.jsonl; the "
            "ones in flight were dropped whole. Rerun the same command to resume."
        )
        raise typer.Exit(code=130) from None
    finally:
        from culturesim.models.openai_backend import retry_log_of

        retries = retry_log_of(lm)
        if retries is not None:  # an openai backend: what its retries went through
            store.append_json("backend_log", [retries.as_dict()])
    store.append_json("simulation_log", [summary.as_dict()])
    table = Table(
        "episodes", "dialogues written", "already done", "failed", "stop reasons", "tok/s"
    )
    report = summary.as_dict()
    table.add_row(
        str(len(episodes)),
        str(summary.done),
        str(summary.skipped),
        str(len(summary.failed)),
        ", ".join(f"{k} {v}" for k, v in summary.stop_reasons.most_common()),
        str(report["tokens_per_second"]),
    )
    console.print(table)
    console.print(f"wrote {out}/dialogue.jsonl (rerun the same command to resume)")
    if summary.left_failed:
        console.print(
            f"[yellow]{summary.left_failed} dialogue(s) failed on an earlier run and were left "
            "alone; add --retry-failed to run them again[/]"
        )
    if summary.failed:
        errors.print(
            f"[yellow]{len(summary.failed)} dialogue(s) failed (listed in {out}/failed.jsonl); "
            "rerun with --retry-failed to try them again[/]"
        )
        raise typer.Exit(code=3)

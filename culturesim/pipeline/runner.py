"""Run the loop's stages in order, log what each cost, and skip what is already done.

The stage log (`stages.jsonl` in the run directory) gets one line per stage that finishes,
fails or is interrupted: its status, seconds, model usage (requests and tokens, from the
run context's meter) and counts. A stage with a `done` line is skipped on the next run unless it
is forced; a stage that was killed has none, so it runs again and resumes from its records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from culturesim.context import (
    LoopPlan,
    ModelFactory,
    RunContext,
    RunLayout,
    StageFailed,
)
from culturesim.models.metering import usage_between
from culturesim.pipeline.config import RunConfig, input_paths
from culturesim.pipeline.stages import declared_stages, stage_named, stage_names
from culturesim.store import read_jsonl
from culturesim.textlists import comma_list


@dataclass(frozen=True)
class PlannedStage:
    name: str
    work: str
    status: str


def context_for(
    config: RunConfig,
    *,
    models: ModelFactory | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunContext:
    """The run context a config describes; pass `models` to share loaded models (tests)."""
    return RunContext(
        layout=RunLayout(Path(config.out)),
        models=models or ModelFactory(),
        roles=config.models,
        prompt_dirs=tuple(Path(p) for p in config.prompts_dir),
        culture_dirs=tuple(Path(p) for p in config.culture_dirs),
        seed=config.seed,
        retry_failed=config.retry_failed,
        console=console or Console(emoji=False),
        show_progress=show_progress,
    )


def stage_log(layout: RunLayout) -> list[dict[str, Any]]:
    """The stage log's rows; a line torn by a kill means that stage simply counts as not done."""
    return read_jsonl(layout.stage_log)


def done_stages(layout: RunLayout) -> set[str]:
    return {row["stage"] for row in stage_log(layout) if row.get("status") == "done"}


def _append_log(layout: RunLayout, row: dict[str, Any]) -> None:
    from culturesim.store import RunStore

    RunStore(layout.root).append_json("stages", [row])


def choose_stages(config: RunConfig, wanted: str | None) -> list[str]:
    """The stages to run: all configured ones, or the named ones (which must be configured)."""
    enabled = config.enabled_stages()
    if not wanted:
        return enabled
    names = comma_list(wanted)
    known = stage_names()
    unknown = [s for s in names if s not in known]
    if unknown:
        raise ValueError(
            f"--stages: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(known)}"
        )
    missing = [s for s in names if s not in enabled]
    if missing:
        raise ValueError(
            f"--stages: {', '.join(missing)} not configured (add a '{missing[0]}:' section)"
        )
    return [s for s in known if s in names]


def input_problems(config: RunConfig) -> list[str]:
    """What would stop the run here: input paths that do not exist and model specs that cannot
    be built on this machine; checked before any work starts (and by --dry-run)."""
    from culturesim.models.registry import TEACHER_SPEC, spec_problems

    problems = []
    for section_name, keys in input_paths().items():
        section = config if section_name is None else config.section(section_name)
        if section is None:
            continue
        for key in keys:
            value = getattr(section, key, None)
            for item in value if isinstance(value, list) else [value]:
                if item is not None and not Path(item).exists():
                    where = f"{section_name}.{key}" if section_name else key
                    problems.append(f"{where}: {item} does not exist")
    for role, spec in config.models.model_dump().items():
        if spec is None:
            continue
        if spec == TEACHER_SPEC:
            if config.section("teacher") is None and role != "base":
                problems.append(
                    f"models.{role}: 'teacher' needs a `teacher:` section (it trains the teacher)"
                )
            continue
        problems += [f"models.{role}: {problem}" for problem in spec_problems(spec)]
    return problems


def model_reproducibility(config: RunConfig) -> dict[str, str]:
    """Per model role, what a rerun gives back (written into the run's manifest)."""
    from culturesim.models.registry import reproducibility

    found = {}
    from culturesim.models.registry import TEACHER_SPEC

    for role, spec in config.models.model_dump().items():
        if spec is not None and spec != TEACHER_SPEC:
            found[role] = f"{spec}: {reproducibility(spec)}"
    return found


def plan(config: RunConfig, stages: Sequence[str], force: bool = False) -> list[PlannedStage]:
    """What each stage would do, with counts worked out from the config alone (no model);
    scenarios and cultures are checked on the way (see `input_problems` for paths and models).
    Each line is the stage's own `plan`; a damaged run directory raises StageFailed."""
    ctx = context_for(config)
    done = done_stages(ctx.layout)
    check_run_directory(ctx.layout)
    loop = LoopPlan(ctx, {stage.name: config.section(stage.name) for stage in declared_stages()})
    planned = []
    for name in stages:
        stage = stage_named(name)
        section = config.section(name)
        work = stage.plan(section, loop) if section is not None else ""
        status = "done, skipped" if name in done and not force else "to run"
        planned.append(PlannedStage(name, work, status))
    return planned


def check_run_directory(layout: RunLayout) -> None:
    """A run directory whose manifest cannot be read is reported before anything runs."""
    from culturesim.store import RunStore

    if (layout.root / "manifest.json").exists():
        try:
            RunStore(layout.root).manifest()
        except ValueError as error:  # not JSON, or not a manifest: the store's message says which
            raise StageFailed(str(error)) from error


def run_stages(
    config: RunConfig,
    stages: Sequence[str],
    force: bool = False,
    *,
    ctx: RunContext | None = None,
) -> list[dict[str, Any]]:
    """Run the stages in order; returns the log rows written. Raises StageFailed or
    KeyboardInterrupt after logging them, so the caller can say how to resume."""
    ctx = ctx or context_for(config)
    layout = ctx.layout
    done = done_stages(layout)
    written = []
    for name in stages:
        if name in done and not force:
            ctx.console.print(f"[dim]stage {name}: done earlier, skipped[/]")
            continue
        ctx.console.rule(f"stage {name}")
        section = config.section(name)
        before = ctx.models.usage()
        reuse_before = ctx.models.prefix_reuse()
        started = time.perf_counter()
        row: dict[str, Any] = {"stage": name}
        try:
            result = stage_named(name).run(section, ctx)
            row.update(status="done", counts=result.counts)
            if result.exit_code:
                row["exit_code"] = result.exit_code
        except KeyboardInterrupt:
            row.update(status="interrupted")
            raise
        except StageFailed as error:
            row.update(status="failed", error=str(error))
            raise
        except Exception as error:
            row.update(status="failed", error=f"{type(error).__name__}: {error}")
            raise
        finally:
            usage = usage_between(before, ctx.models.usage())
            row.update(
                seconds=round(time.perf_counter() - started, 1),
                requests=usage.requests,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            row.update(_prefix_reuse(reuse_before, ctx.models.prefix_reuse()))
            _append_log(layout, row)
            written.append(row)
    return written


def _prefix_reuse(before: tuple[int, int], after: tuple[int, int]) -> dict[str, Any]:
    """The stage's prefix-cache hit rate: prompt tokens reused / prompt tokens read."""
    read, reused = after[0] - before[0], after[1] - before[1]
    if read <= 0:
        return {}
    return {
        "prefix_tokens_read": read,
        "prefix_tokens_reused": reused,
        "prefix_hit_rate": round(reused / read, 4),
    }

"""Run the loop's stages in order, log what each cost, and skip what is already done.

The stage log (`stages.jsonl` in the run directory) gets one line per stage that finishes,
fails or is interrupted: its status, seconds, model usage (requests and tokens, from the
process-wide meter) and counts. A stage with a `done` line is skipped on the next run unless it
is forced; a stage that was killed has none, so it runs again and resumes from its records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from culturesim.models.metering import PROCESS_USAGE, usage_since
from culturesim.pipeline.config import STAGES, RunConfig
from culturesim.pipeline.stages import STAGE_FUNCTIONS, RunLayout, StageFailed

console = Console()


@dataclass(frozen=True)
class PlannedStage:
    name: str
    work: str
    status: str


def stage_log(layout: RunLayout) -> list[dict[str, Any]]:
    if not layout.stage_log.exists():
        return []
    rows = []
    for line in layout.stage_log.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill: the stage simply counts as not done
    return rows


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
    names = [s.strip() for s in wanted.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise ValueError(
            f"--stages: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}"
        )
    missing = [s for s in names if s not in enabled]
    if missing:
        raise ValueError(
            f"--stages: {', '.join(missing)} not configured (add a '{missing[0]}:' section)"
        )
    return [s for s in STAGES if s in names]


def plan(config: RunConfig, stages: Sequence[str], force: bool = False) -> list[PlannedStage]:
    """What each stage would do, with counts worked out from the config alone (no model)."""
    layout = RunLayout(Path(config.out))
    done = done_stages(layout)
    dialogues = 0
    planned = []
    for name in stages:
        work = ""
        if name == "simulate" and config.simulate is not None:
            dialogues = _planned_dialogues(config)
            work = (
                f"{dialogues // config.simulate.per_episode} episodes × "
                f"{config.simulate.per_episode} = {dialogues} dialogues with {config.models.actor}"
            )
        elif name == "probe" and config.probe is not None:
            from culturesim.prober.topics import BUILTIN_TOPICS, load_topics, select_topics

            topics = select_topics(load_topics(BUILTIN_TOPICS), config.probe.topics)
            cultures = [c for c in config.probe.cultures.split(",") if c.strip()]
            questions = len(topics) * config.probe.per_topic
            work = (
                f"{len(topics)} topics × {config.probe.per_topic} = ≤{questions} questions, "
                f"answered unaware and for {len(cultures)} cultures with {config.models.prober}"
            )
        elif name == "judge" and config.judge is not None:
            work = (
                f"{dialogues or 'the'} dialogues × 3 rubrics and every instance with "
                f"{config.models.judge} ({config.judge.mode} mode)"
            )
        elif name == "corpus" and config.corpus is not None:
            work = f"kept records → CLCA views ({config.corpus.mixture}), CultureSPA sets, DPO"
        elif name == "train" and config.train is not None:
            steps = (
                f"{config.train.max_steps} steps"
                if config.train.max_steps
                else f"{config.train.epochs or 'preset'} epochs"
            )
            work = f"LoRA {config.train.method} of {config.models.base} on '{config.train.set}', {steps}"
        elif name == "evaluate" and config.evaluate is not None:
            variants = 2 if (config.train is not None or _has_adapter(layout)) else 1
            parts = []
            if config.evaluate.survey_dir:
                limit = config.evaluate.limit or "all"
                parts.append(
                    f"survey ({limit} questions, cultures {config.evaluate.cultures}, "
                    f"{config.evaluate.styles})"
                )
            if config.evaluate.guard:
                parts.append("sanity set (30 items)")
            work = f"{' + '.join(parts) or 'nothing'} × {variants} (before/after)"
        elif name == "report":
            work = f"static HTML at {layout.report / 'index.html'}"
        status = "done, skipped" if name in done and not force else "to run"
        planned.append(PlannedStage(name, work, status))
    return planned


def _has_adapter(layout: RunLayout) -> bool:
    return (layout.train / "adapter" / "adapter_config.json").exists()


def _planned_dialogues(config: RunConfig) -> int:
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioLibrary

    assert config.simulate is not None
    library = ScenarioLibrary(config.simulate.scenario_dirs)
    episodes = build_episodes(
        library,
        library.select(config.simulate.scenarios),
        culture_groups(config.simulate.cultures, load_cultures()),
        per_scenario=config.simulate.episodes_per_scenario,
        seed=config.seed,
    )
    return len(episodes) * config.simulate.per_episode


def run_stages(
    config: RunConfig, stages: Sequence[str], force: bool = False
) -> list[dict[str, Any]]:
    """Run the stages in order; returns the log rows written. Raises StageFailed or
    KeyboardInterrupt after logging them, so the caller can say how to resume."""
    layout = RunLayout(Path(config.out))
    done = done_stages(layout)
    written = []
    for name in stages:
        if name in done and not force:
            console.print(f"[dim]stage {name}: done earlier, skipped[/]")
            continue
        console.rule(f"stage {name}")
        before = PROCESS_USAGE.snapshot()
        started = time.perf_counter()
        row: dict[str, Any] = {"stage": name}
        try:
            counts = STAGE_FUNCTIONS[name](config, layout)
            row.update(status="done", counts=counts)
        except KeyboardInterrupt:
            row.update(status="interrupted")
            raise
        except StageFailed as error:
            row.update(status="failed", error=str(error))
            raise
        finally:
            usage = usage_since(before)
            row.update(
                seconds=round(time.perf_counter() - started, 1),
                requests=usage.requests,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            _append_log(layout, row)
            written.append(row)
    return written

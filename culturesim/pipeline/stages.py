"""The loop's stages, in order: each is declared once, beside its code (`STAGE = Stage(...)`).

The run config, `culturesim run`, `--stages` and `--dry-run` read this list and nothing else, so
adding a stage is one new module with its declaration plus one line here. `register` adds a
stage from outside the package (a plugin, a test) without editing this file.
"""

from __future__ import annotations

from culturesim.agents.judge.stage import STAGE as JUDGE
from culturesim.agents.prober.stage import STAGE as PROBE
from culturesim.agents.roleplay.stage import STAGE as SIMULATE
from culturesim.context import Stage
from culturesim.evaluation.stage import STAGE as EVALUATE
from culturesim.report.stage import STAGE as REPORT
from culturesim.training.corpus_stage import STAGE as CORPUS
from culturesim.training.teacher_stage import STAGE as TEACHER
from culturesim.training.train_stage import STAGE as TRAIN

BUILT_IN: tuple[Stage, ...] = (SIMULATE, TEACHER, PROBE, JUDGE, CORPUS, TRAIN, EVALUATE, REPORT)

_declared: list[Stage] = list(BUILT_IN)


def declared_stages() -> tuple[Stage, ...]:
    """Every stage of the loop, in the order they run."""
    return tuple(_declared)


def stage_named(name: str) -> Stage:
    for stage in _declared:
        if stage.name == name:
            return stage
    raise KeyError(f"stage {name!r}")


def stage_names() -> list[str]:
    return [stage.name for stage in _declared]


def register(stage: Stage, *, before: str | None = None) -> None:
    """Add a stage to the loop, before the named one (at the end by default)."""
    if stage.name in stage_names():
        raise ValueError(f"a stage named {stage.name!r} is declared already")
    reserved = {"out", "seed", "models", "prompts_dir", "culture_dirs", "retry_failed"}
    if stage.name in reserved:
        raise ValueError(f"{stage.name!r} is a run config key, not a stage name")
    at = stage_names().index(before) if before is not None else len(_declared)
    _declared.insert(at, stage)


def unregister(name: str) -> None:
    """Take a stage added with `register` out of the loop again."""
    if any(stage.name == name for stage in BUILT_IN):
        raise ValueError(f"{name!r} is a built-in stage")
    _declared[:] = [stage for stage in _declared if stage.name != name]

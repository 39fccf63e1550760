"""The run config: one YAML file that describes the whole loop, validated with pydantic.

Every section is optional; a stage runs when its section is present. Relative input paths
(survey, scenario, culture and prompt folders, question files) are taken from the config file's
folder, so a run starts the same from anywhere; `out` is taken from where the command runs. `--set a.b=value` overrides one
field, so a config can be reused with another model or a smaller size without copying it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from culturesim.agents.judge.stage import JudgeSection
from culturesim.agents.prober.stage import ProbeSection
from culturesim.agents.roleplay.stage import SimulateSection
from culturesim.context import STAGE_NAMES, StageSection
from culturesim.evaluation.stage import EvaluateSection
from culturesim.training.corpus_stage import CorpusSection
from culturesim.training.teacher_stage import TeacherSection
from culturesim.training.train_stage import TrainSection
from culturesim.yamlfiles import read_yaml_mapping, validation_problems

STAGES = STAGE_NAMES


class RunConfigError(ValueError):
    """The run config cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Models(_Section):
    """Which model plays which part. Any model spec works (smollm2, a directory, openai:…)."""

    actor: str = "smollm2"
    prober: str = "smollm2"
    answerer: str | None = Field(
        default=None,
        description="answers the probe's questions; the prober when unset; `teacher` is the "
        "base model with the run's teacher adapter",
    )
    judge: str = "smollm2"
    base: str = Field(default="smollm2", description="the model fine-tuned and evaluated")


class RunConfig(_Section):
    out: str = Field(description="the run directory; every stage writes a folder inside it")
    seed: int = 0
    models: Models = Field(default_factory=Models)
    prompts_dir: list[str] = Field(
        default_factory=list, description="your prompt template folders, searched first"
    )
    culture_dirs: list[str] = Field(
        default_factory=list, description="your culture folders, for every stage"
    )
    simulate: SimulateSection | None = None
    teacher: TeacherSection | None = None
    probe: ProbeSection | None = None
    judge: JudgeSection | None = None
    corpus: CorpusSection | None = None
    train: TrainSection | None = None
    evaluate: EvaluateSection | None = None
    report: bool = True
    retry_failed: bool = Field(
        default=False, description="set by `run --retry-failed`: rerun failed dialogues"
    )

    def enabled_stages(self) -> list[str]:
        """Stages whose section is present, in loop order."""
        present = {name: getattr(self, name) for name in STAGES if name != "report"}
        stages = [name for name, section in present.items() if section is not None]
        return stages + (["report"] if self.report else [])

    def identity(self) -> dict[str, Any]:
        """What decides the records: resource settings are left out so a run may resume with
        other ones."""
        data = self.model_dump(mode="json", exclude={"retry_failed", *STAGE_NAMES})
        for name in STAGE_NAMES:
            section = getattr(self, name, None)
            if isinstance(section, StageSection):
                data[name] = section.identity()
        data["report"] = self.report
        return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` pairs, the value read as YAML (so numbers, booleans and null work)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunConfigError(f"--set {item!r}: use KEY=VALUE, e.g. --set models.actor=smollm2")
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise RunConfigError(f"--set {item!r}: {part!r} is not a section")
            target = child
        target[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


# Fields that name inputs: relative values in a config file are taken from the file's folder,
# so a run starts the same from any directory. `out` (where to write) is taken from where the
# command runs, like any output path on the command line, and so are `--set` values.
INPUT_PATHS: dict[str | None, tuple[str, ...]] = {
    None: ("prompts_dir", "culture_dirs"),
    "simulate": ("scenario_dirs", "culture_dirs"),
    "teacher": ("survey_dir",),
    "probe": ("topics_file", "seeds", "eval_questions", "anchors_file"),
    "judge": ("rubrics_dirs",),
    "corpus": ("eval_questions",),
    "evaluate": ("survey_dir",),
}
_NOT_A_PATH = ("smollm2", "teacher", "hf:", "openai:", "vllm:", "ray:")


def resolve_input_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The config with relative input paths (and local model directories) made absolute."""

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((folder / value).resolve())
        if isinstance(value, list):
            return [absolute(v) for v in value]
        return value

    for section, keys in INPUT_PATHS.items():
        target = data if section is None else data.get(section)
        if not isinstance(target, dict):
            continue
        for key in keys:
            if target.get(key) is not None:
                target[key] = absolute(target[key])
    models = data.get("models")
    if isinstance(models, dict):
        for role, spec in models.items():
            if isinstance(spec, str) and not spec.startswith(_NOT_A_PATH):
                candidate = folder / spec
                if not Path(spec).is_absolute() and candidate.exists():
                    models[role] = str(candidate.resolve())
    return data


def load_run_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a run config; errors name the file and the field."""
    data = read_yaml_mapping(path, RunConfigError, "a run config's sections, see examples/")
    data = resolve_input_paths(data, path.resolve().parent)
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise RunConfigError(f"{path}: {validation_problems(error)}") from error

"""The run config: one YAML file that describes the whole loop, validated with pydantic.

Every section is optional; a stage runs when its section is present. Relative paths are taken
from the directory the command runs in, as on the command line. `--set a.b=value` overrides one
field, so a config can be reused with another model or a smaller size without copying it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from culturesim.yamlfiles import read_yaml_mapping, validation_problems

STAGES = ("simulate", "probe", "judge", "corpus", "train", "evaluate", "report")


class RunConfigError(ValueError):
    """The run config cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Models(_Section):
    """Which model plays which part. Any model spec works (smollm2, a directory, openai:…)."""

    actor: str = "smollm2"
    prober: str = "smollm2"
    judge: str = "smollm2"
    base: str = Field(default="smollm2", description="the model fine-tuned and evaluated")


class SimulateStage(_Section):
    scenarios: str = "all"
    cultures: str = "JPN,MEX"
    per_episode: int = Field(default=1, ge=1)
    episodes_per_scenario: int = Field(default=1, ge=1)
    max_turns: int | None = Field(default=None, ge=1)
    max_new_tokens: int = Field(default=96, ge=8)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.7, gt=0.0, le=1.0)
    action_mode: Literal["structured", "free"] = "structured"
    intents: bool = True
    concurrency: int = Field(default=32, ge=1)
    max_batch_size: int = Field(default=32, ge=1)
    ray_actors: int = Field(default=0, ge=0, description="shard episodes over N Ray actors")
    scenario_dirs: list[str] = Field(default_factory=list)


class ProbeStage(_Section):
    topics: str = "all"
    cultures: str = "USA,CHN,DEU"
    per_topic: int = Field(default=5, ge=0)
    max_rounds: int = Field(default=3, ge=1)
    mode: Literal["logprob", "sample"] = "logprob"
    rules: str = "argmax,jsd"
    jsd_threshold: float = Field(default=0.1, ge=0.0, le=1.0)
    min_confidence: float = Field(default=0.4, ge=0.0, le=1.0)
    structured: bool = True
    temperature: float = Field(default=0.9, ge=0.0)
    batch_size: int = Field(default=64, ge=1)
    eval_questions: str | None = None


class JudgeStage(_Section):
    mode: Literal["generate", "score"] = "generate"
    rule: Literal["clca", "none"] = "clca"
    thresholds: list[str] = Field(default_factory=list)
    on_unparseable: Literal["drop", "keep"] = "drop"
    position_check: bool = False
    attempts: int = Field(default=2, ge=1)
    max_new_tokens: int = Field(default=120, ge=8)
    rubrics_dirs: list[str] = Field(default_factory=list)


class CorpusStage(_Section):
    mixture: str = Field(default="2:1", pattern=r"^\d+:\d+$")
    goals: bool = True
    secrets: bool = True
    cues: bool = True
    validation: float = Field(default=0.1, ge=0.0, le=0.5)
    dedup_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    embeddings: bool = True
    eval_questions: str | None = None


class TrainStage(_Section):
    set: str = Field(default="clca", description="which corpus set to train on")
    method: Literal["sft", "dpo"] = "sft"
    preset: Literal["default", "culturespa", "clca"] = "default"
    max_steps: int | None = Field(default=None, ge=1)
    epochs: float | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    lora_r: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    effective_batch_size: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=16)


class EvaluateStage(_Section):
    survey_dir: str | None = Field(
        default=None, description="WVS folder; without it only the sanity set is scored"
    )
    cultures: str = "all"
    styles: str = "unaware,aware"
    limit: int | None = Field(default=None, ge=1)
    mode: Literal["logprob", "sample"] = "logprob"
    batch_size: int = Field(default=64, ge=1)
    guard: bool = True


class RunConfig(_Section):
    out: str = Field(description="the run directory; every stage writes a folder inside it")
    seed: int = 0
    models: Models = Field(default_factory=Models)
    simulate: SimulateStage | None = None
    probe: ProbeStage | None = None
    judge: JudgeStage | None = None
    corpus: CorpusStage | None = None
    train: TrainStage | None = None
    evaluate: EvaluateStage | None = None
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
        data = self.model_dump(mode="json", exclude={"retry_failed"})
        if data.get("simulate"):
            for key in ("concurrency", "max_batch_size", "ray_actors"):
                data["simulate"].pop(key, None)
        for section in ("probe", "evaluate"):
            if data.get(section):
                data[section].pop("batch_size", None)
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


def load_run_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a run config; errors name the file and the field."""
    data = read_yaml_mapping(path, RunConfigError, "a run config's sections, see examples/")
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise RunConfigError(f"{path}: {validation_problems(error)}") from error

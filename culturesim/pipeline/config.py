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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from culturesim.context import ModelRoles, Stage, StageSection
from culturesim.models.registry import is_local_model_path
from culturesim.pipeline.stages import declared_stages
from culturesim.yamlfiles import read_yaml_mapping, validation_problems


class RunConfigError(ValueError):
    """The run config cannot be used; the message names the file and the field."""


class RunConfig(BaseModel):
    """The settings every run has; `config_class()` adds one optional section per stage.

    The stage sections are not written here: each stage declares its own (see
    `pipeline.stages`), so the config cannot fall out of step with the stages.
    """

    model_config = ConfigDict(extra="forbid")

    out: str = Field(description="the run directory; every stage writes a folder inside it")
    seed: int = 0
    models: ModelRoles = Field(default_factory=ModelRoles)
    prompts_dir: list[str] = Field(
        default_factory=list, description="your prompt template folders, searched first"
    )
    culture_dirs: list[str] = Field(
        default_factory=list, description="your culture folders, for every stage"
    )
    retry_failed: bool = Field(
        default=False, description="set by `run --retry-failed`: rerun failed dialogues"
    )
    answer_prefix: str | None = Field(
        default=None,
        description="the assistant's opening before an option label, for every stage that "
        "writes or scores one (teacher, corpus, evaluate) unless its section sets its own",
    )

    @model_validator(mode="before")
    @classmethod
    def _switches_and_shared_values(cls, data: Any) -> Any:
        """`report: true|false` switches an always-on stage on or off (its section: defaults);
        a top-level `answer_prefix` is every stage's that has the setting and leaves it out."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        shared = data.get("answer_prefix")
        for stage in declared_stages():
            if stage.always and isinstance(data.get(stage.name), bool):
                data[stage.name] = {} if data[stage.name] else None
            section = data.get(stage.name)
            if (
                shared is not None
                and isinstance(section, dict)
                and "answer_prefix" in stage.section.model_fields
                and "answer_prefix" not in section
            ):
                data[stage.name] = {**section, "answer_prefix": shared}
        return data

    @model_validator(mode="after")
    def _one_value_for_shared_settings(self) -> RunConfig:
        seen: dict[str, tuple[str, Any]] = {}
        for stage in declared_stages():
            section = self.section(stage.name)
            if not isinstance(section, StageSection):
                continue
            for key, value in section.shared_settings().items():
                if key in seen and seen[key][1] != value:
                    first, earlier = seen[key]
                    raise ValueError(
                        f"{first}.{key} is {earlier!r} but {stage.name}.{key} is {value!r}: "
                        "training targets must follow the prompt that scoring reads; give "
                        "both the same value"
                    )
                seen.setdefault(key, (stage.name, value))
        return self

    def section(self, name: str) -> Any:
        """The stage's settings section, or None when the stage is not configured."""
        return getattr(self, name, None)

    def enabled_stages(self) -> list[str]:
        """Stages whose section is present, in loop order."""
        return [stage.name for stage in declared_stages() if self.section(stage.name) is not None]

    def identity(self) -> dict[str, Any]:
        """What decides the records: resource settings are left out so a run may resume with
        other ones."""
        names = {stage.name for stage in declared_stages()}
        data = self.model_dump(mode="json", exclude={"retry_failed", *names})
        for name in sorted(names):
            section = self.section(name)
            if isinstance(section, StageSection):
                data[name] = section.identity()
        return data


_classes: dict[tuple[Stage, ...], type[RunConfig]] = {}


def config_class() -> type[RunConfig]:
    """RunConfig with a field for every declared stage: its section, absent by default (an
    always-on stage's section is present by default)."""
    stages = declared_stages()
    if stages not in _classes:
        fields: dict[str, Any] = {
            stage.name: (stage.section | None, stage.section() if stage.always else None)
            for stage in stages
        }
        _classes[stages] = create_model("RunConfig", __base__=RunConfig, **fields)
    return _classes[stages]


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """Validate a config mapping (the YAML file's, after overrides)."""
    return config_class().model_validate(data)


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


# The run's own fields that name inputs; each stage declares its own (`Stage.input_paths`).
# Relative values in a config file are taken from the file's folder, so a run starts the same
# from any directory. `out` (where to write) is taken from where the command runs, like any
# output path on the command line, and so are `--set` values.
RUN_INPUT_PATHS = ("prompts_dir", "culture_dirs")


def input_paths() -> dict[str | None, tuple[str, ...]]:
    """Section name (None: the run's top level) -> its fields that name input files."""
    found: dict[str | None, tuple[str, ...]] = {None: RUN_INPUT_PATHS}
    found.update({stage.name: stage.input_paths for stage in declared_stages()})
    return found


def resolve_input_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The config with relative input paths (and local model directories) made absolute."""

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((folder / value).resolve())
        if isinstance(value, list):
            return [absolute(v) for v in value]
        return value

    for section, keys in input_paths().items():
        target = data if section is None else data.get(section)
        if not isinstance(target, dict):
            continue
        for key in keys:
            if target.get(key) is not None:
                target[key] = absolute(target[key])
    models = data.get("models")
    if isinstance(models, dict):
        for role, spec in models.items():
            if isinstance(spec, str) and is_local_model_path(spec):
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
        return parse_run_config(data)
    except ValidationError as error:
        raise RunConfigError(f"{path}: {validation_problems(error)}") from error

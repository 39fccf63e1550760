"""Judge rubrics as data: a YAML file (dimensions with labels or numeric ranges) plus a template.

    name: my_rubric
    target: dialogue              # or instance
    template: judge/dialogue.jinja2
    question: Is the host polite by local standards?
    dimensions:
      - {name: politeness, description: ..., scale: [1, 5]}
      - {name: realism, description: ..., labels: [good, bad]}

The built-in rubrics (CLCA's quality, cultural adherence and meta-judge; a CultureSPA instance
check) live in `culturesim/data/rubrics/`. A user rubric is a YAML file and, if it needs one,
its own template in a prompt folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from culturesim.paths import package_data
from culturesim.yamlfiles import load_yaml_model

CONFIDENCES = ("very confident", "confident", "not sure")


class RubricError(ValueError):
    """A rubric file is invalid; the message names the file and field."""


class Dimension(BaseModel):
    """One thing a judge rates: categorical labels or an integer scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    labels: tuple[str, ...] | None = None
    scale: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        if (self.labels is None) == (self.scale is None):
            raise ValueError(f"dimension {self.name!r} needs exactly one of labels or scale")
        if self.labels is not None and len(self.labels) < 2:
            raise ValueError(f"dimension {self.name!r} needs at least 2 labels")
        if self.scale is not None and self.scale[0] >= self.scale[1]:
            raise ValueError(f"dimension {self.name!r}: scale must be [low, high] with low < high")
        return self

    @property
    def choices(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)
        assert self.scale is not None
        return [f"an integer from {self.scale[0]} to {self.scale[1]}"]

    def check(self, raw: str) -> str:
        """The value in canonical form, or ValueError saying what is allowed."""
        text = raw.strip().strip("\"'*<>[]().").strip().lower()
        if self.labels is not None:
            for label in self.labels:
                if text == label.lower() or text.startswith(label.lower() + " "):
                    return label
            raise ValueError(f"{self.name} must be one of {', '.join(self.labels)}, got {raw!r}")
        assert self.scale is not None
        try:
            value = int(float(text.split()[0].split("/")[0]))
        except (ValueError, IndexError):
            raise ValueError(f"{self.name} must be an integer, got {raw!r}") from None
        low, high = self.scale
        if not low <= value <= high:
            raise ValueError(f"{self.name} must be from {low} to {high}, got {value}")
        return str(value)


class Rubric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    target: Literal["dialogue", "instance"] = "dialogue"
    template: str = "judge/dialogue.jinja2"
    question: str
    dimensions: tuple[Dimension, ...] = Field(min_length=1)


def rubric_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    return [package_data("data", "rubrics"), *(Path(p) for p in extra)]


def load_rubric_file(path: Path) -> Rubric:
    return load_yaml_model(path, Rubric, RubricError, "name, question, dimensions, ...")


def load_rubrics(extra: Iterable[str | Path] = ()) -> dict[str, Rubric]:
    """Built-in rubrics plus the user's (files or folders); a later one replaces by name."""
    rubrics: dict[str, Rubric] = {}
    for place in rubric_dirs(extra):
        files = sorted(place.glob("*.yaml")) if place.is_dir() else [place]
        for path in files:
            rubric = load_rubric_file(path)
            rubrics[rubric.name] = rubric
    return rubrics

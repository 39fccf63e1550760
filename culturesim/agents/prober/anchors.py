"""Rating-scale ends the prober chooses from, read from a YAML list of [low, high] pairs.

A 135M prober asked to name a scale's ends mostly writes numbers ("1 = 1, 10 = 10"), and a
question without words at its ends cannot carry a culture's answer. Choosing among pairs a person
wrote keeps the model's own choice of which ends fit, and keeps them words.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from culturesim.paths import package_data
from culturesim.yamlfiles import load_yaml_model

BUILTIN_ANCHORS = package_data("data", "scale_anchors.yaml")


class AnchorFileError(ValueError):
    """An anchors file is invalid; the message names the file and the entry."""


class AnchorList(BaseModel):
    anchors: list[tuple[str, str]] = Field(min_length=2)

    @field_validator("anchors")
    @classmethod
    def _words_at_both_ends(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for index, (low, high) in enumerate(pairs):
            if not low.strip() or not high.strip() or low.strip() == high.strip():
                raise ValueError(f"pair {index} ({low!r}, {high!r}) needs two different ends")
        return pairs


def load_anchors(path: Path | None = None) -> tuple[tuple[str, str], ...]:
    """The [low, high] pairs of `path` (the built-in list when None)."""
    chosen = path or BUILTIN_ANCHORS
    return tuple(load_yaml_model(chosen, AnchorList, AnchorFileError, "anchors").anchors)

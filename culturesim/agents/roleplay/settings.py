"""The simulate stage's settings: the one schema of a simulation.

The command line, a `--config` file and a run config's `simulate:` section fill it; the
simulator and each conversation read it as it is. Nothing copies its fields, so a default is
written here and nowhere else.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from culturesim.context import StageSection


class SimulateSection(StageSection):
    """Which scenarios, cultures and casts; how agents sample and speak; how much at once."""

    resource_fields: ClassVar[frozenset[str]] = frozenset(
        {"concurrency", "max_batch_size", "ray_actors"}
    )

    scenarios: str = Field(
        default="all", description="ids, tag:NAME or situation:NAME, comma-separated, or 'all'"
    )
    cultures: str = Field(default="JPN,MEX", description="codes, comma-separated; JPN+MEX mixes")
    per_episode: int = Field(default=2, ge=1, description="dialogue samples per episode (CLCA: 2)")
    episodes_per_scenario: int = Field(default=1, ge=1, description="casts per scenario")
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.7, gt=0.0, le=1.0, description="CLCA: 0.7")
    max_new_tokens: int = Field(default=96, ge=8)
    action_mode: Literal["structured", "free"] = "structured"
    allow_leave_after: int = Field(default=2, ge=0, description="turns before 'leave' is allowed")
    max_turns: int | None = Field(default=None, ge=1, description="cap on every turn limit")
    repetition_threshold: float = Field(
        default=0.9,
        ge=0.0,
        description="stop when a turn repeats the last this closely (inf: never)",
    )
    prefill: str = Field(default="ACTION:", description="the reply's opening in free mode")
    intents: bool = Field(default=True, description="label every utterance's intent")
    concurrency: int = Field(default=32, ge=1, description="conversations in flight")
    max_batch_size: int = Field(default=32, ge=1)
    ray_actors: int = Field(default=0, ge=0, description="shard episodes over N Ray actors")
    scenario_dirs: list[str] = Field(default_factory=list, description="your template folders")
    culture_dirs: list[str] = Field(default_factory=list, description="your culture folders")
    variables: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per scenario id: template variables to set"
    )

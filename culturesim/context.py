"""What every stage receives: its settings section's base class, the run context and its result.

A stage is one library function, `run(section, ctx) -> StageResult`, in the package that owns
it (`culturesim.agents.roleplay.stage`, `culturesim.agents.prober.stage`, …). The section is the stage's only
schema: the command line and the run config both fill the same pydantic model, so a default is
written once. The context carries what several stages share: where the run lives, one model
factory (so a model loaded once serves every stage and every test), the prompt library with the
user's folders first, and the cultures, including those a stage stored in the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from culturesim.models.base import DEFAULT_MODEL, LanguageModel, find_in_chain
from culturesim.models.metering import MeteredModel, Usage, UsageMeter
from culturesim.models.registry import TEACHER_SPEC
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Culture


class StageFailed(RuntimeError):
    """A stage cannot go on; the message says why and what to do. Later stages need its output."""


class StageSection(BaseModel):
    """Base of every stage's settings.

    `resource_fields` declares, once per class, the settings that change how fast a stage runs
    but never what it writes (batch sizes, concurrency, actors): they stay out of the manifest's
    identity, so a run may resume with other ones.
    """

    model_config = ConfigDict(extra="forbid")

    resource_fields: ClassVar[frozenset[str]] = frozenset()

    def shared_settings(self) -> dict[str, Any]:
        """Settings that must have one value across the stages that have them (a run config
        refuses two): the answer prefix that training targets are written after must be the
        one scoring reads. A section lists what it shares, given its other settings."""
        return {}

    def identity(self) -> dict[str, Any]:
        """The settings that decide the records, as JSON-able data."""
        return self.model_dump(mode="json", exclude=set(self.resource_fields))

    @classmethod
    def default_of(cls, name: str) -> Any:
        """A field's default, for help texts that show it without writing it twice."""
        info = cls.model_fields[name]
        return info.get_default(call_default_factory=True)


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: counts for the stage log and report, and an exit status.

    `exit_code` 3 means the stage finished but left failures behind (listed in its folder);
    the loop goes on, and the command line exits with it.
    """

    counts: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0
    written: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Stage:
    """One stage of the loop, declared once, beside its code.

    The run config gets an optional `name:` section of type `section`; `culturesim run`,
    `--stages` and `--dry-run` find the stage here; `run(section, ctx)` does the work; `plan`
    writes the stage's line of the dry-run plan; `input_paths` names the section's fields that
    hold input files or folders (taken relative to the config file's folder). A stage that is
    `always` on runs even when the config has no section for it (the report).
    """

    name: str
    section: type[StageSection]
    run: Callable[[Any, RunContext], StageResult]
    plan: Callable[[Any, LoopPlan], str]
    input_paths: tuple[str, ...] = ()
    always: bool = False


@dataclass
class LoopPlan:
    """What a stage's plan line may read: the run context, every stage's section (None when
    absent) and the counts that earlier stages' lines left (`dialogues`, say)."""

    ctx: RunContext
    sections: Mapping[str, StageSection | None]
    counts: dict[str, Any] = field(default_factory=dict)

    def has(self, stage: str) -> bool:
        return self.sections.get(stage) is not None


@dataclass(frozen=True)
class RunLayout:
    """Where each stage reads and writes.

    Inside `culturesim run` every stage has a folder under one root. A single command points a
    stage at any folder: `stage_dirs` overrides a stage's folder and `inputs` names the run
    directories that judge and corpus read, so the same stage code serves both doors.
    """

    root: Path
    stage_dirs: Mapping[str, Path] = field(default_factory=dict)
    inputs: tuple[Path, ...] | None = None

    @classmethod
    def for_stage(
        cls, stage: str, folder: Path, *, inputs: Sequence[Path] | None = None
    ) -> RunLayout:
        """The layout of a single command writing `stage`'s output to `folder`."""
        return cls(folder, {stage: folder}, tuple(inputs) if inputs is not None else None)

    def dir(self, stage: str) -> Path:
        return Path(self.stage_dirs.get(stage, self.root / stage))

    @property
    def simulate(self) -> Path:
        return self.dir("simulate")

    @property
    def teacher(self) -> Path:
        return self.dir("teacher")

    @property
    def probe(self) -> Path:
        return self.dir("probe")

    @property
    def split_file(self) -> Path:
        """The run's seen / held-out survey split, which every later stage reads."""
        return self.root / "survey_split.json"

    @property
    def corpus(self) -> Path:
        return self.dir("corpus")

    @property
    def train(self) -> Path:
        return self.dir("train")

    @property
    def evaluate(self) -> Path:
        return self.dir("evaluate")

    @property
    def survey(self) -> Path:
        """Survey answers and results: `evaluate/survey` in a loop, the folder itself alone."""
        return Path(self.stage_dirs.get("survey", self.evaluate / "survey"))

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def stage_log(self) -> Path:
        return self.root / "stages.jsonl"

    def record_dirs(self) -> list[Path]:
        """The run stores that hold dialogues or instances, for judge and corpus."""
        if self.inputs is not None:
            return list(self.inputs)
        return [p for p in (self.simulate, self.probe) if (p / "manifest.json").exists()]


class ModelFactory:
    """Builds each model once per (spec, adapter) and hands the same instance to every caller.

    Every model it hands out reports its usage to `meter`, so a stage's cost is measured where
    the calls are made, for in-process, remote and Ray-backed models alike. Tests register a
    ready model under a spec name with `provide`, so stages run on a tiny model with no loading.
    """

    def __init__(
        self,
        meter: UsageMeter | None = None,
        builder: Callable[..., LanguageModel] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """`log_dir` keeps the logs of servers the factory starts (vllm:) with the run."""
        self.meter = meter or UsageMeter()
        self._builder = builder
        self.log_dir = log_dir
        self._models: dict[tuple[str, str | None], LanguageModel] = {}
        self._provided: set[tuple[str, str | None]] = set()

    def provide(self, spec: str, model: LanguageModel, adapter: str | Path | None = None) -> None:
        """Serve `model` whenever `spec` (with `adapter`) is asked for."""
        key = (spec, str(adapter) if adapter is not None else None)
        self._models[key] = MeteredModel(model, sink=self.meter)
        self._provided.add(key)

    def get(self, spec: str, adapter: str | Path | None = None) -> LanguageModel:
        key = (spec, str(adapter) if adapter is not None else None)
        if key not in self._models:
            if self._builder is not None:
                built = self._builder(spec, adapter=adapter)
            else:
                from culturesim.models.registry import build_model

                built = build_model(spec, adapter=adapter, log_dir=self.log_dir)
            self._models[key] = MeteredModel(built, sink=self.meter)
        return self._models[key]

    def close(self) -> None:
        """Close the models built here (a started vLLM server stops); provided ones stay."""
        for key in [k for k in self._models if k not in self._provided]:
            close = find_in_chain(self._models.pop(key), "close")
            if callable(close):
                close()

    def usage(self) -> Usage:
        return self.meter.snapshot()

    def prefix_reuse(self) -> tuple[int, int]:
        """Prompt tokens read, and how many came from prefix caches, over the models built."""
        read = reused = 0
        for model in self._models.values():
            cache = find_in_chain(model, "prefix_cache")
            if cache is not None:
                read += cache.stats.tokens_read
                reused += cache.stats.tokens_reused
        return read, reused


class ModelRoles(BaseModel):
    """Which model spec plays which part of the loop: the run config's `models:` section and
    what every stage asks its model factory for. Any spec works (see `culturesim.models`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str = Field(default=DEFAULT_MODEL, description="plays the personas")
    prober: str = Field(default=DEFAULT_MODEL, description="writes the probe's questions")
    answerer: str | None = Field(
        default=None,
        description="answers the probe's questions; the prober when unset; `teacher` is the "
        "base model with the run's teacher adapter",
    )
    judge: str = Field(default=DEFAULT_MODEL, description="judges dialogues and instances")
    base: str = Field(default=DEFAULT_MODEL, description="the model fine-tuned and evaluated")


@dataclass
class RunContext:
    """What a stage needs besides its settings: where, with which models, prompts and cultures."""

    layout: RunLayout
    models: ModelFactory = field(default_factory=ModelFactory)
    roles: ModelRoles = field(default_factory=ModelRoles)
    prompt_dirs: tuple[Path, ...] = ()
    culture_dirs: tuple[Path, ...] = ()
    seed: int = 0
    retry_failed: bool = False
    console: Console = field(default_factory=lambda: Console(emoji=False))
    show_progress: bool = True

    def __post_init__(self) -> None:
        # A server a stage starts (vllm:) keeps its log with the run it serves.
        if self.models.log_dir is None:
            self.models.log_dir = self.layout.root / "logs"

    def teacher_adapter(self) -> Path | None:
        """The adapter the teacher stage left in this run, if any."""
        return saved_adapter(self.layout.teacher / "adapter")

    def role_model(self, spec: str) -> LanguageModel:
        """The model a config names, where `teacher` is the base with the run's teacher."""
        if spec != TEACHER_SPEC:
            return self.models.get(spec)
        adapter = self.teacher_adapter()
        if adapter is None:
            raise StageFailed(
                f"the model 'teacher' is asked for, but {self.layout.teacher / 'adapter'} holds "
                "no adapter: add a `teacher:` section to the config (it runs before probe)"
            )
        return self.models.get(self.roles.base, adapter)

    @property
    def prompts(self) -> PromptLibrary:
        return PromptLibrary(self.prompt_dirs)

    def cultures(self, *run_dirs: Path) -> dict[str, Culture]:
        """Built-in cultures, the user's folders, and the cultures stored in `run_dirs`.

        A stage that used a user's culture stores its record in the run, so later stages and
        other processes read the same profile without being told where it came from.
        """
        from culturesim.scenarios.cultures import load_cultures
        from culturesim.store import RunStore

        known = load_cultures(self.culture_dirs)
        for run_dir in run_dirs:
            if (run_dir / "culture.jsonl").exists():
                known.update((c.code, c) for c in RunStore(run_dir).read(Culture))
        return known


def saved_adapter(folder: Path) -> Path | None:
    """`folder` when a finished LoRA adapter is saved there (PEFT writes its config last)."""
    return folder if (folder / "adapter_config.json").exists() else None

"""The evaluate stage: models (or adapters) on the survey per culture, plus the guard.

`EvaluateSection` is the stage's only schema for `culturesim evaluate wvs` and the run config's
`evaluate:`. In the loop the variants are the base model before and, when the train stage left
an adapter, after fine-tuning; on the command line they are the `--model`/`--adapter` pairs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from culturesim.context import (
    LoopPlan,
    RunContext,
    Stage,
    StageFailed,
    StageResult,
    StageSection,
    saved_adapter,
)
from culturesim.store import write_json_atomic
from culturesim.survey.administer import DEFAULT_ANSWER_PREFIX
from culturesim.textlists import comma_list

STYLES = ("unaware", "aware", "cross_culture")


class Variant(BaseModel):
    """One model to evaluate: a name for tables, a spec and an optional adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    spec: str
    adapter: Path | None = None


class EvaluateSection(StageSection):
    """Which survey, cultures, prompt styles and answering mode; whether to run the guard."""

    resource_fields: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    survey_dir: str | None = Field(
        default=None, description="WVS folder; without it only the sanity set is scored"
    )
    cultures: str = Field(default="all", description="codes, comma-separated, or 'all'")
    styles: str = Field(default="unaware,aware", description="unaware, aware, cross_culture")
    questions: Literal["all", "held_out", "seen"] = Field(
        default="all",
        description="which half of the run's survey split to score (the teacher stage writes it)",
    )
    limit: int | None = Field(default=None, ge=1, description="only the first N questions")
    mode: Literal["logprob", "sample"] = "logprob"
    samples: int = Field(default=1, ge=1, description="samples per prompt in sample mode")
    answer_prefix: str = Field(
        default=DEFAULT_ANSWER_PREFIX,
        description="assistant prefill before the label in logprob mode ('' for none)",
    )
    batch_size: int = Field(default=64, ge=1)
    guard: bool = Field(default=True, description="also run the general-ability sanity set")
    models: list[Variant] | None = Field(
        default=None,
        description="the models to score (name, spec, adapter); in a loop by default the base "
        "before, the run's teacher and the base after fine-tuning",
    )

    def shared_settings(self) -> dict[str, Any]:
        return {"answer_prefix": self.answer_prefix} if self.survey_dir else {}

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, value: str) -> str:
        bad = [s for s in _split(value) if s not in STYLES]
        if bad:
            raise ValueError(f"unknown style(s) {', '.join(bad)}; use {', '.join(STYLES)}")
        return value


def _split(text: str) -> list[str]:
    return comma_list(text)


def trained_adapter(ctx: RunContext) -> Path | None:
    return saved_adapter(ctx.layout.train / "adapter")


def loop_variants(ctx: RunContext) -> list[Variant]:
    """The base model before, the run's teacher when it has one, and, when the loop trained an
    adapter, the base after fine-tuning (the student, in a positive control)."""
    variants = [Variant(name="before", spec=ctx.roles.base)]
    teacher = ctx.teacher_adapter()
    if teacher is not None:
        variants.append(Variant(name="teacher", spec=ctx.roles.base, adapter=teacher))
    adapter = trained_adapter(ctx)
    if adapter is not None:
        variants.append(Variant(name="after", spec=ctx.roles.base, adapter=adapter))
    return variants


def run(section: EvaluateSection, ctx: RunContext) -> StageResult:
    """Score every model on the survey (when a survey is set) and on the guard."""
    chosen = list(section.models) if section.models is not None else loop_variants(ctx)
    counts: dict[str, Any] = {}
    written: list[Path] = []
    if section.survey_dir is not None:
        survey_counts, files = evaluate_survey(section, ctx, chosen)
        counts.update(survey_counts)
        written += files
    if section.guard:
        rows = guard_rows(ctx, chosen)
        written.append(write_json_atomic(ctx.layout.evaluate / "guard.json", rows))
        counts["guard"] = {row["variant"]: row["accuracy"] for row in rows}
    return StageResult(counts=counts, written=tuple(written))


def guard_rows(ctx: RunContext, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    from culturesim.evaluation.guard import guard_accuracy, load_benchmark

    items = load_benchmark()
    rows = []
    for variant in variants:
        result = guard_accuracy(
            ctx.models.get(variant.spec, variant.adapter), items, library=ctx.prompts
        )
        rows.append(
            {
                "variant": variant.name,
                "model": result.model,
                "items": result.items,
                "correct": result.correct,
                "accuracy": round(result.accuracy, 4),
            }
        )
    return rows


def evaluate_survey(
    section: EvaluateSection, ctx: RunContext, variants: Sequence[Variant]
) -> tuple[dict[str, Any], list[Path]]:
    from culturesim.evaluation.scoring import reference_rows, score_run
    from culturesim.evaluation.tables import write_outputs
    from culturesim.scenarios.cultures import resolve_cultures
    from culturesim.store import RunStore
    from culturesim.survey.administer import SurveyPrompter
    from culturesim.survey.answering import run_items
    from culturesim.survey.questionnaire import SurveyFileError, load_survey_dir

    assert section.survey_dir is not None
    survey_dir = Path(section.survey_dir)
    if not survey_dir.is_dir():
        raise StageFailed(
            f"evaluate: survey_dir {survey_dir} does not exist; point survey_dir at the WVS "
            "folder, or remove it to score the sanity set only"
        )
    out = ctx.layout.survey
    survey = load_survey_dir(survey_dir)
    known = ctx.cultures()
    codes = survey.countries if section.cultures == "all" else _split(section.cultures)
    missing = [c for c in codes if c not in survey.shares]
    if missing:
        raise SurveyFileError(f"no survey data for {', '.join(missing)} in {survey_dir}")
    resolve_cultures(codes, known)
    questions = list(survey.questions.values())
    if section.questions != "all":
        questions = _split_half(ctx, section.questions, questions)
    questions = questions[: section.limit]
    survey = survey.subset(q.id for q in questions)
    models = [ctx.models.get(v.spec, v.adapter) for v in variants]  # before the run directory
    store = RunStore.open(
        out,
        {
            "command": "evaluate wvs",
            "models": [v.spec for v in variants],
            "adapters": [str(v.adapter) if v.adapter else "none" for v in variants],
            "cultures": codes,
            "styles": _split(section.styles),
            "mode": section.mode,
            "answer_prefix": section.answer_prefix,
            "samples": section.samples,
            "limit": section.limit,
            "questions": section.questions,
            "survey_dir": str(survey_dir),
        },
        seed=ctx.seed,
    )
    items = SurveyPrompter(known, library=ctx.prompts).items(
        questions, _split(section.styles), codes
    )
    all_answers = []
    timings: dict[str, float] = {}
    for lm in models:
        start = time.perf_counter()
        all_answers += run_items(
            lm,
            items,
            store=store,
            mode=section.mode,
            samples=section.samples,
            seed=ctx.seed,
            batch_size=section.batch_size,
            answer_prefix=section.answer_prefix,
            show_progress=ctx.show_progress,
            console=ctx.console,
        )
        timings[lm.model_id] = round(time.perf_counter() - start, 1)
    rows = score_run(survey, all_answers, codes) + reference_rows(survey, codes)
    maps = culture_maps(survey, all_answers, codes, out)
    if "aware" in _split(section.styles):
        maps += write_comparison(survey, all_answers, variants, models, codes, out, ctx.seed)
    files = write_outputs(
        rows,
        out,
        {
            "seconds": timings,
            "questions": len(questions),
            "variants": [
                {"name": v.name, "spec": v.spec, "adapter": str(v.adapter or "")} for v in variants
            ],
        },
    )
    return {"survey_rows": len(rows), "seconds": timings}, [*files, *maps]


def _split_half(ctx: RunContext, half: str, questions: list[Any]) -> list[Any]:
    from culturesim.survey.split import SplitError, held_out_ids, read_split

    path = ctx.layout.split_file
    if not path.exists():
        raise StageFailed(
            f"evaluate: questions {half!r} needs the run's survey split {path}; add a "
            "`teacher:` section, or write one with `culturesim evaluate split --out RUN`"
        )
    try:
        split = read_split(path)
    except SplitError as error:
        raise StageFailed(f"evaluate: {error}") from error
    wanted = set(held_out_ids(split) if half == "held_out" else split["seen"])
    return [q for q in questions if q.id in wanted]


def write_comparison(
    survey: Any,
    answers: Sequence[Any],
    variants: Sequence[Variant],
    models: Sequence[Any],
    codes: Sequence[str],
    out: Path,
    seed: int,
) -> list[Path]:
    """The variants' culture-aware answers side by side, with paired bootstrap intervals."""
    from culturesim.evaluation.control import compare_models, plot_comparison

    names = [v.name for v in variants]
    # `evaluate wvs -m smollm2 -m smollm2 --adapter none --adapter X` names both by their spec.
    labels = [n if names.count(n) == 1 else f"{n} #{i + 1}" for i, n in enumerate(names)]
    by_variant = {
        label: [a for a in answers if a.model == lm.model_id and a.prompt == "aware"]
        for label, lm in zip(labels, models, strict=True)
    }
    comparison = compare_models(survey, by_variant, codes, seed=seed)
    comparison["models"] = {label: lm.model_id for label, lm in zip(labels, models, strict=True)}
    return [
        write_json_atomic(out / "comparison.json", comparison),
        plot_comparison(comparison, out / "comparison.png", "Culture-aware answers by model"),
    ]


def culture_maps(
    survey: Any, answers: Sequence[Any], codes: Sequence[str], out: Path
) -> list[Path]:
    """One culture map per model: cultures linked by how alike its aware answers are."""
    from culturesim.evaluation import metrics
    from culturesim.evaluation.tables import plot_culture_map
    from culturesim.survey.distributions import answer_distribution

    maps = []
    for model_id in sorted({a.model for a in answers}):
        aware = [a for a in answers if a.model == model_id and a.prompt == "aware"]
        if len({a.culture for a in aware}) < 3:
            continue
        dists = {
            (a.culture, a.question_id): answer_distribution(
                a, survey.questions[a.question_id.removeprefix("survey:")]
            )
            for a in aware
        }
        similarity = {
            c1: {
                c2: 1.0
                - float(
                    np.mean(
                        [
                            metrics.js_distance(d, d2)
                            for (c, q), d in dists.items()
                            if c == c1 and d is not None and (d2 := dists.get((c2, q))) is not None
                        ]
                        or [1.0]
                    )
                )
                for c2 in codes
                if c2 != c1
            }
            for c1 in codes
        }
        name = (
            "culture_map_" + "".join(ch if ch.isalnum() else "_" for ch in model_id)[-60:] + ".png"
        )
        maps.append(plot_culture_map(similarity, out / name, title=f"Culture map: {model_id}"))
    return maps


def plan(section: EvaluateSection, loop: LoopPlan) -> str:
    names = ["before"]
    if loop.has("teacher") or loop.ctx.teacher_adapter() is not None:
        names.append("teacher")
    if loop.has("train") or trained_adapter(loop.ctx) is not None:
        names.append("after")
    if section.models:
        names = [m.name for m in section.models]
    parts = []
    if section.survey_dir:
        parts.append(
            f"survey ({section.limit or 'all'} {section.questions} questions, cultures "
            f"{section.cultures}, {section.styles})"
        )
    if section.guard:
        parts.append("sanity set (30 items)")
    return f"{' + '.join(parts) or 'nothing'} × {len(names)} ({'/'.join(names)})"


STAGE = Stage("evaluate", EvaluateSection, run, plan, input_paths=("survey_dir",))

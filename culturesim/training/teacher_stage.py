"""The teacher stage: split the survey, then fit a culture-knowing teacher on the seen half.

`TeacherSection` is the run config's `teacher:`. The stage writes the run's survey split
(`survey_split.json` at the run's root, stratified by the 13 WVS topics, from `split_seed`) if
the run has none, and the teacher adapter under `teacher/adapter`. Later stages read both:
`models.answerer: teacher` makes the teacher answer the probe, every corpus is decontaminated
against the held-out half, and `evaluate.questions: held_out` scores base, teacher and student
on questions no stage saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from culturesim.context import LoopPlan, RunContext, Stage, StageFailed, StageResult, StageSection
from culturesim.store import write_json_atomic
from culturesim.survey.administer import DEFAULT_ANSWER_PREFIX
from culturesim.survey.questionnaire import Survey
from culturesim.textlists import comma_list
from culturesim.training.soft_fit import SoftFitConfig

CULTURESPA_CULTURES = "USA,CAN,BOL,BRA,GBR,NLD,DEU,UKR,CHN,RUS,IND,THA,KEN,NGA,ETH,ZWE,AUS,NZL"


class TeacherSection(StageSection):
    """Which survey and cultures the teacher learns from, the split's seed, and its LoRA."""

    resource_fields: ClassVar[frozenset[str]] = frozenset({"batch_size", "save_steps"})

    survey_dir: str = Field(description="WVS folder (questions and per-country shares)")
    cultures: str = Field(
        default=CULTURESPA_CULTURES, description="codes, comma-separated (CultureSPA's 18)"
    )
    split_seed: int = Field(default=0, description="which questions are held out follows from it")
    limit: int | None = Field(default=None, ge=1, description="only the first N seen questions")
    epochs: float = Field(default=SoftFitConfig.epochs, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="> 0 overrides epochs")
    learning_rate: float = Field(default=SoftFitConfig.learning_rate, gt=0)
    lora_r: int = Field(default=SoftFitConfig.lora_r, ge=1)
    lora_layers: int | None = Field(
        default=SoftFitConfig.lora_layers,
        ge=1,
        description="adapt only the top N layers (null: all)",
    )
    batch_size: int = Field(default=SoftFitConfig.batch_size, ge=1)
    save_steps: int = Field(
        default=SoftFitConfig.save_steps, ge=1, description="checkpoint interval, for resuming"
    )
    answer_prefix: str = Field(
        default=DEFAULT_ANSWER_PREFIX, description="the evaluation's assistant prefill"
    )

    def shared_settings(self) -> dict[str, Any]:
        return {"answer_prefix": self.answer_prefix}


def ensure_split(ctx: RunContext, survey: Survey, seed: int) -> dict[str, Any]:
    """The run's split (see `survey.split.ensure_split`), its refusal as a stage failure."""
    from culturesim.survey.split import SplitError
    from culturesim.survey.split import ensure_split as run_split

    try:
        return run_split(ctx.layout.split_file.parent, list(survey.questions.values()), seed)
    except SplitError as error:
        raise StageFailed(str(error)) from error


def run(section: TeacherSection, ctx: RunContext) -> StageResult:
    from transformers import AutoTokenizer

    from culturesim.scenarios.cultures import resolve_cultures
    from culturesim.survey.administer import SurveyPrompter
    from culturesim.survey.questionnaire import load_survey_dir
    from culturesim.training.soft_fit import fit_soft_targets
    from culturesim.training.soft_rows import build_rows
    from culturesim.training.trainer import resolve_base

    survey_dir = Path(section.survey_dir)
    if not survey_dir.is_dir():
        raise StageFailed(
            f"teacher: survey_dir {survey_dir} does not exist; point it at the WVS folder"
        )
    survey = load_survey_dir(survey_dir)
    codes = comma_list(section.cultures)
    missing = [c for c in codes if c not in survey.shares]
    if missing:
        raise StageFailed(f"teacher: no survey data for {', '.join(missing)} in {survey_dir}")
    known = ctx.cultures()
    resolve_cultures(codes, known)
    split = ensure_split(ctx, survey, section.split_seed)
    seen_ids = {str(q) for q in split["seen"]}
    seen = [q for q in survey.questions if q in seen_ids][: section.limit]
    base_dir = resolve_base(ctx.roles.base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    rows = build_rows(
        tokenizer,
        survey,
        seen,
        codes,
        SurveyPrompter(known, library=ctx.prompts),
        section.answer_prefix,
    )
    config = SoftFitConfig(
        epochs=section.epochs,
        max_steps=section.max_steps,
        learning_rate=section.learning_rate,
        batch_size=section.batch_size,
        lora_r=section.lora_r,
        lora_layers=section.lora_layers,
        save_steps=section.save_steps,
        seed=ctx.seed,
    )
    result = fit_soft_targets(
        base_dir,
        rows,
        ctx.layout.teacher,
        config,
        lineage={
            "base": ctx.roles.base,
            "survey_dir": str(survey_dir),
            "split": str(ctx.layout.split_file),
            "cultures": codes,
            "seen_questions": len(seen),
        },
        show_progress=ctx.show_progress,
        console=ctx.console,
    )
    summary = {
        "seen_questions": len(seen),
        "held_out_questions": len(split["held_out"]),
        "cultures": codes,
        "rows": result.rows,
        "steps": result.steps,
        "first_loss": round(result.first_loss, 4),
        "last_loss": round(result.last_loss, 4),
        "tokens_per_second": round(result.tokens_per_second),
        "seconds": round(result.seconds, 1),
        "sampling_rule": "soft targets: each row's target is the country's renormalised shares",
    }
    path = write_json_atomic(ctx.layout.teacher / "teacher_summary.json", summary)
    return StageResult(
        counts={
            k: summary[k] for k in ("seen_questions", "rows", "steps", "first_loss", "last_loss")
        },
        written=(ctx.layout.split_file, result.adapter, path),
    )


def plan(section: TeacherSection, loop: LoopPlan) -> str:
    return (
        f"hold out half the survey (seed {section.split_seed}), then LoRA of "
        f"{loop.ctx.roles.base} on the seen half's shares for "
        f"{len(comma_list(section.cultures))} cultures"
    )


STAGE = Stage("teacher", TeacherSection, run, plan, input_paths=("survey_dir",))

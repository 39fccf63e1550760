"""The train stage: LoRA SFT, DPO or distillation on a corpus set, culture-joint or one
adapter per culture.

`distill` fits the soft targets of a `culturespa_soft` set (a teacher's answer distributions)
with the survey teacher's loss: the expected NLL of an answer drawn from the distribution,
on exactly the tokens that survey scoring reads.

`TrainSection` is the stage's only schema for `culturesim train` and the run config's `train:`.
Unset hyper-parameters come from the preset (`training/presets.py`), which is where their
defaults are written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from culturesim.context import LoopPlan, RunContext, Stage, StageFailed, StageResult, StageSection
from culturesim.store import read_jsonl


class TrainSection(StageSection):
    """Which corpus set, which method and preset, and the overrides of the preset's values."""

    set: str = Field(default="clca", description="the corpus set to train on (a folder name)")
    method: Literal["sft", "dpo", "distill"] = Field(
        default="sft", description="distill: soft targets of culturespa_soft (corpus.targets: soft)"
    )
    preset: Literal["default", "culturespa", "clca"] = "default"
    per_culture: bool = Field(default=False, description="one adapter per culture")
    max_steps: int | None = Field(default=None, ge=1, description="stop after N steps")
    epochs: float | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    lora_r: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1, description="per-device batch size")
    effective_batch_size: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=16)
    packing: bool | None = None
    lora_layers: int | None = Field(
        default=None,
        ge=1,
        description="distill: adapt only the top N layers (default: the teacher's)",
    )
    qlora: bool = Field(default=False, description="4-bit QLoRA (CUDA + bitsandbytes)")


def run(section: TrainSection, ctx: RunContext) -> StageResult:
    from culturesim.training.trainer import cultures_in

    set_dir = ctx.layout.corpus / section.set
    rows = len(read_jsonl(set_dir / "train.jsonl"))
    if rows == 0:
        raise StageFailed(
            f"train: the corpus set {section.set!r} has no training rows ({set_dir}); "
            "check the judge's yield in the corpus card, or train on another set"
        )
    fit = (_distiller if section.method == "distill" else _fine_tuner)(section, ctx, set_dir)
    out = ctx.layout.train
    cultures: list[str | None] = list(cultures_in(set_dir)) if section.per_culture else [None]
    adapters = {
        culture or "all": fit(culture, out / culture if culture else out) for culture in cultures
    }
    losses = [row for row in read_jsonl(out / "metrics.jsonl") if "loss" in row]
    return StageResult(
        counts={
            "rows": rows,
            "steps": losses[-1]["step"] if losses else 0,
            "first_loss": losses[0]["loss"] if losses else None,
            "last_loss": losses[-1]["loss"] if losses else None,
            "adapters": adapters,
        },
        written=tuple(Path(str(a["adapter"])) for a in adapters.values()),
    )


AdapterFit = Callable[[str | None, Path], dict[str, Any]]


def _summary(
    adapter: Path, steps: int, loss: float, eval_loss: float | None, rate: float, seconds: float
) -> dict[str, Any]:
    """What the stage reports of one trained adapter."""
    return {
        "adapter": str(adapter),
        "steps": steps,
        "train_loss": round(loss, 4),
        "eval_loss": None if eval_loss is None else round(eval_loss, 4),
        "tokens_per_second": round(rate),
        "seconds": round(seconds),
    }


def _fine_tuner(section: TrainSection, ctx: RunContext, set_dir: Path) -> AdapterFit:
    """LoRA SFT or DPO through TRL, one adapter per call (a culture's rows, or all)."""
    from culturesim.training.presets import make_config
    from culturesim.training.trainer import train_adapter

    config = make_config(
        section.preset,
        method=section.method,
        max_steps=section.max_steps,
        epochs=section.epochs,
        learning_rate=section.learning_rate,
        lora_r=section.lora_r,
        per_device_batch_size=section.batch_size,
        effective_batch_size=section.effective_batch_size,
        max_length=section.max_length,
        packing=section.packing,
        qlora=section.qlora,
        seed=ctx.seed,
    )

    def fit(culture: str | None, target: Path) -> dict[str, Any]:
        result = train_adapter(
            ctx.roles.base,
            set_dir,
            target,
            config,
            culture=culture,
            show_progress=ctx.show_progress,
        )
        return _summary(
            result.adapter,
            result.steps,
            result.train_loss,
            result.eval_loss,
            result.tokens_per_second,
            result.seconds,
        )

    return fit


def _distiller(section: TrainSection, ctx: RunContext, set_dir: Path) -> AdapterFit:
    """The set's soft targets fitted with the survey teacher's loss, one adapter per call."""
    from transformers import AutoTokenizer

    from culturesim.training.soft_fit import DISTILL_EPOCHS, SoftFitConfig, fit_soft_targets
    from culturesim.training.soft_rows import SoftTargetError, rows_from_corpus
    from culturesim.training.trainer import load_rows, resolve_base

    base_dir = resolve_base(ctx.roles.base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    given: dict[str, Any] = {
        "max_steps": section.max_steps,
        "learning_rate": section.learning_rate,
        "batch_size": section.effective_batch_size or section.batch_size,
        "lora_r": section.lora_r,
        "lora_layers": section.lora_layers,
    }
    config = SoftFitConfig(
        epochs=section.epochs or DISTILL_EPOCHS,
        seed=ctx.seed,
        **{key: value for key, value in given.items() if value is not None},
    )

    def fit(culture: str | None, target: Path) -> dict[str, Any]:
        try:
            train_rows = rows_from_corpus(tokenizer, load_rows(set_dir, "train", culture))
            validation = rows_from_corpus(tokenizer, load_rows(set_dir, "validation", culture))
            result = fit_soft_targets(
                base_dir,
                train_rows,
                target,
                config,
                lineage={"base": ctx.roles.base, "corpus": str(set_dir), "culture": culture},
                validation=validation,
                name="student (distill)",
                kind="student distilled from soft targets",
                show_progress=ctx.show_progress,
                console=ctx.console,
            )
        except SoftTargetError as error:
            raise StageFailed(f"train: set {section.set!r}: {error}") from error
        return _summary(
            result.adapter,
            result.steps,
            result.last_loss,
            result.eval_loss,
            result.tokens_per_second,
            result.seconds,
        )

    return fit


def plan(section: TrainSection, loop: LoopPlan) -> str:
    steps = (
        f"{section.max_steps} steps"
        if section.max_steps
        else f"{section.epochs or 'preset'} epochs"
    )
    return f"LoRA {section.method} of {loop.ctx.roles.base} on '{section.set}', {steps}"


STAGE = Stage("train", TrainSection, run, plan)

"""`culturesim train SET_DIR`: LoRA SFT, DPO or distillation, culture-joint or per culture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.cli.common import build_section, command_context, console
from culturesim.models.base import DEFAULT_MODEL
from culturesim.training.train_stage import TrainSection


def train(
    set_dir: Annotated[Path, typer.Argument(help="A corpus set folder, e.g. runs/corpus/clca.")],
    out: Annotated[Path, typer.Option(help="Output folder (checkpoints, adapters, metrics).")],
    base: Annotated[str, typer.Option(help="smollm2 or a local model directory.")] = DEFAULT_MODEL,
    method: Annotated[str | None, typer.Option(help="sft, dpo, or distill (soft targets).")] = None,
    preset: Annotated[str | None, typer.Option(help="default, culturespa or clca.")] = None,
    per_culture: Annotated[
        bool | None, typer.Option(help="One adapter per culture (culture-specific) instead of one.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after N steps (overrides epochs).")
    ] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    lora_r: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-device batch size.")] = None,
    effective_batch_size: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    packing: Annotated[bool | None, typer.Option("--packing/--no-packing")] = None,
    lora_layers: Annotated[
        int | None, typer.Option(help="distill: adapt only the top N layers (default 8).")
    ] = None,
    qlora: Annotated[bool | None, typer.Option(help="4-bit QLoRA (CUDA + bitsandbytes).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune LoRA adapters on a corpus set; rerun the same command to resume."""
    from culturesim.context import ModelRoles, RunLayout
    from culturesim.training.train_stage import run

    section = build_section(
        TrainSection,
        {
            "set": set_dir.name,
            "method": method,
            "preset": preset,
            "per_culture": per_culture,
            "max_steps": max_steps,
            "epochs": epochs,
            "learning_rate": learning_rate,
            "lora_r": lora_r,
            "batch_size": batch_size,
            "effective_batch_size": effective_batch_size,
            "max_length": max_length,
            "packing": packing,
            "lora_layers": lora_layers,
            "qlora": qlora,
        },
    )
    ctx = command_context(
        RunLayout(out, {"corpus": set_dir.parent, "train": out}),
        roles=ModelRoles(base=base),
        seed=seed,
    )
    result = run(section, ctx)
    table = Table("adapter", "culture", "steps", "train loss", "eval loss", "tokens/s", "seconds")
    for culture, a in result.counts["adapters"].items():
        table.add_row(
            str(a["adapter"]),
            culture,
            str(a["steps"]),
            f"{a['train_loss']:.4f}",
            "-" if a["eval_loss"] is None else f"{a['eval_loss']:.4f}",
            str(a["tokens_per_second"]),
            str(a["seconds"]),
        )
    console.print(table)
    console.print(
        "use an adapter with --adapter, e.g. "
        f'`culturesim chat --model {base} --adapter {out}/adapter "…"`'
        if not section.per_culture
        else f"one adapter per culture under {out}/<CODE>/adapter",
        markup=False,
    )

"""`culturesim train SET_DIR`: LoRA SFT or DPO, culture-joint or one adapter per culture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def train(
    set_dir: Annotated[Path, typer.Argument(help="A corpus set folder, e.g. runs/corpus/clca.")],
    out: Annotated[Path, typer.Option(help="Output folder (checkpoints, adapters, metrics).")],
    base: Annotated[str, typer.Option(help="smollm2 or a local model directory.")] = "smollm2",
    method: Annotated[str, typer.Option(help="sft or dpo.")] = "sft",
    preset: Annotated[str, typer.Option(help="default, culturespa or clca.")] = "default",
    per_culture: Annotated[
        bool, typer.Option(help="One adapter per culture (culture-specific) instead of one.")
    ] = False,
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
    qlora: Annotated[bool, typer.Option(help="4-bit QLoRA (CUDA + bitsandbytes).")] = False,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune LoRA adapters on a corpus set; rerun the same command to resume."""
    from culturesim.models.base import ModelError
    from culturesim.training.presets import make_config
    from culturesim.training.trainer import TrainingError, cultures_in, train_adapter

    try:
        config = make_config(
            preset,
            method=method,
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=learning_rate,
            lora_r=lora_r,
            per_device_batch_size=batch_size,
            effective_batch_size=effective_batch_size,
            max_length=max_length,
            packing=packing,
            qlora=qlora,
            seed=seed,
        )
        cultures: list[str | None] = list(cultures_in(set_dir)) if per_culture else [None]
    except (TrainingError, ValueError) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error
    table = Table("adapter", "culture", "steps", "train loss", "eval loss", "tokens/s", "seconds")
    for culture in cultures:
        target = out / culture if culture else out
        try:
            result = train_adapter(base, set_dir, target, config, culture=culture)
        except (TrainingError, ModelError, ValueError) as error:
            errors.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(code=1) from error
        table.add_row(
            str(result.adapter),
            culture or "all",
            str(result.steps),
            f"{result.train_loss:.4f}",
            "-" if result.eval_loss is None else f"{result.eval_loss:.4f}",
            f"{result.tokens_per_second:.0f}",
            f"{result.seconds:.0f}",
        )
    console.print(table)
    console.print(
        "use an adapter with --adapter, e.g. "
        f'`culturesim chat --model {base} --adapter {out}/adapter "…"`'
        if not per_culture
        else f"one adapter per culture under {out}/<CODE>/adapter"
    )

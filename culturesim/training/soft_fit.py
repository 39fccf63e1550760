"""Fitting a LoRA adapter to soft-target rows: the positive control's teacher (survey shares)
and its distilled student (a teacher's answer distributions) both use it.

A small training loop of its own rather than TRL's: the rows are prompt plus label-tree targets,
read at the last two positions, which a causal-LM trainer does not express. It checkpoints
every `save_steps` and a rerun continues on the same schedule, fixed by the seed.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.training import soft_loss
from culturesim.training.soft_rows import SoftRow, SoftTargetError

DISTILL_EPOCHS = 3.0
"""A student's epochs when the train section gives none: it has fewer rows than a teacher."""


@dataclass(frozen=True)
class SoftFitConfig:
    """How the adapter is fitted; `lora_layers` adapts only the top N layers, which also keeps
    the backward pass out of the layers below (the main cost on a CPU)."""

    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    batch_size: int = 8
    lora_r: int = 16
    lora_layers: int | None = 8
    save_steps: int = 25
    seed: int = 0


@dataclass
class SoftFitResult:
    adapter: Path
    rows: int
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens_per_second: float
    losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None


def _batches(rows: Sequence[SoftRow], config: SoftFitConfig) -> list[list[SoftRow]]:
    """The whole schedule of mini-batches, fixed by the seed so a resumed run continues it."""
    epochs = max(1, math.ceil(config.epochs))
    order: list[SoftRow] = []
    rng = random.Random(config.seed)
    for _ in range(epochs):
        shuffled = list(rows)
        rng.shuffle(shuffled)
        order += shuffled
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or max(1, round(per_epoch * config.epochs))
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    while len(batches) < total:  # max_steps past the epochs given: keep cycling
        batches += batches[: total - len(batches)]
    return batches[:total]


def _left_pad(rows: Sequence[SoftRow], pad_id: int) -> tuple[Any, Any, Any]:
    """Ids, mask and positions of left-padded rows (their last two tokens line up)."""
    from culturesim.models.transformers_backend import left_pad

    ids, mask = left_pad([r.input_ids for r in rows], pad_id)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _mean_loss(model: Any, rows: Sequence[SoftRow], pad_id: int, batch_size: int) -> float:
    """The soft-label loss over `rows` without gradients, weighted by batch size."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            ids, mask, positions = _left_pad(batch, pad_id)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=2
            ).logits
            total += float(soft_loss.soft_label_loss(logits, batch)) * len(batch)
    model.train()
    return total / len(rows)


def _linear_module_names(model: Any) -> list[str]:
    """The linear layers inside the decoder blocks (PEFT wants names, not "all-linear", when
    only some layers are adapted)."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    return sorted(names)


def fit_soft_targets(
    base_dir: Path,
    rows: Sequence[SoftRow],
    out: Path,
    config: SoftFitConfig,
    *,
    lineage: dict[str, Any] | None = None,
    validation: Sequence[SoftRow] = (),
    name: str = "teacher",
    kind: str = "survey teacher (soft targets from answer shares)",
    show_progress: bool = True,
    console: Any = None,
) -> SoftFitResult:
    """Fit the adapter; checkpoints every `save_steps` under `out/checkpoint`, and a rerun
    continues from the last one on the same schedule. The same fit distils a student from a
    teacher's answer distributions (`name` and `kind` label its progress and adapter); with
    `validation` rows, their mean loss after training is `eval_loss`."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    if not rows:
        raise SoftTargetError(f"{name}: no (culture, question) row to learn from")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    layers = int(model.config.num_hidden_layers)
    top = min(config.lora_layers or layers, layers)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=2 * config.lora_r,
        lora_dropout=0.0,
        target_modules=_linear_module_names(model),
        layers_to_transform=list(range(layers - top, layers)),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    batches = _batches(rows, config)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    schedule = get_cosine_schedule_with_warmup(
        optimizer, max(1, round(config.warmup_ratio * len(batches))), len(batches)
    )
    checkpoint = out / "checkpoint"
    step = 0
    losses: list[float] = []
    if (checkpoint / "state.pt").exists():
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses = int(state["step"]), list(state["losses"])
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    started = time.perf_counter()
    tokens = 0
    progress = Progress(
        TextColumn(name),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
        console=console,
    )
    with progress:
        task = progress.add_task(name, total=len(batches), completed=step, info="")
        while step < len(batches):
            batch = batches[step]
            ids, mask, positions = _left_pad(batch, pad_id)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=2
            ).logits
            loss = soft_loss.soft_label_loss(logits, batch)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            losses.append(float(loss.detach()))
            tokens += int(mask.sum())
            rate = tokens / max(time.perf_counter() - started, 1e-9)
            with metrics.open("a") as handle:
                handle.write(json.dumps({"step": step, "loss": round(losses[-1], 5)}) + "\n")
            progress.update(task, completed=step, info=f"loss {losses[-1]:.3f} · {rate:.0f} tok/s")
            if step % config.save_steps == 0 and step < len(batches):
                staging = out / "checkpoint.tmp"
                staging.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {
                        "adapter": get_peft_model_state_dict(model),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "step": step,
                        "losses": losses,
                    },
                    staging / "state.pt",
                )
                if checkpoint.exists():
                    (checkpoint / "state.pt").unlink()
                    checkpoint.rmdir()
                staging.rename(checkpoint)
    seconds = time.perf_counter() - started
    eval_loss = _mean_loss(model, validation, pad_id, config.batch_size) if validation else None
    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    window = max(1, len(losses) // 10)
    result = SoftFitResult(
        adapter=adapter_dir,
        rows=len(rows),
        steps=step,
        first_loss=float(np.mean(losses[:window])),
        last_loss=float(np.mean(losses[-window:])),
        seconds=seconds,
        tokens_per_second=tokens / max(seconds, 1e-9),
        losses=losses,
        eval_loss=eval_loss,
    )
    (adapter_dir / "culturesim_adapter.json").write_text(
        json.dumps(
            {
                **(lineage or {}),
                "kind": kind,
                "rows": len(rows),
                "steps": step,
                "config": config.__dict__,
                "first_loss": result.first_loss,
                "last_loss": result.last_loss,
                "eval_loss": eval_loss,
            },
            indent=2,
        )
        + "\n"
    )
    return result

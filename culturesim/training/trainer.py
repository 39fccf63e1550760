"""LoRA SFT and DPO with TRL and PEFT on corpora built by `culturesim corpus`.

SFT rows are tokenized here with labels on the assistant's tokens only (see `tokenize.py`) and
handed to TRL's SFTTrainer as a processed dataset. DPO rows (prompt, chosen, rejected, in chat
form) go to TRL's DPOTrainer, whose reference model is the base with the adapter switched off.

Devices: on CUDA, bf16 with sdpa attention (flash-attention 2 when installed) and padding-free
packing when `packing` is on; QLoRA in 4-bit when asked and bitsandbytes is present. On CPU,
fp32 with `use_cpu=True, bf16=False, gradient_checkpointing=False` (TRL's defaults make CPU
training many times slower). Multi-GPU runs go through `accelerate launch` (see README).

A run writes checkpoints under its output folder and resumes from the last one; loss and
tokens/s go to `metrics.jsonl`; the adapter is saved with `culturesim_adapter.json`, which
records the base model, the corpus (and its summary), the culture and the config.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from culturesim.training.presets import TrainingConfig
from culturesim.training.tokenize import tokenize_chat

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """Training cannot start; the message says what to change."""


def resolve_base(spec: str) -> Path:
    """A model spec to a local directory of weights (only local models can be trained)."""
    from culturesim.models.base import ModelError
    from culturesim.models.registry import local_weights

    try:
        return local_weights(spec)
    except ModelError as error:
        raise TrainingError(str(error)) from error


def load_rows(set_dir: Path, split: str, culture: str | None = None) -> list[dict[str, Any]]:
    """Rows of one split of a corpus set (its `hf/` folder), optionally one culture's."""
    from datasets import load_from_disk

    folder = set_dir / "hf"
    if not folder.exists():
        raise TrainingError(
            f"{set_dir}: not a corpus set (no hf/ folder); build one with `culturesim corpus`"
        )
    data = load_from_disk(str(folder))
    if split not in data:
        return []
    rows = [dict(r) for r in data[split]]
    return [r for r in rows if culture is None or r["culture"] == culture]


def cultures_in(set_dir: Path) -> list[str]:
    rows = load_rows(set_dir, "train") + load_rows(set_dir, "validation")
    return sorted({r["culture"] for r in rows})


@dataclass
class TrainResult:
    adapter: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    tokens_per_second: float
    seconds: float
    peak_memory_gb: float | None
    train_seconds: float = 0.0  # the optimisation loop alone (no loading, tokenising or eval)


def _callback(metrics_path: Path, tokens_per_step: float, show_progress: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from transformers import TrainerCallback

    class Progressing(TrainerCallback):
        """A rich progress bar, and loss with tokens/s appended to metrics.jsonl."""

        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                disable=not show_progress,
            )
            self.task: Any = None
            self.started = time.perf_counter()
            self.first_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.progress.start()
            self.first_step = state.global_step
            self.task = self.progress.add_task(
                "train", total=state.max_steps, completed=state.global_step, info=""
            )
            self.started = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            done = state.global_step - self.first_step
            rate = done * tokens_per_step / elapsed
            record = {
                "step": state.global_step,
                "tokens_per_second": round(rate, 1),
                **(logs or {}),
            }
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            if "loss" in (logs or {}):
                self.progress.update(self.task, info=f"loss {logs['loss']:.3f} · {rate:.0f} tok/s")

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.progress.stop()

    return Progressing()


def train_adapter(
    base: str,
    set_dir: Path,
    out: Path,
    config: TrainingConfig,
    *,
    culture: str | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train one LoRA adapter on a corpus set (one culture's rows when `culture` is given)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = resolve_base(base)
    train_rows = load_rows(set_dir, "train", culture)
    eval_rows = load_rows(set_dir, "validation", culture)
    if not train_rows:
        raise TrainingError(f"{set_dir}: no training rows{f' for {culture}' if culture else ''}")
    is_dpo = "chosen" in train_rows[0]
    if is_dpo != (config.method == "dpo"):
        raise TrainingError(
            f"{set_dir} holds {'preference pairs' if is_dpo else 'chat rows'}; use --method "
            f"{'dpo' if is_dpo else 'sft'}"
        )
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if cuda:
        try:
            import flash_attn  # noqa: F401

            model_kwargs["attn_implementation"] = "flash_attention_2"
        except ImportError:
            model_kwargs["attn_implementation"] = "sdpa"
    if config.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as error:
            raise TrainingError("--qlora needs bitsandbytes (pip install bitsandbytes)") from error
        if not cuda:
            raise TrainingError("--qlora needs a CUDA GPU; train plain LoRA on CPU")
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    model = AutoModelForCausalLM.from_pretrained(base_dir, **model_kwargs)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    out.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {
        "output_dir": str(out),
        "per_device_train_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "lr_scheduler_type": config.scheduler,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a ratio of all steps
        "logging_steps": config.logging_steps,
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "seed": config.seed,
        "max_length": config.max_length,
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "bf16": cuda,
        # TRL's CPU default (checkpointing on) makes training many times slower.
        "activation_checkpointing": False,
    }
    started = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if config.method == "sft":
        from trl import SFTConfig, SFTTrainer

        def tokenized(rows: list[dict[str, Any]]) -> Dataset:
            encoded = [tokenize_chat(tokenizer, r["messages"], config.max_length) for r in rows]
            usable = [e for e in encoded if any(label != -100 for label in e["labels"])]
            if len(usable) < len(encoded):
                log.warning(
                    "%d row(s) lost every assistant token to --max-length %d and are left out",
                    len(encoded) - len(usable),
                    config.max_length,
                )
            if not usable:
                raise TrainingError(
                    f"no row keeps an assistant token within --max-length {config.max_length}; "
                    "raise it"
                )
            return Dataset.from_list(usable)

        train_data = tokenized(train_rows)
        eval_data = tokenized(eval_rows) if eval_rows else None
        mean_tokens = sum(len(x) for x in train_data["input_ids"]) / len(train_data)
        sft_args = SFTConfig(**common, packing=config.packing, padding_free=config.packing and cuda)
        trainer: Any = SFTTrainer(
            model=model,
            args=sft_args,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            peft_config=lora,
        )
    else:
        from trl import DPOConfig, DPOTrainer

        def pairs(rows: list[dict[str, Any]]) -> Dataset:
            return Dataset.from_list(
                [
                    {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                    for r in rows
                ]
            )

        train_data = pairs(train_rows)
        eval_data = pairs(eval_rows) if eval_rows else None
        mean_tokens = (
            2.0
            * sum(
                len(tokenizer.apply_chat_template(r["prompt"] + r["chosen"], tokenize=True))
                for r in train_rows
            )
            / len(train_rows)
        )
        dpo_args = DPOConfig(**common, beta=config.beta)
        trainer = DPOTrainer(
            model=model,
            args=dpo_args,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            peft_config=lora,
        )
    tokens_per_step = mean_tokens * config.per_device_batch_size * config.gradient_accumulation
    trainer.add_callback(_callback(out / "metrics.jsonl", tokens_per_step, show_progress))
    resume = any(out.glob("checkpoint-*"))
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    eval_loss = None
    if eval_data is not None and len(eval_data):
        eval_loss = float(trainer.evaluate().get("eval_loss", float("nan")))
    seconds = time.perf_counter() - started
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    summary_path = set_dir.parent / "corpus_summary.json"
    lineage = {
        "base": base,
        "base_dir": str(base_dir),
        "corpus_set": str(set_dir),
        "corpus_summary": json.loads(summary_path.read_text()) if summary_path.exists() else None,
        "culture": culture,
        "rows": {"train": len(train_rows), "validation": len(eval_rows)},
        "config": config.model_dump(),
        "train_loss": output.training_loss,
        "eval_loss": eval_loss,
        "seconds": round(seconds, 1),
    }
    (adapter_dir / "culturesim_adapter.json").write_text(json.dumps(lineage, indent=2) + "\n")
    return TrainResult(
        adapter=adapter_dir,
        steps=output.global_step,
        train_loss=float(output.training_loss),
        eval_loss=eval_loss,
        tokens_per_second=output.global_step * tokens_per_step / max(seconds, 1e-9),
        seconds=seconds,
        peak_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        train_seconds=float(output.metrics.get("train_runtime", seconds)),
    )

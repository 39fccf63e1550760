"""Training hyper-parameters as named presets, overridable field by field from a config.

* `culturespa`: the paper's LoRA recipe — r 8, alpha 16, all linear layers, lr 1e-4, 1 epoch,
  cosine schedule, warm-up 0.1, effective batch 128.
* `clca`: what the CLCA paper states — loss on assistant tokens only, one adapter per culture.
  It gives no LoRA numbers, so the rest are culturesim's defaults (stated here, not invented
  as the paper's).
* `default`: culturesim's own — r 16, alpha 32, dropout 0.05, all linear layers, lr 2e-4,
  2 epochs, cosine, warm-up 0.05, effective batch 32.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["sft", "dpo"] = "sft"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 overrides epochs")
    scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0)
    effective_batch_size: int = Field(default=32, ge=1)
    per_device_batch_size: int = Field(default=4, ge=1)
    max_length: int = Field(default=1024, ge=16)
    packing: bool = False
    beta: float = Field(default=0.1, gt=0, description="DPO's beta")
    qlora: bool = False
    seed: int = 0
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(default=50, ge=1)

    @property
    def gradient_accumulation(self) -> int:
        return max(1, self.effective_batch_size // self.per_device_batch_size)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "culturespa": {
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": "all-linear",
        "learning_rate": 1e-4,
        "epochs": 1.0,
        "scheduler": "cosine",
        "warmup_ratio": 0.1,
        "effective_batch_size": 128,
    },
    "clca": {},
}


def make_config(preset: str = "default", **overrides: Any) -> TrainingConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainingConfig.model_validate(values)

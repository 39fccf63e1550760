"""Figures for the report, drawn with matplotlib into PNG files beside index.html."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def training_curve(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Training loss per step, with evaluation loss where it was measured."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evaluation = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not evaluation:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    if train:
        ax.plot(*zip(*train, strict=True), marker=".", label="train loss")
    if evaluation:
        ax.plot(*zip(*evaluation, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

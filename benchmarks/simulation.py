"""Simulation throughput: conversations one at a time vs many at once through one Batcher.

    .venv/bin/python benchmarks/simulation.py [--model smollm2] [--dialogues 8] [--max-turns 4]

The baseline is the same simulator with concurrency 1 (each conversation's calls go to the
backend alone, as a script that loops over episodes would). The batched run lets all
conversations run at once, so their model calls meet in the Batcher. Both runs use the same
episodes, seeds and settings, no response cache, and print dialogues/s, completion tokens/s,
mean batch size and the speed-up side by side.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from culturesim.models.registry import build_model
from culturesim.roleplay.conversation import RolePlaySettings
from culturesim.roleplay.simulation import SimulationSettings, SimulationSummary, Simulator
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore


def run(model: object, concurrency: int, args: argparse.Namespace) -> SimulationSummary:
    library = ScenarioLibrary()
    cultures = load_cultures()
    episodes = build_episodes(
        library,
        library.select("borrow_money,decline_invitation,noisy_neighbour,elder_care"),
        culture_groups("JPN,MEX", cultures),
    )[: args.dialogues]
    settings = SimulationSettings(
        per_episode=1,
        concurrency=concurrency,
        max_batch_size=max(1, concurrency),
        annotate_intents=not args.no_intents,
        roleplay=RolePlaySettings(max_turns=args.max_turns, max_new_tokens=args.new_tokens),
    )
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore.open(Path(folder) / "run", {"benchmark": concurrency})
        return Simulator(model, store, settings, cultures=cultures).run(  # type: ignore[arg-type]
            episodes, show_progress=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--no-intents", action="store_true")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    model = build_model(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"model {model.model_id} on {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads); {args.dialogues} dialogues, <= {args.max_turns} turns"
    )
    results = {}
    for name, concurrency in (("sequential", 1), ("batched", args.dialogues)):
        summary = run(model, concurrency, args)
        results[name] = summary
        print(
            f"{name:>10}: {summary.done} dialogues in {summary.seconds:6.1f} s  "
            f"{summary.done / summary.seconds:6.3f} dialogues/s  "
            f"{summary.completion_tokens / summary.seconds:7.1f} tok/s  "
            f"mean batch {summary.mean_batch_size:4.1f}"
        )
    base, batched = results["sequential"], results["batched"]
    print(
        f"speed-up (batched / sequential, dialogues per second): "
        f"{(batched.done / batched.seconds) / (base.done / base.seconds):.2f}x"
    )


if __name__ == "__main__":
    main()

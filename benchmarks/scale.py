"""Simulation over Ray actors: the same dialogues with 1 actor and with 2, side by side.

Each actor holds its own model replica and gets an equal share of this machine's cores
(`torch.set_num_threads`), so the comparison is one replica using every core against two
replicas splitting them. Both runs go through Ray, so its start-up costs are in both.

    .venv/bin/python benchmarks/scale.py --dialogues 8 --max-turns 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from culturesim.agents.roleplay.ray_shards import simulate_with_ray
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.models.ray_cluster import ensure_ray
from culturesim.records import Dialogue
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--actors", default="1,2")
    args = parser.parse_args()

    library = ScenarioLibrary()
    cultures = load_cultures()
    episodes = build_episodes(
        library,
        library.select("borrow_money,decline_invitation"),
        culture_groups("USA,CHN,DEU,JPN", cultures),
        seed=0,
    )
    per_episode = max(1, -(-args.dialogues // len(episodes)))
    settings = SimulateSection(per_episode=per_episode, max_turns=args.max_turns)
    counts = [int(a) for a in args.actors.split(",")]
    ensure_ray(max(counts))
    rows = []
    ids: dict[int, list[str]] = {}
    for actors in counts:
        with tempfile.TemporaryDirectory() as folder:
            store = RunStore.open(Path(folder) / "run", {"benchmark": "scale"})
            started = time.perf_counter()
            summary = simulate_with_ray(
                args.model,
                store,
                episodes,
                settings,
                actors=actors,
                cache=False,
                show_progress=False,
            )
            seconds = time.perf_counter() - started
            ids[actors] = sorted(d.id for d in store.read(Dialogue))
        rows.append(
            {
                "actors": actors,
                "dialogues": summary.done,
                "seconds": round(seconds, 1),
                "dialogues_per_minute": round(60 * summary.done / seconds, 2),
            }
        )
    base = rows[0]["seconds"]
    print(f"model {args.model}, {len(ids[counts[0]])} dialogues, {os.cpu_count()} CPU cores")
    print(f"{'actors':>6} {'dialogues':>9} {'seconds':>8} {'dlg/min':>8} {'speed-up':>8}")
    for row in rows:
        print(
            f"{row['actors']:>6} {row['dialogues']:>9} {row['seconds']:>8} "
            f"{row['dialogues_per_minute']:>8} {base / row['seconds']:>7.2f}x"
        )
    same = all(ids[c] == ids[counts[0]] for c in counts)
    print(f"same dialogue ids in every run: {same}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

"""Simulation sharded over Ray actors that all write into one run store.

Episodes are dealt round-robin (sorted by id) to N actors. Each actor holds its own model
replica and runs the ordinary Simulator on its shard, appending whole dialogues to the shared
run directory; the store's per-record lock (an `flock` across processes) keeps lines from
interleaving, and since the shards are disjoint no dialogue is written twice. A dialogue's id
depends on its episode, sample index and model only, so the ids match a single-process run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import SimulationSummary
from culturesim.models.cache import prepare_cache_file
from culturesim.models.ray_cluster import actor_environment, ensure_ray, threads_per_actor
from culturesim.records import Dialogue, Episode
from culturesim.store import RunStore


class _SimulationWorker:
    """Runs inside a Ray actor: one model replica, the Simulator over a shard."""

    def __init__(
        self,
        spec: str,
        run_dir: str,
        settings: SimulateSection,
        seed: int,
        threads: int,
        cache: bool,
    ) -> None:
        import torch

        from culturesim.models.registry import build_model

        torch.set_num_threads(threads)
        self.run_dir = Path(run_dir)
        self.model = build_model(spec, cache_path=self.run_dir / "cache.sqlite" if cache else None)
        self.settings = settings
        self.seed = seed

    def run(self, episodes: list[Episode], retry_failed: bool) -> dict[str, Any]:
        from culturesim.agents.roleplay.simulation import Simulator

        simulator = Simulator(self.model, RunStore(self.run_dir), self.settings, seed=self.seed)
        summary = simulator.run(episodes, show_progress=False, retry_failed=retry_failed)
        return summary.as_dict()


def shard(episodes: Sequence[Episode], actors: int) -> list[list[Episode]]:
    ordered = sorted(episodes, key=lambda e: e.id)
    return [ordered[index::actors] for index in range(actors)]


def simulate_with_ray(
    spec: str,
    store: RunStore,
    episodes: Sequence[Episode],
    settings: SimulateSection,
    *,
    seed: int = 0,
    actors: int,
    retry_failed: bool = False,
    cache: bool = True,
    show_progress: bool = True,
) -> SimulationSummary:
    """Run the episodes over `actors` Ray actors; returns the merged summary."""
    ray = ensure_ray(actors)
    known = store.done_ids(Episode)
    store.append_many([e for e in episodes if e.id not in known])
    if cache:
        prepare_cache_file(store.root / "cache.sqlite")
    remote = ray.remote(num_cpus=1, runtime_env=actor_environment())(_SimulationWorker)
    threads = threads_per_actor(actors)
    workers = [
        remote.remote(spec, str(store.root), settings, seed, threads, cache) for _ in range(actors)
    ]
    started = time.perf_counter()
    before = len(store.done_ids(Dialogue))
    total = len(episodes) * settings.per_episode
    pending = [
        worker.run.remote(part, retry_failed)
        for worker, part in zip(workers, shard(episodes, actors), strict=True)
        if part
    ]
    results: list[dict[str, Any]] = []
    columns = (
        TextColumn("dialogues over {task.fields[actors]} Ray actors"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, disable=not show_progress) as progress:
            bar = progress.add_task("ray", total=total, completed=before, actors=actors)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                results.extend(ray.get(ready))
                progress.update(bar, completed=len(store.done_ids(Dialogue)))
    finally:
        for worker in workers:
            ray.kill(worker)
    summary = SimulationSummary()
    for result in results:
        summary.done += result["done"]
        summary.skipped += result["skipped"]
        summary.left_failed += result["left_failed"]
        summary.failed.extend(result["failed"])
        summary.stop_reasons.update(result["stop_reasons"])
        summary.completion_tokens += result["completion_tokens"]
    summary.seconds = time.perf_counter() - started
    return summary

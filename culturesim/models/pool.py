"""`ray:N:SPEC`: a model made of N Ray actors, each holding its own replica of SPEC.

A batch is cut into N contiguous slices that the replicas run at the same time; the answers come
back in order. The pool reports the replica's model id, so records written through it carry the
same ids as records written by the model in process. Probing and judging use it unchanged,
since it is just another LanguageModel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from culturesim.models.base import (
    GREEDY,
    Completion,
    GenerationParams,
    LanguageModel,
    Params,
    Prompt,
    per_prompt_params,
)
from culturesim.models.ray_cluster import actor_environment, ensure_ray, threads_per_actor

ModelBuilder = Callable[..., LanguageModel]


class _Replica:
    """Runs inside a Ray actor process."""

    def __init__(self, spec: str, threads: int, adapter: str | None, builder: ModelBuilder) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = builder(spec, adapter=adapter)

    def model_id(self) -> str:
        return self.model.model_id

    def generate(self, prompts: list[Prompt], params: list[GenerationParams]) -> list[Completion]:
        return self.model.generate(prompts, params)

    def score(self, prompts: list[Prompt], candidates: list[list[str]]) -> list[list[float]]:
        return self.model.score(prompts, candidates)


def _slices(count: int, parts: int) -> list[slice]:
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        if stop > start:
            bounds.append(slice(start, stop))
        start = stop
    return bounds


class RayModelPool:
    """N replicas of one spec; `builder` (the registry's `build_model`) makes each replica, so
    the pool never imports the registry that builds it."""

    def __init__(
        self, spec: str, actors: int, builder: ModelBuilder, *, adapter: str | None = None
    ) -> None:
        if actors < 1:
            raise ValueError("a Ray model pool needs at least one actor")
        ray = ensure_ray(actors)
        self._ray = ray
        remote = ray.remote(num_cpus=1, runtime_env=actor_environment())(_Replica)
        threads = threads_per_actor(actors)
        self.replicas = [remote.remote(spec, threads, adapter, builder) for _ in range(actors)]
        self._model_id: str = ray.get(self.replicas[0].model_id.remote())

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        settings = per_prompt_params(params, len(prompts))
        parts = _slices(len(prompts), len(self.replicas))
        futures = [
            replica.generate.remote(list(prompts[part]), list(settings[part]))
            for replica, part in zip(self.replicas, parts, strict=False)
        ]
        results: list[Completion] = []
        for chunk in self._ray.get(futures):
            results.extend(chunk)
        return results

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        parts = _slices(len(prompts), len(self.replicas))
        futures = [
            replica.score.remote(list(prompts[part]), [list(c) for c in candidates[part]])
            for replica, part in zip(self.replicas, parts, strict=False)
        ]
        results: list[list[float]] = []
        for chunk in self._ray.get(futures):
            results.extend(chunk)
        return results

    def close(self) -> None:
        for replica in self.replicas:
            self._ray.kill(replica)


def parse_ray_spec(spec: str) -> tuple[int, str]:
    """ray:N:SPEC -> (N, SPEC)."""
    body = spec.removeprefix("ray:")
    count, sep, inner = body.partition(":")
    if not sep or not count.isdigit() or int(count) < 1 or not inner:
        raise ValueError(f"model spec {spec!r} is not of the form ray:N:SPEC, e.g. ray:2:smollm2")
    return int(count), inner


def pool_from_spec(spec: str, builder: ModelBuilder, adapter: Any = None) -> RayModelPool:
    actors, inner = parse_ray_spec(spec)
    return RayModelPool(inner, actors, builder, adapter=str(adapter) if adapter else None)

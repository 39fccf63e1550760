"""Usage metering: what a stage cost in calls, tokens and seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from culturesim.models.base import Completion, GenerationParams, LanguageModel, Prompt


@dataclass
class Usage:
    calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def completion_tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        data: dict[str, float] = dict(asdict(self))
        data["completion_tokens_per_second"] = round(self.completion_tokens_per_second, 2)
        return data


class MeteredModel:
    """Counts every call that passes through; `usage` is a live, thread-safe tally."""

    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.usage = Usage()
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams | Sequence[GenerationParams] = GenerationParams(),
    ) -> list[Completion]:
        start = time.perf_counter()
        outputs = self.inner.generate(prompts, params)
        elapsed = time.perf_counter() - start
        with self._lock:
            self.usage.calls += 1
            self.usage.requests += len(prompts)
            self.usage.prompt_tokens += sum(c.prompt_tokens for c in outputs)
            self.usage.completion_tokens += sum(c.completion_tokens for c in outputs)
            self.usage.seconds += elapsed
        return outputs

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        start = time.perf_counter()
        outputs = self.inner.score(prompts, candidates)
        with self._lock:
            self.usage.calls += 1
            self.usage.requests += len(prompts)
            self.usage.seconds += time.perf_counter() - start
        return outputs

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**asdict(self.usage))

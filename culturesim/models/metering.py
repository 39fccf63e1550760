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


class ProcessUsage:
    """A process-wide tally every backend adds to, so a pipeline can charge tokens to a stage.

    Stages build their own models; instead of threading a meter through every command, the
    backends report here and the stage runner takes a snapshot before and after each stage.
    Cache hits never reach a backend, so they cost nothing here, as they cost nothing in fact.
    """

    def __init__(self) -> None:
        self._usage = Usage()
        self._lock = threading.Lock()

    def add(self, requests: int, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self._usage.calls += 1
            self._usage.requests += requests
            self._usage.prompt_tokens += prompt_tokens
            self._usage.completion_tokens += completion_tokens

    def add_completions(self, completions: Sequence[Completion]) -> None:
        self.add(
            len(completions),
            sum(c.prompt_tokens for c in completions),
            sum(c.completion_tokens for c in completions),
        )

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**asdict(self._usage))


PROCESS_USAGE = ProcessUsage()


def usage_since(before: Usage) -> Usage:
    """What the process's backends used since `before` (a PROCESS_USAGE snapshot)."""
    now = PROCESS_USAGE.snapshot()
    return Usage(
        calls=now.calls - before.calls,
        requests=now.requests - before.requests,
        prompt_tokens=now.prompt_tokens - before.prompt_tokens,
        completion_tokens=now.completion_tokens - before.completion_tokens,
    )

"""Usage metering: what a stage cost in calls, tokens and seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from culturesim.models.base import (
    GREEDY,
    Completion,
    LanguageModel,
    Params,
    Prompt,
    find_in_chain,
)


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
    """Counts every call that passes through; `usage` is a live, thread-safe tally.

    With a `sink`, every call is also added to that shared meter, so whoever holds the meter (a
    stage runner) sees the cost of every model it handed out, local, remote or Ray-backed.
    """

    def __init__(self, inner: LanguageModel, sink: UsageMeter | None = None) -> None:
        self.inner = inner
        self.sink = sink
        self.usage = Usage()
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        start = time.perf_counter()
        outputs = self.inner.generate(prompts, params)
        elapsed = time.perf_counter() - start
        with self._lock:
            self.usage.calls += 1
            self.usage.requests += len(prompts)
            self.usage.prompt_tokens += sum(c.prompt_tokens for c in outputs)
            self.usage.completion_tokens += sum(c.completion_tokens for c in outputs)
            self.usage.seconds += elapsed
        if self.sink is not None:
            self.sink.add_completions(outputs)
        return outputs

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        start = time.perf_counter()
        outputs = self.inner.score(prompts, candidates)
        counter = find_in_chain(self.inner, "count_prompt_tokens")
        tokens = int(counter(prompts)) if callable(counter) else 0
        with self._lock:
            self.usage.calls += 1
            self.usage.requests += len(prompts)
            self.usage.prompt_tokens += tokens
            self.usage.seconds += time.perf_counter() - start
        if self.sink is not None:
            self.sink.add(len(prompts), prompt_tokens=tokens)
        return outputs

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**asdict(self.usage))


class UsageMeter:
    """A shared, thread-safe tally that metered models add to, so a runner can charge tokens
    to a stage by taking a snapshot before and after it. It is passed to the models (through
    the run context's model factory), never kept as a process global. A response cache sits
    above the meter, so cache hits cost nothing here, as they cost nothing in fact.
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


def usage_between(before: Usage, after: Usage) -> Usage:
    """What was used between two snapshots of one meter."""
    return Usage(
        calls=after.calls - before.calls,
        requests=after.requests - before.requests,
        prompt_tokens=after.prompt_tokens - before.prompt_tokens,
        completion_tokens=after.completion_tokens - before.completion_tokens,
    )

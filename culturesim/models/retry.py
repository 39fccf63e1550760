"""Retries as a model wrapper: transient failures are asked for again, with back-off (tenacity).

`RetryingModel(inner)` implements the same `LanguageModel` protocol as the other wrappers (cache,
meter), so it stacks with them: `.inner` is the wrapped model and `model_id` is the inner's (a
retried answer is the same answer, so cache keys do not change). Only named transient failures
are retried (`TRANSIENT`: refused or dropped connections, timeouts, 429, 5xx, bodies that are not
the API's JSON, answers cut off without a finish reason); anything else (a 4xx, a scoring request
the server cannot answer exactly, a bug) passes through at once, unchanged. The wait between
tries grows exponentially with jitter; the tries stop after `max_retries + 1` attempts and, with
`deadline_s`, once that many seconds have passed since the first. What still fails raises a
ModelError naming where the model lives and what to do. Everything is counted in a `RetryLog`
(`retry_log_of` finds it through any stack of wrappers).

What is retried depends on the inner model:

* A `ConcurrentModel` (the OpenAI-compatible backend) fans a batch out into HTTP requests on its
  own event loop, one per prompt (one per candidate when it scores by echo). Wrapping one hands it
  this wrapper's retrier (`retry_requests_with`), and from then on the backend runs each request's
  tries through it: tenacity's `AsyncRetrying` around that one request's coroutine, which picks a
  replica, sends, and checks the answer. So a flaky request is asked for again alone while its
  batch-mates finish, and a retry may go to another replica. A request that still fails after its
  last try fails its batch call; the Batcher above then serves the batch-mates one by one, so only
  that request's caller sees the error (a failing request fails alone).
* Any other model is retried a whole batch call at a time with tenacity's `Retrying`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from culturesim.models.base import (
    GREEDY,
    Completion,
    LanguageModel,
    ModelError,
    Params,
    Prompt,
    wrapper_chain,
)

T = TypeVar("T")

SERVER_ADVICE = (
    "Is the server running and reachable? Start one with `culturesim serve` or vLLM, "
    "or raise the timeout."
)


class MalformedResponse(Exception):
    """The server answered, but not with a usable completion (no choices, no finish reason,
    a body that is not the API's JSON). Retried like a transient failure."""


TRANSIENT: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # refused, reset, unreachable (APITimeoutError is one too)
    openai.APITimeoutError,
    openai.RateLimitError,  # 429
    openai.InternalServerError,  # 5xx
    openai.APIResponseValidationError,
    json.JSONDecodeError,
    MalformedResponse,
    ConnectionError,
    TimeoutError,
)
"""The failures worth asking again for; everything else is raised at once."""


@dataclass
class RetryLog:
    """What a retrying model went through: requests, retries, failures, and errors by kind.

    `requests` counts retried units (one HTTP request for a ConcurrentModel, else one batch call),
    `retries` the extra tries, `failures` the units that still failed after the last try, and
    `errors` every transient failure by exception name.
    """

    requests: int = 0
    retries: int = 0
    failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "failures": self.failures,
            "errors": dict(self.errors),
        }


class AsyncRetrier(Protocol):
    """Runs one request's tries: `await retrier(attempt)`, where each `attempt()` is one try."""

    def __call__(self, attempt: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


@runtime_checkable
class ConcurrentModel(LanguageModel, Protocol):
    """A model that fans each batch out into concurrent requests and retries none by itself.

    Given a retrier, it runs every request's tries through it; without one (None), each request
    is one try and a transient failure is raised as it is.
    """

    def retry_requests_with(self, retrier: AsyncRetrier | None) -> None: ...


class RetryingModel:
    """Wraps a model so that transient failures are retried with exponential back-off.

    `max_retries` extra tries follow a transient failure (so `max_retries + 1` in all), each
    after a wait of `backoff_s * 2**n` seconds capped at `max_backoff_s` and jittered down to
    half that at random ("equal jitter"); `deadline_s`, when given, also stops the tries once
    that many seconds have passed since the first. `retry_on` names what counts as transient.
    `where` is what error messages name (default: the inner model's id; the registry passes the
    server URLs), and `advice` what they tell the user to do.
    """

    def __init__(
        self,
        inner: LanguageModel,
        *,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        deadline_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = TRANSIENT,
        where: str | None = None,
        advice: str = SERVER_ADVICE,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.inner = inner
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s
        self.retry_on = retry_on
        self.where = where
        self.advice = advice
        self.log = RetryLog()
        self._lock = threading.Lock()  # tries run on the inner's loop or on callers' threads
        # A ConcurrentModel retries request by request through this wrapper's retrier (a
        # backend is wrapped once: wrapping it again hands it the newer wrapper's retrier).
        self._per_request = isinstance(inner, ConcurrentModel)
        if isinstance(inner, ConcurrentModel):
            inner.retry_requests_with(self._retry_async)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    # ------------------------------------------------------------------ the policy

    def _policy(self) -> dict[str, Any]:
        """tenacity arguments; a fresh controller is built per unit, as they keep state."""
        stop: stop_base = stop_after_attempt(self.max_retries + 1)
        if self.deadline_s is not None:
            stop = stop | stop_after_delay(self.deadline_s)
        # wait_exponential gives backoff * 2**n capped; half of it fixed plus a uniform draw
        # up to the other half keeps every wait between half and all of the back-off.
        half, half_cap = self.backoff_s / 2, self.max_backoff_s / 2
        return {
            "retry": retry_if_exception_type(self.retry_on),
            "stop": stop,
            "wait": wait_exponential(multiplier=half, max=half_cap)
            + wait_random_exponential(multiplier=half, max=half_cap),
            "after": self._failed_try,
            "before_sleep": self._will_retry,
        }

    def _failed_try(self, state: RetryCallState) -> None:
        """Called by tenacity after every try that failed transiently (the last one too)."""
        error = state.outcome.exception() if state.outcome is not None else None
        with self._lock:
            self.log.errors[type(error).__name__] += 1

    def _will_retry(self, state: RetryCallState) -> None:
        """Called by tenacity before each wait that precedes another try."""
        with self._lock:
            self.log.retries += 1

    def _started(self) -> None:
        with self._lock:
            self.log.requests += 1

    def _gave_up(self, exhausted: RetryError) -> ModelError:
        """Count a unit that failed after its last try; the error the user sees."""
        with self._lock:
            self.log.failures += 1
        last = exhausted.last_attempt.exception()
        where = self.where or self.inner.model_id
        return ModelError(
            f"could not get an answer from {where} after "
            f"{exhausted.last_attempt.attempt_number} tries ({type(last).__name__}: {last}). "
            f"{self.advice}"
        )

    async def _retry_async(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """One request under tenacity's AsyncRetrying; each `attempt()` is one try of it."""

        async def one_try() -> T:
            return await attempt()

        self._started()
        try:
            result: T = await AsyncRetrying(**self._policy())(one_try)
        except RetryError as exhausted:
            raise self._gave_up(exhausted) from exhausted.last_attempt.exception()
        return result

    def _retry_sync(self, attempt: Callable[..., T], *args: Any) -> T:
        """One unit (one batch call) under tenacity's Retrying."""
        self._started()
        try:
            result: T = Retrying(**self._policy())(attempt, *args)
        except RetryError as exhausted:
            raise self._gave_up(exhausted) from exhausted.last_attempt.exception()
        return result

    # ------------------------------------------------------------------ the protocol

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        if self._per_request:  # the backend retries each request through _retry_async
            return self.inner.generate(prompts, params)
        return self._retry_sync(self.inner.generate, prompts, params)

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        if self._per_request:
            return self.inner.score(prompts, candidates)
        return self._retry_sync(self.inner.score, prompts, candidates)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def retry_log_of(model: Any) -> RetryLog | None:
    """The RetryLog of the first RetryingModel along the wrapper chain (cache, meter, a started
    server); None when there is none (a local model)."""
    return next((m.log for m in wrapper_chain(model) if isinstance(m, RetryingModel)), None)

"""The retry wrapper on its own: per-prompt retries, what passes through, waits, stops, logs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from culturesim.models.base import Completion, GenerationParams, ModelError, Prompt
from culturesim.models.batcher import Batcher
from culturesim.models.cache import CachedModel
from culturesim.models.metering import MeteredModel
from culturesim.models.retry import (
    AsyncRetrier,
    ConcurrentModel,
    MalformedResponse,
    RetryingModel,
    retry_log_of,
)
from tests.conftest import ScriptedModel, prompt_text


class FlakyServer:
    """A ConcurrentModel: one request per prompt (per candidate when scoring), each failing
    transiently a scripted number of times ("dead" always fails; "bug" raises a non-transient
    error). Like the OpenAI backend, it runs each request's tries through the retrier it is
    given, and fans a batch out on an event loop."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.failures = dict(failures or {})
        self.tries: Counter[str] = Counter()
        self._retrier: AsyncRetrier | None = None

    @property
    def model_id(self) -> str:
        return "flaky"

    def retry_requests_with(self, retrier: AsyncRetrier | None) -> None:
        self._retrier = retrier

    async def _try(self, key: str) -> str:
        await asyncio.sleep(0)
        self.tries[key] += 1
        if key == "bug":
            raise ValueError("not transient")
        if key == "dead" or self.tries[key] <= self.failures.get(key, 0):
            raise ConnectionError(f"{key} refused")
        return f"ok:{key}"

    async def _request(self, key: str) -> str:
        if self._retrier is None:
            return await self._try(key)
        return await self._retrier(lambda: self._try(key))

    def _fan_out(self, keys: Sequence[str]) -> list[str]:
        async def gather() -> list[str]:
            return list(await asyncio.gather(*(self._request(k) for k in keys)))

        return asyncio.run(gather())

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams | Sequence[GenerationParams] = GenerationParams(),
    ) -> list[Completion]:
        texts = self._fan_out([prompt_text(p) for p in prompts])
        return [Completion(text, 1, 1, "stop") for text in texts]

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        keys = [
            f"{prompt_text(p)}|{c}" for p, cs in zip(prompts, candidates, strict=True) for c in cs
        ]
        self._fan_out(keys)
        return [[-1.0] * len(cs) for cs in candidates]


def test_each_prompt_is_retried_alone() -> None:
    server = FlakyServer({"a": 2, "c": 1})
    assert isinstance(server, ConcurrentModel)
    model = RetryingModel(server, max_retries=3, backoff_s=0.001)
    replies = model.generate(["a", "b", "c"])
    assert [r.text for r in replies] == ["ok:a", "ok:b", "ok:c"]
    assert server.tries == {"a": 3, "b": 1, "c": 2}  # b was never asked twice
    assert model.log.as_dict() == {
        "requests": 3,
        "retries": 3,
        "failures": 0,
        "errors": {"ConnectionError": 3},
    }
    assert model.model_id == "flaky"


def test_a_flaky_candidate_is_retried_alone_not_its_whole_prompt() -> None:
    server = FlakyServer({"p|y": 2})
    model = RetryingModel(server, max_retries=2, backoff_s=0.001)
    assert model.score(["p", "q"], [["x", "y"], ["z"]]) == [[-1.0, -1.0], [-1.0]]
    assert server.tries == {"p|x": 1, "p|y": 3, "q|z": 1}
    assert (model.log.requests, model.log.retries, model.log.failures) == (3, 2, 0)


def test_a_prompt_that_keeps_failing_fails_alone_behind_a_batcher() -> None:
    server = FlakyServer({"a": 1})
    model = RetryingModel(server, max_retries=2, backoff_s=0.001, where="http://example/v1")
    with pytest.raises(ModelError, match=r"http://example/v1 after 3 tries \(ConnectionError"):
        model.generate(["dead"])
    assert model.log.failures == 1 and model.log.retries == 2
    with Batcher(model, max_batch_size=4, max_wait_s=0.05) as batcher:
        futures = [batcher.submit_generate(p) for p in ("a", "dead", "c")]
        with pytest.raises(ModelError, match="Is the server running"):
            futures[1].result()
        assert futures[0].result().text == "ok:a" and futures[2].result().text == "ok:c"


def test_other_errors_pass_through_at_once() -> None:
    server = FlakyServer()
    model = RetryingModel(server, max_retries=5, backoff_s=0.001)
    with pytest.raises(ValueError, match="not transient"):
        model.generate(["bug"])
    assert server.tries["bug"] == 1
    assert model.log.retries == 0 and model.log.failures == 0 and not model.log.errors


def test_a_model_without_per_prompt_coroutines_is_retried_a_batch_at_a_time() -> None:
    calls = Counter[str]()

    def reply(prompt: Prompt) -> str:
        calls["all"] += 1
        if calls["all"] == 1:  # the first batch call fails on its first prompt
            raise MalformedResponse("cut off")
        return "fine"

    inner = ScriptedModel(reply)
    model = RetryingModel(inner, max_retries=1, backoff_s=0.001)
    assert [c.text for c in model.generate(["x", "y"])] == ["fine", "fine"]
    assert inner.generate_calls == [2, 2]
    assert model.log.as_dict() == {
        "requests": 1,
        "retries": 1,
        "failures": 0,
        "errors": {"MalformedResponse": 1},
    }


def test_a_deadline_stops_the_tries_early() -> None:
    server = FlakyServer()
    model = RetryingModel(server, max_retries=1000, backoff_s=0.02, deadline_s=0.2)
    start = time.monotonic()
    with pytest.raises(ModelError, match="flaky after"):
        model.generate(["dead"])
    assert time.monotonic() - start < 5
    assert 2 <= server.tries["dead"] < 100


def test_waits_grow_exponentially_with_jitter_between_half_and_all_capped() -> None:
    model = RetryingModel(ScriptedModel(), backoff_s=0.5, max_backoff_s=20.0)
    wait = model._policy()["wait"]
    for attempt in range(1, 10):
        full = min(20.0, 0.5 * 2 ** (attempt - 1))
        waits = [wait(SimpleNamespace(attempt_number=attempt)) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 10  # jittered, not fixed


def test_retry_log_of_looks_through_wrappers(tmp_path: Path) -> None:

    retrying = RetryingModel(ScriptedModel())
    stacked = CachedModel(MeteredModel(retrying), tmp_path / "cache.sqlite")
    assert retry_log_of(stacked) is retrying.log
    assert retry_log_of(ScriptedModel()) is None and retry_log_of(None) is None
    stacked.close()


def test_build_model_wraps_openai_models_and_routes_the_spec_options() -> None:
    from culturesim.models.openai_backend import OpenAIModel
    from culturesim.models.registry import build_model

    model = build_model(
        "openai:m@http://127.0.0.1:9/v1,http://127.0.0.1:10/v1?retries=7&backoff=0.2&timeout=3&concurrency=5"
    )
    assert isinstance(model, RetryingModel) and isinstance(model.inner, OpenAIModel)
    assert (model.max_retries, model.backoff_s) == (7, 0.2)
    assert model.where == "http://127.0.0.1:9/v1, http://127.0.0.1:10/v1"
    assert model.inner.max_concurrency == 5
    assert model.model_id == model.inner.model_id == "openai:m@http://127.0.0.1:9/v1"
    model.close()

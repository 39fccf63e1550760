"""The Batcher under concurrency: every caller gets its own answer; batches really form."""

from __future__ import annotations

import asyncio
import threading

import pytest

from culturesim.models.base import GenerationParams
from culturesim.models.batcher import Batcher
from tests.conftest import ScriptedModel


def test_32_threads_each_get_their_own_answer() -> None:
    backend = ScriptedModel()
    results: dict[int, str] = {}
    barrier = threading.Barrier(32)
    with Batcher(backend, max_batch_size=8, max_wait_s=0.05) as batcher:

        def call(i: int) -> None:
            barrier.wait()
            results[i] = batcher.submit_generate(f"request {i}").result().text

        threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == {i: f"echo:request {i}" for i in range(32)}
    assert sum(backend.generate_calls) == 32
    assert max(backend.generate_calls) == 8  # full batches formed, capped at max_batch_size
    assert len(backend.generate_calls) <= 8


def test_asyncio_callers_are_batched_together() -> None:
    backend = ScriptedModel()

    async def main(batcher: Batcher) -> list[str]:
        replies = await asyncio.gather(*(batcher.agenerate(f"task {i}") for i in range(20)))
        return [r.text for r in replies]

    with Batcher(backend, max_batch_size=32, max_wait_s=0.05) as batcher:
        texts = asyncio.run(main(batcher))
    assert texts == [f"echo:task {i}" for i in range(20)]
    assert backend.generate_calls == [20]


def test_score_and_generate_requests_are_kept_apart() -> None:
    backend = ScriptedModel()
    with Batcher(backend, max_batch_size=16, max_wait_s=0.05) as batcher:
        g = batcher.submit_generate("hello")
        s = batcher.submit_score("prompt", ["a", "bbb"])
        assert s.result() == [-1.0, -3.0]
        assert g.result().text == "echo:hello"


def test_a_bad_request_fails_alone_and_its_batch_mates_get_answers() -> None:
    def reply(prompt: object) -> str:
        if prompt == "boom":
            raise RuntimeError("backend exploded")
        return "fine"

    backend = ScriptedModel(reply)
    with Batcher(backend, max_batch_size=4, max_wait_s=0.05) as batcher:
        futures = [batcher.submit_generate(p) for p in ("a", "boom", "c")]
        with pytest.raises(RuntimeError, match="exploded"):
            futures[1].result()
        assert futures[0].result().text == "fine" and futures[2].result().text == "fine"
        assert backend.generate_calls[0] == 3  # tried as one batch first, then one by one
        assert batcher.generate(["later"])[0].text == "fine"


def test_per_request_params_travel_with_their_request() -> None:
    seen: list[GenerationParams] = []

    class Recording(ScriptedModel):
        def generate(self, prompts, params=GenerationParams()):  # type: ignore[no-untyped-def]
            seen.extend(params)
            return super().generate(prompts, params)

    with Batcher(Recording(), max_batch_size=4, max_wait_s=0.05) as batcher:
        batcher.generate(["a", "b"], [GenerationParams(seed=1), GenerationParams(seed=2)])
    assert sorted(p.seed for p in seen if p.seed is not None) == [1, 2]


def test_closed_batcher_refuses_new_work() -> None:
    batcher = Batcher(ScriptedModel())
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit_generate("x")


def test_with_several_in_flight_a_batch_leaves_while_the_last_is_still_running() -> None:
    """A continuously batching backend can take the next batch while one is decoding: the
    Batcher must not hold it back until the first batch returns."""
    first_running = threading.Event()
    release_first = threading.Event()

    def reply(prompt: object) -> str:
        if prompt == "slow":
            first_running.set()
            assert release_first.wait(timeout=60), "the second batch never reached the model"
        return f"echo:{prompt}"

    backend = ScriptedModel(reply)
    with Batcher(backend, max_batch_size=4, max_wait_s=0.0, max_in_flight=2) as batcher:
        slow = batcher.submit_generate("slow")
        assert first_running.wait(timeout=60)
        fast = batcher.submit_generate("fast")
        assert fast.result(timeout=60).text == "echo:fast"  # answered while "slow" runs
        assert not slow.done()
        release_first.set()
        assert slow.result(timeout=60).text == "echo:slow"
    assert backend.generate_calls == [1, 1]


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Batcher(ScriptedModel(), max_in_flight=0)

"""Continuous batching in the in-process backend: requests join a running decode and leave it
as soon as they are done, and what each generates does not change."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from culturesim.models.base import Completion, GenerationParams
from culturesim.models.transformers_backend import TransformersModel
from tests.conftest import make_tiny_llama


def wait_for(condition: Any, what: str) -> None:
    """Wait for a state, not for a time: the bound only turns a hang into a failure."""
    done = threading.Event()
    for _ in range(6000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def gated(tiny_tokenizer: PreTrainedTokenizerFast) -> tuple[TransformersModel, threading.Semaphore]:
    """A tiny model whose decoding steps each wait for a permit from the test."""
    network = make_tiny_llama(tiny_tokenizer, initializer_range=0.2)
    permits = threading.Semaphore(0)

    def gate(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if kwargs["input_ids"].shape[1] == 1:
            assert permits.acquire(timeout=60), "the test never released this step"

    network.register_forward_pre_hook(gate, with_kwargs=True)
    model = TransformersModel(network, tiny_tokenizer, "tiny-gated")
    model.eos_token_ids = set()  # rows run to their length: the test counts steps
    return model, permits


def test_a_request_joins_a_running_decode_and_leaves_before_it_ends(
    gated: tuple[TransformersModel, threading.Semaphore], tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    model, permits = gated
    long = GenerationParams(max_new_tokens=30, temperature=0.0)
    short = GenerationParams(max_new_tokens=3, temperature=0.0)
    with ThreadPoolExecutor(2) as pool:
        first: Future[list[Completion]] = pool.submit(model.generate, ["a long story"], long)
        permits.release(3)
        wait_for(lambda: model.engine.batch.steps == 3, "three steps of the long request")
        second = pool.submit(model.generate, ["hi"], short)
        wait_for(lambda: model.engine.waiting == 1, "the short request queued")
        steps = 3
        while not second.done():
            permits.release()  # one more step of whatever is decoding
            steps += 1
            wait_for(
                lambda: model.engine.batch.steps == steps or second.done(),  # noqa: B023
                "the step just released",
            )
            assert steps <= 8, "the short request did not finish in its own few steps"
        assert model.engine.joined_while_decoding == 1
        assert not first.done()  # it left while the long one still decodes
        permits.release(30)
        long_text = first.result(timeout=60)[0].text
        short_text = second.result(timeout=60)[0].text
    assert model.engine.batch.rows_stepped > model.engine.batch.steps  # steps had two rows
    # Alone, each request generates the same text.
    permits.release(100)
    assert model.generate(["a long story"], long)[0].text == long_text
    assert model.generate(["hi"], short)[0].text == short_text


def test_concurrent_callers_get_what_each_would_get_alone(tiny_model: TransformersModel) -> None:
    prompts = [f"prompt number {i} " + "word " * (3 * i) for i in range(8)]
    settings = [
        GenerationParams(max_new_tokens=4 + 3 * i, temperature=0.8 if i % 2 else 0.0, seed=i)
        for i in range(8)
    ]
    alone = [tiny_model.generate([p], s)[0].text for p, s in zip(prompts, settings, strict=True)]
    barrier = threading.Barrier(8)

    def call(i: int) -> str:
        barrier.wait()
        return tiny_model.generate([prompts[i]], settings[i])[0].text

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(call, range(8)))
    assert together == alone


def test_the_engine_admits_rows_within_its_token_budget(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    model = TransformersModel(
        make_tiny_llama(tiny_tokenizer), tiny_tokenizer, "tiny-budget", token_budget=60
    )
    peak = 0
    step = model.engine.batch.step

    def counting_step() -> None:
        nonlocal peak
        peak = max(peak, model.engine.batch.live)
        step()

    model.engine.batch.step = counting_step  # type: ignore[method-assign]
    params = GenerationParams(max_new_tokens=20, temperature=0.0)
    texts = [c.text for c in model.generate(["one two three"] * 6, params)]
    assert len(set(texts)) == 1  # the same prompt, the same greedy text, in any group
    assert 1 <= peak <= 2  # each row needs about 25 of the 60 tokens

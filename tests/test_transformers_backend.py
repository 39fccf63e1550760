"""The in-process backend on a tiny random Llama: batching, seeds, stops, exact scoring."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from culturesim.models.base import GenerationParams, Stopped
from culturesim.models.batcher import Batcher
from culturesim.models.metering import MeteredModel
from culturesim.models.transformers_backend import (
    TransformersModel,
    length_buckets,
    shared_prefixes,
)
from tests.conftest import make_tiny_llama

PROMPTS = [
    "The capital of France is",
    [{"role": "user", "content": "How do people greet each other?"}],
    "Answer with the number",
    [
        {"role": "system", "content": "You are a guest."},
        {"role": "user", "content": "Hospitality differs by culture. Say hello."},
    ],
]


def test_batched_greedy_equals_one_at_a_time(tiny_model: TransformersModel) -> None:
    params = GenerationParams(max_new_tokens=12)
    batched = tiny_model.generate(PROMPTS, params)
    single = [tiny_model.generate([p], params)[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert all(c.prompt_tokens > 0 for c in batched)


def test_seeded_sampling_is_reproducible_and_independent_of_batchmates(
    tiny_model: TransformersModel,
) -> None:
    sampled = GenerationParams(max_new_tokens=10, temperature=1.0, seed=42)
    alone = tiny_model.generate([PROMPTS[0]], sampled)[0].text
    with_others = tiny_model.generate(
        [PROMPTS[2], PROMPTS[0], PROMPTS[1]],
        [
            GenerationParams(max_new_tokens=5, temperature=1.0, seed=7),
            sampled,
            GenerationParams(max_new_tokens=3),
        ],
    )[1].text
    other_seed = {
        tiny_model.generate(
            [PROMPTS[0]], GenerationParams(max_new_tokens=10, temperature=1.0, seed=s)
        )[0].text
        for s in range(5)
    }
    assert alone == with_others
    assert len(other_seed) > 1  # the seed matters


def test_length_limit_and_stop_strings(tiny_model: TransformersModel) -> None:
    free = tiny_model.generate([PROMPTS[0]], GenerationParams(max_new_tokens=20))[0]
    assert free.finish_reason == "length" and free.completion_tokens == 20
    stop_at = free.text[3:6]
    stopped = tiny_model.generate(
        [PROMPTS[0]], GenerationParams(max_new_tokens=20, stop=(stop_at,))
    )[0]
    assert stopped.finish_reason == "stop"
    assert stop_at not in stopped.text
    assert free.text.startswith(stopped.text)


def manual_logprob(model: TransformersModel, prompt: object, candidate: str) -> float:
    ids = model.encode_prompt(prompt)  # type: ignore[arg-type]
    cand = model.encode_candidate(candidate)
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([ids + cand])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logprobs[len(ids) + j - 1, t]) for j, t in enumerate(cand))


def test_score_matches_manual_forward_pass_for_multi_token_candidates(
    tiny_model: TransformersModel,
) -> None:
    candidates = ["1", "2", "10", "11", " Paris", " Berlin greets"]
    assert (
        len(tiny_model.encode_candidate("10")) >= 2
        or len(tiny_model.encode_candidate(" Berlin greets")) >= 2
    )
    scores = tiny_model.score([PROMPTS[0], PROMPTS[1]], [candidates, candidates[:3]])
    for prompt, row in zip([PROMPTS[0], PROMPTS[1]], scores, strict=True):
        for candidate, value in zip(candidates, row, strict=False):
            assert abs(value - manual_logprob(tiny_model, prompt, candidate)) < 1e-4


SYSTEM = (
    "Hospitality, neighbours, bargaining, gift giving, apology and friendship differ by culture."
)


def test_prompts_sharing_a_system_prompt_are_scored_exactly(tiny_model: TransformersModel) -> None:
    chats = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        for question in ("How important is family?", "Say hello.", "The capital of France is")
    ]
    chats.append([*chats[0], {"role": "assistant", "content": "Answer with the number"}])
    encoded = [tiny_model.encode_prompt(c) for c in chats]
    prefixes = shared_prefixes(encoded, tiny_model.min_shared_prefix)
    assert prefixes and all(len(p) >= 16 for p in prefixes), "the system prompt is read once"
    candidates = ["1", "2", "10", "11", "12", "21", " Paris", " Berlin greets"]
    scores = tiny_model.score(chats, [candidates] * len(chats))
    for chat, row in zip(chats, scores, strict=True):
        for candidate, value in zip(candidates, row, strict=True):
            assert abs(value - manual_logprob(tiny_model, chat, candidate)) < 1e-4


def test_shared_prefixes_are_maximal_and_leave_each_prompt_a_token() -> None:
    header, line = [1] * 20, [5, 6, 7]
    # A dialogue's intent prompts: each transcript extends the last, a question follows.
    intents = [header + line * k + [8, 9] for k in (1, 2, 3)]
    encoded = [*intents, [*header, 2], header, [9, 9, 9], [1] * 5]
    prefixes = shared_prefixes(encoded, min_shared=16)
    # The longest transcript two prompts share is read once; the shorter shared prefixes are
    # inside it, and the header alone is a prefix of it too.
    assert prefixes == [header + line * 2]
    for prefix in prefixes:
        users = [ids for ids in encoded if ids[: len(prefix)] == prefix]
        assert len(users) >= 2
        assert all(len(ids) > len(prefix) for ids in users[1:]), "a token of its own"
    # A prompt that equals another's prefix keeps its last token to itself.
    assert shared_prefixes([[1] * 20, [1] * 20 + [3]], 16) == [[1] * 19]
    assert shared_prefixes([[1] * 10 + [2], [1] * 10 + [3]], 16) == []
    assert shared_prefixes(encoded, min_shared=0) == []


def test_a_batch_reads_a_prefix_its_prompts_share_once(tiny_model: TransformersModel) -> None:
    chats = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Say hello {k}."}]
        for k in range(3)
    ]
    fresh = TransformersModel(tiny_model.model, tiny_model.tokenizer, "tiny")
    whole = TransformersModel(tiny_model.model, tiny_model.tokenizer, "tiny", prefix_cache_bytes=0)
    params = GenerationParams(max_new_tokens=6)
    assert [c.text for c in fresh.generate(chats, params)] == [
        c.text for c in whole.generate(chats, params)
    ]
    encoded = [fresh.encode_prompt(c) for c in chats]
    shared = len(shared_prefixes(encoded, 16)[0])
    stats = fresh.prefix_cache.stats
    assert stats.tokens_reused == 3 * shared, "each prompt found the shared prefix cached"


def test_length_buckets_respect_budget_and_cover_everything() -> None:
    lengths = [5, 50, 7, 48, 6, 300]
    batches = list(length_buckets(lengths, [10] * 6, max_batch_size=3, token_budget=200))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        widest = max(lengths[i] + 10 for i in batch)
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * widest <= 200


def test_loads_from_a_saved_directory(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    model = TransformersModel.from_pretrained(tiny_model_dir)
    assert model.model_id == f"hf:{tiny_model_dir}"
    assert (
        model.generate(["The capital"], GenerationParams(max_new_tokens=3))[0].completion_tokens
        == 3
    )


def endless_model(tokenizer: PreTrainedTokenizerFast) -> tuple[TransformersModel, list[int]]:
    """A tiny model that never ends a reply by itself, and a count of its forward passes."""
    model = TransformersModel(make_tiny_llama(tokenizer), tokenizer, "endless")
    model.eos_token_ids = set()
    forward = model.model.forward
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return forward(*args, **kwargs)

    model.model.forward = counted
    return model, calls


def test_a_stop_ends_a_running_generate_at_its_next_step(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    model, calls = endless_model(tiny_tokenizer)
    counted = model.model.forward

    def stop_at_third(*args: Any, **kwargs: Any) -> Any:
        if len(calls) == 2:
            model.stop_running()
        return counted(*args, **kwargs)

    model.model.forward = stop_at_third
    with pytest.raises(Stopped):
        model.generate(["The capital"], GenerationParams(max_new_tokens=200))
    assert len(calls) == 3, "the decode loop ended at the step after the stop, not at 200 tokens"
    model.model.forward = counted
    after = model.generate(["The capital"], GenerationParams(max_new_tokens=5))[0]
    assert after.completion_tokens == 5, "a stop ends the calls running then, not later ones"


def test_batcher_abort_stops_the_batch_in_flight_through_wrappers(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    model, calls = endless_model(tiny_tokenizer)
    counted = model.model.forward
    decoding, told = threading.Event(), threading.Event()
    stop_running = model.stop_running

    def stop_and_tell() -> None:
        stop_running()
        told.set()

    def signal_decoding(*args: Any, **kwargs: Any) -> Any:
        if len(calls) == 2:  # the third forward pass waits until the stop has been asked for
            decoding.set()
            assert told.wait(timeout=120)
        return counted(*args, **kwargs)

    model.stop_running = stop_and_tell  # type: ignore[method-assign]

    model.model.forward = signal_decoding
    batcher = Batcher(MeteredModel(model), max_batch_size=4)
    future = batcher.submit_generate("The capital", GenerationParams(max_new_tokens=400))
    assert decoding.wait(timeout=120), "the batch never started decoding"
    batcher.abort()
    with pytest.raises(Stopped):
        future.result(timeout=120)
    assert len(calls) == 3, "the batch ended at the step after the abort, not at 400 tokens"


def test_scoring_buckets_split_rather_than_pad() -> None:
    lengths = [10, 11, 10, 40, 12, 42]
    loose = list(length_buckets(lengths, [0] * 6, max_batch_size=8, token_budget=10_000))
    assert len(loose) == 1, "generation keeps rows together"
    tight = list(
        length_buckets(lengths, [0] * 6, max_batch_size=8, token_budget=10_000, max_padding=0.15)
    )
    assert sorted(i for b in tight for i in b) == list(range(6))
    for batch in tight:
        widest = max(lengths[i] for i in batch)
        assert 1 - sum(lengths[i] for i in batch) / (len(batch) * widest) <= 0.15
    assert [sorted(b) for b in tight] == [[0, 1, 2, 4], [3, 5]]


def test_an_adapter_retrained_in_place_gets_a_new_model_id(
    tiny_model_dir: Any, tmp_path: Any
) -> None:
    """Caches key on the model id: new weights in the same folder must not reuse old answers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "adapter"

    def save_adapter(seed: int) -> None:
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        config = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(str(folder))

    def loaded_id() -> str:
        return TransformersModel.from_pretrained(tiny_model_dir, adapter=folder).model_id

    save_adapter(seed=1)
    first = loaded_id()
    assert first == loaded_id()  # the same weights, the same id: the cache still hits
    save_adapter(seed=2)
    second = loaded_id()
    assert first.split("@")[0] == second.split("@")[0] and first != second

"""The real embedded model: batching parity, scoring sense and exactness, conversion cache."""

from __future__ import annotations

import pytest
import torch

from culturesim.models.base import GenerationParams
from culturesim.models.smollm2 import converted_dir
from culturesim.models.transformers_backend import TransformersModel, shared_prefixes

pytestmark = pytest.mark.slow  # the real embedded model; still part of make test

QUESTIONS = [
    "What is the capital of France?",
    "Name three fruits.",
    "In one sentence, why do people exchange gifts at weddings?",
    "Say hello.",
    "What do you call a person who teaches children in a school, and what do they do every day?",
    "2 + 2 = ?",
    "Write a short greeting for a neighbour who just moved in next door to you.",
    "Is tea or coffee more popular in the United Kingdom?",
]


def test_batch_of_8_equals_batch_of_1_under_greedy(smollm2: TransformersModel) -> None:
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS]
    lengths = {len(smollm2.encode_prompt(c)) for c in chats}
    assert len(lengths) > 4  # prompts of different lengths, so left padding is exercised
    params = GenerationParams(max_new_tokens=24)
    batched = smollm2.generate(chats, params)
    one_by_one = [smollm2.generate([c], params)[0] for c in chats]
    assert [b.text for b in batched] == [s.text for s in one_by_one]
    assert "Paris" in batched[0].text


def test_score_ranks_paris_above_berlin(smollm2: TransformersModel) -> None:
    ((paris, berlin),) = smollm2.score(["The capital of France is"], [[" Paris", " Berlin"]])
    assert paris > berlin


def test_multi_token_score_is_the_sum_of_token_logprobs(smollm2: TransformersModel) -> None:
    chat = [{"role": "user", "content": "Pick a number from 1 to 11. Reply with the number only."}]
    candidate = "10"
    ids = smollm2.encode_prompt(chat)
    cand = smollm2.encode_candidate(candidate)
    assert len(cand) == 2
    with torch.no_grad():
        logits = smollm2.model(input_ids=torch.tensor([ids + cand])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    manual = sum(float(logprobs[len(ids) + j - 1, t]) for j, t in enumerate(cand))
    (scores,) = smollm2.score([chat], [["1", "10", "11", "2"]])
    assert abs(scores[1] - manual) < 1e-3


def test_conversion_is_cached_as_plain_safetensors(smollm2: TransformersModel) -> None:
    folder = converted_dir()
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_scores_with_a_shared_prefix_equal_scores_without(smollm2: TransformersModel) -> None:
    """Survey prompts of one style share their system prompt, read once; the label
    log-probabilities, "10" included, stay those of reading every prompt whole."""
    unshared = TransformersModel(
        smollm2.model, smollm2.tokenizer, smollm2.model_id, min_shared_prefix=0
    )
    system = "You are a person from Japan. Answer the survey question as yourself."
    chats = [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{q} Options: 1 to 10."},
            {"role": "assistant", "content": "The answer is "},
        ]
        for q in ("How important is family?", "How much do you trust strangers?", "Is work duty?")
    ]
    encoded = [smollm2.encode_prompt(chat) for chat in chats]
    assert len(shared_prefixes(encoded, 16)[0]) >= 16
    labels = [[str(k) for k in range(1, 11)]] * len(chats)
    shared, whole = smollm2.score(chats, labels), unshared.score(chats, labels)
    for a, b in zip(shared, whole, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4

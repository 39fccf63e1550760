"""Prefix reuse: the same texts and scores as reading every prompt whole, in bounded memory."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from culturesim.models.base import Chat, GenerationParams
from culturesim.models.prefix_cache import Layers, PrefixCache, common_prefix_length
from culturesim.models.transformers_backend import TransformersModel
from tests.conftest import make_tiny_llama


def fake_layers(tokens: int, layers: int = 2) -> Layers:
    """Keys and values of `tokens` tokens: 2 heads x 4 dims of float32, 64 bytes a token a layer."""
    return [(torch.randn(1, 2, tokens, 4), torch.randn(1, 2, tokens, 4)) for _ in range(layers)]


def test_lookup_finds_the_longest_shared_prefix_and_leaves_one_token_to_compute() -> None:
    cache = PrefixCache(max_bytes=1 << 20)
    cache.put([1, 2, 3, 4], fake_layers(4))
    cache.put([1, 2, 9], fake_layers(3))
    length, entry = cache.lookup([1, 2, 3, 4, 5, 6])
    assert length == 4 and entry is not None and entry[0][0].shape[2] == 4
    assert cache.lookup([1, 2, 9, 7])[0] == 3
    assert cache.lookup([1, 2, 3, 4])[0] == 3  # the last token's logits are the answer
    assert cache.lookup([5, 6]) == (0, None)
    assert cache.stats.tokens_read == 6 + 4 + 4 + 2
    assert cache.stats.tokens_reused == 4 + 3 + 3
    assert cache.stats.hit_rate == pytest.approx(10 / 16)


def test_the_budget_evicts_the_least_recently_used_and_refuses_what_never_fits() -> None:
    per_entry = 10 * 2 * 64  # 10 tokens, 2 layers, 64 bytes of keys and values each
    cache = PrefixCache(max_bytes=2 * per_entry)
    cache.put(list(range(0, 10)), fake_layers(10))
    cache.put(list(range(100, 110)), fake_layers(10))
    cache.lookup([*range(0, 10), 55])  # touch the first: the second is now the oldest
    cache.put(list(range(200, 210)), fake_layers(10))
    assert cache.stats.bytes <= cache.max_bytes and cache.stats.evictions == 1
    assert cache.lookup([*range(100, 110), 1], count=False)[0] == 0
    assert cache.lookup([*range(0, 10), 1], count=False)[0] == 10
    cache.put(list(range(300, 330)), fake_layers(30))  # larger than the whole budget
    assert cache.lookup([*range(300, 330), 1], count=False)[0] == 0
    assert cache.stats.entries == 2


def test_an_extended_prompt_replaces_the_prompt_it_extends() -> None:
    cache = PrefixCache(max_bytes=1 << 20)
    cache.put([1, 2, 3], fake_layers(3))
    cache.put([1, 2, 3, 4, 5], fake_layers(5))
    assert cache.stats.entries == 1
    assert cache.lookup([1, 2, 3, 4, 5, 6], count=False)[0] == 5


def test_a_disabled_cache_keeps_nothing() -> None:
    cache = PrefixCache(max_bytes=0)
    cache.put([1, 2, 3], fake_layers(3))
    assert cache.lookup([1, 2, 3, 4]) == (0, None) and cache.stats.entries == 0


def conversation(turns: int) -> list[Chat]:
    """An agent's prompts over a conversation: each extends the transcript of the one before."""
    chat: Chat = [
        {"role": "system", "content": "You are Amara, a guest at a dinner in Lagos."},
        {"role": "user", "content": "The host offers you a second helping of jollof rice."},
    ]
    prompts = []
    for turn in range(turns):
        prompts.append([*chat, {"role": "user", "content": "It is your turn. What do you do?"}])
        chat = [
            *chat,
            {"role": "assistant", "content": f"I thank the host, turn {turn}."},
            {"role": "user", "content": f"The host smiles and says something new, {turn}."},
        ]
    return prompts


def run_calls(model: TransformersModel, prompts: Sequence[Chat]) -> tuple[list[str], list[float]]:
    """A conversation's calls: per turn, action scores then a greedy utterance; then a batch
    that mixes prompts with long, short and no cached prefixes."""
    texts, scores = [], []
    params = GenerationParams(max_new_tokens=8)
    for prompt in prompts:
        choice: Chat = [*prompt, {"role": "assistant", "content": "I choose to"}]
        scores += model.score([choice], [[" speak", " leave", " do nothing"]])[0]
        texts.append(model.generate([prompt], params)[0].text)
    mixed: list[Chat] = [
        prompts[-1],
        [{"role": "user", "content": "An unrelated question about tea."}],
        prompts[1],
    ]
    texts += [c.text for c in model.generate(mixed, params)]
    for row in model.score(mixed, [["1", "10", "2"]] * len(mixed)):
        scores += row
    return texts, scores


@pytest.fixture(scope="module")
def tiny_pair(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> tuple[TransformersModel, TransformersModel]:
    weights = make_tiny_llama(tiny_tokenizer)
    reusing = TransformersModel(weights, tiny_tokenizer, "tiny")
    reading_whole = TransformersModel(weights, tiny_tokenizer, "tiny", prefix_cache_bytes=0)
    return reusing, reading_whole


def test_reuse_gives_the_texts_and_scores_of_reading_every_prompt_whole(
    tiny_pair: tuple[TransformersModel, TransformersModel],
) -> None:
    reusing, reading_whole = tiny_pair
    prompts = conversation(4)
    texts, scores = run_calls(reusing, prompts)
    expected_texts, expected_scores = run_calls(reading_whole, prompts)
    assert texts == expected_texts
    assert scores == pytest.approx(expected_scores, abs=1e-4)
    stats = reusing.prefix_cache.stats
    assert stats.hit_rate > 0.5  # most of each turn's prompt was read before
    assert reading_whole.prefix_cache.stats.tokens_reused == 0


def test_sampled_texts_are_the_same_with_reuse(
    tiny_pair: tuple[TransformersModel, TransformersModel],
) -> None:
    reusing, reading_whole = tiny_pair
    params = GenerationParams(max_new_tokens=10, temperature=0.8, top_p=0.9, seed=3)
    prompts = conversation(3)
    for model in tiny_pair:
        model.generate(prompts[:2], params)  # the earlier turns, so the last one reuses them
    with_reuse = reusing.generate(prompts[2:], params)[0].text
    assert with_reuse == reading_whole.generate(prompts[2:], params)[0].text


def test_smollm2_conversation_is_the_same_with_reuse(smollm2: TransformersModel) -> None:
    whole = TransformersModel(
        smollm2.model, smollm2.tokenizer, smollm2.model_id, prefix_cache_bytes=0
    )
    fresh = TransformersModel(smollm2.model, smollm2.tokenizer, smollm2.model_id)
    prompts = conversation(3)
    texts, scores = run_calls(fresh, prompts)
    expected_texts, expected_scores = run_calls(whole, prompts)
    assert texts == expected_texts
    assert scores == pytest.approx(expected_scores, abs=1e-4)
    assert fresh.prefix_cache.stats.hit_rate > 0.5


def test_common_prefix_length_counts_equal_leading_tokens() -> None:
    assert common_prefix_length((1, 2, 3, 4), (1, 2, 9)) == 2
    assert common_prefix_length((1, 2), (1, 2, 3)) == 2
    assert common_prefix_length((), (1,)) == 0
    assert common_prefix_length(tuple(range(1000)), (*range(999), -1)) == 999


def test_a_prompt_that_only_its_last_tokens_distinguish_replaces_its_sibling() -> None:
    # Two prompts that differ only in their last `slack` tokens (an ask after the same
    # transcript): keeping both would hold the transcript twice; the newer one suffices.
    cache = PrefixCache(max_bytes=1 << 20, slack_tokens=3)
    cache.put([1, 2, 3, 4, 5, 6, 7, 8], fake_layers(8))
    cache.put([1, 2, 3, 4, 5, 6, 9, 9], fake_layers(8))
    assert cache.stats.entries == 1
    assert cache.lookup([1, 2, 3, 4, 5, 6, 9, 9, 1], count=False)[0] == 8
    # A prompt that differs earlier than the slack is a different prompt: both are kept.
    cache.put([1, 2, 7, 7, 7, 7, 7, 7], fake_layers(8))
    assert cache.stats.entries == 2

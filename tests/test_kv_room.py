"""Preallocated key-value buffers give the same decoding as transformers' growing cache."""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedTokenizerFast

from culturesim.models.kv_room import reserve_room
from tests.conftest import make_tiny_llama


def decode(
    model: torch.nn.Module, ids: torch.Tensor, steps: int, roomy: bool, room: int
) -> torch.Tensor:
    """Greedy steps from a prompt; returns every step's logits."""
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, past_key_values=DynamicCache())
        cache = reserve_room(out.past_key_values, room) if roomy else out.past_key_values
        logits = [out.logits[:, -1]]
        for _ in range(steps):
            feed = logits[-1].argmax(-1, keepdim=True)
            out = model(input_ids=feed, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[:, -1])
    return torch.stack(logits)


def test_roomy_cache_decodes_exactly_like_the_growing_cache(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    model = make_tiny_llama(tiny_tokenizer, initializer_range=0.2)
    ids = torch.randint(3, len(tiny_tokenizer), (3, 11), generator=torch.Generator().manual_seed(1))
    growing = decode(model, ids, steps=12, roomy=False, room=0)
    # Room for all steps, and room for only 4 (the buffers must grow mid-way).
    for room in (12, 4):
        assert torch.equal(decode(model, ids, steps=12, roomy=True, room=room), growing)


def test_selecting_rows_keeps_their_keys_and_values(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    model = make_tiny_llama(tiny_tokenizer)
    ids = torch.randint(3, len(tiny_tokenizer), (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, past_key_values=DynamicCache())
        cache = reserve_room(out.past_key_values, 5)
        cache.batch_select_indices(torch.tensor([2, 0]))
        step = model(input_ids=torch.tensor([[5], [6]]), past_key_values=cache, use_cache=True)
        alone = model(input_ids=torch.cat([ids[[2, 0]], torch.tensor([[5], [6]])], dim=1))
    assert torch.allclose(step.logits[:, -1], alone.logits[:, -1], atol=1e-5)
    assert cache.layers[0].keys.shape[0] == 2 and cache.get_seq_length() == 8

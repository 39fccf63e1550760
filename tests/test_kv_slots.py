"""Slot buffers: rows that join, decode and leave see exactly their own prompt."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, PreTrainedTokenizerFast

from culturesim.models import kv_slots
from culturesim.models.kv_slots import SlotCache
from tests.conftest import make_tiny_llama


class Rows:
    """Drives a SlotCache by hand and checks every logit against a whole-sequence forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.slots: SlotCache | None = None
        self.sequences: list[list[int]] = []  # per slot, in slot order

    def join(self, *prompts: list[int]) -> None:
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(),
            use_cache=True,
        )
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        if self.slots is None:
            self.slots = SlotCache(layers)
        self.slots.add_rows(layers, mask)
        self.sequences += [list(p) for p in prompts]

    def step(self, tokens: list[int]) -> None:
        assert self.slots is not None
        mask, positions = self.slots.step_inputs()
        out = self.model(
            input_ids=torch.tensor(tokens)[:, None],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.slots.cache,
            use_cache=True,
        )
        self.slots.advance()
        for i, token in enumerate(tokens):
            self.sequences[i].append(token)
            whole = self.model(input_ids=torch.tensor([self.sequences[i]])).logits[0, -1]
            assert torch.allclose(out.logits[i, -1], whole, atol=1e-5), f"row {i} drifted"

    def keep(self, keep: list[bool]) -> None:
        assert self.slots is not None
        order = self.slots.keep_rows(keep)
        self.sequences = [self.sequences[i] for i in order]


@pytest.mark.parametrize("spare", [256, 2])  # 2: columns run out and buffers are reallocated
def test_rows_joining_and_leaving_each_see_only_their_own_prompt(
    tiny_tokenizer: PreTrainedTokenizerFast, monkeypatch: pytest.MonkeyPatch, spare: int
) -> None:
    monkeypatch.setattr(kv_slots, "SPARE_COLUMNS", spare)
    model = make_tiny_llama(tiny_tokenizer, initializer_range=0.2)
    rows = Rows(model)
    with torch.inference_mode():
        rows.join([5, 6, 7, 8, 9])
        rows.step([11])
        rows.step([12])
        rows.join([20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31])  # wider: the window grows
        rows.step([13, 40])
        rows.join([50, 51], [60, 61, 62])  # two at once, narrower, into new slots
        rows.step([14, 41, 52, 63])
        rows.keep([False, True, True, False])  # the first leaves: the last live row moves up
        rows.step([42, 53])
        rows.join([70, 71, 72, 73])  # into a freed slot with stale keys and values
        for token in range(80, 86):
            rows.step([token, token + 1, token + 2])
        rows.keep([False, False, False])
        assert rows.slots is not None and rows.slots.rows == 0
        rows.join([90, 91, 92])  # an empty batch starts again
        rows.step([93])

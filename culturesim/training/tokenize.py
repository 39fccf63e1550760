"""Chat rows to token ids with labels on the assistant's tokens only.

The assistant spans are found by rendering the chat template on growing prefixes: the tokens a
message adds after the generation prompt belong to the assistant. This works with any chat
template (no `{% generation %}` markers needed), and the end-of-turn token the template writes
after an assistant message is inside the span, so the model learns to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from culturesim.models.base import Chat

IGNORE = -100


def _render(tokenizer: Any, messages: Sequence[Any], generation: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=generation
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def tokenize_chat(tokenizer: Any, messages: Chat, max_length: int) -> dict[str, list[int]]:
    """input_ids, attention_mask and labels (-100 outside assistant messages), truncated."""
    full = _render(tokenizer, messages, generation=False)
    labels = [IGNORE] * len(full)
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:index], generation=True))
        end = len(_render(tokenizer, messages[: index + 1], generation=False))
        for position in range(start, min(end, len(full))):
            labels[position] = full[position]
    full, labels = full[:max_length], labels[:max_length]
    return {"input_ids": full, "attention_mask": [1] * len(full), "labels": labels}

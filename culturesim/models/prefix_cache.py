"""Keys and values of prompts already read, found again by their longest shared token prefix.

A conversation's model calls share almost all their tokens: an agent's turn t+1 extends the
transcript of turn t, a turn's action scores and its utterance share the whole prompt, and the
intent prompts of one dialogue share the transcript. Prefill is the dominant cost on a CPU
(SmolLM2: about 470 prompt tokens/s against 19 generated tokens/s for one sequence), so each
prompt's keys and values are kept after it is read, and a later prompt computes only the
tokens after the longest prefix it shares with one of them.

Entries are whole prompts. Memory is bounded by a byte budget: the least recently used
entries go first, and an entry that alone exceeds the budget is not kept. Lookups count the
tokens read and the tokens reused, so a run can report its hit rate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per decoder layer, keys and values shaped (1, kv heads, tokens, head dim)."""


@dataclass
class PrefixCacheStats:
    """Tokens the model was asked to read, and how many of them came from the cache."""

    tokens_read: int = 0
    tokens_reused: int = 0
    entries: int = 0
    bytes: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        return self.tokens_reused / self.tokens_read if self.tokens_read else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tokens_read": self.tokens_read,
            "tokens_reused": self.tokens_reused,
            "hit_rate": round(self.hit_rate, 4),
            "entries": self.entries,
            "megabytes": round(self.bytes / 2**20, 1),
            "evictions": self.evictions,
        }


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens two token sequences share.

    A binary search over slice comparisons (each a C-speed tuple compare) instead of a Python
    loop over tokens: a lookup compares a prompt with every cached entry, and conversations'
    prompts share hundreds of tokens.
    """
    a, b = tuple(first), tuple(second)
    limit = min(len(a), len(b))
    if limit == 0 or a[0] != b[0]:
        return 0
    if a[:limit] == b[:limit]:
        return limit
    low, high = 1, limit  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


def _size(layers: Layers) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


class PrefixCache:
    """A least-recently-used store of prompts' keys and values under a byte budget."""

    def __init__(self, max_bytes: int, *, slack_tokens: int = 0) -> None:
        self.max_bytes = max_bytes
        self.slack_tokens = slack_tokens
        self._entries: OrderedDict[tuple[int, ...], Layers] = OrderedDict()
        self.stats = PrefixCacheStats()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def lookup(self, ids: Sequence[int], *, count: bool = True) -> tuple[int, Layers | None]:
        """The longest cached prefix of `ids` that leaves at least one token to compute (its
        logits are the answer), and the entry holding it; (0, None) when nothing is shared.

        `count` adds the prompt to the hit-rate figures; planning lookups pass False.
        """
        best, found_key = 0, None
        probe = tuple(ids)
        if self.enabled and len(ids) > 1:
            for key in self._entries:
                shared = min(common_prefix_length(key, probe), len(ids) - 1)
                if shared > best:
                    best, found_key = shared, key
        if count:
            self.stats.tokens_read += len(ids)
            self.stats.tokens_reused += best
        if found_key is None:
            return 0, None
        self._entries.move_to_end(found_key)
        return best, self._entries[found_key]

    def put(self, ids: Sequence[int], layers: Layers) -> None:
        """Keep a prompt's keys and values (which must cover exactly its tokens)."""
        if not self.enabled or not ids:
            return
        key = tuple(ids)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        size = _size(layers)
        if size > self.max_bytes:
            return
        # A stored prompt that this one extends is now redundant: every lookup it could answer,
        # this one answers at least as well. So is one that this prompt covers all but
        # `slack_tokens` of: an action-choice prompt once the utterance prompt that shares all
        # but its last words is stored. Dropping it costs at most that many tokens later and
        # keeps one copy of the shared keys and values instead of two.
        for old in [
            k for k in self._entries if len(k) - common_prefix_length(k, key) <= self.slack_tokens
        ]:
            self._drop(old)
        while self._entries and self.stats.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.stats.evictions += 1
        self._entries[key] = layers
        self.stats.bytes += size
        self.stats.entries = len(self._entries)

    def _drop(self, key: tuple[int, ...]) -> None:
        self.stats.bytes -= _size(self._entries.pop(key))
        self.stats.entries = len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.stats.bytes = 0
        self.stats.entries = 0

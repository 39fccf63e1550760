"""A decoding batch that requests join and leave between steps (continuous batching).

A batch that runs until its longest row is done wastes the 2-core CPU twice: the tail steps
decode one or two rows at nearly the cost of sixteen (42 ms for one row, 110 ms for sixteen, on
SmolLM2), and the requests that arrive meanwhile (the next turn of a conversation whose reply
just finished) wait for the whole batch. Here a finished row leaves at once and its caller gets
its completion at once; a new request joins at the next step, after its prompt is read.

Each row keeps its own settings and random generator (see `sampling`), so what a row generates
does not depend on which rows it shares steps with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from culturesim.models.base import Completion, GenerationParams, Stopped, truncate_at_stop
from culturesim.models.kv_slots import SlotCache
from culturesim.models.sampling import choose_tokens


@dataclass
class DecodingRow:
    """One request being decoded: what it asked for, what it has produced, who waits."""

    prompt: list[int]
    settings: GenerationParams
    generator: torch.Generator | None
    future: Future[Completion]
    stop: threading.Event
    produced: list[int] = field(default_factory=list)
    text: str = ""


@dataclass
class Prefilled:
    """Prompts read and ready to continue: per row the next-token logits, one cache for all
    rows, the attention mask over it, and each row's last position."""

    logits: torch.Tensor
    cache: Any
    attention: torch.Tensor
    positions: torch.Tensor


class DecodingBatch:
    """Rows decoding together; the caller serialises `join` and `step` (one thread)."""

    def __init__(
        self,
        forward: Callable[..., Any],
        decode: Callable[[Sequence[int]], str],
        eos_token_ids: set[int],
        *,
        max_rows: int = 1,
    ) -> None:
        self._forward = forward
        self._decode = decode
        self._eos = eos_token_ids
        self.max_rows = max_rows
        self._slots: SlotCache | None = None
        self._rows: list[DecodingRow] = []
        self._logits: torch.Tensor | None = None
        self.steps = 0
        self.rows_stepped = 0

    @property
    def live(self) -> int:
        return len(self._rows)

    @property
    def tokens_needed(self) -> int:
        """Prompt plus new tokens of the live rows, at most (the engine's memory bound)."""
        return sum(len(row.prompt) + row.settings.max_new_tokens for row in self._rows)

    def join(self, read: Prefilled, rows: Sequence[DecodingRow]) -> None:
        """Rows whose prompts `read` holds (in the same order) join the batch."""
        layers = [(layer.keys, layer.values) for layer in read.cache.layers]
        if self._slots is None:
            self._slots = SlotCache(layers, min_slots=self.max_rows)
        self._slots.add_rows(layers, read.attention)
        self._rows.extend(rows)
        logits = read.logits.float()
        self._logits = logits if self._logits is None else torch.cat([self._logits, logits])

    def step(self) -> None:
        """Choose every live row's next token; rows that are done (or whose call was stopped)
        leave and their futures resolve; the others are fed their token."""
        if not self._rows or self._slots is None or self._logits is None:
            return
        chosen = choose_tokens(
            self._logits,
            [row.settings for row in self._rows],
            [row.generator for row in self._rows],
        )
        keep = [
            self._advance_row(row, token) for row, token in zip(self._rows, chosen, strict=True)
        ]
        if not all(keep):
            order = self._slots.keep_rows(keep)
            self._rows = [self._rows[i] for i in order]
        if not self._rows:
            self._logits = None
            return
        feed = torch.tensor(
            [row.produced[-1] for row in self._rows], dtype=torch.long, device=self._slots.device
        )[:, None]
        attention, positions = self._slots.step_inputs()
        out = self._forward(
            input_ids=feed,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=self._slots.cache,
            use_cache=True,
        )
        self._slots.advance()
        self._logits = out.logits[:, -1, :].float()
        self.steps += 1
        self.rows_stepped += len(self._rows)

    def fail(self, error: BaseException) -> None:
        """Every live row's caller gets `error`; the batch is empty afterwards."""
        for row in self._rows:
            if not row.future.done():
                row.future.set_exception(error)
        self._rows = []
        self._logits = None
        if self._slots is not None:
            self._slots.keep_rows([False] * self._slots.rows)

    def _advance_row(self, row: DecodingRow, token: int) -> bool:
        """Add a chosen token to a row; False (and its future resolved) when it is done."""
        if row.stop.is_set():
            row.future.set_exception(Stopped("the run was stopped"))
            return False
        finish: Literal["stop", "length"] | None = None
        if token in self._eos:
            finish = "stop"
        else:
            row.produced.append(token)
            if row.settings.stop:
                row.text, hit = truncate_at_stop(self._decode(row.produced), row.settings.stop)
                if hit:
                    finish = "stop"
            if finish is None and len(row.produced) >= row.settings.max_new_tokens:
                finish = "length"
        if finish is None:
            return True
        text = row.text if row.settings.stop else self._decode(row.produced)
        row.future.set_result(
            Completion(
                text=text,
                prompt_tokens=len(row.prompt),
                completion_tokens=len(row.produced),
                finish_reason=finish,
            )
        )
        return False

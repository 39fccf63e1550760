"""The one render → generate → parse → correct → retry loop.

The judge, scenario adaptation, norm-grounded scenario writing and role-play turns all ask a
model for an answer in a form, parse it, and when the reply is unreadable show the model its
reply and a correction naming the problem, then ask again. This module is that loop, once:
callers give the chats (already rendered from their templates), a `generate` function for the
pending ones (which may prefill or choose part of the answer), a `parse` that raises ValueError
naming the problem, and a `correction` that renders the follow-up message. All pending requests
of an attempt go to the model together, so the loop stays batch-first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from culturesim.models.base import Chat

T = TypeVar("T")

GenerateFn = Callable[[Sequence[Chat], Sequence[int], int], Sequence[str]]
"""(chats of the pending requests, their indices, attempt number) → full reply texts."""


@dataclass
class Attempts(Generic[T]):
    """One request's outcome: the parsed result if any attempt was readable, and every reply
    and problem on the way (kept for logs; never dropped silently)."""

    result: T | None = None
    replies: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def last_problem(self) -> str:
        return self.problems[-1] if self.problems else ""


def generate_until_valid(
    chats: Sequence[Chat],
    generate: GenerateFn,
    parse: Callable[[int, str], T],
    correction: Callable[[int, str], str],
    *,
    max_attempts: int,
) -> list[Attempts[T]]:
    """Ask, parse, and correct each request until it parses or `max_attempts` is spent."""
    outcomes: list[Attempts[T]] = [Attempts() for _ in chats]
    conversations = [list(chat) for chat in chats]
    pending = list(range(len(chats)))
    for attempt in range(max_attempts):
        if not pending:
            break
        replies = generate([conversations[i] for i in pending], pending, attempt)
        still = []
        for i, text in zip(pending, replies, strict=True):
            outcomes[i].replies.append(text)
            try:
                outcomes[i].result = parse(i, text)
            except ValueError as problem:
                outcomes[i].problems.append(str(problem))
                conversations[i] += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": correction(i, str(problem))},
                ]
                still.append(i)
        pending = still
    return outcomes

"""Fault injection for OpenAI-compatible servers: fail, hang or answer garbage at set rates.

`culturesim serve --faults error=0.1,hang=0.05,garbage=0.05,truncate=0.05` wraps the server in
this ASGI middleware so a pipeline's resilience can be tested against a real server before it
meets a flaky one. Draws come from a seeded generator, so a fault run can be repeated.

* error    HTTP 500 with an OpenAI-style error body
* hang     no answer for `hang_s` seconds (longer than the client's timeout), then HTTP 504
* garbage  HTTP 200 whose body is not JSON
* truncate HTTP 200 with valid JSON whose choice was cut off (no finish reason)
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from culturesim.textlists import comma_list

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KINDS = ("error", "hang", "garbage", "truncate")


@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    hang_s: float = 30.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str, *, hang_s: float = 30.0, seed: int = 0) -> FaultPlan:
        """'error=0.1,hang=0.05' -> a plan; rates are probabilities per request."""
        rates: dict[str, float] = {}
        for part in comma_list(text):
            kind, eq, value = part.partition("=")
            if not eq or kind not in KINDS:
                raise ValueError(
                    f"--faults {part!r}: use KIND=RATE with KIND in {', '.join(KINDS)}"
                )
            try:
                rates[kind] = float(value)
            except ValueError as error:
                raise ValueError(f"--faults {part!r}: the rate must be a number") from error
            if not 0.0 <= rates[kind] <= 1.0:
                raise ValueError(f"--faults {part!r}: the rate must be between 0 and 1")
        if sum(rates.values()) > 1.0:
            raise ValueError("--faults: the rates add up to more than 1")
        return cls(rates, hang_s, seed)


class FaultInjector:
    """ASGI middleware: each POST under /v1/ draws a fault (or none) from the plan."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self._random = random.Random(plan.seed)
        self._lock = threading.Lock()

    def draw(self) -> str:
        with self._lock:
            roll = self._random.random()
            edge = 0.0
            for kind in KINDS:
                edge += self.plan.rates.get(kind, 0.0)
                if roll < edge:
                    self.counts[kind] += 1
                    return kind
            self.counts["ok"] += 1
            return "ok"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        kind = self.draw()
        if kind == "ok":
            await self.app(scope, receive, send)
            return
        if kind == "hang":
            await asyncio.sleep(self.plan.hang_s)
            await _respond(send, 504, b'{"error": {"message": "injected hang"}}')
        elif kind == "error":
            body = {"error": {"message": "injected failure", "type": "server_error"}}
            await _respond(send, 500, json.dumps(body).encode())
        elif kind == "garbage":
            await _respond(send, 200, b'{"id": "x", "choices": [{"text": "oh no')
        else:
            cut: dict[str, Any] = {
                "id": "cmpl-injected",
                "object": "text_completion",
                "created": 0,
                "model": "injected",
                "choices": [{"index": 0, "text": "cut", "finish_reason": None, "logprobs": None}],
            }
            await _respond(send, 200, json.dumps(cut).encode())


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})

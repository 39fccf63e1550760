"""The bridge from autogen to culturesim's model layer: every agent call goes into one Batcher.

autogen agents talk to models through `ModelClient` classes named in their `llm_config`. This
one turns autogen's message list into a culturesim chat and submits it to a shared `Batcher`,
so all concurrent conversations (one thread each) meet in full backend batches. autogen never
sees a backend, a key or a URL: culturesim's model layer stays the only code that talks to a model.

Request parameters culturesim's agents pass through `client.create(...)`: `seed`,
`temperature`, `top_p`, `max_tokens` and `stop`. Messages from other agents arrive as `user`
messages; a trailing `assistant` message is a prefill that the model continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from culturesim.models.base import Chat, GenerationParams
from culturesim.models.batcher import Batcher

CLIENT_NAME = "BatcherClient"  # autogen finds the client class by this name


@dataclass
class _Message:
    content: str
    role: str = "assistant"
    function_call: None = None
    tool_calls: None = None


@dataclass
class _Choice:
    message: _Message
    finish_reason: str = "stop"


@dataclass
class _Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class BatcherResponse:
    """The response shape autogen's ModelClient protocol expects."""

    choices: list[_Choice]
    model: str
    usage: _Usage
    cost: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def to_chat(messages: list[dict[str, Any]]) -> Chat:
    """autogen messages -> a culturesim chat (content as text, roles kept)."""
    chat: Chat = []
    for message in messages:
        role = message.get("role", "user")
        if role not in ("system", "user", "assistant"):
            role = "user"
        content = message.get("content") or ""
        if not isinstance(content, str):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        chat.append({"role": role, "content": content})
    return chat


class BatcherClient:
    """An autogen ModelClient backed by a culturesim Batcher (pass `batcher=` when registering)."""

    bound_batcher: Batcher | None = None

    def __init__(self, config: dict[str, Any], *, batcher: Batcher | None = None, **_: Any) -> None:
        chosen = batcher or self.bound_batcher
        if chosen is None:
            raise ValueError("BatcherClient needs a batcher: use bound_client(batcher)")
        self.config = config
        self.batcher = chosen

    def create(self, params: dict[str, Any]) -> BatcherResponse:
        stop = params.get("stop") or ()
        generation = GenerationParams(
            max_new_tokens=int(params.get("max_tokens") or 128),
            temperature=float(params.get("temperature", 0.7)),
            top_p=float(params.get("top_p", 1.0)),
            stop=tuple([stop] if isinstance(stop, str) else stop),
            seed=params.get("seed"),
        )
        completion = self.batcher.submit_generate(to_chat(params["messages"]), generation).result()
        return BatcherResponse(
            choices=[_Choice(_Message(completion.text), completion.finish_reason)],
            model=self.batcher.model_id,
            usage=_Usage(completion.prompt_tokens, completion.completion_tokens),
        )

    def message_retrieval(self, response: BatcherResponse) -> list[str]:
        return [choice.message.content for choice in response.choices]

    def cost(self, response: BatcherResponse) -> float:
        return 0.0

    @staticmethod
    def get_usage(response: BatcherResponse) -> dict[str, Any]:
        return {
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
            "total_tokens": response.usage.total_tokens,
            "cost": 0.0,
            "model": response.model,
        }


def bound_client(batcher: Batcher) -> type[BatcherClient]:
    """A BatcherClient class tied to one Batcher, for places where autogen registers a client
    class without arguments (the internal agent of GroupChat's 'auto' speaker selection)."""
    return type(CLIENT_NAME, (BatcherClient,), {"bound_batcher": batcher})


def llm_config(model_id: str) -> dict[str, Any]:
    """The llm_config an agent needs to use BatcherClient (then `register_model_client`)."""
    return {
        "config_list": [{"model": model_id, "model_client_cls": CLIENT_NAME}],
        "cache_seed": None,
    }

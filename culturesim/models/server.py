"""`culturesim serve`: an OpenAI-compatible HTTP server over the in-process transformers backend.

It lets any OpenAI-speaking tool (and culturesim's own `openai` backend) use a local model, and
it batches: concurrent HTTP requests meet in one Batcher. It binds to 127.0.0.1 unless told
otherwise, since it has no authentication.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from culturesim.models.base import ChatMessage, GenerationParams
from culturesim.models.batcher import Batcher
from culturesim.models.transformers_backend import TransformersModel


class ChatRequest(BaseModel):
    model: str = ""
    messages: list[dict[str, str]]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(BaseModel):
    model: str = ""
    prompt: str
    max_tokens: int = Field(default=16, ge=0)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def create_app(model: TransformersModel, *, max_batch_size: int = 32) -> FastAPI:
    """The FastAPI app; concurrent requests are merged by a Batcher over `model`."""
    app = FastAPI(title="culturesim serve")
    batcher = Batcher(model, max_batch_size=max_batch_size, max_wait_s=0.01, max_in_flight=8)
    app.state.batcher = batcher
    app.router.add_event_handler("shutdown", batcher.close)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model.model_id, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        messages: list[ChatMessage] = [
            {"role": m.get("role", "user"), "content": m.get("content", "")}
            for m in request.messages
        ]
        params = GenerationParams(
            max_new_tokens=request.max_completion_tokens or request.max_tokens or 256,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=_stops(request.stop),
            seed=request.seed,
        )
        completion = await batcher.agenerate(messages, params)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
            "logprobs": None,
        }
        if request.logprobs:
            top = await asyncio.to_thread(
                model.top_next_tokens, messages, max(1, request.top_logprobs or 1)
            )
            choice["logprobs"] = {
                "content": [
                    {
                        "token": top[0][0],
                        "logprob": top[0][1],
                        "bytes": None,
                        "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top],
                    }
                ]
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.model_id,
            "choices": [choice],
            "usage": _usage(completion.prompt_tokens, completion.completion_tokens),
        }

    @app.post("/v1/completions")
    async def complete(request: CompletionRequest) -> dict[str, Any]:
        if request.max_tokens == 0 and not request.echo:
            raise HTTPException(400, "max_tokens=0 is only meaningful with echo=true")
        text, finish, prompt_tokens, completion_tokens = "", "length", 0, 0
        if request.max_tokens > 0:
            params = GenerationParams(
                max_new_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                stop=_stops(request.stop),
                seed=request.seed,
            )
            completion = await batcher.agenerate(request.prompt, params)
            text, finish = completion.text, completion.finish_reason
            prompt_tokens, completion_tokens = (
                completion.prompt_tokens,
                completion.completion_tokens,
            )
        logprobs = None
        if request.echo:
            tokens = await asyncio.to_thread(model.prompt_token_logprobs, request.prompt)
            prompt_tokens = len(tokens)
            text = request.prompt + text
            if request.logprobs is not None:
                logprobs = {
                    "tokens": [t for t, _, _ in tokens],
                    "text_offset": [o for _, o, _ in tokens],
                    "token_logprobs": [v for _, _, v in tokens],
                    "top_logprobs": None,
                }
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model.model_id,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}],
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    return app

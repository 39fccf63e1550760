"""OpenAI-compatible HTTP backend: vLLM, Ollama, llama.cpp server, `culturesim serve`, hosted APIs.

Requests go out concurrently (bounded by `max_concurrency`) from a private event loop, so the
synchronous `generate` works from any thread, inside or outside a running loop. Transient
failures (429, 5xx, timeouts, refused connections) are retried with exponential back-off and
counted; what still fails after the last try raises a ModelError that names the URL.

Scoring needs prompt log-probabilities. For raw-text prompts it asks `/v1/completions` to echo
the prompt plus candidate with per-token log-probs (vLLM, llama.cpp and `culturesim serve` do).
For chats it renders the chat template client-side when given a local tokenizer, else it falls
back to the chat endpoint's top log-probs, which is exact only for one-token candidates; when a
candidate is not covered it says so instead of guessing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from culturesim.models.base import (
    Completion,
    GenerationParams,
    ModelError,
    Prompt,
    ScoringUnsupported,
    check_candidates,
    per_prompt_params,
)

T = TypeVar("T")
RETRYABLE = (
    openai.APIConnectionError,
    openai.APITimeoutError,
    openai.RateLimitError,
    openai.InternalServerError,
)


@dataclass
class RetryLog:
    """What the backend went through: retries made and the errors that caused them."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)


class OpenAIModel:
    """A model behind one or more OpenAI-compatible servers (round-robin across them)."""

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        tokenizer_path: str | None = None,
        top_logprobs: int = 20,
    ) -> None:
        self.model = model
        self.base_urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not self.base_urls:
            raise ValueError("OpenAIModel needs at least one base URL")
        # The key comes only from the environment: it is never a config value, so it cannot
        # end up in a manifest or a log.
        api_key = os.environ.get(api_key_env) or "EMPTY"
        self._clients = [
            openai.AsyncOpenAI(base_url=url, api_key=api_key, timeout=timeout_s, max_retries=0)
            for url in self.base_urls
        ]
        self._next_client = itertools.cycle(range(len(self._clients)))
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.top_logprobs = top_logprobs
        self.log = RetryLog()
        self._tokenizer: Any = None
        if tokenizer_path:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self._loop = asyncio.new_event_loop()
        self._semaphore: asyncio.Semaphore | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def model_id(self) -> str:
        return f"openai:{self.model}@{self.base_urls[0]}"

    # ------------------------------------------------------------------ plumbing

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _call(self, make_request: Any) -> Any:
        """Send one request with bounded concurrency and back-off retries."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._semaphore:
            self.log.requests += 1
            last_error: Exception | None = None
            for attempt in range(self.max_retries + 1):
                index = next(self._next_client)
                try:
                    return await make_request(self._clients[index])
                except RETRYABLE as error:
                    last_error = error
                    self.log.errors.append(f"{self.base_urls[index]}: {type(error).__name__}")
                    if attempt == self.max_retries:
                        break
                    self.log.retries += 1
                    delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                except openai.APIStatusError as error:
                    raise ModelError(
                        f"{self.base_urls[index]} refused the request for model {self.model!r} "
                        f"(HTTP {error.status_code}): {error.message}. Check the model name and "
                        f"the server's options."
                    ) from error
            self.log.failures += 1
            raise ModelError(
                f"could not get an answer from {', '.join(self.base_urls)} after "
                f"{self.max_retries + 1} tries ({type(last_error).__name__}: {last_error}). "
                "Is the server running and reachable? Start one with `culturesim serve` or vLLM, "
                "or raise the timeout."
            ) from last_error

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams | Sequence[GenerationParams] = GenerationParams(),
    ) -> list[Completion]:
        settings = per_prompt_params(params, len(prompts))
        return self._run(self.agenerate_many(prompts, settings))

    async def agenerate_many(
        self, prompts: Sequence[Prompt], settings: Sequence[GenerationParams]
    ) -> list[Completion]:
        return list(
            await asyncio.gather(
                *(self._generate_one(p, s) for p, s in zip(prompts, settings, strict=True))
            )
        )

    async def _generate_one(self, prompt: Prompt, params: GenerationParams) -> Completion:
        common: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            common["stop"] = list(params.stop)
        if params.seed is not None:
            common["seed"] = params.seed
        if isinstance(prompt, str):
            response = await self._call(lambda c: c.completions.create(prompt=prompt, **common))
            choice = response.choices[0]
            text = choice.text or ""
        else:
            response = await self._call(
                lambda c: c.chat.completions.create(messages=list(prompt), **common)
            )
            choice = response.choices[0]
            text = choice.message.content or ""
        if choice.finish_reason is None:
            raise ModelError(f"{self.base_urls[0]} returned a choice with no finish reason")
        usage = response.usage
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
        )

    # ------------------------------------------------------------------ score

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        check_candidates(prompts, candidates)
        return self._run(self._score_all(prompts, candidates))

    async def _score_all(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        async def one(prompt: Prompt, options: Sequence[str]) -> list[float]:
            if isinstance(prompt, list) and self._tokenizer is not None:
                prefill = prompt[-1]["role"] == "assistant"
                prompt = str(
                    self._tokenizer.apply_chat_template(
                        prompt,
                        add_generation_prompt=not prefill,
                        continue_final_message=prefill,
                        tokenize=False,
                    )
                )
            if isinstance(prompt, str):
                return list(await asyncio.gather(*(self._echo_score(prompt, o) for o in options)))
            return await self._chat_top_logprobs(prompt, options)

        return list(
            await asyncio.gather(*(one(p, c) for p, c in zip(prompts, candidates, strict=True)))
        )

    async def _echo_score(self, prompt: str, candidate: str) -> float:
        """Sum the echoed log-probs of the candidate's tokens after the prompt."""
        text = prompt + candidate
        response = await self._call(
            lambda c: c.completions.create(
                model=self.model, prompt=text, echo=True, max_tokens=1, logprobs=0, temperature=0.0
            )
        )
        logprobs = response.choices[0].logprobs
        if logprobs is None or not logprobs.token_logprobs or logprobs.text_offset is None:
            raise ScoringUnsupported(
                f"{self.base_urls[0]} did not return prompt log-probabilities (echo + logprobs). "
                "Use vLLM, `culturesim serve`, or the transformers backend for scoring."
            )
        total = 0.0
        for token, offset, value in zip(
            logprobs.tokens or [], logprobs.text_offset, logprobs.token_logprobs, strict=False
        ):
            end = offset + len(token)
            if offset >= len(text):
                break  # the generated token after the echo
            if end <= len(prompt):
                continue
            if offset < len(prompt):
                raise ScoringUnsupported(
                    f"the server tokenised across the prompt/candidate boundary for {candidate!r}; "
                    "end the prompt with whitespace or a newline, or use the transformers backend"
                )
            if value is None:
                raise ScoringUnsupported("the server returned no log-probability for a token")
            total += value
        return total

    async def _chat_top_logprobs(self, chat: Prompt, options: Sequence[str]) -> list[float]:
        response = await self._call(
            lambda c: c.chat.completions.create(
                model=self.model,
                messages=list(chat),
                max_tokens=1,
                temperature=0.0,
                logprobs=True,
                top_logprobs=self.top_logprobs,
                extra_body=_prefill_options(chat),
            )
        )
        content = response.choices[0].logprobs and response.choices[0].logprobs.content
        if not content:
            raise ScoringUnsupported(
                f"{self.base_urls[0]} gave no log-probabilities on the chat endpoint"
            )
        top = {entry.token: entry.logprob for entry in content[0].top_logprobs}
        missing = [o for o in options if o not in top]
        if missing:
            raise ScoringUnsupported(
                f"the chat endpoint's top-{self.top_logprobs} log-probs do not cover {missing}; "
                "pass tokenizer_path so chats are scored exactly through /v1/completions"
            )
        return [top[o] for o in options]

    def close(self) -> None:
        for client in self._clients:
            self._run(client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _prefill_options(chat: Prompt) -> dict[str, Any] | None:
    """vLLM's switches for continuing a final assistant message instead of starting a new one."""
    if isinstance(chat, list) and chat and chat[-1]["role"] == "assistant":
        return {"continue_final_message": True, "add_generation_prompt": False}
    return None

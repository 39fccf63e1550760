"""OpenAI-compatible HTTP backend: vLLM, Ollama, llama.cpp server, `culturesim serve`, hosted APIs.

Requests go out concurrently (bounded by `max_concurrency`) from a private event loop, so the
synchronous `generate` works from any thread, inside or outside a running loop. Several URLs are
replicas: requests go to the live one with the fewest in flight.

Retrying is not done here but by the `retry.RetryingModel` wrapper (`build_model` always wraps
an openai: model in one): wrapping hands this model the wrapper's retrier, and each request's
tries then run through it (tenacity around the request's coroutine), so a flaky request is
retried alone, possibly on another replica, while the rest of its batch goes on. Unwrapped, each
request is one try and a transient failure (429, 5xx, timeouts, refused connections, bodies that
are not JSON, completions cut off without a finish reason: `retry.TRANSIENT`) is raised as it is.
A request the server refuses (another 4xx) raises a ModelError that names the URL, unretried.

Scoring is exact wherever the server lets it be. A server with vLLM's `/tokenize` (which
applies the model's own chat template) is scored in token ids, the way the in-process engine
scores: the prompt's ids, each candidate's ids, and the log-probability of each candidate token
read from the next-token distribution after the prompt plus the candidate's earlier tokens
(`logprob_token_ids`, which reads prefixes from vLLM's prefix cache; older vLLMs without it get
the same numbers from `prompt_logprobs`). Elsewhere, raw-text prompts ask `/v1/completions` to
echo the prompt plus candidate with per-token log-probs (llama.cpp and `culturesim serve` do);
chats are rendered client-side when a local tokenizer is given, else the chat endpoint's top
log-probs are read, which is exact only for one-token candidates; when a candidate is not
covered it says so instead of guessing.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from culturesim.models.base import (
    GREEDY,
    Completion,
    EngineDied,
    GenerationParams,
    ModelError,
    Params,
    Prompt,
    ScoringUnsupported,
    check_candidates,
    per_prompt_params,
)
from culturesim.models.retry import TRANSIENT, AsyncRetrier, MalformedResponse

T = TypeVar("T")
Node = tuple[int, ...]  # a candidate's token ids read so far
MAX_TOKEN_IDS_PER_REQUEST = 128  # vLLM's cap on logprob_token_ids
PROMPT_LENGTHS_KEPT = 4096


@dataclass
class Replica:
    """One server: its client, requests in flight, and whether it is resting after failures."""

    url: str
    client: Any
    in_flight: int = 0
    served: int = 0
    consecutive_failures: int = 0
    resting_until: float = 0.0


class OpenAIModel:
    """A model behind one or more OpenAI-compatible servers (vLLM replicas, say).

    Load balancing is client-side: each request goes to the healthy replica with the fewest
    requests in flight. A replica that fails `trip_after` times in a row rests for
    `rest_s` seconds while the others take its share. One semaphore bounds the requests in
    flight across all replicas (`max_concurrency`), so adding replicas never overloads any.

    It is a `retry.ConcurrentModel`: wrapped in a `RetryingModel` (as `build_model` does), each
    request's tries run through the wrapper's retrier; unwrapped, each request is one try.
    """

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        tokenizer_path: str | None = None,
        top_logprobs: int = 20,
        trip_after: int = 3,
        rest_s: float = 5.0,
        model_id: str | None = None,
        send_seeds: bool = True,
        liveness: Callable[[], None] | None = None,
    ) -> None:
        """`model_id` names the weights in record ids and cache keys (default: model@first URL);
        `send_seeds` False leaves seeds out of requests, for servers that cannot honour them;
        `liveness` is called when a request fails in a way that could be transient, and raises
        EngineDied when the server behind it is gone for good (a server culturesim started)."""
        self.model = model
        self.base_urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not self.base_urls:
            raise ValueError("OpenAIModel needs at least one base URL")
        # The key comes only from the environment: it is never a config value, so it cannot
        # end up in a manifest or a log.
        api_key = os.environ.get(api_key_env) or "EMPTY"
        self.replicas = [
            Replica(
                url,
                openai.AsyncOpenAI(base_url=url, api_key=api_key, timeout=timeout_s, max_retries=0),
            )
            for url in self.base_urls
        ]
        self.max_concurrency = max_concurrency
        self.top_logprobs = top_logprobs
        self._model_id = model_id
        self.send_seeds = send_seeds
        self.liveness = liveness
        self._token_api: bool | None = None  # does the server tokenise for us? (probed once)
        self._token_mode = "logprob_token_ids"  # or "prompt_logprobs" on older vLLMs
        self._candidate_ids: dict[str, list[int]] = {}
        # Token counts of prompts scored in ids, for usage metering (most recent first out).
        self._prompt_lengths: OrderedDict[str, int] = OrderedDict()
        self.trip_after = trip_after
        self.rest_s = rest_s
        self._tokenizer: Any = None
        if tokenizer_path:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self._loop = asyncio.new_event_loop()
        self._semaphore: asyncio.Semaphore | None = None
        self._retrier: AsyncRetrier | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def model_id(self) -> str:
        return self._model_id or f"openai:{self.model}@{self.base_urls[0]}"

    # ------------------------------------------------------------------ plumbing

    def retry_requests_with(self, retrier: AsyncRetrier | None) -> None:
        """Run each request's tries through `retrier` (a RetryingModel's); None: one try each."""
        self._retrier = retrier

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _pick(self) -> Replica:
        now = time.monotonic()
        awake = [r for r in self.replicas if r.resting_until <= now] or self.replicas
        return min(awake, key=lambda r: (r.in_flight, r.served))

    def _failed(self, replica: Replica) -> None:
        replica.consecutive_failures += 1
        if replica.consecutive_failures >= self.trip_after:
            replica.resting_until = time.monotonic() + self.rest_s
            replica.consecutive_failures = 0

    async def _call(self, make_request: Any, check: Any = None) -> Any:
        """Send one request with bounded concurrency, through the retrier when there is one.

        The semaphore is held for the request's every try and the waits between them, so
        `max_concurrency` bounds requests, retried or not, as a struggling server would want.
        """
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._semaphore:
            if self._retrier is None:
                return await self._try(make_request, check)
            return await self._retrier(lambda: self._try(make_request, check))

    async def _try(self, make_request: Any, check: Any) -> Any:
        """One try of a request on the replica with the fewest in flight.

        `check` validates the response; the MalformedResponse it raises is transient like a 5xx,
        so a truncated or garbled answer is asked for again rather than recorded. A transient
        failure counts against its replica (`trip_after` in a row and it rests) and is raised as
        it is; a request the server refuses raises a ModelError naming the URL.
        """
        replica = self._pick()
        replica.in_flight += 1
        try:
            response = await make_request(replica.client)
            if check is not None:
                check(response)
        except TRANSIENT as error:
            self._failed(replica)
            if self.liveness is not None:
                self.liveness()  # raises EngineDied when the server is gone for good
            if isinstance(error, openai.InternalServerError) and "EngineCore" in str(error):
                raise EngineDied(
                    f"{replica.url}: the server's inference engine failed ({error.message}). "
                    "Its log says why; on vLLM's CPU build, per-request seeds with chunked "
                    "prefill are one known cause: start it with --no-enable-chunked-prefill "
                    "or add seeds=false to the model spec."
                ) from error
            raise
        except openai.APIStatusError as error:
            raise ModelError(
                f"{replica.url} refused the request for model {self.model!r} "
                f"(HTTP {error.status_code}): {error.message}. Check the model name and "
                f"the server's options."
            ) from error
        finally:
            replica.in_flight -= 1
        replica.consecutive_failures = 0
        replica.served += 1
        return response

    # ------------------------------------------------------------------ generate

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        settings = per_prompt_params(params, len(prompts))
        completions = self._run(self.agenerate_many(prompts, settings))
        return completions

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
        if params.seed is not None and self.send_seeds:
            common["seed"] = params.seed
        if isinstance(prompt, str):
            response = await self._call(
                lambda c: c.completions.create(prompt=prompt, **common), _check_choice
            )
            choice = response.choices[0]
            text = choice.text or ""
        else:
            response = await self._call(
                lambda c: c.chat.completions.create(messages=list(prompt), **common),
                _check_choice,
            )
            choice = response.choices[0]
            text = choice.message.content or ""
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
        scores = self._run(self._score_all(prompts, candidates))
        return scores

    async def _score_all(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        if self._tokenizer is None and await self._server_tokenises():
            return list(
                await asyncio.gather(
                    *(self._score_in_tokens(p, c) for p, c in zip(prompts, candidates, strict=True))
                )
            )

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
            ),
            _check_choice,
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
                "add tokenizer=FOLDER (a local copy of the model's tokenizer) to the model spec "
                "so chats are scored exactly through /v1/completions"
            )
        return [top[o] for o in options]

    # ------------------------------------------------------------------ exact scoring in ids

    def _root_url(self, replica: Replica) -> str:
        """The server's root, where vLLM serves /tokenize (beside /v1, not under it)."""
        url = replica.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call(
            lambda c: c.post(self._root_url(self._replica_of(c)) + path, body=body, cast_to=object)
        )

    def _replica_of(self, client: Any) -> Replica:
        return next(r for r in self.replicas if r.client is client)

    async def _server_tokenises(self) -> bool:
        """Whether the server has vLLM's /tokenize (asked once; a 404 means no)."""
        if self._token_api is None:
            try:
                answer = await self._post("/tokenize", {"prompt": "a", "add_special_tokens": False})
                self._token_api = isinstance(answer, dict) and isinstance(
                    answer.get("tokens"), list
                )
            except ModelError as error:
                if not isinstance(error.__cause__, openai.NotFoundError | openai.BadRequestError):
                    raise
                self._token_api = False
        return self._token_api

    async def _prompt_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids as the in-process engine builds them: a chat through the
        model's chat template (with the assistant header, or continuing a final assistant
        message), a raw string with the tokenizer's special tokens."""
        body: dict[str, Any] = {"model": self.model}
        if isinstance(prompt, str):
            body.update(prompt=prompt, add_special_tokens=True)
        else:
            prefill = bool(prompt) and prompt[-1]["role"] == "assistant"
            body.update(
                messages=[{"role": m["role"], "content": m["content"]} for m in prompt],
                add_generation_prompt=not prefill,
                continue_final_message=prefill,
                add_special_tokens=False,
            )
        answer = await self._post("/tokenize", body)
        ids = [int(t) for t in answer["tokens"]]
        self._prompt_lengths[_prompt_key(prompt)] = len(ids)
        while len(self._prompt_lengths) > PROMPT_LENGTHS_KEPT:
            self._prompt_lengths.popitem(last=False)
        return ids

    def count_prompt_tokens(self, prompts: Sequence[Prompt]) -> int:
        """Tokens of prompts just scored in ids (0 for prompts scored another way)."""
        return sum(self._prompt_lengths.get(_prompt_key(p), 0) for p in prompts)

    async def _candidate_token_ids(self, candidate: str) -> list[int]:
        if candidate not in self._candidate_ids:
            answer = await self._post(
                "/tokenize", {"model": self.model, "prompt": candidate, "add_special_tokens": False}
            )
            ids = [int(t) for t in answer["tokens"]]
            if not ids:
                raise ValueError(f"candidate {candidate!r} encodes to no tokens")
            self._candidate_ids[candidate] = ids
        return self._candidate_ids[candidate]

    async def _score_in_tokens(self, prompt: Prompt, options: Sequence[str]) -> list[float]:
        """log P(candidate | prompt) summed over the candidate's tokens, read at each node of
        the candidates' token trie (a shared first token is asked for once)."""
        prompt_ids, encoded = await asyncio.gather(
            self._prompt_ids(prompt),
            asyncio.gather(*(self._candidate_token_ids(o) for o in options)),
        )
        children: dict[Node, set[int]] = {}
        for ids in encoded:
            for j in range(len(ids)):
                children.setdefault(tuple(ids[:j]), set()).add(ids[j])
        nodes = list(children)
        found = await asyncio.gather(
            *(self._next_token_logprobs(prompt_ids, node, sorted(children[node])) for node in nodes)
        )
        logprob_of = dict(zip(nodes, found, strict=True))
        return [sum(logprob_of[tuple(ids[:j])][ids[j]] for j in range(len(ids))) for ids in encoded]

    async def _next_token_logprobs(
        self, prompt_ids: list[int], node: Node, wanted: list[int]
    ) -> dict[int, float]:
        """log P(token | prompt + node) for each wanted token id."""
        if self._token_mode == "logprob_token_ids":
            found: dict[int, float] = {}
            for start in range(0, len(wanted), MAX_TOKEN_IDS_PER_REQUEST):
                chunk = wanted[start : start + MAX_TOKEN_IDS_PER_REQUEST]
                found.update(await self._asked_token_logprobs([*prompt_ids, *node], chunk))
            if all(t in found for t in wanted):
                return found
            self._token_mode = "prompt_logprobs"  # a vLLM that ignores logprob_token_ids
        values = await asyncio.gather(
            *(self._prompt_logprob([*prompt_ids, *node, t]) for t in wanted)
        )
        return dict(zip(wanted, values, strict=True))

    async def _one_token_after(self, ids: list[int], **options: Any) -> Any:
        """A one-token greedy completion of a token-id prompt, with extra logprob options."""
        return await self._call(
            lambda c: c.completions.create(
                model=self.model, prompt=ids, max_tokens=1, temperature=0.0, **options
            ),
            _check_choice,
        )

    async def _asked_token_logprobs(self, ids: list[int], wanted: list[int]) -> dict[int, float]:
        response = await self._one_token_after(
            ids,
            logprobs=0,
            extra_body={"logprob_token_ids": wanted, "return_tokens_as_token_ids": True},
        )
        logprobs = response.choices[0].logprobs
        top = (logprobs.top_logprobs or [{}])[0] if logprobs is not None else {}
        found: dict[int, float] = {}
        for key, value in (top or {}).items():
            if key.startswith("token_id:") and value is not None:
                found[int(key.removeprefix("token_id:"))] = float(value)
        return found

    async def _prompt_logprob(self, ids: list[int]) -> float:
        """log P(last id | the ids before it), from the server's prompt log-probabilities."""
        response = await self._one_token_after(ids, extra_body={"prompt_logprobs": 0})
        rows = getattr(response.choices[0], "prompt_logprobs", None)
        last = rows[-1] if rows else None
        entry = last.get(str(ids[-1])) if isinstance(last, dict) else None
        if entry is None:
            raise ScoringUnsupported(
                f"{self.base_urls[0]} has /tokenize but returned no prompt log-probabilities; "
                "score with the in-process backend or give tokenizer=FOLDER in the spec"
            )
        return float(entry["logprob"] if isinstance(entry, dict) else entry)

    def close(self) -> None:
        for replica in self.replicas:
            self._run(replica.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _prompt_key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _check_choice(response: Any) -> None:
    """A completion must have a choice with a finish reason; anything else was cut or garbled."""
    choices = getattr(response, "choices", None)
    if not choices or getattr(choices[0], "finish_reason", None) is None:
        raise MalformedResponse("the server's answer had no complete choice")


def _prefill_options(chat: Prompt) -> dict[str, Any] | None:
    """vLLM's switches for continuing a final assistant message instead of starting a new one."""
    if isinstance(chat, list) and chat and chat[-1]["role"] == "assistant":
        return {"continue_final_message": True, "add_generation_prompt": False}
    return None

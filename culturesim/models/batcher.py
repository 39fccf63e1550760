"""The Batcher: many concurrent callers, one model, full batches.

Agents in concurrent conversations each ask for one completion at a time. Sent one by one, a
simulation of 64 dialogues would cost 64 sequential generations per turn. The Batcher collects
single requests from any number of threads or asyncio tasks and sends them to the backend
together: a batch leaves when it is full (`max_batch_size`) or when its oldest request has waited
`max_wait_s`. While the backend works on one batch, the next fills up.

With `max_in_flight` above 1, the next batch is sent without waiting for the last one to
finish. That pays with backends that batch continuously themselves (the in-process engine, a
vLLM or llama.cpp server): a conversation whose reply is done can have its next request join
the decoding that is still running for others, instead of waiting for a whole batch to end.

Each request gets its own Future, resolved with exactly its own result; a backend error fails
every request of that batch with the same exception, and the Batcher goes on serving.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from culturesim.models.base import (
    GREEDY,
    Completion,
    GenerationParams,
    LanguageModel,
    Params,
    Prompt,
    Stopped,
    check_candidates,
    per_prompt_params,
    stop_running_calls,
)


@dataclass
class _Request:
    operation: Literal["generate", "score"]
    prompt: Prompt
    argument: Any
    future: Future[Any] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class Batcher:
    """A LanguageModel that merges concurrent single requests into backend batches."""

    def __init__(
        self,
        model: LanguageModel,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.02,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._senders = (
            ThreadPoolExecutor(max_in_flight, thread_name_prefix="culturesim-batch")
            if max_in_flight > 1
            else None
        )
        self._queue: list[_Request] = []
        self._condition = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name="culturesim-batcher", daemon=True)
        self._worker.start()

    @property
    def model_id(self) -> str:
        return self.model.model_id

    # ------------------------------------------------------------------ submitting

    def _submit(self, request: _Request) -> Future[Any]:
        with self._condition:
            if self._closed:
                raise RuntimeError("the Batcher is closed")
            self._queue.append(request)
            self._condition.notify()
        return request.future

    def submit_generate(
        self, prompt: Prompt, params: GenerationParams = GenerationParams()
    ) -> Future[Completion]:
        return self._submit(_Request("generate", prompt, params))

    def submit_score(self, prompt: Prompt, candidates: Sequence[str]) -> Future[list[float]]:
        check_candidates([prompt], [candidates])
        return self._submit(_Request("score", prompt, list(candidates)))

    async def agenerate(
        self, prompt: Prompt, params: GenerationParams = GenerationParams()
    ) -> Completion:
        return await asyncio.wrap_future(self.submit_generate(prompt, params))

    # ------------------------------------------------------------------ the LanguageModel protocol

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        settings = per_prompt_params(params, len(prompts))
        futures = [self.submit_generate(p, s) for p, s in zip(prompts, settings, strict=True)]
        return [f.result() for f in futures]

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        check_candidates(prompts, candidates)
        futures = [self.submit_score(p, c) for p, c in zip(prompts, candidates, strict=True)]
        return [f.result() for f in futures]

    # ------------------------------------------------------------------ serving

    def _take_batch(self) -> list[_Request] | None:
        """Wait for a batch to be due and take it; None once closed and drained."""
        with self._condition:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._condition.wait()
                    continue
                waited = time.monotonic() - self._queue[0].arrived
                if (
                    len(self._queue) >= self.max_batch_size
                    or waited >= self.max_wait_s
                    or self._closed
                ):
                    operation = self._queue[0].operation
                    batch = [r for r in self._queue if r.operation == operation][
                        : self.max_batch_size
                    ]
                    taken = {id(r) for r in batch}
                    self._queue = [r for r in self._queue if id(r) not in taken]
                    return batch
                self._condition.wait(timeout=self.max_wait_s - waited)

    def _serve(self) -> None:
        while True:
            self._in_flight.acquire()  # a free sender before the next batch is taken
            batch = self._take_batch()
            if batch is None:
                self._in_flight.release()
                break
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            if self._senders is None:
                self._send(batch)
            else:
                self._senders.submit(self._send, batch)
        if self._senders is not None:
            self._senders.shutdown(wait=True)

    def _send(self, batch: list[_Request]) -> None:
        """Run one batch on the model and resolve its futures; frees a sender at the end."""
        try:
            self._send_batch(batch)
        finally:
            self._in_flight.release()

    def _send_batch(self, batch: list[_Request]) -> None:
        try:
            if batch[0].operation == "generate":
                results: list[Any] = self.model.generate(
                    [r.prompt for r in batch], [r.argument for r in batch]
                )
            else:
                results = self.model.score([r.prompt for r in batch], [r.argument for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"backend returned {len(results)} results for {len(batch)} requests"
                )
        except Stopped as error:  # aborted mid-batch: nobody of this batch gets an answer
            for request in batch:
                request.future.set_exception(error)
            return
        except Exception as error:
            # One bad request must not fail its batch-mates: run them one by one, so each
            # caller gets its own answer or its own error.
            if len(batch) == 1:
                batch[0].future.set_exception(error)
            else:
                self._serve_singly(batch)
            return
        except BaseException as error:  # every waiting caller must hear of the failure
            for request in batch:
                request.future.set_exception(error)
            return
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)

    def _serve_singly(self, batch: list[_Request]) -> None:
        for request in batch:
            try:
                if request.operation == "generate":
                    result: Any = self.model.generate([request.prompt], [request.argument])[0]
                else:
                    result = self.model.score([request.prompt], [request.argument])[0]
            except Exception as error:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

    def close(self) -> None:
        """Serve what is queued, then stop the worker."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._worker.join()

    def abort(self) -> None:
        """Stop at once (Ctrl-C): queued requests fail with `Stopped`, and the batch running is
        told to end at its next decoding step (where the backend can), so its callers get
        `Stopped` too instead of waiting for every token of it."""
        with self._condition:
            self._closed = True
            pending, self._queue = self._queue, []
            self._condition.notify_all()
        for request in pending:
            request.future.set_exception(Stopped("the run was stopped"))
        stop_running_calls(self.model)
        self._worker.join()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

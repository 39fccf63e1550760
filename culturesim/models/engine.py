"""The one thread that runs a local model: decoding steps, with work slotted in between them.

Generation requests from any thread queue here; the engine reads their prompts and lets them
join the running `DecodingBatch` at the next step (up to `max_rows` decoding at once). Other
work on the model (scoring) queues too and runs between two steps, so a conversation waiting
for its action scores is not held up by a long generation, and a generation is not held up by
anything longer than one piece of work. Everything runs on this thread, so the model, its
prefix cache and the decoding buffers need no other lock.

Each request carries the stop event of its call: once set, the request fails with `Stopped` at
the next step (or at once, if it has not joined yet).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from culturesim.models.base import Stopped
from culturesim.models.decoding import DecodingBatch, DecodingRow, Prefilled

T = TypeVar("T")


@dataclass
class _Work:
    run: Callable[[], Any]
    future: Future[Any]


class DecodingEngine:
    """A daemon thread owning a model's decoding batch (see the module docstring)."""

    def __init__(
        self,
        batch: DecodingBatch,
        prefill: Callable[[Sequence[Sequence[int]]], list[tuple[list[int], Prefilled]]],
        lock: threading.RLock,
        max_rows: int,
        max_tokens: int,
    ) -> None:
        self.batch = batch
        self._prefill = prefill
        self._lock = lock  # the model's lock, held for each step and each piece of work
        self.max_rows = max_rows
        self.max_tokens = max_tokens
        self.joined_while_decoding = 0
        self._waiting: list[DecodingRow] = []
        self._work: list[_Work] = []
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="culturesim-decoding", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Requests queued to join the decoding batch."""
        with self._condition:
            return len(self._waiting)

    def submit(self, rows: Sequence[DecodingRow]) -> None:
        with self._condition:
            self._waiting.extend(rows)
            self._condition.notify()

    def call(self, run: Callable[[], T]) -> T:
        """Run `run` on the engine thread between two decoding steps, and return its result."""
        work = _Work(run, Future())
        with self._condition:
            self._work.append(work)
            self._condition.notify()
        result: T = work.future.result()
        return result

    def _serve(self) -> None:
        with torch.inference_mode():
            while True:
                with self._condition:
                    while not self._waiting and not self._work and not self.batch.live:
                        self._condition.wait()
                    work, self._work = self._work, []
                    joining = self._admit()
                for item in work:
                    self._run(item)
                if joining:
                    self._join(joining)
                if self.batch.live:
                    with self._lock:
                        try:
                            self.batch.step()
                        except BaseException as error:  # every decoding caller must hear of it
                            self.batch.fail(error)

    def _admit(self) -> list[DecodingRow]:
        """The waiting rows (first come, first served) that fit beside the live ones: at most
        `max_rows` rows, and at most `max_tokens` of prompt plus new tokens in all (memory);
        a row alone is admitted whatever its size."""
        rows = self.batch.live
        tokens = self.batch.tokens_needed
        taken = 0
        for row in self._waiting:
            need = len(row.prompt) + row.settings.max_new_tokens
            if rows and (rows + 1 > self.max_rows or tokens + need > self.max_tokens):
                break
            rows, tokens, taken = rows + 1, tokens + need, taken + 1
        joining, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return joining

    def _run(self, item: _Work) -> None:
        try:
            with self._lock:
                result = item.run()
        except BaseException as error:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    def _join(self, rows: list[DecodingRow]) -> None:
        stopped = [row for row in rows if row.stop.is_set()]
        for row in stopped:
            row.future.set_exception(Stopped("the run was stopped"))
        rows = [row for row in rows if not row.stop.is_set()]
        if not rows:
            return
        if self.batch.live:
            self.joined_while_decoding += len(rows)
        try:
            with self._lock:
                parts = self._prefill([row.prompt for row in rows])
        except Exception:
            # One bad prompt must not fail the others: read them one by one.
            for row in rows:
                try:
                    with self._lock:
                        ((_, read),) = self._prefill([row.prompt])
                        self.batch.join(read, [row])
                except Exception as error:
                    row.future.set_exception(error)
            return
        with self._lock:
            for group, read in parts:  # each group of similar length joins on its own
                self.batch.join(read, [rows[i] for i in group])

"""Response cache and usage metering."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from culturesim.models.base import GenerationParams
from culturesim.models.cache import CachedModel, _prepare
from culturesim.models.metering import MeteredModel
from culturesim.models.transformers_backend import TransformersModel
from tests.conftest import ScriptedModel


def test_cache_hit_skips_the_backend_and_keys_on_seed(tmp_path: Path) -> None:
    backend = ScriptedModel()
    cached = CachedModel(backend, tmp_path / "cache.sqlite")
    params = GenerationParams(temperature=0.7, seed=1)
    first = cached.generate(["a", "b"], params)
    again = cached.generate(["b", "a", "c"], params)
    assert backend.generate_calls == [2, 1]  # only "c" was new
    assert [again[1], again[0]] == first
    cached.generate(["a"], GenerationParams(temperature=0.7, seed=2))
    assert backend.generate_calls == [2, 1, 1]  # another seed is another request
    cached.score(["p"], [["x", "yy"]])
    assert cached.score(["p"], [["x", "yy"]]) == [[-1.0, -2.0]]
    assert backend.score_calls == [1]


def test_cache_survives_reopening(tmp_path: Path) -> None:
    CachedModel(ScriptedModel(), tmp_path / "c.sqlite").generate(["hello"])
    backend = ScriptedModel(reply=lambda p: "should not be called")
    assert CachedModel(backend, tmp_path / "c.sqlite").generate(["hello"])[0].text == "echo:hello"
    assert backend.generate_calls == []


def test_cache_on_the_real_model_returns_identical_output(
    smollm2: TransformersModel, tmp_path: Path
) -> None:
    calls: list[int] = []

    class Counting:
        model_id = smollm2.model_id

        def generate(self, prompts, params=GenerationParams()):  # type: ignore[no-untyped-def]
            calls.append(len(prompts))
            return smollm2.generate(prompts, params)

        def score(self, prompts, candidates):  # type: ignore[no-untyped-def]
            return smollm2.score(prompts, candidates)

    cached = CachedModel(Counting(), tmp_path / "cache.sqlite")
    chat = [{"role": "user", "content": "Name a colour."}]
    params = GenerationParams(max_new_tokens=12, temperature=0.8, seed=5)
    first = cached.generate([chat], params)[0]
    second = cached.generate([chat], params)[0]
    assert calls == [1]
    assert second == first


def test_metering_counts_tokens_calls_and_time() -> None:
    metered = MeteredModel(ScriptedModel())
    metered.generate(["abc", "de"])
    metered.generate(["f"])
    usage = metered.snapshot()
    assert (usage.calls, usage.requests) == (2, 3)
    assert usage.prompt_tokens == 6 and usage.completion_tokens == 9
    assert usage.seconds >= 0


def test_the_rate_column_counts_what_the_model_did_since_the_bar_started() -> None:
    from culturesim.models.progress import ModelRateColumn

    metered = MeteredModel(ScriptedModel())
    metered.generate(["before the bar"])  # not counted: it happened before the bar started
    column = ModelRateColumn(metered.snapshot)
    metered.generate(["one", "two", "three"])
    prompt_tokens = sum(len(p) for p in ("one", "two", "three"))  # the scripted model's count
    assert column.rates(2.0) == (1.5, prompt_tokens / 2, 4.5), "3 tokens per completion"


class _LockedAtFirst:
    """A connection whose first `fails` statements answer as a busy SQLite file does."""

    def __init__(self, fails: int, message: str = "database is locked") -> None:
        self.fails = fails
        self.message = message
        self.statements: list[str] = []

    def execute(self, sql: str, *args: object) -> Any:
        if self.fails:
            self.fails -= 1
            raise sqlite3.OperationalError(self.message)
        self.statements.append(sql)
        return self

    def fetchone(self) -> tuple[str]:
        return ("delete",)

    def commit(self) -> None:
        self.statements.append("commit")


def test_cache_setup_waits_out_a_file_another_process_is_switching_to_wal() -> None:
    connection = _LockedAtFirst(fails=3)
    _prepare(connection)  # type: ignore[arg-type]
    assert connection.statements[-1] == "commit"
    assert "PRAGMA journal_mode=WAL" in connection.statements
    broken = _LockedAtFirst(fails=1, message="no such column: key")
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        _prepare(broken)  # type: ignore[arg-type]
    assert broken.statements == []  # another error is not retried


def _open_and_write(path: str, barrier: Any, word: str) -> None:
    barrier.wait()
    CachedModel(ScriptedModel(), path).generate([word])


def test_processes_opening_one_fresh_cache_file_together_all_succeed(tmp_path: Path) -> None:
    """Ray actors open the run's cache side by side; none of them may die of a locked file."""
    context = multiprocessing.get_context("fork")
    for trial in range(8):
        path = str(tmp_path / f"cache{trial}.sqlite")
        barrier = context.Barrier(8)
        workers = [
            context.Process(target=_open_and_write, args=(path, barrier, f"w{index}"))
            for index in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0] * 8
        reader = ScriptedModel(reply=lambda p: "should not be called")
        cached = CachedModel(reader, path)
        assert [c.text for c in cached.generate([f"w{i}" for i in range(8)])] == [
            f"echo:w{i}" for i in range(8)
        ]
        assert reader.generate_calls == []

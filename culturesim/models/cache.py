"""A persistent response cache in front of any model: a re-run is free and gives the same text.

The key is the model id, the operation, the prompt, and every parameter that changes the output
(the seed included), so a cached answer is exactly what the backend would have returned. Only
misses travel to the backend, still as one batch.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from culturesim.models.base import (
    GREEDY,
    Completion,
    LanguageModel,
    Params,
    Prompt,
    check_candidates,
    per_prompt_params,
)
from culturesim.records import stable_hash

_SETUP_TRIES = 20


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


@retry(
    retry=retry_if_exception(_is_locked),
    stop=stop_after_attempt(_SETUP_TRIES),
    wait=wait_random_exponential(multiplier=0.05, max=2.0),
    reraise=True,
)
def _prepare(db: sqlite3.Connection) -> None:
    """Switch the file to WAL and create the table, retrying while another process holds it.

    SQLite answers "database is locked" at once, without waiting out the busy timeout, when two
    processes switch a fresh file to WAL together (as Ray actors starting side by side do), so
    the setup is retried with jittered back-off instead of failing the process.
    """
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()


def _open(path: Path) -> sqlite3.Connection:
    """The cache file's connection, the file and its table created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
    try:
        _prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def prepare_cache_file(path: str | Path) -> None:
    """Create the cache file in WAL mode now, so processes opening it later find it ready."""
    _open(Path(path)).close()


class CachedModel:
    """Wraps a model with an sqlite cache file (safe across threads and processes)."""

    def __init__(self, inner: LanguageModel, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = _open(self.path)
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def _key(self, operation: str, prompt: Prompt, detail: object) -> str:
        return stable_hash([self.model_id, operation, prompt, detail], length=40)

    def _lookup(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update(rows)
        return found

    def _store(self, items: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)", items)
            self._db.commit()

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        settings = per_prompt_params(params, len(prompts))
        keys = [
            self._key("generate", p, s.as_dict()) for p, s in zip(prompts, settings, strict=True)
        ]
        cached = self._lookup(keys)
        missing = [i for i, k in enumerate(keys) if k not in cached]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        fresh: dict[int, Completion] = {}
        if missing:
            outputs = self.inner.generate(
                [prompts[i] for i in missing], [settings[i] for i in missing]
            )
            fresh = dict(zip(missing, outputs, strict=True))
            self._store([(keys[i], json.dumps(asdict(c))) for i, c in fresh.items()])
        return [
            fresh[i] if i in fresh else Completion(**json.loads(cached[keys[i]]))
            for i in range(len(prompts))
        ]

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        check_candidates(prompts, candidates)
        keys = [self._key("score", p, list(c)) for p, c in zip(prompts, candidates, strict=True)]
        cached = self._lookup(keys)
        missing = [i for i, k in enumerate(keys) if k not in cached]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        fresh: dict[int, list[float]] = {}
        if missing:
            outputs = self.inner.score(
                [prompts[i] for i in missing], [candidates[i] for i in missing]
            )
            fresh = dict(zip(missing, outputs, strict=True))
            self._store([(keys[i], json.dumps(v)) for i, v in fresh.items()])
        return [
            fresh[i] if i in fresh else json.loads(cached[keys[i]]) for i in range(len(prompts))
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()

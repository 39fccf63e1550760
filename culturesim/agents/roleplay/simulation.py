"""Simulating many episodes at once: one thread per conversation, one Batcher for all of them.

Every dialogue's id is known before it runs (episode, sample index, model), so a resumed run
skips exactly the dialogues already written. A dialogue is written whole, once it is finished
and annotated; a run killed mid-way loses only the conversations in flight, and with the
response cache (`cache.sqlite` in the run directory) replays them word for word.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from culturesim.agents.roleplay.conversation import Conversation
from culturesim.agents.roleplay.intents import IntentAnnotator
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.models.base import EngineDied, LanguageModel
from culturesim.models.batcher import Batcher
from culturesim.models.metering import MeteredModel
from culturesim.models.progress import ModelRateColumn
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Culture, Dialogue, Episode, Turn, derive_seed
from culturesim.scenarios.cultures import load_cultures
from culturesim.store import RunStore


@dataclass
class SimulationSummary:
    done: int = 0
    skipped: int = 0
    left_failed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    stop_reasons: Counter[str] = field(default_factory=Counter)
    completion_tokens: int = 0
    seconds: float = 0.0
    mean_batch_size: float = 0.0
    intent_placeholders: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "left_failed": self.left_failed,
            "failed": self.failed,
            "stop_reasons": dict(self.stop_reasons),
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 1),
            "tokens_per_second": round(self.completion_tokens / self.seconds, 1)
            if self.seconds
            else 0.0,
            "mean_batch_size": round(self.mean_batch_size, 2),
            "intent_placeholders": self.intent_placeholders,
        }


IN_FLIGHT_BATCHES = 8
"""Batches sent to the model before the first returns: a conversation's next request can then
join a decoding batch that is still running (backends that batch continuously gain; others
just queue them)."""


def dialogue_seed(episode: Episode, sample_index: int, run_seed: int) -> int:
    return derive_seed(run_seed, episode.id, sample_index)


class Simulator:
    """Runs Episodes into Dialogue records in a run store."""

    def __init__(
        self,
        model: LanguageModel,
        store: RunStore,
        settings: SimulateSection | None = None,
        *,
        seed: int = 0,
        library: PromptLibrary | None = None,
        cultures: dict[str, Culture] | None = None,
        console: Console | None = None,
    ) -> None:
        self.metered = MeteredModel(model)
        self.model_id = model.model_id
        self.store = store
        self.settings = settings or SimulateSection()
        self.seed = seed
        self.library = library or PromptLibrary()
        self.cultures = cultures or load_cultures()
        self.console = console
        self.intent_placeholders = 0  # intent replies that gave the form's placeholder back
        self._count_lock = threading.Lock()

    def dialogue_id(self, episode: Episode, sample_index: int) -> str:
        return Dialogue(episode_id=episode.id, sample_index=sample_index, model=self.model_id).id

    def failed_ids(self) -> set[str]:
        """Dialogues listed in failed.jsonl and never written since."""
        listed = {row["dialogue_id"] for row in self.store.read_json("failed")}
        return listed - self.store.done_ids(Dialogue)

    def run(
        self,
        episodes: Sequence[Episode],
        *,
        show_progress: bool = True,
        retry_failed: bool = False,
    ) -> SimulationSummary:
        """Simulate every dialogue not yet written. Dialogues that failed on an earlier run are
        left alone (and counted) unless `retry_failed`, so a rerun after a crash does not keep
        hammering a bad server with the same hopeless requests."""
        summary = SimulationSummary()
        known = self.store.done_ids(Episode)
        self.store.append_many([e for e in episodes if e.id not in known])
        done = self.store.done_ids(Dialogue)
        earlier_failures = set() if retry_failed else self.failed_ids()
        tasks = [
            (episode, k)
            for episode in episodes
            for k in range(self.settings.per_episode)
            if self.dialogue_id(episode, k) not in done
            and self.dialogue_id(episode, k) not in earlier_failures
        ]
        summary.left_failed = sum(
            self.dialogue_id(e, k) in earlier_failures
            for e in episodes
            for k in range(self.settings.per_episode)
        )
        summary.skipped = (
            len(episodes) * self.settings.per_episode - len(tasks) - summary.left_failed
        )
        started = time.perf_counter()
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            ModelRateColumn(self.metered.snapshot),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with (
            Batcher(
                self.metered,
                max_batch_size=self.settings.max_batch_size,
                max_in_flight=IN_FLIGHT_BATCHES,
            ) as batcher,
            ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool,
            Progress(*columns, disable=not show_progress, console=self.console) as progress,
        ):
            bar = progress.add_task("dialogues", total=len(tasks))
            futures: dict[Future[Dialogue], tuple[Episode, int]] = {
                pool.submit(self._simulate, batcher, episode, k): (episode, k)
                for episode, k in tasks
            }
            try:
                for future in as_completed(futures):
                    episode, k = futures[future]
                    try:
                        dialogue = future.result()
                    except EngineDied:
                        # Every later call would fail the same way: stop now, keep what is
                        # written, and let the error say once why (not once per dialogue).
                        batcher.abort()
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
                    except Exception as error:  # recorded as failed; the run goes on
                        failure = {
                            "dialogue_id": self.dialogue_id(episode, k),
                            "episode_id": episode.id,
                            "sample_index": str(k),
                            "error": f"{type(error).__name__}: {error}",
                        }
                        summary.failed.append(failure)
                        self.store.append_json("failed", [failure])
                    else:
                        self.store.append(dialogue)
                        summary.done += 1
                        summary.stop_reasons[dialogue.stop_reason] += 1
                    progress.update(bar, advance=1)
            except KeyboardInterrupt:
                # Every finished dialogue is already on disk (fsynced); conversations in flight
                # are dropped whole and rerun on resume. Failing the queued model calls makes
                # their threads end now instead of finishing their conversations.
                batcher.abort()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            summary.mean_batch_size = batcher.stats.mean_batch_size
        summary.seconds = time.perf_counter() - started
        summary.intent_placeholders = self.intent_placeholders
        summary.completion_tokens = self.metered.usage.completion_tokens
        return summary

    def _simulate(self, batcher: Batcher, episode: Episode, sample_index: int) -> Dialogue:
        seed = dialogue_seed(episode, sample_index, self.seed)
        host = self.cultures[episode.scenario.roles[0].culture]
        annotator = IntentAnnotator(batcher, library=self.library)
        views: list[str] = []

        def label(turn: Turn) -> None:
            # Each turn's intent is requested as soon as it is played (it reads only the
            # transcript up to it), so labels decode beside the conversations still running.
            views.append(
                conversation.view(conversation.persona[turn.speaker], turn.action, turn.utterance)
            )
            annotator.start(episode, turn, host, views, seed)

        conversation = Conversation(
            episode,
            batcher,
            seed=seed,
            settings=self.settings,
            library=self.library,
            cultures=self.cultures,
            on_turn=label if self.settings.intents else None,
        )
        state = conversation.run()
        turns = annotator.finish(state.turns)
        with self._count_lock:
            self.intent_placeholders += annotator.placeholder_echoes
        return Dialogue(
            episode_id=episode.id,
            sample_index=sample_index,
            model=self.model_id,
            turns=tuple(turns),
            stop_reason=state.stop_reason,
            seed=seed,
        )

"""Run a survey through a model into a run directory, resumably, with a progress bar."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from culturesim.models.base import LanguageModel
from culturesim.models.metering import MeteredModel
from culturesim.models.progress import ModelRateColumn
from culturesim.records import Answer
from culturesim.store import RunStore
from culturesim.survey.administer import (
    DEFAULT_ANSWER_PREFIX,
    SurveyItem,
    answer_logprob,
    answer_sampled,
    chunks,
)


def run_items(
    model: LanguageModel,
    items: Sequence[SurveyItem],
    *,
    store: RunStore | None = None,
    mode: str = "logprob",
    samples: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    published_parse: bool = False,
    show_progress: bool = True,
    label: str = "answering",
    answer_prefix: str = DEFAULT_ANSWER_PREFIX,
    console: Console | None = None,
) -> list[Answer]:
    """Answer every item; with a store, items already answered are skipped and kept."""
    if mode not in ("logprob", "sample"):
        raise ValueError(f"mode must be 'logprob' or 'sample', got {mode!r}")
    done: dict[str, Answer] = {}
    if store is not None:
        done = {a.id: a for a in store.read(Answer)}
    wanted = [(item, item.answer_id(mode, model.model_id)) for item in items]
    todo = [item for item, answer_id in wanted if answer_id not in done]
    fresh: dict[str, Answer] = {}
    metered = model if isinstance(model, MeteredModel) else MeteredModel(model)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ModelRateColumn(metered.snapshot),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=True, console=console) as progress:
        task = progress.add_task(
            f"{label} ({model.model_id})", total=len(items), completed=len(items) - len(todo)
        )
        for chunk in chunks(todo, batch_size):
            if mode == "logprob":
                answers = answer_logprob(metered, chunk, answer_prefix=answer_prefix)
            else:
                answers = answer_sampled(
                    metered, chunk, samples=samples, seed=seed, published_parse=published_parse
                )
            if store is not None:
                store.append_many(answers)
            fresh.update((a.id, a) for a in answers)
            progress.advance(task, len(chunk))
    return [fresh.get(answer_id) or done[answer_id] for _, answer_id in wanted]

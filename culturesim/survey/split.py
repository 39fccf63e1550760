"""A seen / held-out split of a survey's questions, stratified by topic.

A positive control is only worth something on items no stage ever saw: the teacher trains on
the seen half, every corpus is decontaminated against the held-out half, and models are scored
on the held-out half. The split is a pure function of the question ids, their topics and a
seed, and it is written into the run so that later stages read the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from culturesim.records import derive_seed
from culturesim.store import write_json_atomic
from culturesim.survey.questionnaire import SurveyQuestion

SPLIT_FILE = "survey_split.json"


def split_survey(
    questions: Sequence[SurveyQuestion],
    topic_of: Callable[[SurveyQuestion], str],
    seed: int,
) -> dict[str, Any]:
    """Half of each topic's questions held out (odd counts alternate between the halves, so
    the whole is split as evenly as the topics allow), chosen by a seeded shuffle per topic."""
    by_topic: dict[str, list[SurveyQuestion]] = defaultdict(list)
    for question in questions:
        by_topic[topic_of(question) or "(no topic)"].append(question)
    seen: list[str] = []
    held_out: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    odd = 0
    for topic in sorted(by_topic):
        members = sorted(by_topic[topic], key=lambda q: q.id)
        random.Random(derive_seed("survey-split", seed, topic, digits=12)).shuffle(members)
        size = len(members) // 2
        if len(members) % 2:
            size += odd
            odd = 1 - odd
        held, kept = members[:size], members[size:]
        held_out += [{"id": q.id, "question": q.text, "topic": topic} for q in held]
        seen += [q.id for q in kept]
        counts[topic] = {"seen": len(kept), "held_out": len(held)}
    return {
        "seed": seed,
        "seen": sorted(seen),
        "held_out": sorted(held_out, key=lambda q: q["id"]),
        "by_topic": counts,
    }


def write_split(split: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SPLIT_FILE
    write_json_atomic(path, split)
    return path


class SplitError(ValueError):
    """A split file cannot be read; the message names it."""


def read_split(path: Path) -> dict[str, Any]:
    """A split written by `write_split`: its seed, seen ids and held-out questions."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "held_out" not in data or "seen" not in data:
            raise SplitError(f"{path}: not a survey split (no 'seen' and 'held_out' lists)")
        return data
    except (OSError, json.JSONDecodeError) as error:
        raise SplitError(f"{path}: {error}") from error


def held_out_ids(split: dict[str, Any]) -> list[str]:
    return [str(q["id"]) for q in split["held_out"]]


def ensure_split(
    folder: Path,
    questions: Sequence[SurveyQuestion],
    seed: int,
    topic_of: Callable[[SurveyQuestion], str] | None = None,
) -> dict[str, Any]:
    """The split of the run in `folder`: read when written before (its seed must match, since a
    run holds out one half for good), else made from `questions` and written. Topics are the 13
    WVS topics unless `topic_of` says otherwise."""
    path = folder / SPLIT_FILE
    if path.exists():
        split = read_split(path)
        if split.get("seed") != seed:
            raise SplitError(
                f"{path} was made with seed {split.get('seed')}, not {seed}; use another run "
                "directory to hold out other questions"
            )
        return split
    if topic_of is None:
        from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, topic_namer

        topic_of = topic_namer(load_topics(BUILTIN_TOPICS))
    split = split_survey(questions, topic_of, seed)
    write_split(split, folder)
    return split

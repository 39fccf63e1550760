"""Training corpora from kept records, in TRL's chat format, with lineage on every row.

Sets built (each a `datasets.DatasetDict` with train and validation splits):

* `clca`: CLCA's views, mixed `dialogue:intent` (default 2:1).
  - dialogue view, one per participant: the system prompt describes the participant the
    assistant speaks as (goal, secret and cultural cues optional); the other participants'
    turns are user messages, this participant's turns assistant messages.
  - intent view: the transcript in, every utterance's intent (and cultural expectation) out.
* `culturespa_joint`: one set for all cultures; system = the culture-aware prompt, target = the
  aware answer (the option number, as published). `culturespa_<CODE>`: the same, per culture.
* `dpo`: prompt = the aware prompt, chosen = the aware answer, rejected = the unaware answer,
  for each instance whose two answers differ.

Every set: splits stratified by culture (a row's split follows from a hash of its id),
near-duplicates removed across the whole corpus (exact after normalising, then embeddings),
and no row containing an evaluation question when an evaluation set is given.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.models.base import Chat
from culturesim.models.embeddings import (
    CORPUS_DEDUP_THRESHOLD,
    DECONTAMINATION_THRESHOLD,
    Embedder,
    normalise_text,
)
from culturesim.prompt_library import PromptLibrary, render_turn, transcript_lines
from culturesim.records import Answer, Culture, Dialogue, Episode, Instance, Question, stable_hash
from culturesim.scenarios.templates import _culture_view
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.distributions import as_survey_question
from culturesim.survey.questionnaire import SurveyQuestion


@dataclass(frozen=True)
class CorpusSettings:
    mixture: tuple[int, int] = (2, 1)  # dialogue views : intent views
    include_goal: bool = True
    include_secret: bool = True
    include_cues: bool = True
    validation_fraction: float = 0.1
    dedup_threshold: float = CORPUS_DEDUP_THRESHOLD
    decontamination_threshold: float = DECONTAMINATION_THRESHOLD
    seed: int = 0


@dataclass
class Row:
    """One training example before it becomes a dataset row."""

    set_name: str
    culture: str
    source: str  # clca_dialogue | clca_intent | culturespa | dpo
    record_ids: list[str]
    messages: Chat = field(default_factory=list)
    prompt: Chat = field(default_factory=list)
    chosen: Chat = field(default_factory=list)
    rejected: Chat = field(default_factory=list)
    # Soft-target rows (`culturespa_soft`): option codes and the teacher's probabilities.
    target: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return stable_hash([self.set_name, self.source, self.record_ids])

    @property
    def source_record(self) -> str:
        """The record a row comes from (dialogue, instance): its views are not duplicates."""
        return self.record_ids[0] if self.record_ids else self.id

    @property
    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages or [*self.prompt, *self.chosen])

    @property
    def content_text(self) -> str:
        """What makes the row itself: for a dialogue view the turns, not the shared scaffolding
        (system prompt, scene) that every sample of an episode repeats."""
        if self.source == "clca_dialogue":
            return "\n".join(m["content"] for m in self.messages[2:])
        return self.text


# --------------------------------------------------------------------------- CLCA views


def _merge(chat: Chat) -> Chat:
    """Consecutive messages of one role joined, so roles alternate as chat templates expect."""
    merged: Chat = []
    for message in chat:
        if merged and merged[-1]["role"] == message["role"] and message["role"] != "system":
            merged[-1] = {
                "role": message["role"],
                "content": merged[-1]["content"] + "\n" + message["content"],
            }
        else:
            merged.append(dict(message))  # type: ignore[arg-type]
    return merged


def dialogue_views(
    dialogue: Dialogue,
    episode: Episode,
    cultures: dict[str, Culture],
    settings: CorpusSettings,
    library: PromptLibrary,
) -> list[Row]:
    """One row per participant who acted, seen from that participant's side."""
    scenario = episode.scenario
    people = dict(zip([r.name for r in scenario.roles], episode.personas, strict=True))
    rows = []
    for role in scenario.roles:
        me = people[role.name]
        others = [
            {"name": people[r.name].name, "occupation": people[r.name].occupation}
            for r in scenario.roles
            if r.name != role.name
        ]
        system = library.render(
            "corpus/participant_system.jinja2",
            me=me.model_dump(),
            role=role.model_dump(),
            culture=_culture_view(cultures[role.culture]),
            scenario=scenario,
            others=others,
            include_goal=settings.include_goal,
            include_secret=settings.include_secret,
            include_cues=settings.include_cues,
        )
        # The scene and every turn read exactly as the agents saw them during role-play.
        opening = library.render("roleplay/opening.jinja2", scenario=scenario)
        chat: Chat = [
            {"role": "system", "content": system},
            {"role": "user", "content": opening},
        ]
        acted = False
        for turn in dialogue.turns:
            if turn.malformed:
                continue
            line = render_turn(library, people[turn.speaker].name, turn)
            mine = turn.speaker == role.name
            acted = acted or (mine and turn.action in ("speak", "non-verbal"))
            chat.append({"role": "assistant" if mine else "user", "content": line})
        chat = _merge(chat)
        while chat and chat[-1]["role"] != "assistant":
            chat.pop()
        if acted and len(chat) >= 3:
            rows.append(
                Row("clca", role.culture, "clca_dialogue", [dialogue.id, episode.id, me.id], chat)
            )
    return rows


def intent_view(
    dialogue: Dialogue, episode: Episode, cultures: dict[str, Culture], library: PromptLibrary
) -> Row | None:
    names = {r.name: p.name for r, p in zip(episode.scenario.roles, episode.personas, strict=True)}
    labelled = [t for t in dialogue.turns if t.intent]
    if not labelled:
        return None
    host = cultures[episode.scenario.roles[0].culture]
    user = library.render(
        "corpus/intent_user.jinja2",
        culture=_culture_view(host),
        scenario=episode.scenario,
        transcript=transcript_lines(library, dialogue, episode),
    )
    answer = library.render(
        "corpus/intent_answer.jinja2",
        turns=[
            {"name": names[t.speaker], "intent": t.intent, "expectation": t.cultural_expectation}
            for t in labelled
        ],
    )
    chat: Chat = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return Row("clca", host.code, "clca_intent", [dialogue.id, episode.id], chat)


def mix(dialogue_rows: list[Row], intent_rows: list[Row], ratio: tuple[int, int]) -> list[Row]:
    """Intent rows capped at ratio[1]/ratio[0] of the dialogue rows, chosen by id order."""
    a, b = ratio
    if a <= 0 or b < 0:
        raise ValueError(f"mixture {a}:{b} must have a positive dialogue share")
    keep = min(len(intent_rows), round(len(dialogue_rows) * b / a))
    return dialogue_rows + sorted(intent_rows, key=lambda r: r.id)[:keep]


# --------------------------------------------------------------------------- CultureSPA sets


def _aware_prompt(prompter: SurveyPrompter, culture: str, form: SurveyQuestion) -> Chat:
    """The culture-aware survey prompt that CultureSPA rows train on."""
    return [
        {"role": "system", "content": prompter.system_prompt("aware", culture)},
        {"role": "user", "content": prompter.user_prompt(form)},
    ]


def instance_rows(
    instances: Sequence[Instance],
    questions: dict[str, Question],
    answers: dict[str, Answer],
    prompter: SurveyPrompter,
    *,
    answer_prefix: str = "",
) -> tuple[list[Row], list[Row], Counter[str]]:
    """(SFT rows, DPO rows, skip counts); one pair per (question, culture), whatever rules kept it.

    Targets are the option number, after `answer_prefix` when one is given."""
    sft, dpo, skipped = [], [], Counter[str]()
    seen: set[tuple[str, str]] = set()
    for instance in sorted(instances, key=lambda i: (i.question_id, i.culture, i.rule)):
        key = (instance.question_id, instance.culture)
        if key in seen:
            continue
        seen.add(key)
        question = questions.get(instance.question_id)
        if question is None:
            skipped["question missing"] += 1
            continue
        form = as_survey_question(question)
        aware = instance.aware_distribution or answers[instance.aware_answer_id].distribution
        unaware = instance.unaware_distribution or answers[instance.unaware_answer_id].distribution
        best_aware = int(np.argmax(aware)) + form.first_code
        best_unaware = int(np.argmax(unaware)) + form.first_code
        prompt = _aware_prompt(prompter, instance.culture, form)
        ids = [instance.id, question.id, instance.aware_answer_id, instance.unaware_answer_id]
        sft.append(
            Row(
                "culturespa",
                instance.culture,
                "culturespa",
                ids,
                [*prompt, {"role": "assistant", "content": f"{answer_prefix}{best_aware}"}],
            )
        )
        if best_aware == best_unaware:
            skipped["dpo: aware and unaware answers agree"] += 1
            continue
        dpo.append(
            Row(
                "dpo",
                instance.culture,
                "dpo",
                ids,
                prompt=prompt,
                chosen=[{"role": "assistant", "content": f"{answer_prefix}{best_aware}"}],
                rejected=[{"role": "assistant", "content": f"{answer_prefix}{best_unaware}"}],
            )
        )
    return sft, dpo, skipped


def soft_rows(
    instances: Sequence[Instance],
    questions: dict[str, Question],
    answers: dict[str, Answer],
    prompter: SurveyPrompter,
    *,
    answer_prefix: str = "",
) -> tuple[list[Row], Counter[str]]:
    """(soft-target rows, skip counts) for distillation.

    For every question with a kept instance, one row per culture that the answering model
    answered culture-aware (not only the cultures whose answer changed): a student then sees
    how the cultures differ on the question, not only where one culture departs from the
    unaware answer. The target is the model's whole aware distribution over the options, so
    the student learns the spread of answers rather than the argmax, which hard targets
    sharpen."""
    from culturesim.survey.distributions import answer_distribution

    skipped = Counter[str]()
    aware_by_question: dict[tuple[str, str], list[Answer]] = {}
    for answer in answers.values():
        if answer.prompt == "aware" and answer.culture:
            aware_by_question.setdefault((answer.question_id, answer.model), []).append(answer)
    chosen: dict[tuple[str, str], str] = {}  # (answer question id, model) -> question id
    for instance in instances:
        source = answers.get(instance.aware_answer_id)
        if source is None or instance.question_id not in questions:
            skipped["soft: instance without its answer or question"] += 1
            continue
        chosen[(source.question_id, source.model)] = instance.question_id
    rows = []
    for key, question_id in sorted(chosen.items(), key=lambda item: item[1]):
        question = questions[question_id]
        form = as_survey_question(question)
        for answer in sorted(aware_by_question.get(key, []), key=lambda a: a.culture):
            distribution = answer_distribution(answer, form)
            if distribution is None or distribution.sum() <= 0:
                skipped["soft: an answer without a distribution"] += 1
                continue
            distribution = distribution / distribution.sum()
            messages: Chat = [
                *_aware_prompt(prompter, answer.culture, form),
                {"role": "assistant", "content": answer_prefix},
            ]
            rows.append(
                Row(
                    "culturespa_soft",
                    answer.culture,
                    "culturespa_soft",
                    [answer.id, question.id],
                    messages,
                    target={
                        "question_id": question.id,
                        "codes": list(form.codes),
                        "distribution": [round(float(x), 6) for x in distribution],
                    },
                )
            )
    return rows, skipped


# --------------------------------------------------------------------------- cleaning, splitting


def remove_near_duplicates(
    rows: list[Row], embedder: Embedder | None, threshold: float
) -> tuple[list[Row], int]:
    """Exact duplicates (normalised text) first, then near-duplicates by cosine similarity.

    Only rows of one culture are compared (one question asked for two cultures is two
    examples), and never rows from the same record (the two sides of one dialogue share
    their content by design). Dialogue views are compared on their turns.
    """
    kept: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.culture, normalise_text(row.content_text))
        if key in seen:
            continue
        seen.add(key)
        kept.append(row)
    if embedder is None or len(kept) < 2:
        return kept, len(rows) - len(kept)
    vectors = embedder.encode([r.content_text for r in kept])
    chosen: list[int] = []
    for i in range(len(kept)):
        others = [
            j
            for j in chosen
            if kept[j].culture == kept[i].culture and kept[j].source_record != kept[i].source_record
        ]
        if others and float(np.max(vectors[others] @ vectors[i])) >= threshold:
            continue
        chosen.append(i)
    return [kept[i] for i in chosen], len(rows) - len(chosen)


def decontaminate(
    rows: list[Row],
    eval_questions: Sequence[str],
    embedder: Embedder | None,
    threshold: float,
) -> tuple[list[Row], int]:
    """Drop rows that contain an evaluation question (verbatim after normalising, or close)."""
    if not eval_questions:
        return rows, 0
    keys = [normalise_text(q) for q in eval_questions if len(q.strip()) > 15]
    kept = [r for r in rows if not any(k and k in normalise_text(r.text) for k in keys)]
    if embedder is not None and kept:
        eval_vectors = embedder.encode(list(eval_questions))
        survivors = []
        for row in kept:
            user = " ".join(
                m["content"] for m in (row.messages or row.prompt) if m["role"] == "user"
            )
            if embedder.max_similarity_to(user[:2000], eval_vectors) < threshold:
                survivors.append(row)
        kept = survivors
    return kept, len(rows) - len(kept)


def split_by_culture(rows: list[Row], fraction: float, seed: int) -> dict[str, list[Row]]:
    """Per culture, a `fraction` of rows (at least one where a culture has two or more) go to
    validation; which ones follows from a seeded shuffle of their ids."""
    splits: dict[str, list[Row]] = {"train": [], "validation": []}
    by_culture: dict[str, list[Row]] = {}
    for row in rows:
        by_culture.setdefault(row.culture, []).append(row)
    for culture, group in sorted(by_culture.items()):
        ordered = sorted(group, key=lambda r: r.id)
        random.Random(f"{seed}:{culture}").shuffle(ordered)
        n_val = round(len(ordered) * fraction) if fraction > 0 else 0
        if fraction > 0 and len(ordered) >= 2:
            n_val = max(1, n_val)
        splits["validation"] += ordered[:n_val]
        splits["train"] += ordered[n_val:]
    return splits


def to_record(row: Row) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": row.id,
        "culture": row.culture,
        "source": row.source,
        "lineage": list(row.record_ids),
    }
    if row.source == "dpo":
        record.update(prompt=row.prompt, chosen=row.chosen, rejected=row.rejected)
    else:
        record["messages"] = row.messages
    if row.target is not None:
        record["target"] = row.target
    return record


def write_set(name: str, splits: dict[str, list[Row]], out: Path) -> dict[str, int]:
    """Save one set with `datasets`: save_to_disk, plus JSONL and Parquet per split."""
    from datasets import Dataset, DatasetDict

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    # An empty split is left out of the `datasets` folder (it cannot be reloaded from disk);
    # its JSONL file is still written, empty.
    data = DatasetDict(
        {
            split: Dataset.from_list([to_record(r) for r in rows])
            for split, rows in splits.items()
            if rows
        }
    )
    data.save_to_disk(str(folder / "hf"))
    for split, rows in splits.items():
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(to_record(row), ensure_ascii=False) + "\n")
        if split in data:
            data[split].to_parquet(str(folder / f"{split}.parquet"))
    return {split: len(rows) for split, rows in splits.items()}

"""Culture topics and their seed questions.

A topic is data: a name, a description, the survey question-id ranges that belong to it, and
seed questions. The 13 WVS topics ship in `culturesim/data/topics.yaml` with seeds written for
this project, so the prober runs with no external file. Users extend or replace them with a
YAML file of the same shape, and can take seeds from a JSON list of `{id, question, options}`;
the WVS questions file splits into topics by the id ranges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from culturesim.paths import package_data
from culturesim.records import Question
from culturesim.survey.questionnaire import SurveyQuestion
from culturesim.textlists import comma_list

BUILTIN_TOPICS = package_data("data", "topics.yaml")
_ID = re.compile(r"^Q(\d+)([A-Z]?)$")


class TopicFileError(ValueError):
    """A topic or seed file is invalid; the message names the file and entry."""


class SeedQuestion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    question: str = Field(min_length=3)
    options: tuple[str, ...] = Field(min_length=2, max_length=11)
    id: str = ""


class Topic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    description: str = ""
    survey_ids: tuple[str, ...] = ()
    seeds: tuple[SeedQuestion, ...] = ()

    def covers(self, question_id: str) -> bool:
        """Whether a survey id such as 'Q57' or 'Q234A' falls in one of this topic's ranges."""
        key = _id_key(question_id)
        if key is None:
            return False
        for span in self.survey_ids:
            low, _, high = span.partition("-")
            low_key, high_key = _id_key(low), _id_key(high or low)
            if low_key is not None and high_key is not None and low_key <= key <= high_key:
                return True
        return False

    def seed_records(self) -> list[Question]:
        return [
            Question(
                topic=self.name, text=s.question, options=s.options, source="seed", source_id=s.id
            )
            for s in self.seeds
        ]


def topic_namer(topics: Sequence[Topic]) -> Callable[[SurveyQuestion], str]:
    """The name of the topic whose id ranges cover a survey question ('' for none): what a
    split stratifies by."""

    def name_of(question: SurveyQuestion) -> str:
        return next((t.name for t in topics if t.covers(question.id)), "")

    return name_of


def _id_key(question_id: str) -> tuple[int, str] | None:
    match = _ID.match(question_id.strip())
    return (int(match.group(1)), match.group(2)) if match else None


def load_topics(path: str | Path = BUILTIN_TOPICS, *, extend: bool = False) -> list[Topic]:
    """Topics from a YAML list; with `extend`, the user's topics are added to the built-in ones."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise TopicFileError(f"{path}: file not found") from error
    except yaml.YAMLError as error:
        raise TopicFileError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, list):
        raise TopicFileError(f"{path}: expected a list of topics")
    topics = []
    for index, entry in enumerate(data):
        try:
            topics.append(Topic.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise TopicFileError(f"{path}: topic {index}: {problems}") from error
    if extend and path != BUILTIN_TOPICS:
        builtin = load_topics()
        names = {t.id for t in topics}
        topics = [t for t in builtin if t.id not in names] + topics
    return topics


def select_topics(topics: list[Topic], wanted: str) -> list[Topic]:
    """'all', or comma-separated topic ids or names."""
    if wanted.strip() == "all":
        return topics
    picked = []
    for key in comma_list(wanted):
        match = [t for t in topics if key in (t.id, t.name)]
        if not match:
            raise TopicFileError(f"unknown topic {key!r}; known: {', '.join(t.id for t in topics)}")
        picked += match
    return picked


def seeds_from_file(path: str | Path, topics: Iterable[Topic]) -> dict[str, list[Question]]:
    """Seed questions from a JSON list of {id, question, options} (the WVS file works as-is).

    Items whose id falls in a topic's `survey_ids` go to that topic; an item may also name its
    topic with a "topic" field. Items with fewer than 2 options (open or demographic) are skipped.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise TopicFileError(f"{path}: cannot read a JSON list of questions ({error})") from error
    if not isinstance(items, list):
        raise TopicFileError(f"{path}: expected a JSON list of {{id, question, options}}")
    topic_list = list(topics)
    by_topic: dict[str, list[Question]] = {t.name: [] for t in topic_list}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise TopicFileError(f"{path}: item {index} is not an object")
        qid = str(item.get("id", item.get("Q_id", "")))
        text = item.get("question")
        options = item.get("options", item.get("option_lst"))
        if not isinstance(text, str) or not isinstance(options, list):
            raise TopicFileError(
                f"{path}: item {index} ({qid or 'no id'}) needs 'question' and 'options'"
            )
        if len(options) < 2:
            continue
        named = item.get("topic")
        for topic in topic_list:
            if named in (topic.id, topic.name) or (named is None and topic.covers(qid)):
                by_topic[topic.name].append(
                    Question(
                        topic=topic.name,
                        text=text,
                        options=tuple(str(o) for o in options),
                        source="seed",
                        source_id=qid,
                    )
                )
    return by_topic

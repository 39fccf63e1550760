"""The vocabulary every stage speaks: typed, frozen records with stable ids.

A record's id is a short hash of the fields that *identify* it: its content and its lineage
(which episode, which question, which seed). Ids are computed, never invented, so a stage can
know before doing any work which id its output will carry, and a resumed run skips exactly the
records already written. Fields that are *results* (generated text, scores) are not part of the
id where the record must be addressable before it exists (a Dialogue is known by its episode and
sample index, not by what was said).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_LENGTH = 16


def stable_hash(payload: Any, length: int = ID_LENGTH) -> str:
    """Hash a JSON-able payload independently of dict ordering and Python's hash seed."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def derive_seed(*parts: Any, digits: int = 8) -> int:
    """The one seed formula: a sampling seed derived from the run seed and a record's lineage
    (episode, turn, attempt, ...), so every call is reproducible and independent of the others.
    `digits` (hex digits of the hash) is 8 for model calls and 12 for local random draws."""
    return int(stable_hash(list(parts), digits), 16)


class Record(BaseModel):
    """Base of all records: frozen, JSON round-trippable, with an id derived from `id_fields`.

    Subclasses name the fields that identify them in `id_fields` and a short `id_prefix` that
    makes ids readable in logs (``dlg-3f2a…``). A record loaded with an id that does not match
    its content is rejected: that is how a hand-edited or corrupted line is caught.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id_prefix: ClassVar[str] = "rec"
    id_fields: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "record"

    id: str = ""
    digest: str = Field(
        default="",
        description="a hash of the whole content, written with the record and checked on "
        "reading, so an edit to what the id does not cover (a dialogue's turns) is caught",
    )

    def content_digest(self) -> str:
        """The hash of every field but `id` and `digest`."""
        return stable_hash(self.model_dump(mode="json", exclude={"id", "digest"}))

    def computed_id(self) -> str:
        """The id this record's identifying fields hash to."""
        dumped = self.model_dump(mode="json", include=set(self.id_fields))
        payload = {"kind": self.kind, **{name: dumped.get(name) for name in self.id_fields}}
        return f"{self.id_prefix}-{stable_hash(payload)}"

    @model_validator(mode="after")
    def _assign_or_check_id(self) -> Self:
        expected = self.computed_id()
        if not self.id:
            object.__setattr__(self, "id", expected)
        elif self.id != expected:
            raise ValueError(
                f"{type(self).__name__} id {self.id!r} does not match its content "
                f"(expected {expected!r}); the record was edited or corrupted"
            )
        if not self.digest:
            object.__setattr__(self, "digest", self.content_digest())
        elif self.digest != self.content_digest():
            raise ValueError(
                f"{type(self).__name__} {self.id}: its content does not match the digest written "
                "with it; the record was edited or corrupted after it was written"
            )
        return self

    def to_json(self) -> str:
        """One line of JSON, the form records take in a run directory, with the digest of the
        content as it is now (a copy made with `model_copy` may carry a stale one)."""
        return self.model_copy(update={"digest": self.content_digest()}).model_dump_json()

    @classmethod
    def from_json(cls, line: str) -> Self:
        return cls.model_validate_json(line)


# --------------------------------------------------------------------------- cultures, people


class Culture(Record):
    """A culture profile: who people are there, and where it sits on value dimensions.

    Hofstede's six dimensions (0-100) and the Inglehart–Welzel map's two axes (roughly -2.5 to
    2.5) are stored as numbers; turning them into words is a rule applied elsewhere, so that no
    country's description is typed by hand.
    """

    id_prefix: ClassVar[str] = "cul"
    id_fields: ClassVar[tuple[str, ...]] = ("code",)
    kind: ClassVar[str] = "culture"

    code: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3 code")
    name: str
    demonym: str
    article: str = Field(
        default="", description="'a' or 'an' before the demonym, when the vowel rule is wrong"
    )
    definite_article: bool = Field(
        default=False, description="the name takes 'the' in a sentence (the United States)"
    )
    languages: tuple[str, ...] = ()
    region: str = ""
    hofstede: dict[str, float] = Field(default_factory=dict)
    inglehart_welzel: dict[str, float] = Field(default_factory=dict)
    given_names: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    family_names: tuple[str, ...] = ()
    name_order: Literal["given_family", "family_given"] = "given_family"
    occupations: tuple[str, ...] = ()
    places: tuple[str, ...] = ()

    def full_name(self, given: str, family: str) -> str:
        """A person's name in the order the culture writes it."""
        return f"{family} {given}" if self.name_order == "family_given" else f"{given} {family}"

    @property
    def name_in_text(self) -> str:
        """The name as it reads mid-sentence ("the United States", "Japan")."""
        return f"the {self.name}" if self.definite_article else self.name

    @property
    def indefinite_article(self) -> str:
        """'a' or 'an' before the demonym ('an American', 'a Ukrainian')."""
        if self.article:
            return self.article
        return "an" if self.demonym[:1].lower() in "aeiou" else "a"


class Persona(Record):
    """One simulated person, sampled for a culture from a seed."""

    id_prefix: ClassVar[str] = "per"
    id_fields: ClassVar[tuple[str, ...]] = ("culture", "seed", "name", "age", "gender")
    kind: ClassVar[str] = "persona"

    culture: str
    seed: int
    name: str
    age: int = Field(ge=0, le=120)
    gender: str
    occupation: str
    background: str = ""
    big_five: dict[str, float] = Field(default_factory=dict)
    values: tuple[str, ...] = ()
    decision_style: str = ""


# --------------------------------------------------------------------------- scenarios


class Role(BaseModel):
    """A participant slot of a scenario, rendered: what this role wants and hides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    goal: str
    secret: str = ""
    culture: str = ""
    persona_id: str = ""


class Edge(BaseModel):
    """Who may address whom in a scene, and how they are related (a directed social-graph edge)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    target: str
    relationship: str = ""


class Scenario(Record):
    """A scenario template rendered for one culture (or a cross-cultural mix)."""

    id_prefix: ClassVar[str] = "scn"
    id_fields: ClassVar[tuple[str, ...]] = ("template_id", "culture", "variables", "setting")
    kind: ClassVar[str] = "scenario"

    template_id: str
    culture: str
    title: str
    situation: str = ""
    relationship: str = ""
    setting: str
    roles: tuple[Role, ...] = Field(min_length=2)
    variables: dict[str, Any] = Field(default_factory=dict)
    turn_limit: int = Field(default=10, ge=1)
    turn_policy: str = "round_robin"
    stop_phrases: tuple[str, ...] = ()
    edges: tuple[Edge, ...] = ()
    tags: tuple[str, ...] = ()

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"scenario {self.template_id!r} has no role {name!r}")


class Episode(Record):
    """A scenario with its cast assigned: the unit the role-play engine runs."""

    id_prefix: ClassVar[str] = "epi"
    id_fields: ClassVar[tuple[str, ...]] = ("scenario_id", "persona_ids", "seed")
    kind: ClassVar[str] = "episode"

    scenario_id: str
    persona_ids: tuple[str, ...] = Field(min_length=2)
    seed: int
    scenario: Scenario
    personas: tuple[Persona, ...] = Field(min_length=2)


Action = Literal["none", "non-verbal", "speak", "leave"]


class Turn(BaseModel):
    """One move in a dialogue; `malformed` marks a turn whose output could not be parsed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    speaker: str
    action: Action
    utterance: str = ""
    intent: str = ""
    cultural_expectation: str = ""
    malformed: bool = False
    raw: str = ""


class Dialogue(Record):
    """A simulated conversation; known by its episode and sample index before it is run."""

    id_prefix: ClassVar[str] = "dlg"
    id_fields: ClassVar[tuple[str, ...]] = ("episode_id", "sample_index", "model")
    kind: ClassVar[str] = "dialogue"

    episode_id: str
    sample_index: int = Field(ge=0)
    model: str
    turns: tuple[Turn, ...] = ()
    stop_reason: str = ""
    seed: int = 0


# --------------------------------------------------------------------------- probing


class Question(Record):
    """A multiple-choice question on a culture topic (a seed, a survey item, or generated)."""

    id_prefix: ClassVar[str] = "qst"
    id_fields: ClassVar[tuple[str, ...]] = ("topic", "text", "options")
    kind: ClassVar[str] = "question"

    topic: str
    text: str
    options: tuple[str, ...] = Field(min_length=2)
    source: str = "generated"
    source_id: str = ""
    parent_ids: tuple[str, ...] = ()


class Answer(Record):
    """A model's answer to a question, as an option distribution and/or parsed samples.

    `culture` is empty for the culture-unaware prompt.
    """

    id_prefix: ClassVar[str] = "ans"
    id_fields: ClassVar[tuple[str, ...]] = ("question_id", "culture", "prompt", "mode", "model")
    kind: ClassVar[str] = "answer"

    question_id: str
    culture: str = ""
    prompt: str = "aware"
    mode: Literal["logprob", "sample"] = "logprob"
    model: str
    distribution: tuple[float, ...] = ()
    samples: tuple[str, ...] = ()
    parsed: tuple[int | None, ...] = ()
    label_mass: float | None = Field(
        default=None, description="probability the option labels held before renormalising"
    )


class Instance(Record):
    """A (question, culture) pair where the culture changes the answer."""

    id_prefix: ClassVar[str] = "ins"
    id_fields: ClassVar[tuple[str, ...]] = ("question_id", "culture", "rule")
    kind: ClassVar[str] = "instance"

    question_id: str
    culture: str
    rule: str
    aware_answer_id: str
    unaware_answer_id: str
    aware_distribution: tuple[float, ...] = ()
    unaware_distribution: tuple[float, ...] = ()
    divergence: float = 0.0


# --------------------------------------------------------------------------- judging

Confidence = Literal["very confident", "confident", "not sure"]


class Label(BaseModel):
    """A judge's label on one rubric dimension, with its confidence and reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str
    value: str
    confidence: Confidence = "not sure"
    reason: str = ""


class Verdict(Record):
    """A judge's decision on one record (dialogue or instance)."""

    id_prefix: ClassVar[str] = "vrd"
    id_fields: ClassVar[tuple[str, ...]] = ("target_id", "rubric", "judge", "variant")
    kind: ClassVar[str] = "verdict"

    target_id: str
    rubric: str
    judge: str
    variant: str = "default"
    labels: tuple[Label, ...] = ()
    keep: bool | None = None
    parse_error: str = ""


class FilterDecision(Record):
    """The judge stage's keep/drop decision on one dialogue or instance, under one policy.

    Decisions are derived from verdicts; they are records so that the corpus reads what the
    judge decided from the run store, with lineage, rather than from a side file. A later judge
    run with another policy appends new decisions (`revision` counts the earlier ones for the
    same target), and the latest decision for a target is the one that holds.
    """

    id_prefix: ClassVar[str] = "dec"
    id_fields: ClassVar[tuple[str, ...]] = ("target_id", "judge", "policy", "status", "revision")
    kind: ClassVar[str] = "decision"

    target_id: str
    status: Literal["kept", "dropped", "unparseable"]
    judge: str
    policy: str
    reason: str = ""
    revision: int = 0


def latest_decisions(decisions: list[FilterDecision]) -> dict[str, FilterDecision]:
    """The decision that holds for each target: the last one written."""
    return {d.target_id: d for d in decisions}


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        Culture,
        Persona,
        Scenario,
        Episode,
        Dialogue,
        Question,
        Answer,
        Instance,
        Verdict,
        FilterDecision,
    )
}

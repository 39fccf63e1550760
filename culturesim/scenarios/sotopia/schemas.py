"""Sotopia's records as Sotopia writes them: every shape read into one canonical form.

Sotopia keeps `EnvironmentProfile`, `AgentProfile` and `EnvAgentComboStorage` records in Redis
or, in newer versions, as one JSON file per record in a local folder; its serialisation module
writes them as JSON Lines in another shape. The same record therefore reaches a user in several
spellings:

    database (Redis dumps, local storage)   JSONL export (`environmentprofiles_to_jsonl`, ...)
    pk                                       env_id / agent_id / combo_id (older: scenario_id)
    relationship: 3                          relationship: "3"
    agent_constraint: null                   agent_constraint: "none"
    occupation_constraint: null              occupation_constraint: "nan"
    moral_values: ["Care"]                   the same; Sotopia-pi dumps: ["['Care']"]
    model_id: ""                             model_id: "nan" (a pandas NaN written out)

The models below accept all of them and hold the canonical value (the database shape), so the
rest of the interop code sees one form. They stay strict where a value is really wrong: an age
given as the string "34" or a relationship of 7 is an error naming the field, never a guess.
A field Sotopia's models do not define (a newer version's, or a user's own) is kept, not
refused: it lands in `model_extra`, the import warns about it, carries it in the template's
front matter and gives it back on export.

Newer Sotopia versions add fields; those known here: `tag` on every profile, `mbti` and
`model_id` on agents, `game_metadata` on environments (social games), and a `codename` that may
be empty.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Kind = Literal["environment", "agent", "combo"]
Shape = Literal["export", "db"]
SHAPES: tuple[Shape, ...] = ("export", "db")

RELATIONSHIP_NAMES = (
    "stranger",
    "know_by_name",
    "acquaintance",
    "friend",
    "romantic_relationship",
    "family_member",
)
RELATIONSHIP_WORDS = (
    "strangers",
    "know each other by name",
    "acquaintances",
    "friends",
    "romantic partners",
    "family",
)
# Values a Sotopia file uses for "no value" in an optional text field: pandas writes a missing
# value as "nan", the JSONL export writes a missing agent constraint as "none".
_EMPTY_WORDS = frozenset({"", "nan", "none", "null"})


class SotopiaError(ValueError):
    """A Sotopia file or record cannot be used; the message names the file, record and field."""


def is_nan(value: Any) -> bool:
    """Whether a value is a NaN that a pandas round trip put where a value was missing."""
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() == "nan"


def parse_age_constraint(text: str) -> list[tuple[int, int]]:
    """Sotopia's "[(18, 70), (18, 70)]" as (min, max) pairs; ValueError when it is not that."""
    shape = f"{text!r} is not a list of (min, max) pairs like '[(18, 70), (18, 70)]'"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(shape) from None
    if not isinstance(value, list | tuple):
        raise ValueError(shape)
    ranges = []
    for pair in value:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(type(n) is int for n in pair)
            or not 0 <= pair[0] <= pair[1] <= 120
        ):
            raise ValueError(
                f"{pair!r} in {text!r} is not an age range (min, max), 0 <= min <= max <= 120"
            )
        ranges.append((pair[0], pair[1]))
    return ranges


def format_age_constraint(ranges: Any) -> str:
    """Age ranges in Sotopia's notation, the inverse of `parse_age_constraint`."""
    return "[" + ", ".join(f"({low}, {high})" for low, high in ranges) + "]"


def _literal_list(value: Any) -> Any:
    """A list written as Python or JSON text ("['Care', 'Fairness']") as the list; else as is."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
        if isinstance(parsed, list | tuple):
            return list(parsed)
    return value


def _string_list(value: Any) -> Any:
    """A list of strings as Sotopia tools write it: a real list, a stringified list, or a list
    whose items are stringified lists (Sotopia-pi's `["['Care']"]`), flattened; NaN is empty."""
    if is_nan(value):
        return []
    value = _literal_list(value)
    if not isinstance(value, list):
        return value
    flat: list[Any] = []
    for item in value:
        inner = _literal_list(item)
        if isinstance(inner, list):
            flat.extend(inner)
        elif not is_nan(item):
            flat.append(item)
    return flat


class SotopiaModel(BaseModel):
    """What Sotopia's three record types share: an id under several names, NaN as "missing"."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    id_names: ClassVar[tuple[str, ...]] = ("pk",)
    export_id: ClassVar[str] = "pk"
    folder_name: ClassVar[str] = ""

    pk: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_id(cls, data: Any) -> Any:
        """The record's id from whichever name its shape uses; two different ids are an error."""
        if not isinstance(data, dict):
            return data
        given = {name: data[name] for name in cls.id_names if name in data}
        ids = {value for value in given.values() if value not in (None, "") and not is_nan(value)}
        if len(ids) > 1:
            names = ", ".join(f"{name} {value!r}" for name, value in given.items())
            raise ValueError(f"the record has two different ids ({names}); keep one")
        data = {key: value for key, value in data.items() if key not in given}
        if ids:
            data["pk"] = ids.pop()
        elif given:
            data["pk"] = None
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _nan_is_missing(cls, value: Any, info: ValidationInfo) -> Any:
        """A NaN (or a null) in an optional field reads as the field's default: both are how a
        dump says "no value" for a field that Sotopia fills with a default."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or field.is_required():
            return value
        if is_nan(value) or value is None:
            return field.get_default(call_default_factory=True)
        return value

    @property
    def unknown_fields(self) -> dict[str, Any]:
        """Fields the record has that Sotopia's model does not define."""
        return dict(self.model_extra or {})


class EnvironmentProfile(SotopiaModel):
    """Sotopia's EnvironmentProfile, read from any of the shapes in the module docstring."""

    id_names: ClassVar[tuple[str, ...]] = ("pk", "env_id", "scenario_id")
    export_id: ClassVar[str] = "env_id"
    folder_name: ClassVar[str] = "EnvironmentProfile"

    pk: str | None = Field(
        default=None, validation_alias=AliasChoices("pk", "env_id", "scenario_id")
    )
    codename: str = ""
    source: str = ""
    scenario: str
    agent_goals: list[str] = Field(min_length=2)
    relationship: int = Field(default=0, ge=0, le=5)
    age_constraint: str | None = None
    occupation_constraint: str | None = None
    agent_constraint: list[list[str]] | None = None
    tag: str = ""
    game_metadata: dict[str, Any] | None = None

    @field_validator("agent_goals", mode="before")
    @classmethod
    def _goal_list(cls, value: Any) -> Any:
        return _literal_list(value)

    @field_validator("relationship", mode="before")
    @classmethod
    def _relationship_number(cls, value: Any) -> Any:
        """The JSONL export writes the RelationshipType as text: "3", or by Python 3.10 and
        older "RelationshipType.friend"; a name alone ("friend") is read as well."""
        if not isinstance(value, str):
            return value
        text = value.strip().removeprefix("RelationshipType.")
        if text.isdigit():
            return int(text)
        if text in RELATIONSHIP_NAMES:
            return RELATIONSHIP_NAMES.index(text)
        return value

    @field_validator("age_constraint", "occupation_constraint", mode="before")
    @classmethod
    def _empty_constraint(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _EMPTY_WORDS:
            return None
        return value

    @field_validator("agent_constraint", mode="before")
    @classmethod
    def _agent_constraint(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _EMPTY_WORDS:
            return None
        return _string_lists(value)

    @field_validator("age_constraint")
    @classmethod
    def _parseable_ages(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Reject at read time what import could not turn into persona age ranges, with a hint
        that never makes a record valid but wrong: extra goals beside fewer ranges are goals
        cut into pieces, and adding ranges would make a scene of fragments."""
        if value is None:
            return value
        ranges = parse_age_constraint(value)
        goals = info.data.get("agent_goals")
        if goals is None or len(ranges) == len(goals):
            return value
        if len(goals) > len(ranges):
            raise ValueError(
                f"has {len(ranges)} age range(s), one per agent, but agent_goals has "
                f"{len(goals)} entries: the goals look split (as if each agent's goal had been "
                "cut at its commas); join each agent's pieces back into one goal. Do not add "
                f"age ranges: that would make a {len(goals)}-agent scene whose goals are "
                "fragments"
            )
        raise ValueError(
            f"has {len(ranges)} age ranges but agent_goals has only {len(goals)} goals; each "
            "agent needs one goal and one range, so find which agent's goal is missing"
        )


def _string_lists(value: Any) -> Any:
    """A list of lists of strings, any level of which may be stringified."""
    value = _literal_list(value)
    if isinstance(value, list):
        return [_literal_list(item) for item in value]
    return value


class AgentProfile(SotopiaModel):
    """Sotopia's AgentProfile with its defaults, read from any of the shapes."""

    id_names: ClassVar[tuple[str, ...]] = ("pk", "agent_id")
    export_id: ClassVar[str] = "agent_id"
    folder_name: ClassVar[str] = "AgentProfile"

    pk: str | None = Field(default=None, validation_alias=AliasChoices("pk", "agent_id"))
    first_name: str
    last_name: str
    age: int = 0
    occupation: str = ""
    gender: str = ""
    gender_pronoun: str = ""
    public_info: str = ""
    big_five: str = ""
    moral_values: list[str] = Field(default_factory=list)
    schwartz_personal_values: list[str] = Field(default_factory=list)
    personality_and_values: str = ""
    decision_making_style: str = ""
    secret: str = ""
    model_id: str = ""
    mbti: str = ""
    tag: str = ""

    @field_validator("moral_values", "schwartz_personal_values", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        return _string_list(value)

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name.strip(), self.last_name.strip()) if part)


class EnvAgentCombo(SotopiaModel):
    """Sotopia's EnvAgentComboStorage: which agents play which environment, by their ids."""

    id_names: ClassVar[tuple[str, ...]] = ("pk", "combo_id")
    export_id: ClassVar[str] = "combo_id"
    folder_name: ClassVar[str] = "EnvAgentComboStorage"

    pk: str | None = Field(default=None, validation_alias=AliasChoices("pk", "combo_id"))
    env_id: str
    agent_ids: list[str] = Field(min_length=1)

    @field_validator("agent_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _string_list(value)


MODELS: dict[Kind, type[SotopiaModel]] = {
    "environment": EnvironmentProfile,
    "agent": AgentProfile,
    "combo": EnvAgentCombo,
}

# What Sotopia's JSONL writers put on every line, in their order; its loaders read each key, so
# an export in this shape writes them all.
EXPORT_FIELDS: dict[Kind, tuple[str, ...]] = {
    "environment": (
        "env_id",
        "codename",
        "source",
        "scenario",
        "agent_goals",
        "relationship",
        "age_constraint",
        "occupation_constraint",
        "agent_constraint",
    ),
    "agent": (
        "agent_id",
        "first_name",
        "last_name",
        "age",
        "occupation",
        "gender",
        "gender_pronoun",
        "public_info",
        "big_five",
        "moral_values",
        "schwartz_personal_values",
        "personality_and_values",
        "decision_making_style",
        "secret",
        "mbti",
        "model_id",
    ),
    "combo": ("combo_id", "env_id", "agent_ids"),
}


def shape_of(kind: Kind, raw: dict[str, Any]) -> Shape:
    """The shape a record was written in: the export's id name, or the database's `pk`."""
    model = MODELS[kind]
    return "export" if any(name in raw for name in model.id_names[1:]) else "db"


def in_shape(kind: Kind, record: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """A canonical (database-shaped) record written in `shape`.

    The export shape renames the id, writes the relationship as text and a missing agent
    constraint as "none", and fills every key Sotopia's loader reads with its default; the
    database shape is the canonical record itself.
    """
    if shape == "db":
        return dict(record)
    model = MODELS[kind]
    out: dict[str, Any] = {}
    for key in EXPORT_FIELDS[kind]:
        if key == model.export_id:
            out[key] = record.get("pk") or ""
        elif key in record:
            out[key] = record[key]
        else:
            field = model.model_fields[key]
            out[key] = None if field.is_required() else field.get_default(call_default_factory=True)
    if kind == "environment":
        out["relationship"] = str(out["relationship"])
        if out["agent_constraint"] is None:
            out["agent_constraint"] = "none"
    for key, value in record.items():  # newer fields and a user's own ride along
        if key != "pk" and key not in out:
            out[key] = value
    return out


def canonical(kind: Kind, raw: dict[str, Any]) -> dict[str, Any]:
    """A record as read, in the database shape: the fields it gives (and its own extra ones)."""
    return MODELS[kind].model_validate(raw).model_dump(exclude_unset=True)


def restore_spelling(
    kind: Kind, merged: dict[str, Any], original: dict[str, Any], shape: Shape
) -> dict[str, Any]:
    """`merged` (canonical) written in `shape`, keeping the original's spelling.

    When the original was read in the same shape, each of its fields whose meaning did not
    change is written exactly as the original wrote it ("nan", "3", a stringified list, its key
    order), so an unedited record comes back byte for byte; a changed field is written anew.
    """
    written = in_shape(kind, merged, shape)
    if shape_of(kind, original) != shape:
        return written
    model = MODELS[kind]
    before = canonical(kind, original)
    out: dict[str, Any] = {}
    for key, value in original.items():
        if key in model.id_names:
            if merged.get("pk") == before.get("pk"):
                out[key] = value
            elif shape == "export":
                out[key] = merged.get("pk") or ""
            elif merged.get("pk"):
                out[key] = merged["pk"]
        elif key in written:
            out[key] = value if before.get(key) == merged.get(key) else written[key]
    has_id = any(key in model.id_names for key in out)
    for key, value in written.items():
        if key not in out and not (has_id and key in model.id_names):
            out[key] = value
    return out


def record_label(raw: Any, where: str) -> str:
    """Where a record is and what it calls itself: line 3 (codename 'x', env_id 'y'); a file
    that holds one record gives no `where`, only the names."""
    if not isinstance(raw, dict):
        return where
    keys = ("codename", "first_name", "last_name", "pk", "env_id", "agent_id", "combo_id")
    names = [f"{key} {raw[key]!r}" for key in keys if isinstance(raw.get(key), str) and raw[key]]
    if not names:
        return where
    return f"{where} ({', '.join(names)})".strip()


def relationship_word(code: int) -> str:
    """A RelationshipType number as the word an imported template carries."""
    return RELATIONSHIP_WORDS[code]


# Checked in order, first hit wins: "strangers, business" is 0, "family friends" is 5.
_RELATIONSHIP_KEYWORDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("stranger",)),
    (1, ("by name",)),
    (5, ("family", "sibling", "parent", "child", "relative", "cousin", "in-law", "grand")),
    (4, ("romantic", "couple", "dating", "spouse", "married", "engaged", "lover")),
    (3, ("friend",)),
    (2, ("acquaint", "neighbo", "colleague", "cowork", "co-work", "classmate", "workplace")),
)


def relationship_code(word: str) -> int:
    """A template's relationship word as a RelationshipType number (0 when nothing matches)."""
    text = " ".join(word.lower().replace("_", " ").split())
    for code, (name, imported) in enumerate(
        zip(RELATIONSHIP_NAMES, RELATIONSHIP_WORDS, strict=True)
    ):
        if text in (name.replace("_", " "), imported):
            return code
    for code, keywords in _RELATIONSHIP_KEYWORDS:
        if any(keyword in text for keyword in keywords):
            return code
    return 0


# --------------------------------------------------------------------------- the kept records

ORIGINAL_MARK = "sotopia-original v1"
ORIGINAL_BLOCK = re.compile(r"\{#-?\s*" + re.escape(ORIGINAL_MARK) + r"[^\n]*\n(.*?)[-+]?#\}", re.S)


class ImportedRecords(BaseModel):
    """What an imported template's comment block holds: the id import gave, the records exactly
    as read (in the shape they were read in) and, for a pairing, the pairing record."""

    model_config = ConfigDict(extra="forbid")

    id: str
    environment: dict[str, Any]
    agents: list[dict[str, Any]] | None = None
    combo: dict[str, Any] | None = None

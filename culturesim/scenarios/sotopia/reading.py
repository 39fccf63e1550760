"""Reading Sotopia files and folders, record by record, so one bad record costs only itself.

Where Sotopia data comes from, and what is read:
    a JSON file            one record object, or a list of them
    a JSON Lines file      one record per line (Sotopia's JSONL export)
    concatenated JSON      objects one after another, pretty-printed or not (a Redis dump)
    a key-value dump       one object mapping each Redis key to its record
    a folder               every .json / .jsonl / .ndjson file in it, in name order; Sotopia's
                           local storage keeps one file per record under
                           `<data>/EnvironmentProfile/`, `<data>/AgentProfile/` and
                           `<data>/EnvAgentComboStorage/`, so given the data folder itself the
                           reader goes into the subfolder for the kind it reads

Each record is validated on its own (see `schemas`). By default an invalid record is skipped
and reported (`Skipped`: where, a short reason to count by, and the full message naming the file,
the record and the field); `strict=True` raises `SotopiaError` at the first problem instead. A
file that is not JSON at all is one problem for the whole file, as nothing in it can be trusted;
in a stream of objects, reading starts again at the next line that opens an object, so a broken
line loses only itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

from pydantic import ValidationError

from culturesim.scenarios.sotopia.schemas import (
    MODELS,
    RELATIONSHIP_NAMES,
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    Kind,
    SotopiaError,
    SotopiaModel,
    record_label,
)

M = TypeVar("M", bound=SotopiaModel)
SUFFIXES = (".json", ".jsonl", ".ndjson")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Located(Generic[M]):
    """A valid record, the object exactly as read (for the round trip), and where it was."""

    record: M
    raw: dict[str, Any]
    where: str


@dataclass(frozen=True)
class Skipped:
    """A record (or file) left out: where, a short reason to count by, the whole message."""

    where: str
    reason: str
    message: str


@dataclass
class ReadResult(Generic[M]):
    records: list[Located[M]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@overload
def read_sotopia(
    path: str | Path, kind: Literal["environment"], *, strict: bool = False
) -> ReadResult[EnvironmentProfile]: ...
@overload
def read_sotopia(
    path: str | Path, kind: Literal["agent"], *, strict: bool = False
) -> ReadResult[AgentProfile]: ...
@overload
def read_sotopia(
    path: str | Path, kind: Literal["combo"], *, strict: bool = False
) -> ReadResult[EnvAgentCombo]: ...
def read_sotopia(path: str | Path, kind: Kind, *, strict: bool = False) -> ReadResult[Any]:
    """Every record of `kind` in a file or folder, with what was skipped and why."""
    result: ReadResult[Any] = ReadResult()
    seen: dict[str, str] = {}
    for file in _files(Path(path), kind):
        objects, problems = raw_records(file)
        for problem in problems:
            _skip(result, problem, strict)
        for raw, where in _keyed_records(objects, kind):
            outcome = _validate(kind, raw, file, where)
            if isinstance(outcome, Skipped):
                _skip(result, outcome, strict)
                continue
            if outcome.record.pk:
                if outcome.record.pk in seen:
                    _skip(result, _duplicate(outcome, seen[outcome.record.pk]), strict)
                    continue
                seen[outcome.record.pk] = outcome.where
            result.records.append(outcome)
            result.warnings += _unknown_field_warnings(outcome)
    return result


@overload
def read_sotopia_file(
    path: str | Path, kind: Literal["environment"]
) -> list[EnvironmentProfile]: ...
@overload
def read_sotopia_file(path: str | Path, kind: Literal["agent"]) -> list[AgentProfile]: ...
@overload
def read_sotopia_file(path: str | Path, kind: Literal["combo"]) -> list[EnvAgentCombo]: ...
def read_sotopia_file(path: str | Path, kind: Kind) -> list[Any]:
    """Every record of a file or folder, refusing it at the first invalid record."""
    return [located.record for located in read_sotopia(path, kind, strict=True).records]


def _keyed_records(objects: list[tuple[Any, str]], kind: Kind) -> list[tuple[Any, str]]:
    """Records as read, with a key-value dump (`{"EnvironmentProfile:01H...": {...}, ...}`, as
    Redis dump tools write one) opened into its records: an object none of whose keys is a
    field of the record and all of whose values are objects."""
    fields = set(MODELS[kind].model_fields) | set(MODELS[kind].id_names)
    opened: list[tuple[Any, str]] = []
    for raw, where in objects:
        keyed = (
            isinstance(raw, dict)
            and raw
            and not fields & set(raw)
            and all(isinstance(value, dict) for value in raw.values())
        )
        if not keyed:
            opened.append((raw, where))
            continue
        prefix = f"{where}, " if where else ""
        opened += [(value, f"{prefix}key {key!r}") for key, value in raw.items()]
    return opened


def _skip(result: ReadResult[Any], skipped: Skipped, strict: bool) -> None:
    if strict:
        raise SotopiaError(skipped.message)
    result.skipped.append(skipped)


def _files(path: Path, kind: Kind) -> list[Path]:
    """The files to read: the file itself, or a folder's record files (see the docstring)."""
    if not path.exists():
        raise SotopiaError(f"{path}: no such file or folder")
    if not path.is_dir():
        return [path]
    own = path / MODELS[kind].folder_name
    folder = own if own.is_dir() else path
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise SotopiaError(
            f"{folder}: no Sotopia records here (no {', '.join(SUFFIXES)} files); give a "
            f"file, a folder of them, or Sotopia's local data folder (with "
            f"{MODELS[kind].folder_name}/ in it)"
        )
    return files


def raw_records(path: Path) -> tuple[list[tuple[Any, str]], list[Skipped]]:
    """(parsed object, where it is in the file) for each record, and what could not be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], [Skipped(str(path), "unreadable file", f"{path}: cannot read it ({error})")]
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            message = (
                f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); fix the "
                "syntax (a .json file holds one record object or a list of them, a .jsonl "
                "file one object per line)"
            )
            return [], [Skipped(str(path), "not valid JSON", message)]
        if isinstance(data, list):
            return [(item, f"item [{i}]") for i, item in enumerate(data)], []
    return _stream(path, text)


def _stream(path: Path, text: str) -> tuple[list[tuple[Any, str]], list[Skipped]]:
    """Objects one after another (JSON Lines, or pretty-printed ones concatenated)."""
    records: list[tuple[Any, str]] = []
    problems: list[Skipped] = []
    several = _count_openers(text) > 1
    position = _next_value(text, 0)
    while position < len(text):
        line = text.count("\n", 0, position) + 1
        where = f"line {line}" if several else ""  # a file of one record: its name says it
        try:
            value, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as error:
            message = (
                f"{path}: line {line}: not valid JSON ({error.msg} at {path.name}:"
                f"{error.lineno}:{error.colno}); each line of a JSONL file must be one complete "
                "record object"
            )
            problems.append(Skipped(f"{path}: line {line}", "not valid JSON", message))
            position = _next_value(text, _next_opener(text, position))
            continue
        records.append((value, where))
        position = _next_value(text, end)
    return records, problems


def _next_value(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n,":
        position += 1
    return position


def _next_opener(text: str, position: int) -> int:
    """The start of the next line after `position` that opens an object, or the end."""
    index = text.find("\n{", position)
    return len(text) if index < 0 else index + 1


def _count_openers(text: str) -> int:
    return text.lstrip().startswith("{") + text.count("\n{")


def _validate(kind: Kind, raw: Any, path: Path, where: str) -> Located[Any] | Skipped:
    model = MODELS[kind]
    named = record_label(raw, where)
    label = f"{path}: {named}" if where else f"{path} {named}".strip()
    if not isinstance(raw, dict):
        message = (
            f"{label}: expected a JSON object with {_name(model)} fields, got {type(raw).__name__}"
        )
        return Skipped(label, "not an object", message)
    try:
        record = model.model_validate(raw)
    except ValidationError as error:
        errors = error.errors()
        problems = "; ".join(_problem(model, e) for e in errors)
        return Skipped(label, _reason(errors[0]), f"{label}: {problems}")
    return Located(record, raw, label)


def _name(model: type[SotopiaModel]) -> str:
    return "EnvAgentComboStorage" if model is EnvAgentCombo else model.__name__


def _reason(error: Mapping[str, Any]) -> str:
    loc = error.get("loc", ())
    if error.get("type") == "missing":
        return f"missing field '{loc[0]}'" if loc else "missing field"
    return f"field '{loc[0]}'" if loc else "invalid record"


def _duplicate(located: Located[Any], first: str) -> Skipped:
    message = (
        f"{located.where}: the id {located.record.pk!r} was already read at {first}; a record "
        "id names one record, so this one is left out (give it its own id if it is another)"
    )
    return Skipped(located.where, "duplicate id", message)


def _unknown_field_warnings(located: Located[Any]) -> list[str]:
    return [
        f"{located.where}: field '{name}' is not in Sotopia's {_name(type(located.record))}; "
        "kept (in the template's front matter under `extra`, and given back on export)"
        for name in located.record.unknown_fields
    ]


def _problem(model: type[SotopiaModel], error: Mapping[str, Any]) -> str:
    """One pydantic error as "field 'x': what is wrong; what to do"."""
    loc = error.get("loc", ())
    where = ".".join(str(part) for part in loc) or "(record)"
    top = str(loc[0]) if loc else ""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        hint = f"add it; Sotopia's {_name(model)} needs it"
    elif top == "relationship":
        codes = ", ".join(f"{i} {name}" for i, name in enumerate(RELATIONSHIP_NAMES))
        hint = f"use Sotopia's RelationshipType number: {codes}"
    elif top == "agent_goals":
        hint = "give a list of goal strings, one whole goal per agent (at least two agents)"
    elif not top:
        return message
    elif top == "age_constraint":
        return f"field '{where}': {message}"
    else:
        annotation = model.model_fields[top].annotation if top in model.model_fields else None
        hint = f"fix the value (expected {_type_name(annotation)})"
    return f"field '{where}': {message}; {hint}"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")

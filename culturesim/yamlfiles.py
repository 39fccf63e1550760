"""Data files as validated models: one way to read a YAML file into a pydantic model and to
say what is wrong with it (the file, the line for YAML errors, the field for invalid values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validation_problems(error: ValidationError) -> str:
    """Every problem of a pydantic error as "field 'a.b': message (got VALUE)", joined by
    semicolons; the value is shown when it is a single one, so the user sees what was read."""

    def given(problem: Any) -> str:
        value = problem.get("input")
        if problem["type"] == "missing" or isinstance(value, dict | list | tuple):
            return ""
        return f" (got {value!r})"

    return "; ".join(
        f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}{given(e)}"
        for e in error.errors()
    )


def read_yaml_mapping(path: Path, error: type[Exception], fields: str) -> dict[str, Any]:
    """`path` parsed as a YAML mapping; failures raise `error` naming the file (and line)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"{path}: cannot read the file ({problem})") from problem
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise error(f"{path}{line}: not valid YAML ({problem})") from problem
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of fields ({fields})")
    return data


def load_yaml_model(path: Path, model: type[M], error: type[Exception], fields: str) -> M:
    """`path` parsed as YAML and validated as `model`; failures raise `error` naming the file
    and the line of the first field at fault (`file:line: field 'x': ...`)."""
    data = read_yaml_mapping(path, error, fields)
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        first = problem.errors()[0]["loc"]
        line = field_line(path.read_text(encoding="utf-8"), first)
        where = f"{path}:{line}" if line else str(path)
        raise error(f"{where}: {validation_problems(problem)}") from problem


def field_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line where the field at `loc` (or its nearest present parent) is written."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line

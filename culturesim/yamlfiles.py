"""Data files as validated models: one way to read a YAML file into a pydantic model and to
say what is wrong with it (the file, the line for YAML errors, the field for invalid values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validation_problems(error: ValidationError) -> str:
    """Every problem of a pydantic error as "field 'a.b': message", joined by semicolons."""
    return "; ".join(
        f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in error.errors()
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
    """`path` parsed as YAML and validated as `model`; failures raise `error` naming the file."""
    data = read_yaml_mapping(path, error, fields)
    try:
        return model.model_validate(data)
    except ValidationError as problem:
        raise error(f"{path}: {validation_problems(problem)}") from problem

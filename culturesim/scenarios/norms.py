"""Norm-grounded scenario writing: a model writes new scenarios from one-sentence norms.

CLCA wrote part of its scenarios from social and cultural norms. Here a model gets a norm and a
culture and writes a scenario in the same schema as culture adaptation (title, setting, one
entry per character with name, age, gender, occupation, goal and secret), through the same
render → generate → parse → correct → retry loop. A valid scenario is saved as a template whose
front matter records the norm it came from; every attempt is logged, kept or not.

A norms file is YAML (`{CODE: [norm, ...]}`) or JSON lines (`{"culture": CODE, "norm": ...}`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from culturesim.jsonish import first_json_object
from culturesim.models.base import Chat, GenerationParams, LanguageModel
from culturesim.models.corrections import Attempts, generate_until_valid
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Culture, derive_seed
from culturesim.scenarios.adapt import (
    JSON_PREFILL,
    AdaptedScenario,
    fixed_cast,
    literal_template,
)
from culturesim.scenarios.templates import SUFFIX, ScenarioError

_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class NormsFileError(ValueError):
    """A norms file is unreadable; the message names the file, the line or key, and the fix."""


def read_norms(path: Path) -> dict[str, list[str]]:
    """Norms per culture code, from YAML or JSON lines."""
    if not path.exists():
        raise NormsFileError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    norms: dict[str, list[str]] = {}
    if path.suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                norms.setdefault(str(row["culture"]), []).append(str(row["norm"]).strip())
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise NormsFileError(
                    f"{path}:{number}: write one object per line, "
                    f'{{"culture": "JPN", "norm": "..."}} ({error})'
                ) from error
        return norms
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise NormsFileError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise NormsFileError(f"{path}: write a mapping of culture codes to lists of norms")
    for code, items in data.items():
        if not isinstance(items, list) or not all(isinstance(n, str) for n in items):
            raise NormsFileError(f"{path}: key {code!r} must hold a list of one-sentence norms")
        norms[str(code)] = [n.strip() for n in items if n.strip()]
    return norms


def parse_generated(text: str, participants: int) -> AdaptedScenario:
    """A model's reply as a validated scenario, or ValueError naming the problem."""
    data = first_json_object(text, "participants")
    if data is None:
        raise ValueError("no JSON object with a 'participants' field was found")
    try:
        scenario = AdaptedScenario.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(
            f"field '{'.'.join(str(p) for p in first['loc'])}': {first['msg']}"
        ) from error
    roles = [p.role for p in scenario.participants]
    if len(roles) != participants:
        raise ValueError(f"write exactly {participants} participants, got {len(roles)}")
    bad = [r for r in roles if not _ROLE.match(r)]
    if bad:
        raise ValueError(f"roles must be short lower-case words, got {bad}")
    if len(set(roles)) != len(roles):
        raise ValueError(f"every role must be different, got {roles}")
    missing = [p.role for p in scenario.participants if not p.secret.strip()]
    if missing:
        raise ValueError(f"every participant needs a secret; missing for {missing}")
    return scenario


@dataclass(frozen=True)
class NormRequest:
    culture: Culture
    norm: str
    index: int


def generate_from_norms(
    model: LanguageModel,
    requests: Sequence[NormRequest],
    *,
    library: PromptLibrary | None = None,
    participants: int = 2,
    max_attempts: int = 3,
    max_new_tokens: int = 700,
    temperature: float = 0.8,
    seed: int = 0,
) -> list[Attempts[AdaptedScenario]]:
    """One outcome per request (kept or not), in order."""
    prompts = library or PromptLibrary()
    chats: list[Chat] = [
        [
            {
                "role": "user",
                "content": prompts.render(
                    "scenarios/from_norm.jinja2",
                    culture=r.culture,
                    norm=r.norm,
                    participants=participants,
                ),
            }
        ]
        for r in requests
    ]

    def generate(pending: Sequence[Chat], indices: Sequence[int], attempt: int) -> list[str]:
        asked: list[Chat] = [[*c, {"role": "assistant", "content": JSON_PREFILL}] for c in pending]
        params = [
            GenerationParams(
                max_new_tokens,
                temperature,
                0.95,
                seed=derive_seed(seed, requests[i].culture.code, requests[i].index, attempt),
            )
            for i in indices
        ]
        return [JSON_PREFILL + r.text for r in model.generate(asked, params)]

    return generate_until_valid(
        chats,
        generate,
        lambda i, text: parse_generated(text, participants),
        lambda i, problem: prompts.render(
            "scenarios/from_norm_correction.jinja2", problem=problem, participants=participants
        ),
        max_attempts=max_attempts,
    )


def generated_template_text(
    template_id: str, culture: Culture, norm: str, scenario: AdaptedScenario
) -> str:
    """A template file for a generated scenario: fixed cast, literal text, the norm on record."""
    front = {
        "id": template_id,
        "title": scenario.title,
        "situation": "norm-grounded",
        "description": f"Written by a model for {culture.name} from a norm.",
        "norm": norm,
        "participants": fixed_cast(scenario.participants),
        "turns": {"limit": 10, "policy": "round_robin"},
        "cultures": [culture.code],
        "tags": ["generated", "norm-grounded"],
    }

    return literal_template(front, scenario)


def save_generated(
    folder: Path, culture: Culture, norm: str, scenario: AdaptedScenario, index: int
) -> Path:
    """Write the template and check that it loads; the id is `norm_<code>_<n>`."""
    from culturesim.scenarios.templates import load_template_file

    folder.mkdir(parents=True, exist_ok=True)
    template_id = f"norm_{culture.code.lower()}_{index:03d}"
    path = folder / f"{template_id}{SUFFIX}"
    path.write_text(generated_template_text(template_id, culture, norm, scenario), "utf-8")
    try:
        load_template_file(path)
    except ScenarioError:
        path.unlink()
        raise
    return path


def generate_scenarios(
    model: LanguageModel,
    culture: Culture,
    norms: Sequence[str],
    count: int,
    out: Path,
    *,
    library: PromptLibrary | None = None,
    participants: int = 2,
    max_attempts: int = 3,
    max_new_tokens: int = 700,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Write `count` scenarios for `culture`, cycling through its norms, and save what
    validates as templates in `out`. Every request's outcome, kept or not, is appended to
    `out/generation_log.jsonl` through the run store (fsynced, one line each) and returned."""
    from culturesim.store import RunStore

    requests = [NormRequest(culture, norms[i % len(norms)], i) for i in range(count)]
    outcomes = generate_from_norms(
        model,
        requests,
        library=library,
        participants=participants,
        max_attempts=max_attempts,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    rows: list[dict[str, object]] = []
    for request, outcome in zip(requests, outcomes, strict=True):
        path = None
        if outcome.result is not None:
            path = save_generated(out, culture, request.norm, outcome.result, request.index)
        rows.append(
            {
                "culture": culture.code,
                "norm": request.norm,
                "index": request.index,
                "ok": path is not None,
                "file": str(path or ""),
                "attempts": len(outcome.replies),
                "problems": outcome.problems,
                "replies": outcome.replies,
            }
        )
    RunStore(out).append_json("generation_log", rows)
    return rows

"""CLCA's culture adaptation: the model rewrites a generic scenario for a target culture.

The scenario is rendered once with a sampled cast and shown to the model as JSON (title,
setting, one entry per role with name, age, gender, occupation, goal and secret). The model
returns the same schema for the target culture. The reply is parsed tolerantly (extra text,
Python quoting), then validated: the same roles in the same order, every field filled, a
plausible age. An invalid reply is answered with a correction naming the problem and retried
(`max_attempts` in all); what still fails is reported with its last problem, never dropped
silently. An adapted scenario can be saved as a new template file that renders without a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from culturesim.jsonish import first_json_object
from culturesim.models.base import Chat, GenerationParams, LanguageModel
from culturesim.models.corrections import generate_until_valid
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Culture, Persona, Scenario, derive_seed
from culturesim.scenarios.personas import PersonaSampler
from culturesim.scenarios.templates import SUFFIX, ScenarioTemplate

JSON_PREFILL = '{"title": "'


class AdaptedParticipant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    role: str
    name: str = Field(min_length=2)
    age: int = Field(ge=12, le=100)
    gender: str = Field(min_length=1)
    occupation: str = Field(min_length=2)
    goal: str = Field(min_length=10)
    secret: str = ""


class AdaptedScenario(BaseModel):
    """The schema the model returns, and what a saved adapted template holds."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    title: str = Field(min_length=3)
    setting: str = Field(min_length=20)
    participants: tuple[AdaptedParticipant, ...]


@dataclass
class Adaptation:
    """One adaptation's outcome: the scenario when it succeeded, and every attempt's problem."""

    template_id: str
    culture: str
    result: AdaptedScenario | None = None
    problems: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None


def scenario_as_json(scenario: Scenario, cast: Sequence[Persona]) -> str:
    """The source scenario in the schema the model must return."""
    data = {
        "title": scenario.title,
        "setting": scenario.setting,
        "participants": [
            {
                "role": role.name,
                "name": person.name,
                "age": person.age,
                "gender": person.gender,
                "occupation": person.occupation,
                "goal": role.goal,
                "secret": role.secret,
            }
            for role, person in zip(scenario.roles, cast, strict=True)
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=1)


def parse_adapted(text: str, roles: Sequence[str]) -> AdaptedScenario:
    """The model's reply as a validated AdaptedScenario, or ValueError naming the problem."""
    data = first_json_object(text, "participants")
    if data is None:
        raise ValueError("no JSON object with a 'participants' field was found")
    try:
        adapted = AdaptedScenario.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"field '{where}': {first['msg']}") from error
    got = [p.role for p in adapted.participants]
    if got != list(roles):
        raise ValueError(f"the roles must be {list(roles)} in that order, got {got}")
    return adapted


class CultureAdapter:
    """Adapts templates to cultures with a model, batching all pending requests per attempt."""

    def __init__(
        self,
        model: LanguageModel,
        *,
        library: PromptLibrary | None = None,
        sampler: PersonaSampler | None = None,
        max_attempts: int = 3,
        max_new_tokens: int = 700,
        temperature: float = 0.7,
        top_p: float = 0.9,
        prefill: str = JSON_PREFILL,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.library = library or PromptLibrary()
        self.sampler = sampler or PersonaSampler(self.library)
        self.max_attempts = max_attempts
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.prefill = prefill
        self.seed = seed

    def adapt(
        self,
        requests: Sequence[tuple[ScenarioTemplate, Scenario, Sequence[Persona], Culture]],
    ) -> list[Adaptation]:
        """Adapt each (template, rendered source scenario, its cast, target culture)."""
        outcomes = [Adaptation(t.id, c.code) for t, _, _, c in requests]
        chats: list[Chat] = []
        for template, scenario, cast, culture in requests:
            user = self.library.render(
                "scenarios/adapt.jinja2",
                scenario_json=scenario_as_json(scenario, cast),
                culture=culture,
                roles=template.roles,
            )
            chats.append([{"role": "user", "content": user}])

        def generate(pending: Sequence[Chat], indices: Sequence[int], attempt: int) -> list[str]:
            prefill: Chat = [{"role": "assistant", "content": self.prefill}] if self.prefill else []
            prompts: list[Chat] = [[*chat, *prefill] for chat in pending]
            params = [
                GenerationParams(
                    self.max_new_tokens,
                    self.temperature,
                    self.top_p,
                    seed=derive_seed(self.seed, requests[i][0].id, requests[i][3].code, attempt),
                )
                for i in indices
            ]
            return [self.prefill + r.text for r in self.model.generate(prompts, params)]

        def correction(i: int, problem: str) -> str:
            return self.library.render(
                "scenarios/adapt_correction.jinja2", problem=problem, roles=requests[i][0].roles
            )

        attempts = generate_until_valid(
            chats,
            generate,
            lambda i, text: parse_adapted(text, requests[i][0].roles),
            correction,
            max_attempts=self.max_attempts,
        )
        for outcome, tried in zip(outcomes, attempts, strict=True):
            outcome.result, outcome.problems, outcome.replies = (
                tried.result,
                tried.problems,
                tried.replies,
            )
        return outcomes


def fixed_cast(participants: Sequence[AdaptedParticipant]) -> list[dict[str, object]]:
    """Front-matter participants whose personas are the model's characters, exactly."""
    return [
        {
            "role": p.role,
            "persona": {
                "name": p.name,
                "age": [p.age, p.age],
                "gender": p.gender,
                "occupation": p.occupation,
            },
        }
        for p in participants
    ]


def literal_template(front: Mapping[str, object], scenario: AdaptedScenario) -> str:
    """A template file whose sections keep a model's text literal (no Jinja inside runs)."""

    def literal(text: str) -> str:
        return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"

    body = ["## setting", literal(scenario.setting)]
    for p in scenario.participants:
        body += [f"## goal {p.role}", literal(p.goal)]
        if p.secret:
            body += [f"## secret {p.role}", literal(p.secret)]
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=100)
    return f"---\n{header}---\n" + "\n".join(body) + "\n"


def adapted_template_text(
    source: ScenarioTemplate, culture: Culture, adapted: AdaptedScenario
) -> str:
    """A template file for the adapted scenario: fixed cast, literal text, the source's rules."""
    front = {
        "id": f"{source.id}_{culture.code.lower()}",
        "title": adapted.title,
        "situation": source.situation,
        "relationship": source.relationship,
        "description": f"{source.id} adapted to {culture.name} by a model.",
        "participants": fixed_cast(adapted.participants),
        "turns": source.turns.model_dump(mode="json"),
        "cultures": [culture.code],
        "tags": [*source.tags, "adapted"],
    }
    if source.graph is not None:
        front["graph"] = source.graph.model_dump(mode="json")

    return literal_template(front, adapted)


def save_adapted(
    source: ScenarioTemplate, culture: Culture, adapted: AdaptedScenario, folder: Path
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source.id}_{culture.code.lower()}{SUFFIX}"
    path.write_text(adapted_template_text(source, culture, adapted), encoding="utf-8")
    return path


def adapt_scenarios(
    model: LanguageModel,
    requests: Sequence[tuple[ScenarioTemplate, Scenario, Sequence[Persona], Culture]],
    out: Path,
    *,
    library: PromptLibrary | None = None,
    max_attempts: int = 3,
    max_new_tokens: int = 700,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Adapt each (template, its rendered scenario and cast, target culture) and save what
    validates as a template in `out`. Every request's outcome, kept or not, is appended to
    `out/adaptation_log.jsonl` through the run store (fsynced, one line each) and returned."""
    from culturesim.store import RunStore

    adapter = CultureAdapter(
        model,
        library=library,
        max_attempts=max_attempts,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    outcomes = adapter.adapt(list(requests))
    rows: list[dict[str, object]] = []
    for (template, _, _, target), outcome in zip(requests, outcomes, strict=True):
        path = save_adapted(template, target, outcome.result, out) if outcome.result else None
        rows.append(
            {
                "template_id": template.id,
                "culture": target.code,
                "ok": outcome.ok,
                "file": str(path or ""),
                "problems": outcome.problems,
                "replies": outcome.replies,
            }
        )
    RunStore(out).append_json("adaptation_log", rows)
    return rows

"""Scenario templates: one file per scenario, YAML front matter plus a Jinja2 body.

A template file (`<anything>.scenario.jinja2`) looks like this:

    ---
    id: borrow_money
    title: Asking a relative for a loan
    situation: request            # the kind of social situation
    relationship: family
    participants:
      - role: borrower
        persona: {age: [25, 45]}
      - role: lender
        persona: {age: [45, 70]}
        goal: "Help {{ cast.borrower.name }} only if the plan is sound."   # inline goal
    variables:
      amount: {type: int, default: 2000, min: 100, max: 50000}
    turns: {limit: 10, policy: round_robin, stop_phrases: []}
    cultures: all                 # or a list of codes
    tags: [family, money]
    ---
    ## setting
    {{ cast.borrower.name }} visits {{ cast.lender.name }} at {{ place }} ...
    ## goal borrower
    Borrow {{ amount }} ...
    ## secret borrower
    ...

The body renders once, in a sandbox with undefined names as errors, and is then split at the
`## setting`, `## goal <role>` and `## secret <role>` lines, so macros and includes from the
template folders work across sections. In scope: every variable by name (and all of them as
`vars`), `culture` (the scene's culture, with `cues`, its value profile in words), `cultures`
and `cast` (per role: the culture and the persona), `roles`, and `place`.

Folders are searched in order, the built-in library first; a later folder's template with the
same id replaces an earlier one, so a user overrides a built-in scenario by reusing its id.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from culturesim.paths import package_data
from culturesim.prompt_library import _template_location
from culturesim.records import Culture, Persona, Role, Scenario, derive_seed
from culturesim.scenarios.cues import culture_cues
from culturesim.scenarios.graphs import GraphError, GraphSpec, build_graph, graph_edges
from culturesim.scenarios.personas import PersonaSpec
from culturesim.textlists import comma_list

SUFFIX = ".scenario.jinja2"
TURN_POLICIES = ("round_robin", "random", "graph", "model")
_SECTION = re.compile(r"^##[ \t]+(setting|goal|secret)(?:[ \t]+([A-Za-z_][\w-]*))?[ \t]*$", re.M)


class ScenarioError(ValueError):
    """A scenario template is invalid or cannot render; the message names the file and line."""


class VariableSpec(BaseModel):
    """A template variable: its type, allowed values and default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["str", "int", "float", "bool", "choice"] = "str"
    default: Any = None
    values: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    sample: bool = Field(
        default=False, description="choice only: draw a value per episode instead of the default"
    )
    description: str = ""

    def check(self, name: str, value: Any) -> Any:
        """The value converted to the declared type, or a ValueError naming the variable."""
        try:
            if self.type == "choice":
                if value not in self.values:
                    raise ValueError(f"must be one of {list(self.values)}")
                return value
            if self.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError("must be true or false")
                return value
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError("must be an integer")
                converted: Any = int(value)
            elif self.type == "float":
                converted = float(value)
            else:
                return str(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"variable {name!r} = {value!r}: {error}") from error
        if self.min is not None and converted < self.min:
            raise ValueError(f"variable {name!r} = {converted} is below its min {self.min}")
        if self.max is not None and converted > self.max:
            raise ValueError(f"variable {name!r} = {converted} is above its max {self.max}")
        return converted


class ParticipantSpec(BaseModel):
    """A role in the scenario: who may play it, and (optionally inline) its goal and secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(pattern=r"^[A-Za-z_][\w-]*$")
    description: str = ""
    goal: str | None = None
    secret: str | None = None
    persona: PersonaSpec = PersonaSpec()


class TurnSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(default=10, ge=1, le=200)
    policy: Literal["round_robin", "random", "graph", "model"] = "round_robin"
    stop_phrases: tuple[str, ...] = ()


class ScenarioTemplate(BaseModel):
    """A parsed template file: the front matter's fields, the body and where it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    title: str
    situation: str = ""
    relationship: str = ""
    description: str = ""
    norm: str = Field(
        default="", description="the social norm a generated scenario was written from"
    )
    participants: tuple[ParticipantSpec, ...] = Field(min_length=2)
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    turns: TurnSpec = TurnSpec()
    cultures: Literal["all"] | tuple[str, ...] = "all"
    tags: tuple[str, ...] = ()
    graph: GraphSpec | None = None
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="fields of another tool's record (an imported Sotopia profile's own) that "
        "culturesim has no place for; kept so they are seen and given back on export",
    )
    path: str = ""
    body: str = ""
    body_offset: int = 0

    @field_validator("participants")
    @classmethod
    def _unique_roles(cls, value: tuple[ParticipantSpec, ...]) -> tuple[ParticipantSpec, ...]:
        names = [p.role for p in value]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique, got {names}")
        return value

    @property
    def roles(self) -> list[str]:
        return [p.role for p in self.participants]

    def suits(self, culture_code: str) -> bool:
        return self.cultures == "all" or culture_code in self.cultures


def split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str, int]:
    """(front matter, body, number of lines before the body) of a template file."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ScenarioError(f"{path}:1: a scenario file starts with '---' and YAML front matter")
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            break
    else:
        raise ScenarioError(f"{path}: the front matter is not closed by a '---' line")
    try:
        data = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(f"{path}:{line}: front matter is not valid YAML: {problem}") from error
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:2: the front matter must be a mapping (id, title, ...)")
    return data, "".join(lines[end + 1 :]), end + 1


def _front_matter_line(text: str, field: str) -> int:
    """The 1-based line of a top-level front-matter field, for error messages (1 if not found)."""
    pattern = re.compile(rf"^\s*-?\s*{re.escape(field)}\s*:", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def load_template_file(path: Path) -> ScenarioTemplate:
    """Parse and check one template file; every problem names the file, line and field."""
    text = path.read_text(encoding="utf-8")
    data, body, offset = split_front_matter(text, path)
    try:
        template = ScenarioTemplate.model_validate(
            {**data, "path": str(path), "body": body, "body_offset": offset}
        )
    except ValidationError as error:
        problems = []
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"])
            top = str(e["loc"][0]) if e["loc"] else ""
            problems.append(f"{path}:{_front_matter_line(text, top)}: field '{where}': {e['msg']}")
        raise ScenarioError("; ".join(problems)) from error
    _check_sections(template, text)
    for name, spec in template.variables.items():
        if spec.type == "choice" and not spec.values:
            raise ScenarioError(f"{path}: variable {name!r} is a choice with no values")
        if spec.default is None:
            raise ScenarioError(f"{path}: variable {name!r} needs a default")
        try:
            spec.check(name, spec.default)
        except ValueError as error:
            raise ScenarioError(f"{path}: default of {error}") from error
    if template.graph is not None:
        try:
            build_graph(template.graph, template.roles)
        except GraphError as error:
            raise ScenarioError(f"{path}:{_front_matter_line(text, 'graph')}: {error}") from error
    if template.turns.policy == "graph" and len(template.roles) > 2 and template.graph is None:
        raise ScenarioError(f"{path}: turn policy 'graph' needs a graph declaration")
    return template


def _check_sections(template: ScenarioTemplate, text: str) -> None:
    found = _sections_in(template.body)
    path = template.path
    if "setting" not in found:
        raise ScenarioError(f"{path}: the body has no '## setting' section")
    for key in found:
        kind, _, role = key.partition(" ")
        if kind != "setting" and role not in template.roles:
            line = (
                template.body_offset
                + 1
                + template.body.count("\n", 0, template.body.find(f"## {kind} {role}"))
            )
            raise ScenarioError(
                f"{path}:{line}: section '## {kind} {role}' names no role "
                f"(roles: {', '.join(template.roles)})"
            )
    for participant in template.participants:
        if participant.goal is None and f"goal {participant.role}" not in found:
            raise ScenarioError(
                f"{path}: role {participant.role!r} has no goal: add a '## goal "
                f"{participant.role}' section or a 'goal:' in its participant entry"
            )


def _sections_in(body: str) -> set[str]:
    return {
        "setting" if kind == "setting" else f"{kind} {role}"
        for kind, role in _SECTION.findall(body)
    }


def split_sections(rendered: str) -> dict[str, str]:
    """Rendered body text by section key ('setting', 'goal <role>', 'secret <role>')."""
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(rendered))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(rendered)
        kind, role = match.group(1), match.group(2)
        key = "setting" if kind == "setting" else f"{kind} {role}"
        sections[key] = " ".join(rendered[match.end() : end].split())
    return sections


class _TemplateBodies(BaseLoader):
    """Serves template bodies by 'scenario:<id>', padded so Jinja's line numbers match the file."""

    def __init__(self, templates: Mapping[str, ScenarioTemplate]) -> None:
        self.templates = templates

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        if not template.startswith("scenario:"):
            raise TemplateNotFound(template)
        spec = self.templates.get(template.removeprefix("scenario:"))
        if spec is None:
            raise TemplateNotFound(template)
        return "\n" * spec.body_offset + spec.body, spec.path, lambda: True


def builtin_scenario_dir() -> Path:
    return package_data("data", "scenarios")


class ScenarioLibrary:
    """All templates from the built-in library and the user's folders, by id."""

    def __init__(
        self,
        user_dirs: Iterable[str | Path] = (),
        *,
        builtin: bool = True,
        templates: Mapping[str, ScenarioTemplate] | None = None,
    ) -> None:
        """`templates`, when given, are used as the library's templates instead of reading the
        folders again (a caller that has already loaded every file, such as `scenarios check`,
        saves parsing each one once per use); the folders still serve includes and imports."""
        folders = ([builtin_scenario_dir()] if builtin else []) + [Path(d) for d in user_dirs]
        self.folders = folders
        self.templates: dict[str, ScenarioTemplate] = {}
        for folder in folders:
            if not folder.is_dir():
                raise ScenarioError(f"{folder}: scenario folder not found")
            if templates is not None:
                continue
            for path in sorted(folder.rglob(f"*{SUFFIX}")):
                template = load_template_file(path)
                self.templates[template.id] = template
        if templates is not None:
            self.templates.update(templates)
        search = [str(f) for f in reversed(folders)]  # user folders first for includes
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader([_TemplateBodies(self.templates), FileSystemLoader(search)]),
            undefined=StrictUndefined,
            autoescape=False,
        )

    def get(self, template_id: str) -> ScenarioTemplate:
        try:
            return self.templates[template_id]
        except KeyError:
            raise ScenarioError(
                f"unknown scenario {template_id!r} in {', '.join(str(f) for f in self.folders)}; "
                "for a template in your own folder add --scenario-dir FOLDER (see "
                "`culturesim scenarios list`)"
            ) from None

    def select(self, ids: str | Sequence[str]) -> list[ScenarioTemplate]:
        """'all', or a comma-separated list (or a list) of ids, `tag:NAME` and `situation:NAME`
        selectors; the union, in library order. A selector that matches nothing is an error,
        so a typo never silently shrinks a run."""
        if isinstance(ids, str):
            ids = comma_list(ids)
        if not ids:
            raise ScenarioError(
                "no scenarios selected: give ids, tag:NAME, situation:NAME or 'all' "
                "(see `culturesim scenarios list`)"
            )
        chosen: dict[str, ScenarioTemplate] = {}
        for item in ids:
            kind, sep, value = item.partition(":")
            if item == "all":
                matched = [self.templates[k] for k in sorted(self.templates)]
            elif sep and kind in ("tag", "situation"):
                matched = self._matching(kind, value.strip().lower())
            else:
                matched = [self.get(item)]
            chosen.update((t.id, t) for t in matched)
        return list(chosen.values())

    def _matching(self, kind: str, wanted: str) -> list[ScenarioTemplate]:
        def fits(t: ScenarioTemplate) -> bool:
            if kind == "tag":
                return wanted in (x.lower() for x in t.tags)
            return t.situation.lower() == wanted

        matched = [self.templates[k] for k in sorted(self.templates) if fits(self.templates[k])]
        if not matched:
            values = (
                {x for t in self.templates.values() for x in t.tags}
                if kind == "tag"
                else {t.situation for t in self.templates.values() if t.situation}
            )
            raise ScenarioError(
                f"{kind}:{wanted} matches no scenario; known {kind}s: {', '.join(sorted(values))}"
            )
        return matched

    def render(
        self,
        template: ScenarioTemplate | str,
        cultures: Culture | Sequence[Culture],
        cast: Sequence[Persona],
        variables: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
    ) -> Scenario:
        """The template rendered for a cast; `cultures` is one culture or one per role."""
        spec = self.get(template) if isinstance(template, str) else template
        roles = spec.roles
        per_role = [cultures] * len(roles) if isinstance(cultures, Culture) else list(cultures)
        if len(per_role) != len(roles) or len(cast) != len(roles):
            raise ScenarioError(
                f"scenario {spec.id!r} has {len(roles)} roles ({', '.join(roles)}); got "
                f"{len(per_role)} cultures and {len(cast)} personas"
            )
        values = self.resolve_variables(spec, variables or {}, seed)
        host = per_role[0]
        rng = random.Random(derive_seed(spec.id, host.code, seed, "place", digits=12))
        place = str(values.get("place") or (rng.choice(host.places) if host.places else host.name))
        context = {
            **values,
            "vars": values,
            "culture": _culture_view(host),
            "cultures": {r: _culture_view(c) for r, c in zip(roles, per_role, strict=True)},
            "cast": {r: p.model_dump() for r, p in zip(roles, cast, strict=True)},
            "roles": roles,
            "place": place,
        }
        sections = split_sections(self._render(spec, f"scenario:{spec.id}", context))
        built_roles = []
        for participant, culture, persona in zip(spec.participants, per_role, cast, strict=True):
            goal = sections.get(f"goal {participant.role}") or self._render_inline(
                spec, participant.goal or "", context, f"participants.{participant.role}.goal"
            )
            secret = sections.get(f"secret {participant.role}") or self._render_inline(
                spec, participant.secret or "", context, f"participants.{participant.role}.secret"
            )
            built_roles.append(
                Role(
                    name=participant.role,
                    goal=goal,
                    secret=secret,
                    culture=culture.code,
                    persona_id=persona.id,
                )
            )
        codes = [c.code for c in per_role]
        edges = graph_edges(build_graph(spec.graph or GraphSpec(), roles))
        return Scenario(
            template_id=spec.id,
            culture=codes[0] if len(set(codes)) == 1 else "+".join(codes),
            title=spec.title,
            situation=spec.situation,
            relationship=spec.relationship,
            setting=sections.get("setting", ""),
            roles=tuple(built_roles),
            variables=values,
            turn_limit=spec.turns.limit,
            turn_policy=spec.turns.policy,
            stop_phrases=spec.turns.stop_phrases,
            edges=edges,
            tags=spec.tags,
        )

    @staticmethod
    def resolve_variables(
        spec: ScenarioTemplate, given: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        unknown = sorted(set(given) - set(spec.variables))
        if unknown:
            raise ScenarioError(
                f"{spec.path}: scenario {spec.id!r} has no variable(s) {', '.join(unknown)}; "
                f"it declares: {', '.join(sorted(spec.variables)) or 'none'}"
            )
        values = {}
        rng = random.Random(derive_seed(spec.id, seed, "variables", digits=12))
        for name, variable in spec.variables.items():
            if name in given:
                raw = given[name]
            elif variable.sample and variable.values:
                raw = rng.choice(list(variable.values))
            else:
                raw = variable.default
            try:
                values[name] = variable.check(name, raw)
            except ValueError as error:
                raise ScenarioError(f"{spec.path}: {error}") from error
        return values

    def _render(self, spec: ScenarioTemplate, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(**context)
        except TemplateSyntaxError as error:
            raise ScenarioError(
                f"{error.filename or spec.path}:{error.lineno}: {error.message}"
            ) from error
        except TemplateError as error:
            where = _template_location(error, spec.path)
            raise ScenarioError(
                f"{where}: {error} (scenario {spec.id!r}; names in scope: "
                f"{', '.join(sorted(context))})"
            ) from error

    def _render_inline(
        self, spec: ScenarioTemplate, source: str, context: dict[str, Any], field: str
    ) -> str:
        if not source:
            return ""
        try:
            return " ".join(self.env.from_string(source).render(**context).split())
        except TemplateError as error:
            raise ScenarioError(f"{spec.path}: field '{field}': {error}") from error


def _culture_view(culture: Culture) -> dict[str, Any]:
    """What a template sees of a culture: its fields plus the cues in words."""
    cues = culture_cues(culture)
    return {
        **culture.model_dump(),
        "article": culture.indefinite_article,
        "name_in_text": culture.name_in_text,
        "cues": cues.text,
        "hofstede_cues": list(cues.hofstede),
        "inglehart_welzel_cues": list(cues.inglehart_welzel),
    }

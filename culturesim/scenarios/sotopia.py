"""Interop with Sotopia: its environment and agent profiles to culturesim templates and back.

Sotopia (https://github.com/sotopia-lab/sotopia) describes a social task as an
EnvironmentProfile (a scenario, one goal per agent, a relationship code and some constraints) and
the people who play it as AgentProfiles. Both are read from JSON (one object or a list) or JSONL,
checked strictly (unknown fields and wrong types are errors, never silently coerced), and every
problem raises `SotopiaError` naming the file, the record and the field.

Import: one environment becomes one template file `<id>.scenario.jinja2`
    id            the codename slugified (`^[a-z0-9][a-z0-9_\\-]*$`); a clash within one import
                  gets `_2`, `_3`, ...; a codename with nothing usable left, `sotopia_<hash>`.
    title         the codename in words; `description` says where the template came from.
    situation     the source in words; tags: `sotopia`, the source and the tag.
    relationship  the RelationshipType as a word: 0 strangers, 1 know each other by name,
                  2 acquaintances, 3 friends, 4 romantic partners, 5 family.
    participants  roles `agent1` ... `agentN`, one per goal. A role's persona age range comes from
                  `age_constraint`; with agent profiles, the agent's name, age (when 1-120, it wins
                  over the constraint), gender (Woman/Man -> female/male), occupation and
                  public_info (as the persona background) fix the persona too.
    turns         20, round robin: Sotopia's default episode length.
    body          `## setting` = scenario, `## goal agentN` = agent_goals[N-1], `## secret agentN`
                  = the agent's secret. Text is literal: wrapped in `{% raw %}` when it holds
                  `{{`, `{%` or `{#` (an `{% endraw %}` inside is split out), a line starting
                  with `##` is indented by a space so it cannot open a section, line ends are
                  `\\n`. Culturesim collapses whitespace when it renders a section.
    last          a Jinja comment, which renders to nothing:
                      {# sotopia-original v1 ...
                      {"id": "<id given at import>", "environment": {...}, "agents": [...]}
                      #}
                  holding the records exactly as read (only the keys the input had). `#}` inside
                  the JSON is written `#\\u007d`, which JSON reads back as `#}`.

`import_sotopia` gives environment i the next len(agent_goals) agent profiles of the agents file,
in file order, wrapping round to the first when the list runs out; two-agent environments and
agents A B C D give (A, B), (C, D), (A, B), ...

Export: a template becomes one EnvironmentProfile (and, on request, one AgentProfile per role).
The template is rendered through `ScenarioLibrary.render` for one culture (`culture="USA"`, the
template's first listed culture when it does not suit that one) with a cast sampled from a fixed
seed, so no Jinja is left in the text. A native template gives codename = id, source
"culturesim", scenario = the setting, agent_goals = the goals in role order, relationship from
its word (family/siblings -> 5, romantic -> 4, friends -> 3, neighbours/colleagues -> 2,
default 0), age_constraint from the persona age ranges. An imported template starts from its
stored records: a field whose culturesim counterpart still says what import wrote (the same
rendered text up to whitespace, the same relationship word, the same persona constraint, the same
id) is exported exactly as read; one that was edited is exported from the template. A changed id
becomes the codename and drops `pk`, so the variant does not overwrite the original in Sotopia's
database. Fields culturesim has no place for (source, tag, occupation_constraint,
agent_constraint, big_five, mbti, ...) always come back as read.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast, overload

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from culturesim.records import Culture, Persona
from culturesim.scenarios.personas import PersonaSampler, PersonaSpec
from culturesim.scenarios.templates import (
    SUFFIX,
    ScenarioError,
    ScenarioLibrary,
    ScenarioTemplate,
    builtin_scenario_dir,
    load_template_file,
)

Kind = Literal["environment", "agent"]
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
# Checked in order, first hit wins: "strangers, business" is 0, "family friends" is 5.
_RELATIONSHIP_KEYWORDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("stranger",)),
    (1, ("by name",)),
    (5, ("family", "sibling", "parent", "child", "relative", "cousin", "in-law", "grand")),
    (4, ("romantic", "couple", "dating", "spouse", "married", "engaged", "lover")),
    (3, ("friend",)),
    (2, ("acquaint", "neighbo", "colleague", "cowork", "co-work", "classmate", "workplace")),
)
IMPORT_TURN_LIMIT = 20
ORIGINAL_MARK = "sotopia-original v1"
_ORIGINAL_BLOCK = re.compile(
    r"\{#-?\s*" + re.escape(ORIGINAL_MARK) + r"[^\n]*\n(.*?)[-+]?#\}", re.S
)
_JINJA_OPENERS = ("{{", "{%", "{#")
_ENDRAW = re.compile(r"\{%(?=[-+]?\s*endraw)")
_TO_PERSONA_GENDER = {"woman": "female", "female": "female", "man": "male", "male": "male"}
_TO_SOTOPIA_GENDER = {"female": "Woman", "male": "Man"}
_PRONOUNS = {"female": "She/her", "male": "He/him"}
_BIG_FIVE_NAMES = {
    "openness": "Openness to Experience",
    "conscientiousness": "Conscientiousness",
    "extraversion": "Extraversion",
    "agreeableness": "Agreeableness",
    "neuroticism": "Neuroticism",
}


class SotopiaError(ValueError):
    """A Sotopia file or record cannot be used; the message names the file, record and field."""


# --------------------------------------------------------------------------- Sotopia's shapes


class EnvironmentProfile(BaseModel):
    """Sotopia's EnvironmentProfile; strict so that a wrong type is reported, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pk: str | None = None
    codename: str
    source: str = ""
    scenario: str
    agent_goals: list[str] = Field(min_length=2)
    relationship: int = Field(default=0, ge=0, le=5)
    age_constraint: str | None = None
    occupation_constraint: str | None = None
    agent_constraint: list[list[str]] | None = None
    tag: str = ""

    @field_validator("age_constraint")
    @classmethod
    def _parseable_ages(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Reject at read time what import could not turn into persona age ranges."""
        if value is not None:
            ranges = parse_age_constraint(value)
            goals = info.data.get("agent_goals")
            if goals is not None and len(ranges) != len(goals):
                raise ValueError(
                    f"has {len(ranges)} age range(s) but agent_goals has {len(goals)} goals; "
                    "give one (min, max) per agent"
                )
        return value


class AgentProfile(BaseModel):
    """Sotopia's AgentProfile with its defaults; strict for the same reason."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pk: str | None = None
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


_MODELS: dict[str, type[BaseModel]] = {"environment": EnvironmentProfile, "agent": AgentProfile}


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


def format_age_constraint(ranges: Iterable[tuple[int, int]]) -> str:
    """Age ranges in Sotopia's notation, the inverse of `parse_age_constraint`."""
    return "[" + ", ".join(f"({low}, {high})" for low, high in ranges) + "]"


# --------------------------------------------------------------------------- reading files


@overload
def read_sotopia_file(
    path: str | Path, kind: Literal["environment"]
) -> list[EnvironmentProfile]: ...
@overload
def read_sotopia_file(path: str | Path, kind: Literal["agent"]) -> list[AgentProfile]: ...
def read_sotopia_file(
    path: str | Path, kind: Kind
) -> list[EnvironmentProfile] | list[AgentProfile]:
    """Every profile of a JSON (object or list) or JSONL file, validated as `kind`."""
    path = Path(path)
    records = [_validate(kind, raw, path, where) for raw, where in _raw_records(path)]
    return cast("list[EnvironmentProfile] | list[AgentProfile]", records)


def _raw_records(path: Path) -> list[tuple[Any, str]]:
    """(parsed object, where it is in the file) for each record; JSONL by suffix or by shape."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SotopiaError(f"{path}: cannot read the file ({error})") from error
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _jsonl_records(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several objects one after another: JSON Lines
            return _jsonl_records(path, text)
        raise SotopiaError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); fix the syntax "
            "(a .json file holds one profile object or a list of them, a .jsonl file one "
            "object per line)"
        ) from error
    if isinstance(data, list):
        return [(item, f"item [{i}]") for i, item in enumerate(data)]
    return [(data, "the top-level object")]


def _jsonl_records(path: Path, text: str) -> list[tuple[Any, str]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((json.loads(line), f"line {number}"))
        except json.JSONDecodeError as error:
            raise SotopiaError(
                f"{path}: line {number}: not valid JSON ({error.msg} at column {error.colno}); "
                "each line of a JSONL file must be one complete profile object"
            ) from error
    return records


def _validate(kind: Kind, raw: Any, path: Path, where: str) -> BaseModel:
    model = _MODELS[kind]
    label = _record_label(raw, where)
    if not isinstance(raw, dict):
        raise SotopiaError(
            f"{path}: {label}: expected a JSON object with {model.__name__} fields, "
            f"got {type(raw).__name__}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(_problem(model, e) for e in error.errors())
        raise SotopiaError(f"{path}: {label}: {problems}") from error


def _record_label(raw: Any, where: str) -> str:
    """Where the record is and what it calls itself: line 3 (codename 'x', pk 'y')."""
    if not isinstance(raw, dict):
        return where
    names = [
        f"{key} {raw[key]!r}"
        for key in ("codename", "first_name", "last_name", "pk")
        if isinstance(raw.get(key), str) and raw[key]
    ]
    return f"{where} ({', '.join(names)})" if names else where


def _problem(model: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One pydantic error as "field 'x': what is wrong; what to do"."""
    loc = error.get("loc", ())
    field = ".".join(str(part) for part in loc) or "(record)"
    top = str(loc[0]) if loc else ""
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        known = ", ".join(model.model_fields)
        hint = (
            f"Sotopia's {model.__name__} has no such field; remove it or fix its spelling "
            f"(fields: {known})"
        )
    elif error.get("type") == "missing":
        hint = f"add it; Sotopia's {model.__name__} needs it"
    elif top == "relationship":
        codes = ", ".join(f"{i} {name}" for i, name in enumerate(RELATIONSHIP_NAMES))
        hint = f"use Sotopia's RelationshipType number: {codes}"
    elif top == "agent_goals":
        hint = "give a list of goal strings, one per agent (at least two)"
    else:
        annotation = model.model_fields[top].annotation if top in model.model_fields else None
        hint = f"fix the value (expected {_type_name(annotation)})"
    return f"field '{field}': {message}; {hint}"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# --------------------------------------------------------------------------- import


def slugify(codename: str) -> str:
    """A template id from a codename: lower case ASCII, other runs of characters as '_'."""
    ascii_text = unicodedata.normalize("NFKD", codename).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_\-]+", "_", ascii_text.lower())
    slug = re.sub(r"_{2,}", "_", slug).strip("_-")
    return slug


def default_template_id(profile: EnvironmentProfile) -> str:
    """The codename's slug, or a stable `sotopia_<hash>` when nothing usable is left of it."""
    slug = slugify(profile.codename)
    if slug:
        return slug
    digest = hashlib.sha256(
        json.dumps(profile.model_dump(), sort_keys=True).encode("utf-8")
    ).hexdigest()
    return f"sotopia_{digest[:10]}"


def relationship_word(code: int) -> str:
    """A RelationshipType number as the word an imported template carries."""
    return RELATIONSHIP_WORDS[code]


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


def persona_specs(
    profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None = None
) -> list[PersonaSpec]:
    """One persona constraint per agent: what import writes, and what export compares with."""
    ranges: list[tuple[int, int] | None] = (
        list(parse_age_constraint(profile.age_constraint))
        if profile.age_constraint is not None
        else [None] * len(profile.agent_goals)
    )
    specs = []
    for index, age_range in enumerate(ranges):
        agent = agents[index] if agents is not None else None
        specs.append(_persona_spec(agent, age_range))
    return specs


def _persona_spec(agent: AgentProfile | None, age_range: tuple[int, int] | None) -> PersonaSpec:
    fields: dict[str, Any] = {}
    if age_range is not None:
        fields["age"] = age_range
    if agent is not None:
        name = " ".join(
            part for part in (agent.first_name.strip(), agent.last_name.strip()) if part
        )
        if name:
            fields["name"] = name
        if 0 < agent.age <= 120:
            fields["age"] = (agent.age, agent.age)
        gender = _TO_PERSONA_GENDER.get(agent.gender.strip().lower(), agent.gender.strip())
        # Without a fixed name the sampler draws one from the culture's pool for this gender,
        # and the pools are keyed female/male; any other gender needs a name to go with it.
        if gender and (name or gender in ("female", "male")):
            fields["gender"] = gender
        if agent.occupation.strip():
            fields["occupation"] = agent.occupation.strip()
        if agent.public_info.strip():
            fields["background"] = agent.public_info.strip()
    return PersonaSpec(**fields)


def import_environment(
    profile: EnvironmentProfile,
    agents: Sequence[AgentProfile] | None = None,
    *,
    template_id: str | None = None,
) -> str:
    """The text of a culturesim template file for one Sotopia environment (and its agents)."""
    goals = profile.agent_goals
    if agents is not None and len(agents) != len(goals):
        raise SotopiaError(
            f"environment {profile.codename!r} has {len(goals)} agent goals but got "
            f"{len(agents)} agent profiles; give one profile per goal"
        )
    template_id = template_id or default_template_id(profile)
    front = _front_matter(profile, agents, template_id)
    body = _body(profile, agents, template_id)
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1_000_000)
    return f"---\n{header}---\n{body}"


def _front_matter(
    profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None, template_id: str
) -> dict[str, Any]:
    participants = []
    for index, spec in enumerate(persona_specs(profile, agents), start=1):
        entry: dict[str, Any] = {"role": f"agent{index}"}
        if spec.name:
            entry["description"] = spec.name
        persona = spec.model_dump(mode="json", exclude_defaults=True)
        if persona:
            entry["persona"] = persona
        participants.append(entry)
    origin = f"Sotopia environment {profile.codename!r}"
    if profile.source:
        origin += f" from {profile.source}"
    return {
        "id": template_id,
        "title": _title(profile.codename, template_id),
        "situation": " ".join(profile.source.replace("_", " ").split()),
        "relationship": relationship_word(profile.relationship),
        "description": f"Imported from {origin}; the original records are kept at the end.",
        "participants": participants,
        "turns": {"limit": IMPORT_TURN_LIMIT, "policy": "round_robin"},
        "cultures": "all",
        "tags": list(dict.fromkeys(t for t in ("sotopia", profile.source, profile.tag) if t)),
    }


def _title(codename: str, template_id: str) -> str:
    words = " ".join(re.sub(r"[_\-]+", " ", codename).split()) or template_id
    return words[0].upper() + words[1:]


def _body(
    profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None, template_id: str
) -> str:
    lines = ["## setting", _literal(profile.scenario)]
    for index, goal in enumerate(profile.agent_goals, start=1):
        lines += [f"## goal agent{index}", _literal(goal)]
        secret = agents[index - 1].secret if agents is not None else ""
        if secret.strip():
            lines += [f"## secret agent{index}", _literal(secret)]
    lines.append(_original_block(profile, agents, template_id))
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    """Text that renders to itself: no Jinja markup, no line that could open a section."""
    text = re.sub(r"^(?=##)", " ", text.replace("\r\n", "\n").replace("\r", "\n"), flags=re.M)
    if not any(opener in text for opener in _JINJA_OPENERS):
        return text
    return "{% raw %}" + _ENDRAW.sub("{% endraw %}{{ '{%' }}{% raw %}", text) + "{% endraw %}"


def _original_block(
    profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None, template_id: str
) -> str:
    payload = {
        "id": template_id,
        "environment": profile.model_dump(exclude_unset=True),
        "agents": [a.model_dump(exclude_unset=True) for a in agents]
        if agents is not None
        else None,
    }
    data = json.dumps(payload, ensure_ascii=False, indent=2).replace("#}", "#\\u007d")
    return (
        "{# " + ORIGINAL_MARK + ": the Sotopia records this file was imported from. Export "
        "restores every field the text above still matches; edit the sections, not this.\n"
        + data
        + "\n#}"
    )


def assign_agents(
    environments: Sequence[EnvironmentProfile], agents: Sequence[AgentProfile]
) -> list[list[AgentProfile]]:
    """Agents per environment: the next len(agent_goals) in order, wrapping round at the end."""
    needed = max((len(e.agent_goals) for e in environments), default=0)
    if len(agents) < needed:
        raise SotopiaError(
            f"an environment has {needed} agents but the agents file holds {len(agents)} "
            f"profile(s); give at least {needed}"
        )
    assigned, position = [], 0
    for environment in environments:
        count = len(environment.agent_goals)
        assigned.append([agents[(position + i) % len(agents)] for i in range(count)])
        position = (position + count) % len(agents)
    return assigned


def import_sotopia(
    env_path: str | Path,
    agents_path: str | Path | None = None,
    *,
    out_dir: str | Path,
    overwrite: bool = False,
) -> list[Path]:
    """Write one template file per environment into `out_dir`; the paths, in file order.

    Every file is generated and loaded back with `load_template_file` before any is moved into
    place, so a failed import leaves `out_dir` as it was. Existing files are an error unless
    `overwrite`.
    """
    env_path = Path(env_path)
    environments = read_sotopia_file(env_path, "environment")
    casts: list[list[AgentProfile]] | list[None] = [None] * len(environments)
    if agents_path is not None:
        casts = assign_agents(environments, read_sotopia_file(Path(agents_path), "agent"))
    out = Path(out_dir)
    ids = _unique_ids([default_template_id(e) for e in environments])
    targets = [out / f"{template_id}{SUFFIX}" for template_id in ids]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise SotopiaError(
            f"{env_path}: would overwrite {len(existing)} existing file(s): "
            f"{', '.join(existing)}; delete them, import into another folder, or pass "
            "overwrite=True (--overwrite)"
        )
    texts = [
        import_environment(e, agents, template_id=i)
        for e, agents, i in zip(environments, casts, ids, strict=True)
    ]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".sotopia-import-") as staging:
        staged = []
        for index, (text, target) in enumerate(zip(texts, targets, strict=True)):
            path = Path(staging) / target.name
            path.write_text(text, encoding="utf-8")
            _check_written(path, env_path, environments[index], index)
            staged.append(path)
        for path, target in zip(staged, targets, strict=True):
            os.replace(path, target)
    return targets


def _unique_ids(ids: Sequence[str]) -> list[str]:
    """Ids with later duplicates suffixed `_2`, `_3`, ..., skipping suffixes already taken."""
    taken: set[str] = set()
    unique = []
    for template_id in ids:
        candidate, n = template_id, 1
        while candidate in taken:
            n += 1
            candidate = f"{template_id}_{n}"
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _check_written(path: Path, source: Path, profile: EnvironmentProfile, index: int) -> None:
    """The generated file passes culturesim's own checks, Jinja syntax included."""
    try:
        template = load_template_file(path)
        SandboxedEnvironment().parse(template.body)
    except (ScenarioError, TemplateSyntaxError) as error:
        raise SotopiaError(
            f"{source}: record {index} (codename {profile.codename!r}): the generated template "
            f"is invalid ({error}); please report this with the record"
        ) from error


# --------------------------------------------------------------------------- export


class ImportedRecords(BaseModel):
    """What an imported template's comment block holds: the id import gave and the records."""

    model_config = ConfigDict(extra="forbid")

    id: str
    environment: dict[str, Any]
    agents: list[dict[str, Any]] | None = None


def original_records(template: ScenarioTemplate) -> ImportedRecords | None:
    """The Sotopia records an imported template came from; None for a native template."""
    match = _ORIGINAL_BLOCK.search(template.body)
    if match is None:
        return None
    where = f"{template.path or template.id}: the '{ORIGINAL_MARK}' comment block"
    try:
        stored = ImportedRecords.model_validate(json.loads(match.group(1)))
        EnvironmentProfile.model_validate(stored.environment)
        for agent in stored.agents or []:
            AgentProfile.model_validate(agent)
    except (json.JSONDecodeError, ValidationError) as error:
        raise SotopiaError(
            f"{where} is damaged ({error}); restore it from the import, or delete the whole "
            "block to export the template as a native culturesim scenario"
        ) from error
    return stored


def export_environment(
    template: ScenarioTemplate,
    library: ScenarioLibrary | None = None,
    *,
    culture: str | Culture = "USA",
    seed: int = 0,
) -> dict[str, Any]:
    """One Sotopia EnvironmentProfile dict for a template (see the module docstring)."""
    return _export(template, _library_for([template], library), culture, seed)[0]


def export_agents(
    template: ScenarioTemplate,
    library: ScenarioLibrary | None = None,
    *,
    culture: str | Culture = "USA",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One Sotopia AgentProfile dict per role, in role order."""
    return _export(template, _library_for([template], library), culture, seed)[1]


def export_sotopia(
    templates: Sequence[ScenarioTemplate],
    out_path: str | Path,
    *,
    agents_path: str | Path | None = None,
    library: ScenarioLibrary | None = None,
    culture: str | Culture = "USA",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Write the templates as EnvironmentProfile JSONL (and their casts as AgentProfile JSONL).

    The agents file lists one profile per role, environment after environment, which is the
    order `import_sotopia` assigns them back in.
    """
    library = _library_for(templates, library)
    environments, agents = [], []
    for template in templates:
        environment, profiles = _export(template, library, culture, seed)
        environments.append(environment)
        agents.extend(profiles)
    _write_jsonl(Path(out_path), environments)
    if agents_path is not None:
        _write_jsonl(Path(agents_path), agents)
    return environments


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    path.write_text("".join(lines), encoding="utf-8")


def _library_for(
    templates: Sequence[ScenarioTemplate], library: ScenarioLibrary | None
) -> ScenarioLibrary:
    """A library that renders exactly these templates.

    The given one when it already holds them; otherwise a fresh one over the same folders (the
    built-in library by default, for macros and includes) with the templates added. Fresh,
    because a library caches compiled bodies by id and must not serve another version.
    """
    if library is not None and all(library.templates.get(t.id) == t for t in templates):
        return library
    folders = library.folders if library is not None else [builtin_scenario_dir()]
    fresh = ScenarioLibrary(folders, builtin=False)
    added: dict[str, ScenarioTemplate] = {}
    for template in templates:
        if template.id in added and added[template.id] != template:
            raise SotopiaError(
                f"two different templates have the id {template.id!r} ({added[template.id].path}"
                f" and {template.path}); give one of them another id"
            )
        added[template.id] = template
    fresh.templates.update(added)
    return fresh


@functools.cache
def _shipped_cultures() -> dict[str, Culture]:
    from culturesim.scenarios.cultures import load_cultures

    return load_cultures()


def _culture_for(template: ScenarioTemplate, culture: str | Culture) -> Culture:
    """The culture to render with: the one asked for, or the template's first if it excludes it."""
    code = culture.code if isinstance(culture, Culture) else culture
    if isinstance(template.cultures, tuple) and not template.suits(code):
        code = template.cultures[0]
    elif isinstance(culture, Culture):
        return culture
    try:
        return _shipped_cultures()[code]
    except KeyError:
        raise SotopiaError(
            f"unknown culture {code!r} for exporting {template.id!r}; known: "
            f"{', '.join(sorted(_shipped_cultures()))}"
        ) from None


def _export(
    template: ScenarioTemplate, library: ScenarioLibrary, culture: str | Culture, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(environment, agents) for one template: native values, overlaid on the original if any."""
    host = _culture_for(template, culture)
    sampler = PersonaSampler()
    personas = [sampler.sample(host, seed, p.persona, slot=p.role) for p in template.participants]
    try:
        scenario = library.render(template, host, personas, seed=seed)
    except ScenarioError as error:
        raise SotopiaError(f"cannot export {template.id!r}: {error}") from error
    roles = {role.name: role for role in scenario.roles}
    goals = [roles[r].goal for r in template.roles]
    secrets = [roles[r].secret for r in template.roles]
    native = _native_environment(template, scenario.setting, goals)
    native_agents = [
        _native_agent(persona, host, secret)
        for persona, secret in zip(personas, secrets, strict=True)
    ]
    original = original_records(template)
    if original is None:
        return native, native_agents
    environment = _merge_environment(template, original, native)
    agents = _merge_agents(template, original, native_agents, secrets)
    return environment, agents


def _native_environment(
    template: ScenarioTemplate, setting: str, goals: list[str]
) -> dict[str, Any]:
    return {
        "codename": template.id,
        "source": "culturesim",
        "scenario": setting,
        "agent_goals": goals,
        "relationship": relationship_code(template.relationship),
        "age_constraint": format_age_constraint(p.persona.age for p in template.participants),
        "occupation_constraint": None,
        "agent_constraint": None,
        "tag": "",
    }


def _native_agent(persona: Persona, culture: Culture, secret: str) -> dict[str, Any]:
    first, last = _split_name(persona.name, culture.name_order)
    values = " and ".join(persona.values)
    profile = AgentProfile(
        first_name=first,
        last_name=last,
        age=persona.age,
        occupation=persona.occupation,
        gender=_TO_SOTOPIA_GENDER.get(persona.gender, persona.gender),
        gender_pronoun=_PRONOUNS.get(persona.gender, ""),
        public_info=persona.background,
        big_five="; ".join(
            f"{_BIG_FIVE_NAMES.get(trait, trait)} - {'High' if score >= 0.5 else 'Low'}"
            for trait, score in persona.big_five.items()
        ),
        personality_and_values=f"Values {values}." if values else "",
        decision_making_style=persona.decision_style,
        secret=secret,
    )
    return profile.model_dump(exclude={"pk"})


def _split_name(name: str, order: str) -> tuple[str, str]:
    """(first_name, last_name) of a full name written in the culture's name order."""
    parts = name.split()
    if len(parts) < 2:
        return name, ""
    if order == "family_given":
        return " ".join(parts[1:]), parts[0]
    return " ".join(parts[:-1]), parts[-1]


def _same_text(rendered: str, original: str) -> bool:
    """Whether rendering still gives the original text (rendering collapses whitespace)."""
    return rendered == " ".join(original.split())


def _merge_environment(
    template: ScenarioTemplate, original: ImportedRecords, native: dict[str, Any]
) -> dict[str, Any]:
    """The stored environment, with each field whose template counterpart was edited replaced."""
    stored = original.environment
    profile = EnvironmentProfile.model_validate(stored)
    agents = _stored_agents(original)
    merged = dict(stored)
    if template.id != original.id:
        merged["codename"] = native["codename"]
        merged.pop("pk", None)
    if not _same_text(native["scenario"], profile.scenario):
        merged["scenario"] = native["scenario"]
    old = profile.agent_goals
    goals = [
        old[i] if i < len(old) and _same_text(new, old[i]) else new
        for i, new in enumerate(native["agent_goals"])
    ]
    if goals != profile.agent_goals:
        merged["agent_goals"] = goals
    if template.relationship != relationship_word(profile.relationship):
        merged["relationship"] = native["relationship"]
    baseline = [spec.age for spec in persona_specs(profile, agents)]
    if [p.persona.age for p in template.participants] != baseline:
        merged["age_constraint"] = native["age_constraint"]
    return merged


def _stored_agents(original: ImportedRecords) -> list[AgentProfile] | None:
    if original.agents is None:
        return None
    return [AgentProfile.model_validate(agent) for agent in original.agents]


_PERSONA_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("first_name", "last_name"),
    "age": ("age",),
    "gender": ("gender", "gender_pronoun"),
    "occupation": ("occupation",),
    "background": ("public_info",),
}


def _merge_agents(
    template: ScenarioTemplate,
    original: ImportedRecords,
    native: list[dict[str, Any]],
    secrets: list[str],
) -> list[dict[str, Any]]:
    """Per role, the stored agent with the fields whose persona constraint was edited replaced."""
    agents = _stored_agents(original)
    if agents is None or original.agents is None:
        return native
    profile = EnvironmentProfile.model_validate(original.environment)
    baseline = persona_specs(profile, agents)
    merged = []
    for index, participant in enumerate(template.participants):
        if index >= len(agents):
            merged.append(native[index])
            continue
        record = dict(original.agents[index])
        for spec_field, fields in _PERSONA_FIELDS.items():
            if getattr(participant.persona, spec_field) != getattr(baseline[index], spec_field):
                record.update({f: native[index][f] for f in fields})
        if not _same_text(secrets[index], agents[index].secret):
            record["secret"] = native[index]["secret"]
        merged.append(record)
    return merged

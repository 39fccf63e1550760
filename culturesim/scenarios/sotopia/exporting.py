"""Culturesim templates to Sotopia records, in the shape Sotopia's loaders read or its database's.

A template becomes one EnvironmentProfile (and, on request, one AgentProfile per role), written
in one of two shapes (`shape`):
    export   what Sotopia's JSONL loaders (`jsonl_to_environmentprofiles`,
             `jsonl_to_agentprofiles`) read: `env_id` / `agent_id` for the id, the relationship
             as text, "none" for no agent constraint, and every key they look up present
    db       the database shape (Redis, local storage): `pk`, numbers and nulls as they are

The template is rendered through `ScenarioLibrary.render` for one culture (`culture="USA"`, the
template's first listed culture when it does not suit that one) with a cast sampled from a fixed
seed, so no Jinja is left in the text. A native template gives codename = id, source
"culturesim", scenario = the setting, agent_goals = the goals in role order, relationship from
its word (family/siblings -> 5, romantic -> 4, friends -> 3, neighbours/colleagues -> 2,
default 0), age_constraint from the persona age ranges, and agents from the sampled cast.

An imported template starts from its stored records: a field whose culturesim counterpart still
says what import wrote (the same rendered text up to whitespace, the same relationship word, the
same persona constraint, the same id) is exported exactly as read, in the original's spelling
when the shape is the one it was read in; one that was edited is exported from the template. A
goal comes back with its `<extra_info>` / `<strategy_hint>` / `<clarification_hint>` tags from
the secret section's labelled lines (see `goals`). A changed id becomes the codename and drops
the record id, so the variant does not overwrite the original in Sotopia's database. Fields
culturesim has no place for (source, tag, occupation_constraint, agent_constraint, mbti,
game_metadata, ...) always come back as read; a field Sotopia does not define comes back from
the template's front matter (`extra`), where it can be edited or removed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from culturesim.records import Culture, Persona
from culturesim.scenarios.personas import PersonaSampler, PersonaSpec
from culturesim.scenarios.sotopia.goals import (
    Goal,
    join_goal,
    parse_secret,
    rendered_secret,
    split_goal,
)
from culturesim.scenarios.sotopia.people import (
    PRONOUNS,
    TO_SOTOPIA_GENDER,
    format_big_five,
    persona_specs,
)
from culturesim.scenarios.sotopia.schemas import (
    ORIGINAL_BLOCK,
    ORIGINAL_MARK,
    SHAPES,
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    ImportedRecords,
    Shape,
    SotopiaError,
    canonical,
    format_age_constraint,
    in_shape,
    relationship_code,
    relationship_word,
    restore_spelling,
)
from culturesim.scenarios.templates import (
    ScenarioError,
    ScenarioLibrary,
    ScenarioTemplate,
    builtin_scenario_dir,
)


def original_records(template: ScenarioTemplate) -> ImportedRecords | None:
    """The Sotopia records an imported template came from; None for a native template."""
    match = ORIGINAL_BLOCK.search(template.body)
    if match is None:
        return None
    where = f"{template.path or template.id}: the '{ORIGINAL_MARK}' comment block"
    try:
        stored = ImportedRecords.model_validate(json.loads(match.group(1)))
        EnvironmentProfile.model_validate(stored.environment)
        for agent in stored.agents or []:
            AgentProfile.model_validate(agent)
        if stored.combo is not None:
            EnvAgentCombo.model_validate(stored.combo)
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
    shape: Shape = "export",
) -> dict[str, Any]:
    """One Sotopia EnvironmentProfile dict for a template (see the module docstring)."""
    return _export(template, _library_for([template], library), culture, seed, shape)[0]


def export_agents(
    template: ScenarioTemplate,
    library: ScenarioLibrary | None = None,
    *,
    culture: str | Culture = "USA",
    seed: int = 0,
    shape: Shape = "export",
) -> list[dict[str, Any]]:
    """One Sotopia AgentProfile dict per role, in role order."""
    return _export(template, _library_for([template], library), culture, seed, shape)[1]


def export_sotopia(
    templates: Sequence[ScenarioTemplate],
    out_path: str | Path,
    *,
    agents_path: str | Path | None = None,
    library: ScenarioLibrary | None = None,
    culture: str | Culture = "USA",
    seed: int = 0,
    shape: Shape = "export",
) -> list[dict[str, Any]]:
    """Write the templates as EnvironmentProfile JSONL (and their casts as AgentProfile JSONL).

    The agents file lists one profile per role, environment after environment, which is the
    order `import_sotopia` deals them back in when no pairings are given.
    """
    library = _library_for(templates, library)
    environments, agents = [], []
    for template in templates:
        environment, profiles = _export(template, library, culture, seed, shape)
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
    added: dict[str, ScenarioTemplate] = {}
    for template in templates:
        if template.id in added and added[template.id] != template:
            raise SotopiaError(
                f"two different templates have the id {template.id!r} ({added[template.id].path}"
                f" and {template.path}); give one of them another id"
            )
        added[template.id] = template
    if library is not None:
        return ScenarioLibrary(
            library.folders, builtin=False, templates={**library.templates, **added}
        )
    fresh = ScenarioLibrary([builtin_scenario_dir()], builtin=False)
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
    template: ScenarioTemplate,
    library: ScenarioLibrary,
    culture: str | Culture,
    seed: int,
    shape: Shape,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(environment, agents) for one template: native values, overlaid on the original if any."""
    if shape not in SHAPES:
        raise SotopiaError(f"unknown shape {shape!r}; use {' or '.join(SHAPES)}")
    host = _culture_for(template, culture)
    sampler = PersonaSampler()
    specs = [p.persona for p in template.participants]
    personas = [sampler.sample(host, seed, p.persona, slot=p.role) for p in template.participants]
    try:
        scenario = library.render(template, host, personas, seed=seed)
    except ScenarioError as error:
        raise SotopiaError(f"cannot export {template.id!r}: {error}") from error
    roles = {role.name: role for role in scenario.roles}
    goals = [roles[r].goal for r in template.roles]
    secrets = [roles[r].secret for r in template.roles]
    original = original_records(template)
    if original is None:
        environment = _native_environment(template, scenario.setting, goals)
        agents = [
            _native_agent(persona, spec, host, secret)
            for persona, spec, secret in zip(personas, specs, secrets, strict=True)
        ]
        return (
            in_shape("environment", environment, shape),
            [in_shape("agent", agent, shape) for agent in agents],
        )
    return _imported(template, original, scenario.setting, goals, secrets, personas, host, shape)


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


def _native_agent(
    persona: Persona, spec: PersonaSpec, culture: Culture, secret: str
) -> dict[str, Any]:
    """An AgentProfile for a sampled persona; fields a persona constraint fixed come from it."""
    first, last = _split_name(persona.name, culture.name_order)
    values = " and ".join(persona.values)
    profile = AgentProfile(
        first_name=first,
        last_name=last,
        age=persona.age,
        occupation=persona.occupation,
        gender=TO_SOTOPIA_GENDER.get(persona.gender, persona.gender),
        gender_pronoun=PRONOUNS.get(persona.gender, ""),
        public_info=spec.background if spec.background is not None else persona.background,
        big_five=format_big_five(spec.big_five if spec.big_five is not None else persona.big_five),
        moral_values=list(spec.values or ()),
        personality_and_values=(
            spec.personality
            if spec.personality is not None
            else (f"Values {values}." if values else "")
        ),
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


# Persona constraint field -> the AgentProfile fields it was made from.
_PERSONA_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("first_name", "last_name"),
    "age": ("age",),
    "gender": ("gender", "gender_pronoun"),
    "occupation": ("occupation",),
    "background": ("public_info",),
    "big_five": ("big_five",),
    "values": ("moral_values", "schwartz_personal_values"),
    "decision_style": ("decision_making_style",),
    "personality": ("personality_and_values",),
}


def _imported(
    template: ScenarioTemplate,
    original: ImportedRecords,
    setting: str,
    goals: list[str],
    secrets: list[str],
    personas: list[Persona],
    host: Culture,
    shape: Shape,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored records, with each field whose template counterpart was edited replaced."""
    profile = EnvironmentProfile.model_validate(original.environment)
    stored_agents = [AgentProfile.model_validate(a) for a in original.agents or []]
    agents = stored_agents if original.agents is not None else None
    environment = canonical("environment", original.environment)
    if template.id != original.id:
        environment["codename"] = template.id
        environment.pop("pk", None)
    if not _same_text(setting, profile.scenario):
        environment["scenario"] = setting
    old_goals = profile.agent_goals
    new_goals, agent_secrets = [], []
    for index, (goal, secret) in enumerate(zip(goals, secrets, strict=True)):
        if index >= len(old_goals):  # a role added after import
            own, private = parse_secret(secret)
            new_goals.append(join_goal(Goal(goal, private)))
            agent_secrets.append(own)
            continue
        was = split_goal(old_goals[index])
        own_secret = stored_agents[index].secret if index < len(stored_agents) else ""
        goal_same = _same_text(goal, was.text)
        secret_same = secret == rendered_secret(own_secret, was.private)
        if goal_same and secret_same:
            new_goals.append(old_goals[index])
            agent_secrets.append(own_secret)
            continue
        own, private = (own_secret, was.private) if secret_same else parse_secret(secret)
        new_goals.append(join_goal(Goal(was.text if goal_same else goal, private)))
        agent_secrets.append(own)
    if new_goals != old_goals:
        environment["agent_goals"] = new_goals
    if template.relationship != relationship_word(profile.relationship):
        environment["relationship"] = relationship_code(template.relationship)
    baseline = persona_specs(profile, agents)
    if [p.persona.age for p in template.participants] != [spec.age for spec in baseline]:
        environment["age_constraint"] = format_age_constraint(
            p.persona.age for p in template.participants
        )
    _overlay_extra(environment, profile.unknown_fields, template.extra.get("environment"))
    env_out = restore_spelling("environment", environment, original.environment, shape)

    agents_out = []
    for index, participant in enumerate(template.participants):
        native = _native_agent(personas[index], participant.persona, host, agent_secrets[index])
        if original.agents is None or index >= len(stored_agents):
            agents_out.append(in_shape("agent", native, shape))
            continue
        raw = original.agents[index]
        record = canonical("agent", raw)
        for spec_field, fields in _PERSONA_FIELDS.items():
            if getattr(participant.persona, spec_field) == getattr(baseline[index], spec_field):
                continue
            record.update({f: native[f] for f in fields})
            if spec_field == "values":
                _split_values(record, participant.persona.values or (), stored_agents[index])
        if agent_secrets[index] != stored_agents[index].secret:
            record["secret"] = agent_secrets[index]
        _overlay_extra(
            record, stored_agents[index].unknown_fields, template.extra.get(f"agent{index + 1}")
        )
        agents_out.append(restore_spelling("agent", record, raw, shape))
    return env_out, agents_out


def _split_values(record: dict[str, Any], values: Sequence[str], stored: AgentProfile) -> None:
    """Edited values back into Sotopia's two lists: those the agent had as Schwartz values stay
    there, the rest are moral values."""
    schwartz = set(stored.schwartz_personal_values)
    record["moral_values"] = [v for v in values if v not in schwartz]
    record["schwartz_personal_values"] = [v for v in values if v in schwartz]


def _overlay_extra(
    record: dict[str, Any], stored: Mapping[str, Any], front: Mapping[str, Any] | None
) -> None:
    """A record's own extra fields as the template's front matter now has them."""
    if front is None and not stored:
        return
    for key in stored:
        record.pop(key, None)
    record.update(front or {})

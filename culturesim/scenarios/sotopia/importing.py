"""Sotopia records to culturesim template files: one template per environment and cast.

One environment (with the agents who play it, when given) becomes one file
`<id>.scenario.jinja2`:
    id            stable, from the record's own id: the codename slugified for readability and
                  the record id's tail (`scratched_camera_lens_r1s5t0wa`; an id of up to 12
                  letters and digits whole); for a pairing, the pairing id's tail instead; a
                  record without an id gets the codename's slug. Records whose ids still clash
                  are told apart by `_2`, `_3`, ... in the order of their ids (or contents), so
                  re-importing the same records in any order gives the same names.
    title         the codename in words; `description` says where the template came from.
    situation     the source in words; tags: `sotopia`, the source and the tag.
    relationship  the RelationshipType as a word: 0 strangers, 1 know each other by name,
                  2 acquaintances, 3 friends, 4 romantic partners, 5 family.
    participants  roles `agent1` ... `agentN`, one per goal; each persona's age range comes from
                  `age_constraint`, and an agent profile fixes the person (see `people`).
    extra         fields Sotopia's models do not define, per record (`environment`, `agent1`,
                  ...), kept with a warning rather than refused.
    turns         20, round robin: Sotopia's default episode length.
    body          `## setting` = scenario, `## goal agentN` = the goal without its tags,
                  `## secret agentN` = the agent's secret and the goal's tagged parts (see
                  `goals`). Text is literal: wrapped in `{% raw %}` when it holds `{{`, `{%` or
                  `{#` (an `{% endraw %}` inside is split out), a line starting with `##` is
                  indented by a space so it cannot open a section, line ends are `\\n`.
    last          a Jinja comment, which renders to nothing:
                      {# sotopia-original v1 ...
                      {"id": "<id given at import>", "environment": {...}, "agents": [...],
                       "combo": {...}}
                      #}
                  holding the records exactly as read (their keys, spelling and shape). `#}`
                  inside the JSON is written `#\\u007d`, which JSON reads back as `#}`.

Who plays what: with pairings (`combos`, Sotopia's EnvAgentComboStorage records: `env_id`,
`agent_ids`) one template per pairing, its agents found by id; environments no pairing names
are not imported and are counted. Without pairings, environment i gets the next
len(agent_goals) agent profiles in file order, wrapping round: two-agent environments and agents
A B C D give (A, B), (C, D), (A, B), ...

By default every valid record is imported and the others are skipped and reported
(`ImportReport`); `strict=True` refuses the whole import at the first problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from culturesim.scenarios.sotopia.goals import secret_lines, split_goal
from culturesim.scenarios.sotopia.people import big_five_leftover, persona_specs
from culturesim.scenarios.sotopia.reading import Located, ReadResult, Skipped, read_sotopia
from culturesim.scenarios.sotopia.schemas import (
    ORIGINAL_MARK,
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    SotopiaError,
    relationship_word,
)
from culturesim.scenarios.templates import SUFFIX, ScenarioError, load_template_file

IMPORT_TURN_LIMIT = 20
_JINJA_OPENERS = ("{{", "{%", "{#")
_ENDRAW = re.compile(r"\{%(?=[-+]?\s*endraw)")
T = TypeVar("T")


@dataclass(frozen=True)
class Cast:
    """One template to write: an environment, the agents who play it, the pairing if any."""

    environment: Located[EnvironmentProfile]
    agents: list[Located[AgentProfile]] | None = None
    combo: Located[EnvAgentCombo] | None = None


@dataclass
class ImportReport:
    """What an import wrote, what it left out and why, and what it warned about."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    environments: tuple[int, int] = (0, 0)  # valid, read
    agents: tuple[int, int] | None = None
    pairings: tuple[int, int] | None = None  # imported, read
    unpaired: list[str] = field(default_factory=list)
    records_read: str = "environment record(s)"

    def reasons(self) -> Counter[str]:
        return Counter(skip.reason for skip in self.skipped)

    def summary(self, first: int = 3) -> list[str]:
        """The lines `scenarios import` prints: counts, skips by reason with the first few
        messages, environments left unpaired, and warnings."""
        valid, read = self.environments
        parts = [f"{valid} of {read} {self.records_read} valid"]
        if self.agents is not None:
            parts.append(f"{self.agents[0]} of {self.agents[1]} agent record(s)")
        if self.pairings is not None:
            parts.append(f"{self.pairings[0]} of {self.pairings[1]} pairing(s) imported")
        lines = [
            f"imported {len(self.written)} template(s) into {self.out_dir} ({'; '.join(parts)})"
        ]
        if self.skipped:
            by_reason = ", ".join(f"{n} {reason}" for reason, n in self.reasons().most_common())
            lines.append(f"skipped {len(self.skipped)}: {by_reason}")
            lines += [f"  {skip.message}" for skip in self.skipped[:first]]
            if len(self.skipped) > first:
                lines.append(f"  ... and {len(self.skipped) - first} more")
        if self.unpaired:
            names = ", ".join(self.unpaired[:first]) + (
                " ..." if len(self.unpaired) > first else ""
            )
            lines.append(
                f"{len(self.unpaired)} environment(s) named by no pairing, not imported: {names}"
            )
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  {warning}" for warning in self.warnings[:first]]
            if len(self.warnings) > first:
                lines.append(f"  ... and {len(self.warnings) - first} more")
        return lines


def slugify(codename: str) -> str:
    """A template id from a codename: lower case ASCII, other runs of characters as '_'."""
    ascii_text = unicodedata.normalize("NFKD", codename).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_\-]+", "_", ascii_text.lower())
    slug = re.sub(r"_{2,}", "_", slug).strip("_-")
    return slug


def _digest(value: Any, length: int = 8) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def id_tail(record_id: str) -> str:
    """The part of a record id a template name carries: its letters and digits, whole up to 12,
    else the last 8 (the random end of Sotopia's ULIDs and of UUIDs)."""
    plain = re.sub(r"[^a-z0-9]", "", record_id.lower())
    if not plain:
        return _digest(record_id)
    return plain if len(plain) <= 12 else plain[-8:]


def default_template_id(profile: EnvironmentProfile, combo: EnvAgentCombo | None = None) -> str:
    """A template's id before clashes are resolved (see the module docstring)."""
    parts = [slugify(profile.codename)]
    if combo is not None:  # the pairing's id names the cast, and through it the environment
        parts.append(id_tail(combo.pk) if combo.pk else _digest([combo.env_id, combo.agent_ids]))
    elif profile.pk:
        parts.append(id_tail(profile.pk))
    if not parts[0]:  # no usable codename: say where the scenario came from instead
        parts[0] = "sotopia"
        if len(parts) == 1:
            parts.append(_digest(profile.model_dump()))
    return "_".join(parts)


def template_ids(casts: Sequence[Cast]) -> list[str]:
    """Unique ids for the casts, independent of their order (see the module docstring)."""
    wanted = [
        default_template_id(c.environment.record, c.combo.record if c.combo else None)
        for c in casts
    ]
    groups: dict[str, list[int]] = {}
    for index, template_id in enumerate(wanted):
        groups.setdefault(template_id, []).append(index)
    ids = list(wanted)
    taken = set(wanted)
    for template_id in sorted(groups):
        members = sorted(groups[template_id], key=lambda i: _sort_key(casts[i]))
        for index in members[1:]:
            n = 2
            while f"{template_id}_{n}" in taken:
                n += 1
            ids[index] = f"{template_id}_{n}"
            taken.add(ids[index])
    return ids


def _sort_key(cast: Cast) -> str:
    return json.dumps(
        [cast.environment.raw, [a.raw for a in cast.agents or []], cast.combo and cast.combo.raw],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


def assign_agents(environments: Sequence[EnvironmentProfile], agents: Sequence[T]) -> list[list[T]]:
    """Agents per environment: the next len(agent_goals) in order, wrapping round at the end."""
    needed = max((len(e.agent_goals) for e in environments), default=0)
    if len(agents) < needed:
        raise SotopiaError(
            f"an environment has {needed} agents but the agents file holds {len(agents)} valid "
            f"profile(s); give at least {needed}"
        )
    assigned, position = [], 0
    for environment in environments:
        count = len(environment.agent_goals)
        assigned.append([agents[(position + i) % len(agents)] for i in range(count)])
        position = (position + count) % len(agents)
    return assigned


def import_environment(
    profile: EnvironmentProfile,
    agents: Sequence[AgentProfile] | None = None,
    *,
    template_id: str | None = None,
    raw: dict[str, Any] | None = None,
    agent_raws: Sequence[dict[str, Any]] | None = None,
    combo: dict[str, Any] | None = None,
) -> str:
    """The text of a culturesim template file for one Sotopia environment (and its agents).

    `raw`, `agent_raws` and `combo` are the records exactly as read, kept for the export; by
    default the models' own fields stand for them.
    """
    goals = profile.agent_goals
    if agents is not None and len(agents) != len(goals):
        raise SotopiaError(
            f"environment {profile.codename!r} has {len(goals)} agent goals but got "
            f"{len(agents)} agent profiles; give one profile per goal"
        )
    template_id = template_id or default_template_id(profile)
    front = _front_matter(profile, agents, template_id)
    body = _body(profile, agents)
    originals = {
        "id": template_id,
        "environment": raw if raw is not None else profile.model_dump(exclude_unset=True),
        "agents": (
            list(agent_raws)
            if agent_raws is not None
            else [a.model_dump(exclude_unset=True) for a in agents]
            if agents is not None
            else None
        ),
    }
    if combo is not None:
        originals["combo"] = combo
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1_000_000)
    return f"---\n{header}---\n{body}{original_block(originals)}\n"


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
    origin = f"Sotopia environment {profile.codename or profile.pk or template_id!r}"
    if profile.source:
        origin += f" from {profile.source}"
    front: dict[str, Any] = {
        "id": template_id,
        "title": _title(profile.codename, profile.scenario),
        "situation": " ".join(profile.source.replace("_", " ").split()),
        "relationship": relationship_word(profile.relationship),
        "description": f"Imported from {origin}; the original records are kept at the end.",
        "participants": participants,
        "turns": {"limit": IMPORT_TURN_LIMIT, "policy": "round_robin"},
        "cultures": "all",
        "tags": list(dict.fromkeys(t for t in ("sotopia", profile.source, profile.tag) if t)),
    }
    extra = {"environment": profile.unknown_fields} if profile.unknown_fields else {}
    for index, agent in enumerate(agents or [], start=1):
        if agent.unknown_fields:
            extra[f"agent{index}"] = agent.unknown_fields
    if extra:
        front["extra"] = extra
    return front


def _title(codename: str, scenario: str) -> str:
    """The codename in words, or without one the scenario's first sentence, shortened."""
    words = " ".join(re.sub(r"[_\-]+", " ", codename).split())
    if not words:
        words = re.split(r"(?<=[.!?])\s", " ".join(scenario.split()), maxsplit=1)[0]
        words = words.rstrip(".!?") if len(words) <= 80 else words[:77].rsplit(" ", 1)[0] + "..."
    return words[0].upper() + words[1:]


def _body(profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None) -> str:
    lines = ["## setting", literal(profile.scenario)]
    for index, goal in enumerate(profile.agent_goals, start=1):
        parts = split_goal(goal)
        lines += [f"## goal agent{index}", literal(parts.text)]
        secret = agents[index - 1].secret if agents is not None else ""
        secret_section = [
            f"{label}: {literal(text)}" if label else literal(text)
            for label, text in secret_lines(secret, parts.private)
        ]
        if secret_section:
            lines += [f"## secret agent{index}", *secret_section]
    return "\n".join(lines) + "\n"


def literal(text: str) -> str:
    """Text that renders to itself: no Jinja markup, no line that could open a section."""
    text = re.sub(r"^(?=##)", " ", text.replace("\r\n", "\n").replace("\r", "\n"), flags=re.M)
    if not any(opener in text for opener in _JINJA_OPENERS):
        return text
    return "{% raw %}" + _ENDRAW.sub("{% endraw %}{{ '{%' }}{% raw %}", text) + "{% endraw %}"


def original_block(payload: dict[str, Any]) -> str:
    """The Jinja comment that carries the records as read, for the export."""
    data = json.dumps(payload, ensure_ascii=False, indent=2).replace("#}", "#\\u007d")
    return (
        "{# " + ORIGINAL_MARK + ": the Sotopia records this file was imported from. Export "
        "restores every field the text above still matches; edit the sections, not this.\n"
        + data
        + "\n#}"
    )


def import_sotopia(
    env_path: str | Path,
    agents_path: str | Path | None = None,
    *,
    out_dir: str | Path,
    combos_path: str | Path | None = None,
    overwrite: bool = False,
    strict: bool = False,
) -> ImportReport:
    """Write one template per environment (or per pairing) into `out_dir`; what was done.

    Every file is generated and loaded back with `load_template_file` before any is moved into
    place, so a failed import leaves `out_dir` as it was. Existing files are an error unless
    `overwrite`.
    """
    env_path = Path(env_path)
    out = Path(out_dir)
    environments = read_sotopia(env_path, "environment", strict=strict)
    report = ImportReport(out, skipped=list(environments.skipped))
    report.warnings += environments.warnings
    report.environments = (len(environments.records), _count(environments))
    agents: ReadResult[AgentProfile] | None = None
    if agents_path is not None:
        agents = read_sotopia(agents_path, "agent", strict=strict)
        report.skipped += agents.skipped
        report.warnings += agents.warnings
        report.agents = (len(agents.records), _count(agents))
        for located in agents.records:
            leftover = big_five_leftover(located.record)
            if leftover:
                report.warnings.append(
                    f"{located.where}: field 'big_five': {'; '.join(leftover)!r} names no trait "
                    "and level; kept as words in the persona's personality"
                )
    if combos_path is not None:
        if agents is None:
            raise SotopiaError(
                f"{combos_path}: pairings name agents by id; give the agent profiles too "
                "(--agents FILE)"
            )
        casts = _paired(environments, agents, combos_path, report, strict)
    elif agents is not None:
        if not agents.records and environments.records:
            raise SotopiaError(f"{agents_path}: no valid agent profile to cast; see above")
        dealt = assign_agents([e.record for e in environments.records], agents.records)
        casts = [Cast(e, cast) for e, cast in zip(environments.records, dealt, strict=True)]
    else:
        casts = [Cast(e) for e in environments.records]
    ids = template_ids(casts)
    targets = [out / f"{template_id}{SUFFIX}" for template_id in ids]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise SotopiaError(
            f"{env_path}: would overwrite {len(existing)} existing file(s): "
            f"{', '.join(existing)}; delete them, import into another folder, or pass "
            "overwrite=True (--overwrite)"
        )
    texts = [
        (target, _text(cast, template_id), cast.environment.where)
        for cast, template_id, target in zip(casts, ids, targets, strict=True)
    ]
    write_templates(texts, report, strict=strict)
    return report


def write_templates(
    texts: Sequence[tuple[Path, str, str]], report: ImportReport, *, strict: bool
) -> None:
    """Write (target, text, where the record was) files, each checked before any is moved into
    place; a text that does not load is skipped (refused when `strict`)."""
    report.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=report.out_dir, prefix=".import-") as staging:
        staged = []
        for target, text, where in texts:
            path = Path(staging) / target.name
            path.write_text(text, encoding="utf-8")
            problem = _check_written(path, where)
            if problem is not None:
                if strict:
                    raise SotopiaError(problem.message)
                report.skipped.append(problem)
                continue
            staged.append((path, target))
        for path, target in staged:
            os.replace(path, target)
            report.written.append(target)


def _count(result: ReadResult[Any]) -> int:
    """Records read, valid or not (a file that could not be read counts as none)."""
    unread = {"unreadable file", "not valid JSON"}
    skipped_files = sum(1 for s in result.skipped if s.reason in unread and ": line" not in s.where)
    return len(result.records) + len(result.skipped) - skipped_files


def _text(cast: Cast, template_id: str) -> str:
    agents = cast.agents
    return import_environment(
        cast.environment.record,
        [a.record for a in agents] if agents is not None else None,
        template_id=template_id,
        raw=cast.environment.raw,
        agent_raws=[a.raw for a in agents] if agents is not None else None,
        combo=cast.combo.raw if cast.combo is not None else None,
    )


def _paired(
    environments: ReadResult[EnvironmentProfile],
    agents: ReadResult[AgentProfile],
    combos_path: str | Path,
    report: ImportReport,
    strict: bool,
) -> list[Cast]:
    """One cast per pairing whose environment and agents were read and fit each other."""
    combos = read_sotopia(combos_path, "combo", strict=strict)
    report.skipped += combos.skipped
    report.warnings += combos.warnings
    by_env = {e.record.pk: e for e in environments.records if e.record.pk}
    by_agent = {a.record.pk: a for a in agents.records if a.record.pk}
    casts: list[Cast] = []
    named: set[str] = set()
    for combo in combos.records:
        named.add(combo.record.env_id)
        problem = _pairing_problem(combo, by_env, by_agent, environments, agents)
        if problem is not None:
            if strict:
                raise SotopiaError(problem.message)
            report.skipped.append(problem)
            continue
        cast_agents = [by_agent[i] for i in combo.record.agent_ids]
        casts.append(Cast(by_env[combo.record.env_id], cast_agents, combo))
    report.pairings = (len(casts), _count(combos))
    report.unpaired = [
        e.record.codename or str(e.record.pk)
        for e in environments.records
        if e.record.pk not in named
    ]
    return casts


def _pairing_problem(
    combo: Located[EnvAgentCombo],
    by_env: Mapping[str, Located[EnvironmentProfile]],
    by_agent: Mapping[str, Located[AgentProfile]],
    environments: ReadResult[EnvironmentProfile],
    agents: ReadResult[AgentProfile],
) -> Skipped | None:
    record = combo.record
    environment = by_env.get(record.env_id)
    if environment is None:
        dropped = any(repr(record.env_id) in s.where for s in environments.skipped)
        why = "was skipped as invalid (see above)" if dropped else "is in no environment file read"
        return Skipped(
            combo.where,
            "pairing names an unread environment",
            f"{combo.where}: field 'env_id': environment {record.env_id!r} {why}",
        )
    missing = [i for i in record.agent_ids if i not in by_agent]
    if missing:
        left_out = [i for i in missing if any(repr(i) in s.where for s in agents.skipped)]
        why = f" ({', '.join(left_out)} skipped as invalid)" if left_out else ""
        return Skipped(
            combo.where,
            "pairing names an unread agent",
            f"{combo.where}: field 'agent_ids': no agent profile with id "
            f"{', '.join(repr(i) for i in missing)} was read{why}",
        )
    goals = len(environment.record.agent_goals)
    if len(record.agent_ids) != goals:
        return Skipped(
            combo.where,
            "pairing's agents do not fit the goals",
            f"{combo.where}: field 'agent_ids': {len(record.agent_ids)} agent(s) for "
            f"environment {record.env_id!r}, which has {goals} goals; a pairing names one agent "
            "per goal",
        )
    return None


def _check_written(path: Path, where: str) -> Skipped | None:
    """The generated file passes culturesim's own checks, Jinja syntax included."""
    try:
        template = load_template_file(path)
        SandboxedEnvironment().parse(template.body)
    except (ScenarioError, TemplateSyntaxError) as error:
        return Skipped(
            where,
            "generated template invalid",
            f"{where}: the generated template is invalid ({error}); please report this with "
            "the record",
        )
    return None

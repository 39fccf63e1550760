"""CLCA's role-play scenarios as culturesim templates.

CLCA (Liu et al., ACL 2025) adapts Sotopia-style social tasks to a culture and role-plays them;
its role-play code reads one scenario per JSON line:

    {"culture": "China", "setting": "...", "persona": "Li Wei and Zhang Min",
     "person1": {"background": "...", "occupation": "...", "goal": "...", "secrets": "..."},
     "person2": {...}}

Each line becomes one template (`person1`, `person2`, ... as roles, in number order):
    id            `clca_<culture code>_<tail>`: the record's own `id` / `scenario_id` when it has
                  one, else a digest of the record, so the same records give the same names in
                  any order
    cultures      the culture, matched to a culture profile by code, name, demonym or a common
                  short name (UK, US); a culture with no profile gives `all`, with a warning
    participants  name from `persona` ("A and B", in person order) or a person's own `name`;
                  occupation, background and, when given, age and gender fix the persona
    body          `## setting`, then `## goal personN` and `## secret personN` (`secrets`)
Other fields are kept in the front matter under `extra`, with a warning. The same record-by-
record reading as for Sotopia applies: invalid records are skipped and reported, or refused at
the first with `strict`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from culturesim.records import Culture
from culturesim.scenarios.sotopia.importing import ImportReport, literal, write_templates
from culturesim.scenarios.sotopia.reading import Skipped, raw_records
from culturesim.scenarios.sotopia.schemas import SotopiaError
from culturesim.scenarios.templates import SUFFIX

CLCA_TURN_LIMIT = 10  # CLCA's protocol: at most 10 rounds
_ALIASES = {
    "UK": "GBR",
    "U.K.": "GBR",
    "BRITAIN": "GBR",
    "GREAT BRITAIN": "GBR",
    "ENGLAND": "GBR",
    "US": "USA",
    "U.S.": "USA",
    "UNITED STATES OF AMERICA": "USA",
    "AMERICA": "USA",
}
_PERSON = re.compile(r"^person(\d+)$")


class ClcaPerson(BaseModel):
    """One character of a CLCA scenario."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    name: str = ""
    age: int | None = Field(default=None, ge=0, le=120)
    gender: str = ""
    background: str = ""
    occupation: str = ""
    goal: str = Field(min_length=1)
    secrets: str = Field(default="", validation_alias=AliasChoices("secrets", "secret"))

    @field_validator("secrets", mode="before")
    @classmethod
    def _joined(cls, value: Any) -> Any:
        """Several secrets given as a list read as one text."""
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return " ".join(item.strip() for item in value)
        return value


class ClcaScenario(BaseModel):
    """One CLCA scenario line; its `personN` objects are gathered into `people`, in order."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    id: str | None = Field(default=None, validation_alias=AliasChoices("id", "scenario_id"))
    culture: str = Field(min_length=1)
    setting: str = Field(min_length=1)
    persona: str = ""
    relationship: str = ""
    title: str = ""
    people: list[ClcaPerson] = Field(min_length=2)

    @model_validator(mode="before")
    @classmethod
    def _gather_people(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        numbered = sorted(
            (int(match.group(1)), key) for key in data if (match := _PERSON.match(key))
        )
        people = [data[key] for _, key in numbered]
        rest = {k: v for k, v in data.items() if not _PERSON.match(k)}
        for key in ("id", "scenario_id"):
            if isinstance(rest.get(key), int) and not isinstance(rest[key], bool):
                rest[key] = str(rest[key])
        return {**rest, "people": people}

    def names(self) -> list[str]:
        """Each person's name: their own, else from `persona` ("A and B") when it names all."""
        listed = [n.strip() for n in re.split(r",|\band\b|&", self.persona) if n.strip()]
        if len(listed) != len(self.people):
            listed = [""] * len(self.people)
        return [person.name.strip() or listed[i] for i, person in enumerate(self.people)]


def match_culture(name: str, cultures: Mapping[str, Culture]) -> Culture | None:
    """The culture profile a CLCA culture names: by code, name, demonym or short name."""
    key = " ".join(name.split()).upper()
    key = _ALIASES.get(key, key)
    if key in cultures:
        return cultures[key]
    for culture in cultures.values():
        if key in (culture.name.upper(), culture.demonym.upper()):
            return culture
    return None


def import_clca(
    path: str | Path,
    *,
    out_dir: str | Path,
    culture_dirs: Iterable[str | Path] = (),
    overwrite: bool = False,
    strict: bool = False,
) -> ImportReport:
    """Write one template per CLCA scenario line into `out_dir`; what was done and skipped."""
    from culturesim.scenarios.cultures import load_cultures

    path = Path(path)
    if not path.is_file():
        raise SotopiaError(f"{path}: no such file (CLCA scenarios are one JSON object a line)")
    cultures = load_cultures(culture_dirs)
    report = ImportReport(Path(out_dir), records_read="CLCA scenario(s)")
    objects, problems = raw_records(path)
    for problem in problems:
        _skip(report, problem, strict)
    texts: list[tuple[Path, str, str]] = []
    ids: dict[str, str] = {}
    valid = 0
    for raw, where in objects:
        label = f"{path}: {where}"
        scenario = _validate(raw, label)
        if isinstance(scenario, Skipped):
            _skip(report, scenario, strict)
            continue
        valid += 1
        culture = match_culture(scenario.culture, cultures)
        if culture is None:
            report.warnings.append(
                f"{label}: culture {scenario.culture!r} has no culture profile; the template "
                f"suits all cultures (add a profile with --culture-dir to pin it)"
            )
        for name in scenario.model_extra or {}:
            report.warnings.append(f"{label}: field '{name}' is not CLCA's; kept under `extra`")
        template_id = clca_template_id(scenario, raw, culture)
        if template_id in ids:
            _skip(
                report,
                Skipped(
                    label,
                    "duplicate scenario",
                    f"{label}: the same scenario as {ids[template_id]} (id {template_id!r}); "
                    "left out",
                ),
                strict,
            )
            continue
        ids[template_id] = label
        texts.append(
            (
                Path(out_dir) / f"{template_id}{SUFFIX}",
                clca_template(scenario, template_id, culture),
                label,
            )
        )
    report.environments = (
        valid,
        valid + sum(1 for s in report.skipped if s.reason != "duplicate scenario"),
    )
    existing = [str(target) for target, _, _ in texts if target.exists()]
    if existing and not overwrite:
        raise SotopiaError(
            f"{path}: would overwrite {len(existing)} existing file(s): {', '.join(existing)}; "
            "delete them, import into another folder, or pass --overwrite"
        )
    write_templates(texts, report, strict=strict)
    return report


def _skip(report: ImportReport, skipped: Skipped, strict: bool) -> None:
    if strict:
        raise SotopiaError(skipped.message)
    report.skipped.append(skipped)


def _validate(raw: Any, label: str) -> ClcaScenario | Skipped:
    if not isinstance(raw, dict):
        message = f"{label}: expected a JSON object (a CLCA scenario), got {type(raw).__name__}"
        return Skipped(label, "not an object", message)
    try:
        return ClcaScenario.model_validate(raw)
    except ValidationError as error:
        problems, fields = [], []
        for e in error.errors():
            loc = list(e["loc"])
            if loc[:1] == ["people"] and len(loc) > 1 and isinstance(loc[1], int):
                loc = [f"person{loc[1] + 1}", *loc[2:]]  # as the file names it
            where = ".".join(str(part) for part in loc) or "(record)"
            fields.append(where)
            message = str(e["msg"]).removeprefix("Value error, ")
            if loc == ["people"]:
                message = "a CLCA scenario needs person1 and person2 (each with a goal)"
            problems.append(f"field '{where}': {message}")
        return Skipped(label, f"field '{fields[0]}'", f"{label}: {'; '.join(problems)}")


def clca_template_id(
    scenario: ClcaScenario, raw: Mapping[str, Any], culture: Culture | None
) -> str:
    """`clca_<culture>_<tail>`: from the record's id, else a digest of the record."""
    place = culture.code.lower() if culture is not None else _slug(scenario.culture) or "x"
    if scenario.id:
        tail = re.sub(r"[^a-z0-9]", "", scenario.id.lower())
        tail = tail if len(tail) <= 12 else tail[-8:]
    else:
        text = json.dumps(raw, sort_keys=True, ensure_ascii=False)
        tail = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"clca_{place}_{tail or 'x'}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def clca_template(scenario: ClcaScenario, template_id: str, culture: Culture | None) -> str:
    """The text of a culturesim template file for one CLCA scenario."""
    participants = []
    for index, (person, name) in enumerate(zip(scenario.people, scenario.names(), strict=True), 1):
        persona: dict[str, Any] = {}
        if name:
            persona["name"] = name
        if person.age is not None:
            persona["age"] = [person.age, person.age]
        if person.gender.strip():
            persona["gender"] = person.gender.strip().lower()
        if person.occupation.strip():
            persona["occupation"] = person.occupation.strip()
        if person.background.strip():
            persona["background"] = " ".join(person.background.split())
        entry: dict[str, Any] = {"role": f"person{index}"}
        if name:
            entry["description"] = name
        if persona:
            entry["persona"] = persona
        participants.append(entry)
    extra: dict[str, Any] = {}
    if scenario.model_extra:
        extra["scenario"] = dict(scenario.model_extra)
    for index, person in enumerate(scenario.people, 1):
        if person.model_extra:
            extra[f"person{index}"] = dict(person.model_extra)
    front: dict[str, Any] = {
        "id": template_id,
        "title": scenario.title.strip() or _title(scenario.setting),
        "situation": "clca",
        "relationship": scenario.relationship.strip(),
        "description": f"Imported from a CLCA scenario for {scenario.culture}.",
        "participants": participants,
        "turns": {"limit": CLCA_TURN_LIMIT, "policy": "round_robin"},
        "cultures": [culture.code] if culture is not None else "all",
        "tags": ["clca", culture.code if culture is not None else _slug(scenario.culture)],
    }
    if extra:
        front["extra"] = extra
    lines = ["## setting", literal(scenario.setting)]
    for index, person in enumerate(scenario.people, 1):
        lines += [f"## goal person{index}", literal(person.goal)]
        if person.secrets.strip():
            lines += [f"## secret person{index}", literal(person.secrets)]
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1_000_000)
    return f"---\n{header}---\n" + "\n".join(lines) + "\n"


def _title(setting: str) -> str:
    """A short title from the setting's first sentence."""
    first = re.split(r"(?<=[.!?])\s", " ".join(setting.split()), maxsplit=1)[0].rstrip(".!?")
    return first if len(first) <= 80 else first[:77].rsplit(" ", 1)[0] + "..."

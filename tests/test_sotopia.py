"""Sotopia interop on the database-shaped fixture: reading profiles, import to template files,
export back, round trips. The other shapes Sotopia writes, pairings, personalities and goal tags
are in test_sotopia_shapes.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from culturesim.records import Culture, Persona
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.personas import PersonaSampler
from culturesim.scenarios.sotopia import (
    RELATIONSHIP_WORDS,
    AgentProfile,
    EnvironmentProfile,
    SotopiaError,
    assign_agents,
    export_agents,
    export_environment,
    export_sotopia,
    import_environment,
    import_sotopia,
    read_sotopia,
    read_sotopia_file,
    relationship_code,
    slugify,
    split_goal,
)
from culturesim.scenarios.templates import (
    ScenarioLibrary,
    ScenarioTemplate,
    builtin_scenario_dir,
    load_template_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sotopia"
ENVIRONMENTS = FIXTURES / "environments.json"
AGENTS = FIXTURES / "agents.jsonl"
# Named from the codename and the tail of the record's id; the last record has no id.
IDS = ["scratched_camera_lens_r1s5t0wa", "template_night_part_2_r1s5t0wb", "family_dinner_seating"]


def raw_environments() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(ENVIRONMENTS.read_text(encoding="utf-8"))
    return data


def raw_agents() -> list[dict[str, Any]]:
    lines = AGENTS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def cultures() -> dict[str, Culture]:
    return load_cultures()


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    """The fixture environments imported with the fixture agents; the output folder."""
    out = tmp_path / "imported"
    import_sotopia(ENVIRONMENTS, AGENTS, out_dir=out)
    return out


def library_over(folder: Path) -> ScenarioLibrary:
    # Only the folder under test: the shipped library is being edited by others meanwhile.
    return ScenarioLibrary([folder], builtin=False)


def cast_for(template: ScenarioTemplate, culture: Culture, seed: int = 0) -> list[Persona]:
    sampler = PersonaSampler()
    return [sampler.sample(culture, seed, p.persona, slot=p.role) for p in template.participants]


def normalized(text: str) -> str:
    return " ".join(text.split())


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading


def test_reads_json_lists_jsonl_and_single_objects(tmp_path: Path) -> None:
    environments = read_sotopia_file(ENVIRONMENTS, "environment")
    agents = read_sotopia_file(AGENTS, "agent")
    assert [e.codename for e in environments] == [e["codename"] for e in raw_environments()]
    assert [a.first_name for a in agents] == ["Mara", "Tomasz", "Ren", "Lucía"]
    assert environments[0].pk == "01HZQ7E3K9V2M8N4P6R1S5T0WA"
    assert environments[2].age_constraint is None and environments[2].tag == ""
    assert agents[3].big_five == "" and agents[3].moral_values == []

    single = write_json(tmp_path / "one.json", raw_environments()[2])
    assert read_sotopia_file(single, "environment")[0].relationship == 5
    # JSON Lines under a .json name is recognised by its shape.
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(e) for e in raw_environments()) + "\n")
    assert len(read_sotopia_file(lines, "environment")) == 3


def test_strict_types_are_not_coerced(tmp_path: Path) -> None:
    record = {**raw_agents()[0], "age": "34"}
    path = write_json(tmp_path / "agents.json", [record])
    with pytest.raises(SotopiaError) as caught:
        read_sotopia_file(path, "agent")
    message = str(caught.value)
    assert str(path) in message and "item [0]" in message and "'Mara'" in message
    assert "field 'age'" in message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"relationship": 7}, "relationship", "5 family_member"),
        ({"relationship": True}, "relationship", "RelationshipType"),
        ({"agent_goals": ["only one goal"]}, "agent_goals", "at least two"),
        ({"age_constraint": "[(18, 70), (18, 70), (18, 70)]"}, "age_constraint", "only 2 goals"),
        ({"age_constraint": "eighteen to seventy"}, "age_constraint", "(min, max) pairs"),
        ({"scenario": None}, "scenario", "expected str"),
    ],
)
def test_bad_environment_records_name_file_record_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    records = raw_environments()
    records[1] = {**records[1], **change}
    path = write_json(tmp_path / "envs.json", records)
    with pytest.raises(SotopiaError) as caught:
        read_sotopia_file(path, "environment")
    message = str(caught.value)
    assert str(path) in message
    assert "item [1]" in message and "'Template Night!  (part 2)'" in message
    assert "01HZQ7E3K9V2M8N4P6R1S5T0WB" in message
    assert f"field '{field}'" in message
    assert words in message


def test_bad_agent_line_in_jsonl_names_the_line(tmp_path: Path) -> None:
    lines = AGENTS.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "moral_values": "Care"})
    path = tmp_path / "agents.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SotopiaError) as caught:
        read_sotopia_file(path, "agent")
    message = str(caught.value)
    assert str(path) in message and "line 3" in message and "'Ren'" in message
    assert "field 'moral_values'" in message and "list" in message


def test_unknown_fields_are_kept_with_a_warning(tmp_path: Path) -> None:
    records = raw_environments()
    records[1] = {**records[1], "mood": "tense"}
    path = write_json(tmp_path / "envs.json", records)
    result = read_sotopia(path, "environment")
    assert len(result.records) == 3 and not result.skipped
    assert result.records[1].record.unknown_fields == {"mood": "tense"}
    (warning,) = result.warnings
    assert "item [1]" in warning and "field 'mood'" in warning and "kept" in warning


def test_broken_json_names_the_file_and_position(tmp_path: Path) -> None:
    text = ENVIRONMENTS.read_text(encoding="utf-8")
    broken = tmp_path / "envs.json"
    broken.write_text(text.replace('"relationship": 3,', '"relationship": 3', 1))
    with pytest.raises(SotopiaError) as caught:
        read_sotopia_file(broken, "environment")
    line = text[: text.index('"relationship": 3,')].count("\n") + 2
    assert f"{broken}:{line}:" in str(caught.value) and "not valid JSON" in str(caught.value)

    lines = AGENTS.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-1]  # drop the closing brace
    broken_lines = tmp_path / "agents.jsonl"
    broken_lines.write_text("\n".join(lines))
    with pytest.raises(SotopiaError, match=r"agents\.jsonl: line 2: not valid JSON"):
        read_sotopia_file(broken_lines, "agent")


def test_a_record_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = write_json(tmp_path / "envs.json", [raw_environments()[0], "borrow_money"])
    with pytest.raises(SotopiaError, match=r"envs\.json: item \[1\]: expected a JSON object"):
        read_sotopia_file(path, "environment")


# --------------------------------------------------------------------------- import


def test_import_writes_valid_templates_with_mapped_fields(imported: Path) -> None:
    assert sorted(p.name for p in imported.iterdir()) == sorted(f"{i}.scenario.jinja2" for i in IDS)
    camera, night, dinner = (load_template_file(imported / f"{i}.scenario.jinja2") for i in IDS)
    assert camera.title == "Scratched camera lens"
    assert camera.relationship == "friends" and dinner.relationship == "family"
    assert camera.tags == ("sotopia", "hand_written", "culturesim_fixture_v1")
    assert camera.roles == ["agent1", "agent2"]
    # Agents go in file order, two per environment, wrapping round: Mara+Tomasz again at dinner.
    assert [p.persona.name for p in dinner.participants] == ["Mara Okafor", "Tomasz Wierzbicki"]
    assert [p.persona.age for p in dinner.participants] == [(34, 34), (51, 51)]
    assert dinner.participants[0].persona.gender == "female"
    assert dinner.participants[0].persona.occupation == "Sound engineer"
    # Ren's age is unknown (0), so the environment's age constraint applies; Lucía's age wins.
    assert [p.persona.age for p in night.participants] == [(25, 40), (27, 27)]
    assert night.participants[0].persona.gender == "Nonbinary"
    assert night.participants[0].persona.background is not None
    assert "{{ templating }}" in night.participants[0].persona.background


def test_import_without_agents_uses_age_constraint_only(tmp_path: Path) -> None:
    paths = import_sotopia(ENVIRONMENTS, out_dir=tmp_path).written
    night = load_template_file(paths[1])
    assert [p.persona.age for p in night.participants] == [(25, 40), (30, 60)]
    assert all(p.persona.name is None for p in night.participants)
    assert not any(line.startswith("## secret") for line in night.body.splitlines())
    # Without agents a goal's tagged text is still the role's private information.
    camera = load_template_file(paths[0])
    assert "## secret agent1\nPrivate information: A repair shop quoted" in camera.body


def test_imported_templates_render_for_several_cultures(
    imported: Path, cultures: dict[str, Culture]
) -> None:
    library = library_over(imported)
    environments = raw_environments()
    agents = raw_agents()
    for template_id, environment in zip(IDS, environments, strict=True):
        template = library.get(template_id)
        for code in ("USA", "JPN", "NGA"):
            scenario = library.render(template, cultures[code], cast_for(template, cultures[code]))
            assert scenario.setting == normalized(environment["scenario"])
            assert [r.goal for r in scenario.roles] == [
                normalized(split_goal(g).text) for g in environment["agent_goals"]
            ]
            assert scenario.culture == code and scenario.turn_limit == 20
    dinner = library.get("family_dinner_seating")
    scenario = library.render(dinner, cultures["JPN"], cast_for(dinner, cultures["JPN"]))
    assert [r.secret for r in scenario.roles] == [agents[0]["secret"], ""]
    camera = library.get(IDS[0])
    scenario = library.render(camera, cultures["USA"], cast_for(camera, cultures["USA"]))
    assert scenario.roles[0].goal == (
        "Get your friend to pay for the lens repair without straining the friendship"
    )
    assert scenario.roles[0].secret == (
        f"{agents[0]['secret']} Private information: A repair shop quoted about 300 dollars."
    )
    assert scenario.roles[1].secret == "Strategy hint: You could offer help that is not money."


def test_jinja_markup_in_sotopia_text_renders_verbatim(
    imported: Path, cultures: dict[str, Culture]
) -> None:
    library = library_over(imported)
    night = library.get(IDS[1])
    scenario = library.render(night, cultures["USA"], cast_for(night, cultures["USA"]))
    for piece in (
        "{{ x }} is replaced",
        "{% if ready %}ship it{% endif %}",
        "{# not a comment #}",
        "even {% endraw %} and #} stay",
        "## secret agent1 That line above",
    ):
        assert piece in scenario.setting
    assert "{{ name }} must be escaped" in scenario.roles[0].goal
    assert "{%- raw %} and {% endraw -%} both stay" in scenario.roles[1].goal
    # The line that looks like a section header stayed in the setting, not in agent1's secret.
    assert scenario.roles[0].secret == "Ren wrote the buggy template on the whiteboard."


def test_import_refuses_to_overwrite_unless_asked(imported: Path) -> None:
    target = imported / f"{IDS[0]}.scenario.jinja2"
    target.write_text("my local edits", encoding="utf-8")
    with pytest.raises(SotopiaError) as caught:
        import_sotopia(ENVIRONMENTS, AGENTS, out_dir=imported)
    assert str(target) in str(caught.value) and "overwrite" in str(caught.value)
    assert target.read_text(encoding="utf-8") == "my local edits"

    paths = import_sotopia(ENVIRONMENTS, AGENTS, out_dir=imported, overwrite=True).written
    assert target in paths
    assert load_template_file(target).id == IDS[0]
    assert not any(p.name.startswith(".sotopia-import") for p in imported.iterdir())


def test_duplicate_and_unusable_codenames_get_distinct_ids(tmp_path: Path) -> None:
    first = raw_environments()[0]
    records = [first, {**first, "pk": "other"}, {**first, "codename": "雨の日", "pk": "third"}]
    paths = import_sotopia(write_json(tmp_path / "e.json", records), out_dir=tmp_path / "out")
    ids = [load_template_file(p).id for p in paths.written]
    assert ids == [IDS[0], "scratched_camera_lens_other", "sotopia_third"]


def test_clashing_ids_are_numbered_by_content_not_file_order(tmp_path: Path) -> None:
    """Records without ids and with one codename are told apart the same way in any order."""
    dinner = raw_environments()[2]
    twins = [dinner, {**dinner, "relationship": 3}]
    names = []
    for order, records in (("a", twins), ("b", twins[::-1])):
        out = tmp_path / order
        import_sotopia(write_json(tmp_path / f"{order}.json", records), out_dir=out)
        names.append({p.name: p.read_text(encoding="utf-8") for p in out.iterdir()})
    assert sorted(names[0]) == [
        "family_dinner_seating.scenario.jinja2",
        "family_dinner_seating_2.scenario.jinja2",
    ]
    assert names[0] == names[1]


def test_slugify_and_relationship_words() -> None:
    assert slugify("Template Night!  (part 2)") == "template_night_part_2"
    assert slugify("Café--Meeting") == "cafe--meeting"
    for code, word in enumerate(RELATIONSHIP_WORDS):
        assert relationship_code(word) == code
    assert relationship_code("siblings") == 5
    assert relationship_code("neighbours") == 2
    assert relationship_code("strangers, business") == 0
    assert relationship_code("old friends") == 3
    assert relationship_code("romantic_relationship") == 4
    assert relationship_code("workplace hierarchy") == 2
    assert relationship_code("") == 0


def test_agent_count_must_match_goals() -> None:
    environment = EnvironmentProfile.model_validate(raw_environments()[0])
    one = [AgentProfile.model_validate(raw_agents()[0])]
    with pytest.raises(SotopiaError, match="2 agent goals but got 1"):
        import_environment(environment, one)
    with pytest.raises(SotopiaError, match="at least 2"):
        assign_agents([environment], one)


# --------------------------------------------------------------------------- round trips


def test_import_then_export_reproduces_every_field(imported: Path, tmp_path: Path) -> None:
    library = library_over(imported)
    templates = library.select(IDS)
    casts = [raw_agents()[i % 4] for i in range(6)]  # the assignment rule: in order, wrapping
    for template, environment, index in zip(templates, raw_environments(), range(3), strict=True):
        assert export_environment(template, library, shape="db") == environment
        assert export_agents(template, library, shape="db") == casts[2 * index : 2 * index + 2]

    out, agents_out = tmp_path / "envs.jsonl", tmp_path / "agents.jsonl"
    written = export_sotopia(templates, out, agents_path=agents_out, library=library, shape="db")
    assert written == raw_environments()
    assert [json.loads(line) for line in out.read_text().splitlines()] == raw_environments()
    assert [json.loads(line) for line in agents_out.read_text().splitlines()] == casts


def test_round_trip_without_agents_and_for_any_render_culture(imported: Path) -> None:
    library = library_over(imported)
    for template_id, environment in zip(IDS, raw_environments(), strict=True):
        template = library.get(template_id)
        for culture in ("USA", "CHN"):
            exported = export_environment(template, library, culture=culture, seed=7, shape="db")
            assert exported == environment


def test_export_reimport_export_is_stable(imported: Path, tmp_path: Path) -> None:
    library = library_over(imported)
    first = tmp_path / "first.jsonl"
    export_sotopia(library.select(IDS), first, agents_path=tmp_path / "a.jsonl", library=library)
    again = tmp_path / "again"
    import_sotopia(first, tmp_path / "a.jsonl", out_dir=again)
    second = tmp_path / "second.jsonl"
    again_library = library_over(again)
    export_sotopia(again_library.select(IDS), second, library=again_library)
    assert second.read_text(encoding="utf-8") == first.read_text(encoding="utf-8")


def test_edited_fields_are_exported_from_the_template(imported: Path) -> None:
    path = imported / f"{IDS[0]}.scenario.jinja2"
    text = path.read_text(encoding="utf-8")
    text = text.replace("in a quiet cafe", "in a noisy bar", 1)
    text = text.replace("relationship: friends", "relationship: siblings", 1)
    text = text.replace(f"id: {IDS[0]}", "id: scratched_camera_lens_bar", 1)
    path.write_text(text, encoding="utf-8")
    library = library_over(imported)
    template = library.get("scratched_camera_lens_bar")
    original = raw_environments()[0]

    exported = export_environment(template, library, shape="db")
    assert "noisy bar" in exported["scenario"] and "cafe" not in exported["scenario"]
    assert exported["relationship"] == 5
    assert exported["codename"] == "scratched_camera_lens_bar"
    assert "pk" not in exported  # a renamed variant must not overwrite the original in Sotopia
    assert export_environment(template, library)["env_id"] == ""  # nor in the export shape
    # Untouched fields still come back exactly as read, markup included.
    assert exported["agent_goals"] == original["agent_goals"]
    for key in ("source", "tag", "age_constraint", "occupation_constraint", "agent_constraint"):
        assert exported[key] == original[key]


def test_edited_persona_changes_only_its_agent_fields(imported: Path) -> None:
    path = imported / "family_dinner_seating.scenario.jinja2"
    text = path.read_text(encoding="utf-8")
    assert "age:\n    - 51\n    - 51" in text
    path.write_text(text.replace("age:\n    - 51\n    - 51", "age:\n    - 60\n    - 65", 1))
    library = library_over(imported)
    template = library.get("family_dinner_seating")
    exported = export_environment(template, library, shape="db")
    assert exported["age_constraint"] == "[(34, 34), (60, 65)]"
    agents = export_agents(template, library, shape="db")
    assert 60 <= agents[1]["age"] <= 65
    assert {k: v for k, v in agents[1].items() if k != "age"} == {
        k: v for k, v in raw_agents()[1].items() if k != "age"
    }
    assert agents[0] == raw_agents()[0]


def test_damaged_original_block_is_reported(imported: Path) -> None:
    path = imported / "family_dinner_seating.scenario.jinja2"
    path.write_text(path.read_text().replace('"relationship": 5', '"relationship": 9'))
    library = library_over(imported)
    with pytest.raises(SotopiaError, match="sotopia-original v1' comment block is damaged"):
        export_environment(library.get("family_dinner_seating"), library)


# --------------------------------------------------------------------------- native templates


@pytest.fixture
def native(tmp_path: Path) -> ScenarioLibrary:
    """Two shipped templates and their macros in a folder of their own."""
    folder = tmp_path / "native"
    folder.mkdir()
    for name in (
        "_macros.jinja2",
        "borrow_money.scenario.jinja2",
        "community_meeting.scenario.jinja2",
    ):
        shutil.copy(builtin_scenario_dir() / name, folder / name)
    return library_over(folder)


def test_native_template_exports_rendered_text(native: ScenarioLibrary) -> None:
    exported = export_environment(native.get("borrow_money"), native)
    assert exported["codename"] == "borrow_money" and exported["source"] == "culturesim"
    # The export shape, as Sotopia's JSONL loader reads it: every key, the id empty (new record).
    assert list(exported)[:9] == [
        "env_id", "codename", "source", "scenario", "agent_goals", "relationship",
        "age_constraint", "occupation_constraint", "agent_constraint",
    ]  # fmt: skip
    assert exported["env_id"] == "" and exported["relationship"] == "5"
    assert exported["agent_constraint"] == "none"
    assert export_environment(native.get("borrow_money"), native, shape="db")["relationship"] == 5
    assert exported["age_constraint"] == "[(24, 40), (48, 72)]"
    assert "3000 in local currency" in exported["scenario"]
    assert len(exported["agent_goals"]) == 2
    assert all("{" not in text for text in [exported["scenario"], *exported["agent_goals"]])
    assert EnvironmentProfile.model_validate(exported).codename == "borrow_money"

    agents = export_agents(native.get("borrow_money"), native)
    assert [AgentProfile.model_validate(a).secret for a in agents][1].startswith("Your savings")
    names = [f"{a['first_name']} {a['last_name']}" for a in agents]
    assert all(name in exported["scenario"] for name in names)

    meeting = export_environment(native.get("community_meeting"), native, culture="JPN")
    assert len(meeting["agent_goals"]) == 4 and meeting["relationship"] == "2"


def test_native_export_imports_back(native: ScenarioLibrary, tmp_path: Path) -> None:
    templates = native.select("all")
    envs, agents = tmp_path / "envs.jsonl", tmp_path / "agents.jsonl"
    written = export_sotopia(templates, envs, agents_path=agents, library=native)
    paths = import_sotopia(envs, agents, out_dir=tmp_path / "back").written
    back = library_over(tmp_path / "back")
    assert [load_template_file(p).id for p in paths] == ["borrow_money", "community_meeting"]
    for template, environment in zip(back.select("all"), written, strict=True):
        assert export_environment(template, back) == environment
        assert template.relationship == "family" or template.id == "community_meeting"

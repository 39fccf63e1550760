"""Sotopia's real data through the front door: every shape Sotopia writes, partial imports,
pairings, personalities, goal tags, stable names and both export shapes.

Fixtures (all written here, nothing fetched):
    fixtures/sotopia/export/   Sotopia's JSONL export: env_id / agent_id / combo_id, relationship
                               as text, "none" and "nan" for empty, mbti and model_id, no tag
    fixtures/sotopia/redis/    Sotopia-pi records from a Redis dump, pretty-printed and
                               concatenated: pk, integer relationships, model_id "nan",
                               moral_values ["['Care']"]; one environment of five has its goals
                               split at commas
    fixtures/sotopia/local/    Sotopia's local storage: one JSON file per record under
                               EnvironmentProfile/, AgentProfile/, EnvAgentComboStorage/, with
                               newer fields (tag, game_metadata, an empty codename) and fields
                               Sotopia does not define
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from culturesim.agents.roleplay.conversation import Conversation
from culturesim.cli import app
from culturesim.models.batcher import Batcher
from culturesim.records import Culture, Episode
from culturesim.scenarios.checks import check_templates
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes
from culturesim.scenarios.sotopia import (
    EnvironmentProfile,
    SotopiaError,
    export_agents,
    export_environment,
    export_sotopia,
    import_sotopia,
    join_goal,
    parse_big_five,
    read_sotopia,
    split_goal,
)
from culturesim.scenarios.templates import ScenarioLibrary, ScenarioTemplate, load_template_file
from tests.conftest import ScriptedModel

FIXTURES = Path(__file__).parent / "fixtures" / "sotopia"
EXPORT, REDIS, LOCAL = FIXTURES / "export", FIXTURES / "redis", FIXTURES / "local"
GOAL_TAGS = ("<extra_info", "<strategy_hint", "<clarification_hint", "</")
runner = CliRunner()


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def library_over(folder: Path) -> ScenarioLibrary:
    return ScenarioLibrary([folder], builtin=False)


@pytest.fixture(scope="module")
def cultures() -> dict[str, Culture]:
    return load_cultures()


# --------------------------------------------------------------------------- every shape


def test_the_jsonl_export_shape_is_read_record_by_record() -> None:
    environments = read_sotopia(EXPORT / "environments.jsonl", "environment")
    assert len(environments.records) == 5 and not environments.skipped
    first = environments.records[0].record
    assert first.pk == "01J3V7K2QG8N5R0T4W6Y9B1E01"  # env_id is the record's id
    assert [e.record.relationship for e in environments.records] == [3, 2, 0, 5, 1]
    assert first.occupation_constraint is None and first.agent_constraint is None
    assert environments.records[2].record.agent_constraint == [
        ["01J3V7K2QG8N5R0T4W6Y9BA001"],
        ["01J3V7K2QG8N5R0T4W6Y9BA002"],
    ]
    assert environments.records[0].raw == lines_of(EXPORT / "environments.jsonl")[0]
    agents = read_sotopia(EXPORT / "agents.jsonl", "agent")
    assert [a.record.mbti for a in agents.records] == ["ENFP", "ISTJ", "ESTJ", "ESFP"]
    assert agents.records[2].record.model_id == "gpt-4"
    assert not agents.warnings  # mbti and model_id are Sotopia's own fields
    combos = read_sotopia(EXPORT / "combos.jsonl", "combo")
    assert combos.records[0].record.pk == "01J3V7K2QG8N5R0T4W6Y9BC001"


def test_a_redis_dump_of_concatenated_pretty_json_reads_sotopia_pi_spellings() -> None:
    agents = read_sotopia(REDIS / "agents.json", "agent")
    keanu, ingrid = (a.record for a in agents.records)
    assert agents.records[0].where.endswith(
        "line 1 (first_name 'Keanu', last_name 'Akana', pk '01H6S9W0EZHQMW2RX8G5T3A001')"
    )
    assert keanu.moral_values == ["Care"]
    assert keanu.schwartz_personal_values == ["Benevolence", "Universalism"]
    assert keanu.model_id == "" and ingrid.mbti == ""  # "nan" was pandas for "missing"
    environments = read_sotopia(REDIS / "environments.json", "environment")
    assert [e.record.codename for e in environments.records] == [
        "borrow_car_for_move",
        "office_thermostat",
        "anniversary_plans",
        "late_rent_payment",
    ]


def test_a_local_storage_folder_is_read_from_its_record_subfolders() -> None:
    environments = read_sotopia(LOCAL, "environment")
    trivia, jacket = (e.record for e in environments.records)
    assert trivia.game_metadata == {"mode": "conversation", "rounds": 3}
    assert trivia.tag == "local_v2" and jacket.codename == ""
    assert trivia.unknown_fields == {"difficulty": "easy"}
    (warning,) = environments.warnings
    assert "01JA2B3C4D5E6F7G8H9J0KE001.json" in warning and "field 'difficulty'" in warning
    assert len(read_sotopia(LOCAL, "agent").records) == 2
    assert len(read_sotopia(LOCAL / "EnvAgentComboStorage", "combo").records) == 2


@pytest.mark.parametrize(
    ("given", "code"),
    [(3, 3), ("3", 3), ("RelationshipType.friend", 3), ("family_member", 5)],
)
def test_relationship_spellings_sotopia_writes(given: Any, code: int) -> None:
    record = {"scenario": "s", "agent_goals": ["a", "b"], "relationship": given}
    assert EnvironmentProfile.model_validate(record).relationship == code


def test_two_different_ids_on_one_record_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "envs.jsonl"
    record = {"pk": "a", "env_id": "b", "scenario": "s", "agent_goals": ["x", "y"]}
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(
        SotopiaError, match=r"envs\.jsonl.*two different ids \(pk 'a', env_id 'b'\)"
    ):
        read_sotopia(path, "environment", strict=True)


# --------------------------------------------------------------------------- partial imports


def test_one_bad_record_of_five_is_skipped_and_the_four_others_imported(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = cli("scenarios", "import", "sotopia", str(REDIS / "environments.json"),
                       "--agents", str(REDIS / "agents.json"), "--out", str(out))  # fmt: skip
    assert code == 0, output
    assert "imported 4 template(s)" in output and "4 of 5 environment record(s) valid" in output
    assert "skipped 1: 1 field 'age_constraint'" in output
    # The message names the file, the record and the field, and its hint keeps the record right.
    assert "environments.json: line 46 (codename 'shared_garden_plot'" in output
    assert "the goals look split" in output and "one per agent" in output
    assert "Do not add age ranges" in output
    assert len(list(out.glob("*.scenario.jinja2"))) == 4
    assert all(r.ok for r in check_templates([out]))


def test_strict_refuses_the_file_at_its_bad_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = cli("scenarios", "import", "sotopia", str(REDIS / "environments.json"),
                       "--out", str(out), "--strict")  # fmt: skip
    assert code == 1
    assert "shared_garden_plot" in output and "field 'age_constraint'" in output
    assert not out.exists() or not any(out.iterdir())


def test_a_broken_line_costs_only_itself_and_nothing_imported_exits_non_zero(
    tmp_path: Path,
) -> None:
    lines = (EXPORT / "environments.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-2]  # the second record loses its end
    broken = tmp_path / "envs.jsonl"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_sotopia(broken, out_dir=tmp_path / "out")
    assert len(report.written) == 4
    (skip,) = report.skipped
    assert skip.reason == "not valid JSON" and "envs.jsonl: line 2" in skip.message

    nothing = tmp_path / "nothing.jsonl"
    nothing.write_text(json.dumps({"env_id": "x", "scenario": "s", "agent_goals": ["a"]}) + "\n")
    code, output = cli("scenarios", "import", "sotopia", str(nothing), "--out", str(tmp_path / "o"))
    assert code == 1 and "nothing imported" in output and "field 'agent_goals'" in output


# --------------------------------------------------------------------------- pairings


def test_pairings_give_one_cast_per_pairing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = import_sotopia(EXPORT / "environments.jsonl", EXPORT / "agents.jsonl",
                            combos_path=EXPORT / "combos.jsonl", out_dir=out)  # fmt: skip
    names = sorted(p.name.removesuffix(".scenario.jinja2") for p in report.written)
    assert names == [
        "cracked_laptop_screen_6y9bc001",
        "cracked_laptop_screen_6y9bc002",
        "job_reference_6y9bc003",
        "noisy_neighbour_6y9bc004",
        "wedding_speech_6y9bc005",
    ]
    casts = {
        name: [
            p.persona.name for p in load_template_file(out / f"{name}.scenario.jinja2").participants
        ]
        for name in names
    }
    assert casts["cracked_laptop_screen_6y9bc001"] == ["Noor Haddad", "Jonas Lindqvist"]
    assert casts["cracked_laptop_screen_6y9bc002"] == ["Tomás Varga", "Jonas Lindqvist"]
    assert casts["wedding_speech_6y9bc005"] == ["Amaka Eze", "Noor Haddad"]
    assert report.unpaired == ["split_the_bill"] and report.pairings == (5, 5)
    assert "1 environment(s) named by no pairing, not imported: split_the_bill" in report.summary()


def test_a_pairing_that_names_an_unknown_agent_is_skipped_with_its_reason(tmp_path: Path) -> None:
    combos = lines_of(EXPORT / "combos.jsonl")
    combos[1]["agent_ids"] = ["01J3V7K2QG8N5R0T4W6Y9BA004", "nobody"]
    combos[2]["agent_ids"] = ["01J3V7K2QG8N5R0T4W6Y9BA004"]
    path = tmp_path / "combos.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in combos))
    report = import_sotopia(EXPORT / "environments.jsonl", EXPORT / "agents.jsonl",
                            combos_path=path, out_dir=tmp_path / "out")  # fmt: skip
    assert len(report.written) == 3
    assert report.reasons() == {
        "pairing names an unread agent": 1,
        "pairing's agents do not fit the goals": 1,
    }
    assert any("line 2" in s.message and "'nobody'" in s.message for s in report.skipped)
    with pytest.raises(SotopiaError, match="give the agent profiles too"):
        import_sotopia(EXPORT / "environments.jsonl", combos_path=path, out_dir=tmp_path / "x")


def test_a_local_data_folder_imports_with_its_pairings_and_keeps_unknown_fields(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    report = import_sotopia(LOCAL, LOCAL, combos_path=LOCAL, out_dir=out)
    assert sorted(p.name for p in report.written) == [
        "sotopia_9j0kc002.scenario.jinja2",  # no codename: named for where it came from
        "trivia_night_team_9j0kc001.scenario.jinja2",
    ]
    assert len(report.warnings) == 2  # difficulty on the environment, hobby on an agent
    library = library_over(out)
    trivia = library.get("trivia_night_team_9j0kc001")
    assert trivia.extra == {
        "environment": {"difficulty": "easy"},
        "agent1": {"hobby": "crosswords"},
    }
    assert library.get("sotopia_9j0kc002").title == (
        "A customer returns a jacket to a small shop after wearing it once"
    )
    files = {p.stem: json.loads(p.read_text()) for p in LOCAL.rglob("*.json")}
    environment = export_environment(trivia, library, shape="db")
    assert environment == files["01JA2B3C4D5E6F7G8H9J0KE001"]  # game_metadata, tag, difficulty
    assert export_agents(trivia, library, shape="db") == [
        files["01JA2B3C4D5E6F7G8H9J0KA001"],
        files["01JA2B3C4D5E6F7G8H9J0KA002"],
    ]
    # The front matter is where an unknown field is seen and edited; export follows it.
    path = out / "trivia_night_team_9j0kc001.scenario.jinja2"
    path.write_text(path.read_text().replace("    difficulty: easy", "    difficulty: hard"))
    edited = library_over(out).get("trivia_night_team_9j0kc001")
    assert export_environment(edited, library_over(out), shape="db")["difficulty"] == "hard"


# --------------------------------------------------------------------------- stable names


def test_reimporting_reordered_files_gives_the_same_templates(tmp_path: Path) -> None:
    reordered = {}
    for name in ("environments.jsonl", "agents.jsonl", "combos.jsonl"):
        lines = (EXPORT / name).read_text(encoding="utf-8").splitlines()
        reordered[name] = tmp_path / name
        reordered[name].write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    texts = []
    for folder, source in (("first", EXPORT), ("again", tmp_path)):
        out = tmp_path / folder
        import_sotopia(source / "environments.jsonl", source / "agents.jsonl",
                       combos_path=source / "combos.jsonl", out_dir=out)  # fmt: skip
        texts.append({p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir())})
    assert list(texts[0]) == list(texts[1]) and len(texts[0]) == 5
    assert texts[0] == texts[1]

    # Without pairings, environments keep their names in any order too.
    plain = [
        sorted(p.name for p in import_sotopia(path, out_dir=tmp_path / f"plain{i}").written)
        for i, path in enumerate((EXPORT / "environments.jsonl", reordered["environments.jsonl"]))
    ]
    assert plain[0] == plain[1]
    assert plain[0][0] == "cracked_laptop_screen_6y9b1e01.scenario.jinja2"


# --------------------------------------------------------------------------- export both ways


def test_the_export_shape_reimported_gives_every_field_back(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    report = import_sotopia(EXPORT / "environments.jsonl", EXPORT / "agents.jsonl", out_dir=out)
    library = library_over(out)
    templates = [library.get(load_template_file(p).id) for p in report.written]
    envs_out, agents_out = tmp_path / "envs.jsonl", tmp_path / "agents.jsonl"
    export_sotopia(templates, envs_out, agents_path=agents_out, library=library, shape="export")
    assert lines_of(envs_out) == lines_of(EXPORT / "environments.jsonl")
    agents = lines_of(EXPORT / "agents.jsonl")
    dealt = [agents[i % 4] for i in range(10)]  # file order, two per environment, wrapping
    assert lines_of(agents_out) == dealt
    assert (EXPORT / "environments.jsonl").read_text(encoding="utf-8") == envs_out.read_text(
        encoding="utf-8"
    )

    # Through the command line, the export shape is the default, and it imports back by id.
    again = tmp_path / "again.jsonl"
    code, output = cli("scenarios", "export", "sotopia", "--out", str(again), "--scenario-dir",
                       str(out), "--scenarios", "tag:sotopia")  # fmt: skip
    assert code == 0 and "(export shape)" in output
    by_id = sorted(lines_of(EXPORT / "environments.jsonl"), key=lambda e: e["env_id"])
    assert sorted(lines_of(again), key=lambda e: e["env_id"]) == by_id
    back = import_sotopia(again, out_dir=tmp_path / "back")
    assert sorted(p.name for p in back.written) == sorted(p.name for p in report.written)


def test_a_pairing_exports_its_own_agents(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_sotopia(EXPORT / "environments.jsonl", EXPORT / "agents.jsonl",
                   combos_path=EXPORT / "combos.jsonl", out_dir=out)  # fmt: skip
    library = library_over(out)
    agents = {a["agent_id"]: a for a in lines_of(EXPORT / "agents.jsonl")}
    for combo in lines_of(EXPORT / "combos.jsonl"):
        template = library.get(
            next(t for t in library.templates if t.endswith(combo["combo_id"][-8:].lower()))
        )
        assert export_agents(template, library) == [agents[i] for i in combo["agent_ids"]]
        assert export_environment(template, library)["env_id"] == combo["env_id"]


def test_database_records_export_in_either_shape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_sotopia(REDIS / "environments.json", REDIS / "agents.json", out_dir=out)
    library = library_over(out)
    template = library.get("office_thermostat_g5t3p002")
    raw = concatenated(REDIS / "environments.json")[1]
    assert export_environment(template, library, shape="db") == raw
    exported = export_environment(template, library, shape="export")
    assert exported["env_id"] == raw["pk"] and "pk" not in exported
    assert exported["relationship"] == "2" and exported["agent_constraint"] == "none"
    # Another shape writes the values the record means, not the dump's stand-ins for them.
    assert exported["occupation_constraint"] is None and exported["tag"] == raw["tag"]
    (agent,) = [a for a in export_agents(template, library) if a["first_name"] == "Ingrid"]
    assert agent["agent_id"] == "01H6S9W0EZHQMW2RX8G5T3A002" and agent["mbti"] == ""
    assert agent["moral_values"] == ["Fairness"]
    (same,) = [
        a for a in export_agents(template, library, shape="db") if a["first_name"] == "Ingrid"
    ]
    assert same["mbti"] == "nan" and same["moral_values"] == ["['Fairness']"]  # as read


def concatenated(path: Path) -> list[dict[str, Any]]:
    """The objects of a file of JSON objects written one after another."""
    text, decoder, position, objects = path.read_text(encoding="utf-8"), json.JSONDecoder(), 0, []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return objects
        value, position = decoder.raw_decode(text, position)
        objects.append(value)


# --------------------------------------------------------------------------- the person


def _episode(template: ScenarioTemplate, library: ScenarioLibrary, culture: Culture) -> Episode:
    return build_episodes(library, [template], [[culture]])[0]


def _system_prompts(episode: Episode, cultures: dict[str, Culture]) -> list[str]:
    with Batcher(ScriptedModel(lambda prompt: "ACTION: none")) as batcher:
        conversation = Conversation(episode, batcher, seed=0, cultures=cultures)
        return [conversation.system_prompt(role.name) for role in episode.scenario.roles]


def test_an_imported_agent_keeps_big_five_values_and_decision_style(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    out = tmp_path / "out"
    import_sotopia(REDIS / "environments.json", REDIS / "agents.json", out_dir=out)
    library = library_over(out)
    template = library.get("borrow_car_for_move_g5t3p001")
    episode = _episode(template, library, cultures["NZL"])
    keanu = episode.personas[0]
    assert keanu.name == "Keanu Akana"
    # "Conscientiousness – Low" (an en dash, as written) is a low score, not a sampled 0.5-ish.
    assert keanu.big_five == {
        "openness": 0.75,
        "conscientiousness": 0.25,
        "extraversion": 0.75,
        "agreeableness": 0.75,
        "neuroticism": 0.25,
    }
    assert keanu.values == ("Care", "Benevolence", "Universalism")
    assert keanu.decision_style == "Collaborative"
    prompt = _system_prompts(episode, cultures)[0]
    assert "conscientiousness low" in prompt and "openness high" in prompt
    assert "Values: Care, Benevolence, Universalism." in prompt
    assert "Decision-making style: Collaborative." in prompt
    assert "generous with his time" in prompt  # personality_and_values
    assert "He failed his captain's licence exam twice." in prompt  # the secret, as a secret


def test_no_goal_tag_reaches_a_rendered_prompt(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    folders = []
    for name, args in {
        "export": (EXPORT / "environments.jsonl", EXPORT / "agents.jsonl"),
        "redis": (REDIS / "environments.json", None),
        "local": (LOCAL, LOCAL),
    }.items():
        folders.append(tmp_path / name)
        import_sotopia(*args, out_dir=folders[-1])
    checked = 0
    for folder in folders:
        library = library_over(folder)
        for template in library.templates.values():
            episode = _episode(template, library, cultures["USA"])
            scenario = episode.scenario
            texts = [scenario.setting, *(r.goal for r in scenario.roles)]
            texts += [r.secret for r in scenario.roles]
            texts += _system_prompts(episode, cultures)
            assert not [t for t in texts if any(tag in t for tag in GOAL_TAGS)], template.id
            checked += 1
    assert checked == 11
    # ...while the tags' text is there, as the participant's private information and hints.
    library = library_over(folders[0])
    laptop = library.get("cracked_laptop_screen_6y9b1e01")
    prompts = _system_prompts(_episode(laptop, library, cultures["USA"]), cultures)
    assert "Private information: A repair shop quoted 250 dollars" in prompts[0]
    assert "Strategy hint: You could offer to split the cost" in prompts[1]
    assert "Strategy hint" not in prompts[0]


def test_edited_hints_go_back_into_their_tags(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_sotopia(EXPORT / "environments.jsonl", out_dir=out)
    path = out / "job_reference_6y9b1e02.scenario.jinja2"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "Strategy hint: Ask what the new role involves before promising anything.",
        "Strategy hint: Offer a shorter letter instead.",
    )
    text = text.replace(
        "Get a strong reference letter by Friday\n", "Get a warm letter by Friday\n"
    )
    path.write_text(text, encoding="utf-8")
    library = library_over(out)
    goals = export_environment(library.get("job_reference_6y9b1e02"), library)["agent_goals"]
    assert goals == [
        "Get a warm letter by Friday <clarification_hint>The application closes on Friday at "
        "noon.</clarification_hint>",
        "Decide whether you can honestly write the letter <extra_info>You remember the "
        "colleague missing two deadlines on a shared project.</extra_info> <strategy_hint>Offer "
        "a shorter letter instead.</strategy_hint>",
    ]


def test_split_goal_reads_tags_as_sotopia_does() -> None:
    goal = split_goal("Win <extra_info x='1'>secret plan</extra_info> now <strategy_hint>be kind")
    assert goal.text == "Win now"
    assert goal.private == (("extra_info", "secret plan"), ("strategy_hint", "be kind"))
    assert join_goal(goal) == (
        "Win now <extra_info>secret plan</extra_info> <strategy_hint>be kind</strategy_hint>"
    )
    assert split_goal("No tags, {{ braces }} kept").text == "No tags, {{ braces }} kept"
    assert split_goal("stray </clarification_hint> tag").text == "stray tag"
    only = split_goal("<extra_info>all of it is hidden</extra_info>")
    assert only.text == "all of it is hidden" and only.private == ()


def test_big_five_text_in_the_spellings_sotopia_data_uses() -> None:
    scores, leftover = parse_big_five(
        "Openness to Experience - Moderately high; Conscientiousness – Low; "
        "Extroversion: very high; Emotional stability - High; curious about people"
    )
    assert scores == {
        "openness": 0.6,
        "conscientiousness": 0.25,
        "extraversion": 0.9,
        "neuroticism": 0.25,
    }
    assert leftover == ["curious about people"]


def test_fixed_traits_change_only_the_traits_of_a_sampled_person(
    cultures: dict[str, Culture],
) -> None:
    from culturesim.scenarios.personas import PersonaSampler, PersonaSpec

    sampler = PersonaSampler()
    plain = sampler.sample(cultures["KEN"], 4, PersonaSpec(age=(30, 50)), slot="agent1")
    fixed = sampler.sample(
        cultures["KEN"],
        4,
        PersonaSpec(
            age=(30, 50),
            big_five={"conscientiousness": "low", "openness": 0.9},
            decision_style="Analytical",
        ),
        slot="agent1",
    )
    # Same person (and the same record id): the traits are set after every draw.
    assert fixed.id == plain.id
    assert (fixed.name, fixed.age, fixed.occupation) == (plain.name, plain.age, plain.occupation)
    assert fixed.values == plain.values and fixed.decision_style == "Analytical"
    assert fixed.big_five["conscientiousness"] == 0.25 and fixed.big_five["openness"] == 0.9
    assert fixed.big_five["extraversion"] == plain.big_five["extraversion"]
    assert fixed.background.startswith(plain.background.split(" They care")[0])
    assert "Big Five: openness very high, conscientiousness low." in fixed.background
    assert "Big Five" not in plain.background
    with pytest.raises(ValueError, match="'grit' is not a Big Five trait"):
        PersonaSpec(big_five={"grit": 0.5})
    with pytest.raises(ValueError, match="'lowish' is not a level"):
        PersonaSpec(big_five={"openness": "lowish"})


def test_missing_values_written_as_nan_or_null_read_as_the_defaults() -> None:
    from culturesim.scenarios.sotopia import AgentProfile

    agent = AgentProfile.model_validate(
        {
            "first_name": "Ada",
            "last_name": "Obi",
            "secret": None,
            "mbti": float("nan"),
            "age": "nan",
            "moral_values": "nan",
            "model_id": "NaN",
        }
    )
    assert (agent.secret, agent.mbti, agent.age, agent.moral_values) == ("", "", 0, [])
    assert agent.model_id == ""
    with pytest.raises(ValueError, match="first_name"):
        AgentProfile.model_validate({"first_name": None, "last_name": "Obi"})


def test_a_key_value_dump_is_opened_into_its_records(tmp_path: Path) -> None:
    records = concatenated(REDIS / "agents.json")
    dump = {f"sotopia.database.persistent_profile.AgentProfile:{r['pk']}": r for r in records}
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(dump, indent=2), encoding="utf-8")
    result = read_sotopia(path, "agent")
    assert [a.record.first_name for a in result.records] == ["Keanu", "Ingrid"]
    assert "key 'sotopia.database.persistent_profile.AgentProfile:01H6" in result.records[0].where
    # A single record is not mistaken for a dump of them.
    single = tmp_path / "one.json"
    single.write_text(json.dumps(records[0]), encoding="utf-8")
    assert read_sotopia(single, "agent").records[0].record.first_name == "Keanu"

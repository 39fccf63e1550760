"""CLCA's role-play scenarios (one JSON object a line: culture, setting, persona "A and B",
person1/person2 with background, occupation, goal, secrets) imported as templates that check."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.scenarios.checks import check_templates
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes
from culturesim.scenarios.sotopia import import_clca
from culturesim.scenarios.templates import ScenarioLibrary, load_template_file

SCENARIOS = Path(__file__).parent / "fixtures" / "clca" / "scenarios.jsonl"
runner = CliRunner()


def test_clca_scenarios_import_pinned_to_their_cultures_and_check(tmp_path: Path) -> None:
    out = tmp_path / "clca"
    report = import_clca(SCENARIOS, out_dir=out)
    templates = {p.name: load_template_file(p) for p in report.written}
    assert len(templates) == 3
    by_culture = {t.cultures: t for t in templates.values()}
    assert set(by_culture) == {("CHN",), ("GBR",), ("MEX",)}  # "UK" is the United Kingdom
    china = by_culture[("CHN",)]
    assert china.id.startswith("clca_chn_") and china.roles == ["person1", "person2"]
    assert [p.persona.name for p in china.participants] == ["Li Wei", "Zhang Min"]
    assert china.participants[1].persona.occupation == "junior designer"
    assert china.turns.limit == 10  # CLCA's protocol: at most 10 rounds
    uk = by_culture[("GBR",)]
    assert uk.relationship == "neighbours" and uk.extra == {"scenario": {"source_model": "gpt-4"}}

    results = check_templates([out])
    assert [r.ok for r in results] == [True, True, True], [r.problem for r in results]
    cultures = load_cultures()
    library = ScenarioLibrary([out], builtin=False)
    (episode,) = build_episodes(library, [china], [[cultures["CHN"]]])
    person1 = episode.scenario.roles[0]
    assert person1.goal.startswith("Get Zhang Min to cover the Saturday shift")
    assert person1.secret == "He promised his mother he would come home for her birthday."
    assert episode.personas[0].name == "Li Wei"
    (uk_episode,) = build_episodes(library, [uk], [[cultures["GBR"]]])
    # A list of secrets reads as one.
    assert uk_episode.scenario.roles[1].secret == (
        "Her back injury makes gardening painful. She has asked her son to help."
    )


def test_a_bad_clca_line_is_skipped_and_named(tmp_path: Path) -> None:
    report = import_clca(SCENARIOS, out_dir=tmp_path / "out")
    (skip,) = report.skipped
    assert skip.reason == "field 'person1.goal'"
    assert "scenarios.jsonl: line 4" in skip.message and "Field required" in skip.message
    (warning,) = report.warnings
    assert "line 2" in warning and "'source_model'" in warning


def test_clca_names_do_not_depend_on_line_order(tmp_path: Path) -> None:
    lines = SCENARIOS.read_text(encoding="utf-8").splitlines()
    reversed_file = tmp_path / "reversed.jsonl"
    reversed_file.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    first = import_clca(SCENARIOS, out_dir=tmp_path / "a").written
    again = import_clca(reversed_file, out_dir=tmp_path / "b").written
    assert sorted(p.name for p in first) == sorted(p.name for p in again)


def test_an_unknown_culture_suits_all_with_a_warning(tmp_path: Path) -> None:
    record = json.loads(SCENARIOS.read_text(encoding="utf-8").splitlines()[0])
    record["culture"] = "Atlantis"
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    report = import_clca(path, out_dir=tmp_path / "out")
    (template,) = [load_template_file(p) for p in report.written]
    assert template.cultures == "all" and template.id.startswith("clca_atlantis_")
    assert any("'Atlantis' has no culture profile" in w for w in report.warnings)


def test_the_command_line_imports_clca_and_exits_non_zero_only_for_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["scenarios", "import", "clca", str(SCENARIOS), "--out", str(out)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert "imported 3 template(s)" in output and "3 of 4 CLCA scenario(s) valid" in output
    strict = runner.invoke(
        app,
        ["scenarios", "import", "clca", str(SCENARIOS), "--out", str(tmp_path / "s"), "--strict"],
    )
    assert strict.exit_code == 1 and "person1.goal" in strict.output

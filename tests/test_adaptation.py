"""Culture adaptation and model-written backgrounds: scripted logic, then the real SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.models.base import Prompt
from culturesim.models.transformers_backend import TransformersModel
from culturesim.scenarios.adapt import CultureAdapter, parse_adapted, save_adapted
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes
from culturesim.scenarios.personas import PersonaSampler, write_backgrounds
from culturesim.scenarios.templates import ScenarioLibrary
from tests.conftest import ScriptedModel, prompt_text

runner = CliRunner()
CULTURES = load_cultures()


def adapted_reply(roles: list[str], prefix: str = "") -> str:
    body = {
        "title": "Asking an uncle for a loan",
        "setting": "Haruto visits his uncle Kenji at the family home in Nagoya on a Sunday.",
        "participants": [
            {
                "role": role,
                "name": name,
                "age": age,
                "gender": "male",
                "occupation": "office worker",
                "goal": f"The goal of the {role}, rewritten for Japan.",
                "secret": f"The secret of the {role}.",
            }
            for role, name, age in zip(roles, ["Sato Haruto", "Sato Kenji"], [29, 61], strict=False)
        ],
    }
    # The adapter prefills '{"title": "', so a reply continues after it.
    return prefix + json.dumps(body, ensure_ascii=False).removeprefix('{"title": "')


def source_request(template_id: str = "borrow_money") -> tuple:  # type: ignore[type-arg]
    library = ScenarioLibrary()
    template = library.get(template_id)
    episode = build_episodes(library, [template], [[CULTURES["USA"]]])[0]
    return template, episode.scenario, episode.personas, CULTURES["JPN"]


def test_invalid_replies_are_corrected_and_retried_then_saved_as_a_template(
    tmp_path: Path,
) -> None:
    seen: list[str] = []

    def reply(prompt: Prompt) -> str:
        text = prompt_text(prompt)
        seen.append(text)
        if "could not be used" not in text:
            return 'Sure! Here it is: {"title": "oops"'  # no JSON object at all
        return adapted_reply(["borrower", "lender"])

    adapter = CultureAdapter(ScriptedModel(reply), max_attempts=3)
    outcome = adapter.adapt([source_request()])[0]
    assert outcome.ok and len(outcome.replies) == 2
    assert outcome.problems == ["no JSON object with a 'participants' field was found"]
    assert "could not be used: no JSON object" in seen[1]
    assert "takes place in Japan" in seen[0] and '"role": "borrower"' in seen[0]

    assert outcome.result is not None
    path = save_adapted(source_request()[0], CULTURES["JPN"], outcome.result, tmp_path)
    library = ScenarioLibrary([tmp_path])
    saved = library.get("borrow_money_jpn")
    assert saved.cultures == ("JPN",) and "adapted" in saved.tags
    episode = build_episodes(library, [saved], [[CULTURES["JPN"]]])[0]
    assert episode.scenario.setting == outcome.result.setting
    assert [p.name for p in episode.personas] == ["Sato Haruto", "Sato Kenji"]
    assert episode.scenario.role("lender").goal == "The goal of the lender, rewritten for Japan."
    assert not build_episodes(library, [saved], [[CULTURES["MEX"]]]), "suits JPN only"
    assert path.name == "borrow_money_jpn.scenario.jinja2"


def test_adapted_text_with_template_syntax_stays_literal(tmp_path: Path) -> None:
    reply = adapted_reply(["borrower", "lender"]).replace(
        "rewritten for Japan", "with {{ braces }} and {% tags %}"
    )
    adapted = parse_adapted('{"title": "' + reply, ["borrower", "lender"])
    save_adapted(source_request()[0], CULTURES["JPN"], adapted, tmp_path)
    library = ScenarioLibrary([tmp_path])
    episode = build_episodes(library, [library.get("borrow_money_jpn")], [[CULTURES["JPN"]]])[0]
    assert "{{ braces }} and {% tags %}" in episode.scenario.role("borrower").goal


def test_wrong_roles_or_missing_fields_are_rejected_with_the_field_named() -> None:
    good = '{"title": "' + adapted_reply(["borrower", "lender"])
    assert parse_adapted(good, ["borrower", "lender"]).participants[1].age == 61
    swapped = '{"title": "' + adapted_reply(["lender", "borrower"])
    try:
        parse_adapted(swapped, ["borrower", "lender"])
    except ValueError as error:
        assert "roles must be ['borrower', 'lender']" in str(error)
    else:
        raise AssertionError("swapped roles were accepted")
    broken = good.replace('"age": 61', '"age": "old"')
    try:
        parse_adapted(broken, ["borrower", "lender"])
    except ValueError as error:
        assert "participants.1.age" in str(error)
    else:
        raise AssertionError("a non-numeric age was accepted")


def test_adaptation_failures_are_reported_not_dropped() -> None:
    adapter = CultureAdapter(ScriptedModel(lambda p: "I cannot do that."), max_attempts=2)
    outcome = adapter.adapt([source_request()])[0]
    assert not outcome.ok and len(outcome.problems) == 2 and len(outcome.replies) == 2


def test_smollm2_adaptation_is_validated_and_retried(smollm2: TransformersModel) -> None:
    """SmolLM2-135M rarely writes the whole schema right; every attempt must be accounted for."""
    adapter = CultureAdapter(smollm2, max_attempts=2, max_new_tokens=200)
    outcome = adapter.adapt([source_request("noisy_neighbour")])[0]
    assert 1 <= len(outcome.replies) <= 2
    if outcome.ok:
        assert outcome.result is not None
        assert [p.role for p in outcome.result.participants] == ["resident", "neighbour"]
        assert len(outcome.problems) == len(outcome.replies) - 1
    else:
        assert len(outcome.problems) == len(outcome.replies) == 2
    assert all(reply.startswith('{"title": "') for reply in outcome.replies)


def test_smollm2_writes_backgrounds_that_keep_the_sampled_fields(
    smollm2: TransformersModel,
) -> None:
    people = [PersonaSampler().sample(CULTURES["KEN"], seed) for seed in range(3)]
    written = write_backgrounds(smollm2, people, CULTURES, max_new_tokens=60)
    for before, after in zip(people, written, strict=True):
        assert after.id == before.id and after.name == before.name
        assert after.background and after.background != before.background
        assert "{{" not in after.background


def test_scenarios_cli_lists_renders_and_checks(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["scenarios", "list"])
    assert listed.exit_code == 0 and "borrow_mo" in listed.output
    shown = runner.invoke(
        app,
        [
            "scenarios",
            "render",
            "elder_care",
            "--culture",
            "IND",
            "--var",
            "parent=father",
            "--json",
        ],
    )
    assert shown.exit_code == 0, shown.output
    episode = json.loads(shown.output)
    assert episode["scenario"]["variables"] == {"parent": "father"}
    assert all(p["culture"] == "IND" for p in episode["personas"])
    bad = runner.invoke(app, ["scenarios", "render", "elder_care", "--var", "parent=uncle"])
    assert bad.exit_code == 1 and "must be one of" in bad.output
    (tmp_path / "x.scenario.jinja2").write_text("---\nid: x\n---\n## setting\nhi\n")
    checked = runner.invoke(app, ["scenarios", "check", str(tmp_path)])
    assert checked.exit_code == 1 and "field 'title'" in checked.output


def test_adapt_scenarios_saves_what_validates_and_logs_every_request(tmp_path: Path) -> None:
    """The library workflow behind `scenarios adapt`: kept and failed requests are both in the
    returned rows and in the append-only log; a second call appends, it does not overwrite."""
    from culturesim.scenarios.adapt import adapt_scenarios

    good = source_request()
    bad = source_request("decline_invitation")
    rows = adapt_scenarios(
        ScriptedModel(lambda p: adapted_reply(["borrower", "lender"])),
        [good],
        tmp_path,
        max_attempts=1,
    )
    assert rows[0]["ok"] and Path(str(rows[0]["file"])).name == "borrow_money_jpn.scenario.jinja2"
    failed = adapt_scenarios(ScriptedModel(lambda p: "I cannot."), [bad], tmp_path, max_attempts=2)
    assert not failed[0]["ok"] and failed[0]["file"] == "" and len(failed[0]["replies"]) == 2  # type: ignore[arg-type]
    log = [
        json.loads(line) for line in (tmp_path / "adaptation_log.jsonl").read_text().splitlines()
    ]
    assert [(r["template_id"], r["ok"]) for r in log] == [
        ("borrow_money", True),
        ("decline_invitation", False),
    ]
    assert ScenarioLibrary([tmp_path]).get("borrow_money_jpn").cultures == ("JPN",)

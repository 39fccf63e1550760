"""Scenario authoring as a user meets it: the library, the starter files, the checks,
norm-grounded writing, Sotopia files through the command line, and the README walk-through."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.models.base import Prompt
from tests.conftest import ScriptedModel, prompt_text

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "sotopia"


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_library_covers_the_situations_with_multi_party_scenes() -> None:
    rows = json.loads(invoke("scenarios", "list", "--json"))
    assert len(rows) >= 40
    assert len({r["situation"] for r in rows}) >= 12
    assert sum(r["participants"] >= 3 for r in rows) >= 10
    assert {"id", "title", "situation", "participants", "cultures", "tags", "file"} <= set(rows[0])
    workplace = json.loads(invoke("scenarios", "list", "--scenarios", "tag:workplace", "--json"))
    assert workplace and all("workplace" in r["tags"] for r in workplace)
    assert len(workplace) < len(rows)
    result = runner.invoke(app, ["scenarios", "list", "--scenarios", "tag:nosuchtag"])
    assert result.exit_code == 1 and "matches no scenario" in result.output


def test_every_built_in_scenario_renders_for_every_culture_it_claims() -> None:
    output = invoke("scenarios", "check")
    assert re.search(r"(\d+) of \1 template\(s\) ok", output.replace("\n", " "))


def test_cultures_list_show_new_and_check(tmp_path: Path) -> None:
    rows = json.loads(invoke("cultures", "list", "--json"))
    assert len(rows) == 20 and {"JPN", "NGA", "ZWE"} <= {r["code"] for r in rows}
    shown = json.loads(invoke("cultures", "show", "JPN", "--json"))
    assert shown["code"] == "JPN" and shown["cues"]["text"] and shown["given_names"]
    invoke("cultures", "new", "PRT", "--culture-dir", str(tmp_path))
    assert "ok" in invoke("cultures", "check", str(tmp_path / "PRT.yaml"))
    broken = tmp_path / "PRT.yaml"
    broken.write_text(broken.read_text().replace("code: PRT", "code: portugal"))
    result = runner.invoke(app, ["cultures", "check", str(broken)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"{broken}:" in output and "field 'code'" in output
    line = next(i for i, t in enumerate(broken.read_text().splitlines(), 1) if t.startswith("code"))
    assert f"{broken.name}:{line}" in output.replace(" ", "")


def test_a_new_scenario_passes_check_until_it_uses_an_undefined_name(tmp_path: Path) -> None:
    invoke("scenarios", "new", "favour_at_work", "--scenario-dir", str(tmp_path))
    path = tmp_path / "favour_at_work.scenario.jinja2"
    assert "1 of 1 template(s) ok" in invoke("scenarios", "check", str(path))
    text = path.read_text()
    path.write_text(text.replace("## setting\n", "## setting\nBy {{ deadline }}, "))
    result = runner.invoke(app, ["scenarios", "check", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    line = text.splitlines().index("## setting") + 2
    assert f"{path.name}:{line}" in output.replace(" ", "") and "'deadline' is undefined" in output
    again = runner.invoke(
        app, ["scenarios", "new", "favour_at_work", "--scenario-dir", str(tmp_path)]
    )
    assert again.exit_code == 1 and "exists" in again.output


def test_checking_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "misnamed.jinja2").write_text("---\nid: x\n---\n")
    result = runner.invoke(app, ["scenarios", "check", str(tmp_path)])
    assert result.exit_code == 1 and "rename them" in result.output


GOOD = (
    'A late bill", "setting": "Two flatmates meet in their shared kitchen on the evening the '
    'rent is due.", "participants": [{"role": "tenant", "name": "Ana Lima", "age": 29, '
    '"gender": "female", "occupation": "nurse", "goal": "Ask for a week more to pay her share.", '
    '"secret": "She lent the money to her brother."}, {"role": "owner", "name": "Rui Costa", '
    '"age": 34, "gender": "male", "occupation": "clerk", "goal": "Get the full rent tonight '
    'without a quarrel.", "secret": "He is behind on the mortgage."}]}'
)


def norm_writer(prompt: Prompt) -> str:
    """Broken first (no secret for one role), corrected on the second attempt."""
    if "could not be used" in prompt_text(prompt):
        return GOOD
    return GOOD.replace('"secret": "He is behind on the mortgage."', '"secret": ""')


def test_scenarios_from_norms_are_corrected_saved_and_logged(tmp_path: Path) -> None:
    from tests.conftest import CLI_STATE

    norms = tmp_path / "norms.yaml"
    norms.write_text(
        "PRT:\n  - Rent is paid on the day it is due.\nJPN:\n  - Guests are served first.\n"
    )
    culture_dir = tmp_path / "cultures"
    invoke("cultures", "new", "PRT", "--culture-dir", str(culture_dir))
    CLI_STATE.models.provide("norm-writer", ScriptedModel(norm_writer, "norm-writer"))
    out = tmp_path / "generated"
    args = ["scenarios", "generate", "--norms", str(norms), "--culture", "PRT", "--out", str(out)]
    args += ["--model", "norm-writer", "-n", "2", "--culture-dir", str(culture_dir)]
    output = invoke(*args)
    assert "2 of 2 scenario(s) written (4 attempts in all)" in " ".join(output.split())
    log = [json.loads(line) for line in (out / "generation_log.jsonl").read_text().splitlines()]
    assert [row["attempts"] for row in log] == [2, 2]
    assert all("secret" in row["problems"][0] for row in log)
    files = sorted(out.glob("*.scenario.jinja2"))
    assert len(files) == 2
    assert "norm: Rent is paid on the day it is due." in files[0].read_text()
    check = runner.invoke(app, ["scenarios", "check", str(out), "--culture-dir", str(culture_dir)])
    assert check.exit_code == 0, check.output
    missing = runner.invoke(app, [*args[:5], "JPX", *args[6:]])
    assert missing.exit_code == 1 and "JPX" in missing.output


def test_sotopia_files_round_trip_through_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    invoke(
        "scenarios", "import", "sotopia", str(FIXTURES / "environments.json"),
        "--agents", str(FIXTURES / "agents.jsonl"), "--out", str(out),
    )  # fmt: skip
    assert "ok" in invoke("scenarios", "check", str(out))
    exported = tmp_path / "env.jsonl"
    invoke("scenarios", "export", "sotopia", "--out", str(exported), "--scenario-dir", str(out),
           "--scenarios", "tag:sotopia", "--shape", "db")  # fmt: skip
    original = json.loads((FIXTURES / "environments.json").read_text())
    again = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted(again, key=lambda e: e["codename"]) == sorted(
        original, key=lambda e: e["codename"]
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**original[0], "relationship": 9}]))
    result = runner.invoke(app, ["scenarios", "import", "sotopia", str(bad), "--out", str(out)])
    assert result.exit_code == 1 and "relationship" in result.output and "bad.json" in result.output


def readme_walkthrough() -> list[str]:
    """The commands of the README's 'Author your first scenario' section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Author your first scenario", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    """Every command of the walk-through, as written in the README, in a fresh folder."""
    commands = readme_walkthrough()
    assert len(commands) >= 5 and all(c.startswith(("culturesim", "sed")) for c in commands)
    exe = Path(sys.executable).parent / "culturesim"
    for command in commands:
        words = shlex.split(command, comments=True)
        if words[0] == "culturesim":
            words[0] = str(exe)
        result = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        expect_failure = "  # fails" in command
        assert (result.returncode != 0) == expect_failure, (command, result.stdout, result.stderr)
        if expect_failure:
            assert "Traceback" not in result.stderr
            assert "'deadline' is undefined" in " ".join(result.stdout.split())


def test_generate_scenarios_is_a_library_workflow(tmp_path: Path) -> None:
    """What `scenarios generate` runs, called from Python: rows returned, log appended."""
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.scenarios.norms import generate_scenarios

    culture = load_cultures()["JPN"]
    norms = ["Guests are served first.", "Shoes come off at the door."]
    rows = generate_scenarios(
        ScriptedModel(norm_writer), culture, norms, 3, tmp_path, max_attempts=2
    )
    assert [row["norm"] for row in rows] == [norms[0], norms[1], norms[0]]
    assert all(row["ok"] and row["attempts"] == 2 for row in rows)
    assert len(sorted(tmp_path.glob("*.scenario.jinja2"))) == 3
    again = generate_scenarios(
        ScriptedModel(lambda p: "no"), culture, norms, 1, tmp_path, max_attempts=1
    )
    assert not again[0]["ok"] and again[0]["file"] == ""
    log = (tmp_path / "generation_log.jsonl").read_text().splitlines()
    assert len(log) == 4, "appended, never overwritten"

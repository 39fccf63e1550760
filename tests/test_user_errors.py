"""The first mistakes a new user makes, through the real command line in a subprocess: each
ends with a non-zero exit, a message naming the file, field, value or URL, and no traceback.
Where a retry applies, the corrected command then succeeds in the same run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation_fixtures import write_survey
from tests.helpers import make_run

pytestmark = pytest.mark.slow  # one Python start per case


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    command = [sys.executable, "-c", "from culturesim.cli import app; app()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def refused(result: subprocess.CompletedProcess[str], *named: str) -> str:
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for text in named:
        assert text in output, (text, output)
    return output


def test_an_unreachable_server_is_named_with_what_to_do() -> None:
    url = "http://127.0.0.1:9/v1"
    output = refused(cli("chat", "--model", f"openai:m@{url}?retries=0", "hello"), url)
    assert "culturesim serve" in output or "running" in output


def test_an_unreachable_judge_server_is_named_and_the_run_kept(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    before = (run / "verdict.jsonl").read_text()
    url = "http://127.0.0.1:9/v1"
    output = refused(cli("judge", str(run), "--model", f"openai:m@{url}?retries=0"), url)
    assert "culturesim serve" in output or "running" in output
    assert (run / "verdict.jsonl").read_text() == before, "nothing already written is lost"


def test_an_unreachable_survey_server_is_named(tmp_path: Path) -> None:
    _, shares = write_survey(tmp_path / "survey")
    by_code = json.loads(shares.read_text())
    shares.write_text(json.dumps(dict(zip(("JPN", "MEX", "DEU"), by_code.values(), strict=False))))
    url = "http://127.0.0.1:9/v1"
    spec = f"openai:m@{url}?retries=0"
    args = ["evaluate", "wvs", "-m", spec, "--survey-dir", str(tmp_path / "survey")]
    output = refused(cli(*args, "--out", str(tmp_path / "eval")), url)
    assert "culturesim serve" in output or "running" in output


def test_checking_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    refused(cli("scenarios", "check", str(tmp_path / "nowhere")), "nowhere", "no such")


def test_a_bad_mode_names_the_field(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_survey(tmp_path / "survey")
    out = tmp_path / "eval"
    args = ["evaluate", "wvs", "-m", str(tiny_model_dir), "--survey-dir", str(tmp_path / "survey")]
    refused(cli(*args, "--out", str(out), "--mode", "foo"), "mode", "foo")
    assert not (out / "manifest.json").exists(), "a refused command leaves nothing behind"


def test_a_missing_answers_file(tmp_path: Path) -> None:
    questions, shares = write_survey(tmp_path / "survey")
    missing = tmp_path / "answers.json"
    result = cli(
        "evaluate", "score", "--questions", str(questions), "--survey", str(shares),
        "--answers", str(missing),
    )  # fmt: skip
    refused(result, "answers.json")


def test_torn_manifests_are_named_for_report_and_simulate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{\n  "config": {\n    "command": "simulate",\n    "x": ')
    refused(cli("report", str(run)), "manifest.json", "not valid JSON")
    result = cli("simulate", "--out", str(run), "--scenarios", "borrow_money", "--cultures", "USA")
    refused(result, "manifest.json", "not valid JSON")


def test_a_bad_model_does_not_lock_the_run_directory(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "sim"
    base = ["simulate", "--out", str(out), "--scenarios", "borrow_money", "--cultures", "USA"]
    base += ["--per-episode", "1", "--max-turns", "2", "--no-intents"]
    refused(cli(*base, "--model", str(tmp_path / "no-such-model")), "no-such-model")
    fixed = cli(*base, "--model", str(tiny_model_dir))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (out / "dialogue.jsonl").exists()


def test_selecting_no_scenario_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    refused(cli("simulate", "--out", str(out), "--scenarios", ""), "no scenarios selected")
    refused(cli("simulate", "--out", str(out), "--scenarios", "tag:nosuch"), "tag:nosuch")


def test_brackets_in_user_text_are_printed_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "tpl[red]x"
    refused(cli("scenarios", "check", str(folder)), "tpl[red]x")
    refused(cli("chat", "--model", "ray:x:smollm2", "hi"), "ray:x:smollm2")


def test_a_run_config_reads_its_inputs_from_its_own_folder(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    (folder / "data").mkdir(parents=True)
    write_survey(folder / "data" / "survey")
    config = folder / "eval.yaml"
    config.write_text(
        f"out: {tmp_path / 'out'}\nevaluate:\n  survey_dir: data/survey\n  guard: false\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = cli("run", str(config), "--dry-run", cwd=elsewhere)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    broken = folder / "broken.yaml"
    broken.write_text(f"out: {tmp_path / 'out2'}\nevaluate:\n  survey_dir: data/nothing\n")
    refused(cli("run", str(broken), "--dry-run", cwd=elsewhere), "evaluate.survey_dir", "nothing")


def test_results_json_has_no_nan(tmp_path: Path) -> None:
    from culturesim.store import write_json_atomic

    path = write_json_atomic(tmp_path / "results.json", {"kl": float("nan")})
    assert "NaN" not in path.read_text() and json.loads(path.read_text()) == {"kl": None}


def test_runs_verify_notices_an_edited_dialogue(tmp_path: Path) -> None:
    from tests.helpers import make_run

    run = make_run(tmp_path)
    assert cli("runs", "verify", str(run)).returncode == 0
    path = run / "dialogue.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["turns"][0]["utterance"] = "Something nobody said."
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    refused(cli("runs", "verify", str(run)), "dialogue.jsonl")


def test_a_bad_probe_scale_names_the_field_and_what_to_give(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"out: {tmp_path / 'run'}\nprobe:\n  topics: economic\n  scales: free,12\n"
        "  structured: true\n"
    )
    refused(cli("run", str(config), "--dry-run"), "probe.scales", "'12'", "3 to 11 points")
    config.write_text(f"out: {tmp_path / 'run'}\nprobe:\n  scales: 10\n  structured: false\n")
    refused(cli("run", str(config), "--dry-run"), "rating scales need structured: true")


def test_a_bad_anchors_file_names_the_file_and_the_pair(tmp_path: Path) -> None:
    from culturesim.agents.prober.anchors import AnchorFileError, load_anchors

    path = tmp_path / "ends.yaml"
    path.write_text("anchors:\n  - [never, always]\n  - [agree, agree]\n")
    with pytest.raises(AnchorFileError) as caught:
        load_anchors(path)
    assert str(path) in str(caught.value) and "pair 1" in str(caught.value)
    assert "two different ends" in str(caught.value)
    assert load_anchors()[1] == ("never justifiable", "always justifiable")
    config = tmp_path / "run.yaml"
    config.write_text(f"out: {tmp_path / 'run'}\nprobe:\n  anchors_file: {path}\n")
    refused(cli("run", str(config), "--dry-run"), "anchors_file", "anchors: choose")

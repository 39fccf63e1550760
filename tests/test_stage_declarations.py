"""A stage is one declaration: the config, `culturesim run`, `--stages` and `--dry-run` read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.context import LoopPlan, RunContext, Stage, StageResult, StageSection
from culturesim.pipeline.config import parse_run_config
from culturesim.pipeline.stages import register, stage_names, unregister

runner = CliRunner()


class EchoSection(StageSection):
    """A toy stage's settings: what to write, how often."""

    word: str = "hello"
    times: int = 1


def run_echo(section: EchoSection, ctx: RunContext) -> StageResult:
    folder = ctx.layout.dir("echo")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "echo.txt"
    path.write_text(" ".join([section.word] * section.times) + "\n")
    return StageResult(counts={"words": section.times}, written=(path,))


def plan_echo(section: EchoSection, loop: LoopPlan) -> str:
    return f"write {section.word!r} {section.times} times"


ECHO = Stage("echo", EchoSection, run_echo, plan_echo)


@pytest.fixture
def echo_stage() -> object:
    register(ECHO, before="report")
    yield ECHO
    unregister("echo")


def test_a_toy_stage_added_by_one_declaration_runs_with_culturesim_run(
    echo_stage: Stage, tmp_path: Path
) -> None:
    assert stage_names()[-2:] == ["echo", "report"]
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({"out": str(tmp_path / "run"), "echo": {"word": "hi", "times": 3}})
    )

    planned = runner.invoke(app, ["run", str(config), "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "write 'hi' 3 times" in planned.output
    assert not (tmp_path / "run").exists(), "a dry run writes nothing"

    result = runner.invoke(app, ["run", str(config), "--stages", "echo"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "echo" / "echo.txt").read_text() == "hi hi hi\n"
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "stages.jsonl").read_text().splitlines()
    ]
    assert [(r["stage"], r["status"], r["counts"]) for r in rows] == [
        ("echo", "done", {"words": 3})
    ]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["echo"] == {"word": "hi", "times": 3}

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"out": str(tmp_path / "other"), "echo": {"times": "many"}}))
    refused = runner.invoke(app, ["run", str(bad)])
    assert refused.exit_code == 1 and "echo.times" in refused.output


def test_the_config_knows_only_declared_stages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="echo"):
        parse_run_config({"out": "x", "echo": {}})
    config = parse_run_config({"out": "x", "report": False})
    assert config.enabled_stages() == []
    assert parse_run_config({"out": "x"}).enabled_stages() == ["report"]


def test_a_stage_name_is_declared_once() -> None:
    with pytest.raises(ValueError, match="declared already"):
        register(Stage("simulate", EchoSection, run_echo, plan_echo))
    with pytest.raises(ValueError, match="run config key"):
        register(Stage("models", EchoSection, run_echo, plan_echo))


def test_training_targets_and_scoring_must_agree_on_the_answer_prefix(tmp_path: Path) -> None:
    survey = str(tmp_path)
    agreeing = {
        "out": "x",
        "teacher": {"survey_dir": survey},
        "corpus": {"targets": "soft", "answer_prefix": "The answer is "},
        "evaluate": {"survey_dir": survey},
    }
    assert parse_run_config(agreeing).section("corpus").answer_prefix == "The answer is "
    published = {**agreeing, "corpus": {"targets": "argmax", "answer_prefix": ""}}
    assert parse_run_config(published).section("corpus").answer_prefix == "", (
        "argmax targets may keep the published bare number"
    )
    for stage, value in (
        ("corpus", {"targets": "soft"}),
        ("teacher", {"survey_dir": survey, "answer_prefix": "Answer: "}),
    ):
        with pytest.raises(ValueError, match="answer_prefix") as caught:
            parse_run_config({**agreeing, stage: value})
        assert "scoring reads" in str(caught.value)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({**agreeing, "out": str(tmp_path / "r"), "corpus": {"targets": "soft"}})
    )
    refused = runner.invoke(app, ["run", str(config), "--dry-run"])
    assert refused.exit_code == 1 and "answer_prefix" in refused.output
    assert "Traceback" not in refused.output


def test_the_answer_prefix_can_be_given_once_for_every_stage(tmp_path: Path) -> None:
    config = parse_run_config(
        {
            "out": "x",
            "answer_prefix": "Answer: ",
            "teacher": {"survey_dir": str(tmp_path)},
            "corpus": {"targets": "soft"},
            "evaluate": {"survey_dir": str(tmp_path)},
        }
    )
    assert {config.section(s).answer_prefix for s in ("teacher", "corpus", "evaluate")} == {
        "Answer: "
    }
    with pytest.raises(ValueError, match="answer_prefix"):
        parse_run_config(
            {
                "out": "x",
                "answer_prefix": "Answer: ",
                "teacher": {"survey_dir": str(tmp_path), "answer_prefix": "The answer is "},
                "evaluate": {"survey_dir": str(tmp_path)},
            }
        )

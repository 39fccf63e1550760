"""Every command that opens a run directory meets a damaged manifest at the one error door: a
message that names the file and where it breaks, no traceback, a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from culturesim.cli import app

runner = CliRunner()
# A model spec that builds without a server: nothing is asked of it before the manifest is read.
NOWHERE = "openai:m@http://127.0.0.1:9/v1"


def damaged(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text('{"created": "2026-12-05", "config": {"simul')
    return folder


def commands(tmp: Path) -> dict[str, list[str]]:
    run = damaged(tmp / "run")
    config = tmp / "run.yaml"
    config.write_text(
        yaml.safe_dump({"out": str(run), "models": {"actor": NOWHERE}, "simulate": {}})
    )
    return {
        "run": ["run", str(config)],
        "run --dry-run": ["run", str(config), "--dry-run"],
        "simulate": [
            "simulate",
            "--out",
            str(run),
            "--model",
            NOWHERE,
            "--scenarios",
            "borrow_money",
        ],
        "probe": ["probe", "--out", str(run), "--model", NOWHERE, "--topics", "economic"],
        "judge": ["judge", str(run), "--model", NOWHERE],
        "corpus": ["corpus", str(run), "--out", str(tmp / "corpus")],
        "evaluate wvs": [
            "evaluate",
            "wvs",
            "--out",
            str(run),
            "-m",
            NOWHERE,
            "--survey-dir",
            str(tmp / "survey"),
        ],
        "report": ["report", str(run)],
        "runs verify": ["runs", "verify", str(run)],
    }


@pytest.mark.parametrize(
    "name",
    [
        "run",
        "run --dry-run",
        "simulate",
        "probe",
        "judge",
        "corpus",
        "evaluate wvs",
        "report",
        "runs verify",
    ],
)
def test_a_damaged_manifest_is_a_message_not_a_traceback(name: str, tmp_path: Path) -> None:
    import json

    from tests.evaluation_fixtures import write_survey

    _, shares = write_survey(tmp_path / "survey")
    shares.write_text(json.dumps({"JPN": {"Q1": {"1": 0.7, "2": 0.3}}}))
    result = runner.invoke(app, commands(tmp_path)[name])
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert "manifest.json" in result.output and "not valid JSON" in result.output, result.output

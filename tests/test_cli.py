"""The command line, through typer's runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from culturesim import __version__
from culturesim.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_models_list_json_reports_the_embedded_model() -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0
    backends = {b["name"]: b for b in json.loads(result.output)}
    assert set(backends) == {"smollm2", "transformers", "openai", "vllm"}
    assert backends["smollm2"]["available"] is True


def test_chat_prints_a_real_smollm2_reply() -> None:
    result = runner.invoke(
        app,
        ["chat", "--model", "smollm2", "--max-new-tokens", "16", "What is the capital of France?"],
    )
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output


def test_unknown_model_is_a_clear_error() -> None:
    result = runner.invoke(app, ["chat", "--model", "no-such-model", "hi"])
    assert result.exit_code == 1
    assert "unknown model 'no-such-model'" in result.output

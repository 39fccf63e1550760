"""The judge on the real SmolLM2, over dialogues SmolLM2 simulated: verdicts, filter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.judge.rubrics import load_rubrics
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Dialogue, FilterDecision, Verdict
from culturesim.roleplay.conversation import RolePlaySettings
from culturesim.roleplay.simulation import SimulationSettings, Simulator
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore

pytestmark = pytest.mark.slow  # the real embedded model; still part of make test

runner = CliRunner()


def test_smollm2_judges_simulated_dialogues(smollm2: TransformersModel, tmp_path: Path) -> None:
    cultures = load_cultures()
    library = ScenarioLibrary()
    run = tmp_path / "run"
    store = RunStore.open(run, {"test": "judge"})
    episodes = build_episodes(
        library, [library.get("noisy_neighbour")], culture_groups("JPN,NGA", cultures)
    )
    settings = SimulationSettings(
        per_episode=1, roleplay=RolePlaySettings(max_turns=3, max_new_tokens=32)
    )
    Simulator(smollm2, store, settings, cultures=cultures).run(episodes, show_progress=False)
    dialogues = store.read(Dialogue)
    assert len(dialogues) == 2

    result = runner.invoke(
        app, ["judge", str(run), "--model", "smollm2", "--position-check", "--max-new-tokens", "48"]
    )
    assert result.exit_code == 0, result.output
    assert "Dialogue filter" in result.output

    verdicts = store.read(Verdict)
    rubrics = load_rubrics()
    assert len(verdicts) == 2 * 3 * 2, "3 calls per dialogue, as is and with participants swapped"
    for verdict in verdicts:
        assert verdict.judge == smollm2.model_id
        if verdict.parse_error:
            assert verdict.labels == ()
        else:
            dimensions = [d.name for d in rubrics[verdict.rubric].dimensions]
            assert [label.dimension for label in verdict.labels] == dimensions
            for label in verdict.labels:
                assert label.value in {"good", "bad"}
                assert label.confidence in {"very confident", "confident", "not sure"}
    stats = json.loads((run / "judge_stats.json").read_text())
    assert sum(stats["dialogues"].values()) == 2, "every dialogue is kept, dropped or unparseable"
    assert stats["unparseable"] == sum(
        bool(v.parse_error) for v in verdicts if v.variant == "default"
    ) + sum(bool(v.parse_error) for v in verdicts if v.variant == "swapped")
    decisions = store.read(FilterDecision)
    assert {d.target_id for d in decisions} == {d.id for d in dialogues}

    again = runner.invoke(app, ["judge", str(run), "--model", "smollm2", "--position-check"])
    assert again.exit_code == 0
    assert len(store.read(Verdict)) == len(verdicts), "a judged dialogue is not judged twice"

    scored = runner.invoke(app, ["judge", str(run), "--model", "smollm2", "--mode", "score"])
    assert scored.exit_code == 0, scored.output
    by_score = [v for v in store.read(Verdict) if v.judge == f"{smollm2.model_id}#score"]
    assert len(by_score) == 2 * 3 and not any(v.parse_error for v in by_score)
    stats = json.loads((run / "judge_stats.json").read_text())
    assert stats["judge"] == f"{smollm2.model_id}#score"
    assert stats["dialogues"]["unparseable"] == 0
    assert stats["dialogues"]["kept"] + stats["dialogues"]["dropped"] == 2

"""SmolLM2 end to end over dialogues it simulated: the judge's verdicts and filter counts, then
the corpus built from them, which holds no template placeholder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.agents.judge.rubrics import load_rubrics
from culturesim.cli import app
from culturesim.models.transformers_backend import TransformersModel
from culturesim.prompt_library import echoes_placeholder
from culturesim.records import Dialogue, FilterDecision, Verdict
from culturesim.store import RunStore

pytestmark = pytest.mark.slow  # the real embedded model; still part of make test

runner = CliRunner()


def test_smollm2_judges_simulated_dialogues_and_the_corpus_has_no_placeholder(
    smollm2: TransformersModel, smollm2_dialogues: tuple[Path, int], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(smollm2_dialogues[0], run)
    store = RunStore(run)
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
                assert not echoes_placeholder(label.reason), "a placeholder is not a reason"
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

    # Keep every judged dialogue, so the corpus holds SmolLM2's own intents as training targets.
    kept = runner.invoke(
        app, ["judge", str(run), "--model", "smollm2", "--mode", "score", "--rule", "none"]
    )
    assert kept.exit_code == 0, kept.output
    corpus = tmp_path / "corpus"
    built = runner.invoke(app, ["corpus", str(run), "--out", str(corpus), "--no-embeddings"])
    assert built.exit_code == 0, built.output
    rows = [
        json.loads(line)
        for path in sorted(corpus.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert any(r["messages"][-1]["role"] == "assistant" for r in rows if "messages" in r)
    texts = [json.dumps(row, ensure_ascii=False) for row in rows]
    assert len(texts) >= 2, "both dialogues reached the corpus"
    assert not [t for t in texts if "<one sentence" in t or echoes_placeholder(t)]

"""The seen / held-out survey split: stratified by topic, seeded, written into the run, and a
held-out question planted in a corpus is removed and counted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.survey.questionnaire import SurveyQuestion
from culturesim.survey.split import SPLIT_FILE, split_survey, write_split
from tests.conftest import SHARED_WVS
from tests.helpers import EVAL_QUESTION, make_run

runner = CliRunner()


def questions() -> list[SurveyQuestion]:
    topics = {"a": 7, "b": 4, "c": 5, "d": 1}
    return [
        SurveyQuestion(f"Q{topic}{k}", f"Question {k} on {topic}?", ("Yes", "No"), 1, topic)
        for topic, count in topics.items()
        for k in range(count)
    ]


def test_each_topic_is_halved_from_a_seed() -> None:
    items = questions()
    split = split_survey(items, lambda q: q.topic, seed=0)
    held = [q["id"] for q in split["held_out"]]
    assert sorted(split["seen"] + held) == sorted(q.id for q in items)
    assert not set(split["seen"]) & set(held)
    for topic, counts in split["by_topic"].items():
        assert abs(counts["seen"] - counts["held_out"]) <= 1, topic
    assert abs(len(split["seen"]) - len(held)) <= 1, "odd topics alternate between the halves"
    assert split == split_survey(list(reversed(items)), lambda q: q.topic, seed=0)
    others = [split_survey(items, lambda q: q.topic, seed=s)["seen"] for s in range(1, 6)]
    assert any(seen != split["seen"] for seen in others), "the seed chooses the halves"


@pytest.mark.skipif(not SHARED_WVS.is_dir(), reason="../shared/data/wvs is absent (not shipped)")
def test_the_wvs_split_is_written_into_the_run(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["evaluate", "split", "--survey-dir", str(SHARED_WVS), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / SPLIT_FILE).read_text())
    held = split["held_out"]
    assert len(split["seen"]) + len(held) == 259
    assert abs(len(split["seen"]) - len(held)) <= 1
    assert len(split["by_topic"]) == 13, "the 13 WVS topics"
    assert "" not in Counter(q["topic"] for q in held)
    assert all(q["question"] for q in held)


def test_a_planted_held_out_question_never_reaches_a_corpus_row(tmp_path: Path) -> None:
    run = make_run(tmp_path)  # holds an instance whose question is EVAL_QUESTION
    planted = SurveyQuestion("Q999", EVAL_QUESTION, ("Very", "Not"), 1, "t")
    split = split_survey([planted], lambda q: q.topic, seed=0)
    split["held_out"], split["seen"] = [{"id": "Q999", "question": EVAL_QUESTION}], []
    path = write_split(split, tmp_path / "split")

    def corpus(*extra: str) -> tuple[str, dict[str, int]]:
        out = tmp_path / f"corpus{len(extra)}"
        args = ["corpus", str(run), "--out", str(out), "--no-embeddings", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = "".join(p.read_text() for p in sorted(out.rglob("*.jsonl")))
        return rows, json.loads((out / "corpus_summary.json").read_text())["removed"]

    rows, _ = corpus()
    assert EVAL_QUESTION in rows, "the control: without the split the question is in a row"
    rows, removed = corpus("--eval-questions", str(path))
    assert EVAL_QUESTION not in rows
    assert sum(n for reason, n in removed.items() if "evaluation overlap" in reason) >= 1

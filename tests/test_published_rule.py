"""`evaluate score --rule published` reproduces CultureSPA's `result_analysis_run_3.py` exactly.

Their script takes a country's gold option as the first code the shares file lists (the file is
sorted by share, so an exact tie goes to whichever code it lists first) and counts every row of an
answer file. culturesim's earlier rule (`argmax`) takes the lowest code on a tie and keeps one
answer per question. On their culture-aware Llama-3-8B files the two differ on exactly the
tied cells BOL Q50, BOL Q163, NLD Q163, NZL Q35 and NZL Q193 (66.61 vs 66.57).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.evaluation.published import listed_majority, score_answer_file
from culturesim.survey.questionnaire import load_culturespa
from tests.conftest import SHARED_WVS

QUESTIONS = [
    {"Q_id": "Q1", "question": "Scale", "option_lst": [str(i) for i in range(1, 11)]},
    {"Q_id": "Q2", "question": "Four", "option_lst": ["a", "b", "c", "d"]},
    {"Q_id": "Q3", "question": "Zero-coded", "option_lst": ["Disagree", "Hard to say", "Agree"]},
    {"Q_id": "Q4", "question": "No shares", "option_lst": ["a", "b", "c", "d"]},
    {"Q_id": "Q6", "question": "Four", "option_lst": ["a", "b", "c", "d"]},
]
# File order matters: Q1 ties 8/7 with 8 listed first (like BOL Q50), Q3 ties 2/0 with 2 first.
SHARES = {
    "AAA": {
        "Q1": {"8": 0.3, "7": 0.3, "5": 0.2, "1": 0.2},
        "Q2": {"1": 0.5, "2": 0.3, "3": 0.2},
        "Q3": {"2": 0.4, "0": 0.4, "1": 0.2},
        "Q4": {},
        "Q6": {"4": 1.0},
    }
}
ANSWERS = [
    {"Q_id": "Q1", "answer": "I would choose option 8."},
    {"Q_id": "Q2", "answer": "I would choose option 2.2."},
    {"Q_id": "Q2", "answer": "1"},  # answered twice: the published script counts both rows
    {"Q_id": "Q3", "answer": "I would choose option 0.0. As a ..."},
    {"Q_id": "Q4", "answer": "3"},  # no shares for AAA: dropped by both rules
    {"Q_id": "Q5", "answer": "2"},  # not a survey question (like Q223): dropped by both
    {"Q_id": "Q6", "answer": "Somewhere between 11-15"},  # 11 is outside 0..10: invalid
]
# published terms (a, gold, n): (8, 8, 10), (2, 1, 4), (1, 1, 4), (0, 2, 3) -> 5 over 81+9+9+4
PUBLISHED = 100 * (1 - math.sqrt(5 / 103))
# argmax: Q1 gold 7 -> (8, 7, 10); Q2 keeps the last row (1, 1, 4); Q3 gold 0 -> (0, 0, 3)
ARGMAX = 100 * (1 - math.sqrt(1 / 94))

runner = CliRunner()


def _write(tmp_path: Path) -> tuple[Path, Path, Path]:
    questions, shares = tmp_path / "wvs_questions.json", tmp_path / "proportions.json"
    questions.write_text(json.dumps(QUESTIONS))
    shares.write_text(json.dumps(SHARES))
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "wvs_result_culture_aware_AAA_0.json").write_text(json.dumps(ANSWERS))
    return questions, shares, answers


def _score(args: list[str]) -> dict[str, object]:
    result = runner.invoke(app, ["evaluate", "score", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def test_score_listed_majority_follows_file_order(tmp_path: Path) -> None:
    _, shares, _ = _write(tmp_path)
    assert listed_majority(shares) == {"AAA": {"Q1": 8, "Q2": 1, "Q3": 2, "Q6": 4}}
    survey = load_culturespa(tmp_path / "wvs_questions.json", shares)
    assert survey.majority_code("AAA", "Q1") == 7  # argmax: the lowest code on a tie
    assert survey.majority_code("AAA", "Q3") == 0


def test_published_rule_scores_ties_and_repeats_like_the_paper(tmp_path: Path) -> None:
    questions, shares, answers = _write(tmp_path)
    survey = load_culturespa(questions, shares)
    path = answers / "wvs_result_culture_aware_AAA_0.json"
    row = score_answer_file(
        path, survey, "AAA", rule="published", gold=listed_majority(shares)["AAA"]
    )
    assert row["culturespa_unrounded"] == pytest.approx(PUBLISHED)
    assert row["culturespa"] == round(PUBLISHED, 2)
    assert (row["answers"], row["scored"]) == (6, 4)
    assert row["invalid_rate"] == pytest.approx(1 / 6, abs=1e-4)
    old = score_answer_file(path, survey, "AAA", rule="argmax")
    assert old["culturespa_unrounded"] == pytest.approx(ARGMAX)
    assert (old["answers"], old["scored"]) == (5, 3)
    with pytest.raises(ValueError, match="listed majority"):
        score_answer_file(path, survey, "AAA", rule="published")


def test_evaluate_score_defaults_to_the_published_rule(tmp_path: Path) -> None:
    questions, shares, answers = _write(tmp_path)
    base = ["--questions", str(questions), "--survey", str(shares), "--answers", str(answers)]
    published = _score(base)
    assert published["rule"] == "published"
    assert published["average"] == pytest.approx(round(PUBLISHED, 2))
    assert _score([*base, "--rule", "published"]) == published
    argmax = _score([*base, "--rule", "argmax"])
    assert argmax["rule"] == "argmax"
    assert argmax["average"] == pytest.approx(round(ARGMAX, 2))
    bad = runner.invoke(app, ["evaluate", "score", *base, "--rule", "mode"])
    assert bad.exit_code == 1
    assert "use one of published, argmax" in bad.output


@pytest.mark.skipif(
    not SHARED_WVS.exists(), reason="../shared/data/wvs is absent: real WVS checks need it"
)
def test_score_real_shares_differ_only_on_the_five_tied_cells(tmp_path: Path) -> None:
    questions = SHARED_WVS / "wvs_questions.json"
    shares = SHARED_WVS / "proportions_group_by_country.json"
    survey = load_culturespa(questions, shares)
    listed = listed_majority(shares)
    cultures = sorted(set(survey.shares) - {"MEX"})  # the paper's 18 countries
    differing = {
        (c, q)
        for c in cultures
        for q in survey.questions
        if q in listed[c] and listed[c][q] != survey.majority_code(c, q)
    }
    assert differing == {
        ("BOL", "Q50"),
        ("BOL", "Q163"),
        ("NLD", "Q163"),
        ("NZL", "Q35"),
        ("NZL", "Q193"),
    }
    # Llama-3-8B's culture-aware BOL file answers Q163 (tie 5/1, 5 listed first) with 8.
    path = tmp_path / "wvs_result_culture_aware_BOL_0.json"
    path.write_text(json.dumps([{"Q_id": "Q163", "answer": "8"}]))
    published = score_answer_file(path, survey, "BOL", rule="published", gold=listed["BOL"])
    assert published["culturespa_unrounded"] == pytest.approx(100 * (1 - 3 / 9))
    argmax = score_answer_file(path, survey, "BOL", rule="argmax")
    assert argmax["culturespa_unrounded"] == pytest.approx(100 * (1 - 7 / 9))

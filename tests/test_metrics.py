"""Every metric against values computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from culturesim.evaluation import metrics
from culturesim.evaluation.scoring import reference_rows, score_answer_set
from culturesim.records import Answer
from culturesim.survey.questionnaire import load_culturespa
from tests.evaluation_fixtures import write_survey


def test_culturespa_score_by_hand() -> None:
    # a - g = (1 - 2, 3 - 3) -> norm 1; n - 1 = (3, 4) -> norm 5; 100 * (1 - 1/5) = 80
    assert metrics.culturespa_score(
        {"a": 1, "b": 3}, {"a": 2, "b": 3}, {"a": 4, "b": 5}
    ) == pytest.approx(80.0)
    # invalid answers and questions without gold are skipped, as published
    assert metrics.culturespa_score(
        {"a": 1, "b": None, "c": 2}, {"a": 2, "b": 1, "c": None}, {"a": 4, "b": 4, "c": 4}
    ) == pytest.approx(100 * (1 - 1 / 3))
    assert math.isnan(metrics.culturespa_score({"a": None}, {"a": 1}, {"a": 2}))


def test_js_distance_by_hand() -> None:
    assert metrics.js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert metrics.js_distance(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(
        0.0, abs=1e-9
    )
    # m = (0.75, 0.25); KL(p||m) = 0.20752, KL(q||m) = 0.41504 (bits); JS = 0.31128; sqrt = 0.55793
    assert metrics.js_distance(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(
        0.55793, abs=1e-4
    )


def test_emd_by_hand() -> None:
    assert metrics.emd(np.array([1.0, 0, 0]), np.array([0, 0, 1.0])) == pytest.approx(
        1.0
    )  # 2 steps / (n-1)
    assert metrics.emd(np.array([0.5, 0.5, 0]), np.array([0, 0.5, 0.5])) == pytest.approx(
        0.5
    )  # 1 / 2


def test_smoothed_kl_by_hand_and_direction() -> None:
    survey, model = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    assert metrics.smoothed_kl(survey, model) == pytest.approx(0.68525, abs=1e-4)
    # finite even when the model puts zero mass where respondents answer
    assert math.isfinite(metrics.smoothed_kl(np.array([0.5, 0.5]), np.array([1.0, 0.0])))
    assert metrics.smoothed_kl(survey, survey) == pytest.approx(0.0, abs=1e-12)


def test_individual_accuracy_and_invalid_rate() -> None:
    assert metrics.individual_accuracy([1, 2, None, 4], [1, 3, 2, 4]) == pytest.approx(0.5)
    assert metrics.invalid_rate([1, None, None, 3]) == pytest.approx(0.5)


def test_discrimination_margin_and_rank() -> None:
    result = metrics.discrimination(
        {"A": {"A": 0.9, "B": 0.5, "C": 0.7}, "B": {"A": 0.8, "B": 0.6, "C": 0.6}}
    )
    assert result["A"] == {"margin": pytest.approx(0.3), "rank_share": 1.0}
    assert result["B"] == {"margin": pytest.approx(-0.1), "rank_share": 0.0}


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    values = {f"q{i}": float(i % 5) for i in range(50)}
    low, high = metrics.bootstrap_ci(values, seed=1)
    assert low < np.mean(list(values.values())) < high
    assert (low, high) == metrics.bootstrap_ci(values, seed=1)
    assert metrics.bootstrap_ci({"a": 2.0, "b": 2.0}) == (2.0, 2.0)


def test_perfect_key_scores_100_and_pooled_key_matches_hand(tmp_path: Path) -> None:
    survey = load_culturespa(*write_survey(tmp_path))
    # Perfect key for AAA: its majorities are Q1 -> 1, Q2 -> 2, Q3 -> 0 (codes start at 0 for Q3).
    perfect = [
        Answer(
            question_id=f"survey:{q}",
            model="key",
            mode="sample",
            parsed=(survey.majority_code("AAA", q),),
        )
        for q in ("Q1", "Q2", "Q3")
    ]
    assert [a.parsed[0] for a in perfect] == [1, 2, 0]
    assert score_answer_set(
        survey, perfect, "AAA", model="key", style="key"
    ).culturespa == pytest.approx(100.0)
    # Pooled distributions (means of renormalised shares over countries that answered):
    # Q1: AAA (.75,.25,0,0) BBB (.25,0,.75,0) CCC (.5,.5,0,0) -> (.5,.25,.25,0) -> mode code 1
    # Q2: AAA (1/3,2/3) BBB (.9,.1) CCC (.6,.4) -> (.6111,.3889) -> mode code 1
    # Q3: AAA (.5,.25,.25) BBB (.2,.4,.4) -> (.35,.325,.325) -> mode code 0
    # Against BBB (majorities Q1 -> 3, Q2 -> 1, Q3 -> 1 [tie 1/2 -> first]):
    # a - g = (1-3, 1-1, 0-1) -> sqrt(5); n - 1 = (3, 1, 2) -> sqrt(14); score = 100 (1 - sqrt(5/14))
    rows = {r.culture: r for r in reference_rows(survey, ["AAA", "BBB", "CCC"])}
    assert rows["BBB"].culturespa == pytest.approx(100 * (1 - math.sqrt(5 / 14)))
    # Against CCC (no Q3 data; majorities Q1 -> 1 [tie], Q2 -> 1): perfect on what it has
    assert rows["CCC"].culturespa == pytest.approx(100.0)
    assert rows["CCC"].questions == 2

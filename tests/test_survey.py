"""Survey loaders: renormalised shares, option numbering, clear errors; the real WVS files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from culturesim.survey.questionnaire import (
    SurveyFileError,
    load_culturespa,
    load_generic,
    load_respondents,
    load_survey_dir,
)
from tests.conftest import SHARED_WVS
from tests.evaluation_fixtures import write_survey


def test_culturespa_loader_renormalises_and_numbers_options(tmp_path: Path) -> None:
    survey = load_culturespa(*write_survey(tmp_path))
    assert set(survey.questions) == {"Q1", "Q2", "Q3"}  # Q260 (demographics) excluded by default
    assert survey.questions["Q3"].first_code == 0 and survey.questions["Q1"].first_code == 1
    assert np.allclose(survey.distribution("AAA", "Q1"), [0.75, 0.25, 0, 0])
    assert np.allclose(survey.distribution("AAA", "Q2"), [1 / 3, 2 / 3])
    assert survey.distribution("CCC", "Q3") is None  # an empty cell is missing, not uniform
    assert survey.majority_code("AAA", "Q3") == 0


def test_bad_share_code_names_file_and_cell(tmp_path: Path) -> None:
    questions, shares = write_survey(tmp_path)
    data = json.loads(shares.read_text())
    data["AAA"]["Q2"] = {"7": 1.0}
    shares.write_text(json.dumps(data))
    with pytest.raises(SurveyFileError, match=r"AAA/Q2: option code 7 is outside 1\.\.2"):
        load_culturespa(questions, shares)
    shares.write_text("{broken")
    with pytest.raises(
        SurveyFileError, match=r"proportions_group_by_country\.json:1: not valid JSON"
    ):
        load_culturespa(questions, shares)


def test_respondent_table_gives_shares_and_people(tmp_path: Path) -> None:
    questions = load_culturespa(*write_survey(tmp_path / "s")).questions
    table = tmp_path / "people.csv"
    table.write_text(
        "respondent_id,country,age,sex,question_id,answer\n"
        "r1,AAA,34,female,Q1,1\nr1,AAA,34,female,Q2,2\n"
        "r2,AAA,60,male,Q1,2\nr2,AAA,60,male,Q2,-1\n"
        "r3,BBB,25,male,Q1,1\n"
    )
    survey = load_respondents(table, questions)
    assert np.allclose(survey.distribution("AAA", "Q1"), [0.5, 0.5, 0, 0])
    assert np.allclose(survey.distribution("AAA", "Q2"), [0, 1])  # the -1 (don't know) is dropped
    people = {p.id: p for p in survey.respondents}
    assert people["r1"].demographics == {"age": "34", "sex": "female"}
    assert people["r2"].answers == {"Q1": 2}
    table.write_text("respondent_id,country,question_id,answer\nr1,AAA,Q1,9\n")
    with pytest.raises(
        SurveyFileError, match=r"people\.csv:2: answer 9 is not an option code of Q1"
    ):
        load_respondents(table, questions)


def test_generic_format(tmp_path: Path) -> None:
    path = tmp_path / "mine.survey.json"
    path.write_text(
        json.dumps(
            {
                "questions": [
                    {
                        "id": "x1",
                        "text": "Tea or coffee?",
                        "options": ["Tea", "Coffee"],
                        "topic": "food",
                    }
                ],
                "countries": {"JPN": {"x1": {"1": 3, "2": 1}}},
            }
        )
    )
    survey = load_survey_dir(tmp_path)
    assert np.allclose(survey.distribution("JPN", "x1"), [0.75, 0.25])
    path.write_text(json.dumps({"questions": [{"id": "x1"}]}))
    with pytest.raises(SurveyFileError, match=r"questions\[0\] needs id, text, options"):
        load_generic(path)


@pytest.mark.skipif(
    not SHARED_WVS.exists(), reason="../shared/data/wvs is absent: real WVS checks need it"
)
def test_real_wvs_files_load_as_published() -> None:
    survey = load_survey_dir(SHARED_WVS)
    assert len(survey.questions) == 259
    assert "Q223" not in survey.questions and "Q260" not in survey.questions
    zero = {q for q, item in survey.questions.items() if item.first_code == 0}
    published = {f"Q{i}" for i in [*range(94, 106), 119, *range(122, 130), *range(241, 250)]}
    assert zero == published
    assert len(survey.countries) == 19
    for country in survey.countries:
        for dist in survey.shares[country].values():
            assert dist.sum() == pytest.approx(1.0)
    assert 259 - len(survey.shares["CHN"]) == 37  # the README's count of CHN's empty cells

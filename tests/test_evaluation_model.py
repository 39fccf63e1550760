"""Administering surveys to real models: SmolLM2 and a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.evaluation.guard import guard_accuracy, load_benchmark
from culturesim.evaluation.scoring import score_run
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Answer
from culturesim.scenarios.cultures import load_cultures
from culturesim.store import RunStore
from culturesim.survey.administer import SurveyPrompter, answer_logprob, answer_sampled
from culturesim.survey.answering import run_items
from culturesim.survey.questionnaire import Respondent, SurveyQuestion, load_culturespa
from tests.evaluation_fixtures import write_survey

CAPITAL = SurveyQuestion(
    "K1", "What is the capital city of France?", ("Berlin", "Madrid", "Paris", "Rome")
)
RANGE = SurveyQuestion(
    "K2",
    "On a scale from 1 to 10, how much do you like music?",
    tuple(str(i) for i in range(1, 11)),
)


@pytest.fixture(scope="module")
def prompter() -> SurveyPrompter:
    return SurveyPrompter(load_cultures())


def test_logprob_mode_knows_the_obvious_answer(
    smollm2: TransformersModel, prompter: SurveyPrompter
) -> None:
    items = prompter.items([CAPITAL, RANGE], ["unaware", "aware"], ["JPN", "MEX"])
    answers = answer_logprob(smollm2, items)
    assert len(answers) == 6
    for answer in answers:
        assert sum(answer.distribution) == pytest.approx(1.0, abs=1e-4)
        assert answer.label_mass is not None and 0 < answer.label_mass <= 1.0
    capital = [a for a in answers if a.question_id == "survey:K1"]
    assert all(int(np.argmax(a.distribution)) == 2 for a in capital)  # "3.Paris"
    scale = next(a for a in answers if a.question_id == "survey:K2")
    assert len(scale.distribution) == 10  # "10" is scored exactly as two tokens


def test_sampled_mode_parses_and_counts_what_does_not_parse(
    smollm2: TransformersModel, prompter: SurveyPrompter
) -> None:
    items = prompter.items([CAPITAL], ["aware"], ["DEU"])
    (answer,) = answer_sampled(smollm2, items, samples=4, seed=3)
    assert len(answer.samples) == 4 and len(answer.parsed) == 4
    assert all(p is None or p in (1, 2, 3, 4) for p in answer.parsed)
    (again,) = answer_sampled(smollm2, items, samples=4, seed=3)
    assert again.samples == answer.samples  # seeded


def test_persona_prompts_from_respondent_demographics(
    tiny_model: TransformersModel, prompter: SurveyPrompter
) -> None:
    people = [
        Respondent(
            "r1", "MEX", {"age": "34", "sex": "female", "education": "university"}, {"K1": 3}
        ),
        Respondent("r2", "JPN", {"age": "70", "sex": "male"}, {"K1": 3, "K2": 8}),
    ]
    items = prompter.persona_items({"K1": CAPITAL, "K2": RANGE}, people)
    assert len(items) == 3
    system = items[0].chat[0]["content"]
    assert system.startswith(
        "You are a survey respondent from Mexico.\n- age: 34\n- sex: female\n- education: university"
    )
    answers = answer_logprob(tiny_model, items)
    assert {a.culture for a in answers} == {"MEX/r1", "JPN/r2"}


def test_runner_resumes_without_recomputing(
    tiny_model: TransformersModel, prompter: SurveyPrompter, tmp_path: Path
) -> None:
    store = RunStore.open(tmp_path / "run", {"test": 1})
    items = prompter.items([CAPITAL, RANGE], ["unaware", "aware"], ["JPN"])
    first = run_items(tiny_model, items[:2], store=store, show_progress=False)
    calls: list[int] = []

    class Counting:
        model_id = tiny_model.model_id

        def score(self, prompts, candidates):  # type: ignore[no-untyped-def]
            calls.append(len(prompts))
            return tiny_model.score(prompts, candidates)

    everything = run_items(Counting(), items, store=store, show_progress=False)  # type: ignore[arg-type]
    assert calls == [len(items) - 2]
    assert everything[:2] == first
    assert len(store.read(Answer)) == len(items)


def test_scoring_a_model_run_on_synthetic_survey(
    tiny_model: TransformersModel, prompter: SurveyPrompter, tmp_path: Path
) -> None:
    survey = load_culturespa(*write_survey(tmp_path))
    cultures = load_cultures()
    # the synthetic countries borrow real profiles so that culture-aware prompts can render
    aliases = {"AAA": "JPN", "BBB": "MEX", "CCC": "DEU"}
    prompter = SurveyPrompter({code: cultures[real] for code, real in aliases.items()})
    items = prompter.items(list(survey.questions.values()), ["unaware", "aware"], list(aliases))
    rows = score_run(survey, answer_logprob(tiny_model, items), list(aliases))
    assert {(r.style, r.culture) for r in rows} == {
        (s, c) for s in ("unaware", "aware") for c in aliases
    }
    for row in rows:
        assert 0 <= row.js_distance <= 1 and row.invalid_rate == 0.0
        assert row.questions == (2 if row.culture == "CCC" else 3)
        if row.style == "aware":
            assert np.isfinite(row.discrimination)


def test_guard_on_smollm2_sanity_set(smollm2: TransformersModel) -> None:
    items = load_benchmark()
    assert len(items) == 30
    result = guard_accuracy(smollm2, items)
    assert result.items == 30 and 0 <= result.correct <= 30


runner = CliRunner()


def test_evaluate_score_rescoring_published_style_files(tmp_path: Path) -> None:
    questions, shares = write_survey(tmp_path / "survey")
    answers = tmp_path / "answers"
    answers.mkdir()
    # AAA majorities: Q1 -> 1, Q2 -> 2, Q3 -> 0. One answer is a refusal (invalid, not dropped silently).
    (answers / "wvs_result_culture_aware_AAA_0.json").write_text(
        json.dumps(
            [
                {"Q_id": "Q1", "answer": "1"},
                {"Q_id": "Q2", "answer": "I choose 2."},
                {"Q_id": "Q3", "answer": "I cannot answer"},
            ]
        )
    )
    (answers / "wvs_result_culture_aware_BBB_0.json").write_text(
        json.dumps(
            [
                {"Q_id": "Q1", "answer": "1"},
                {"Q_id": "Q2", "answer": "1"},
                {"Q_id": "Q3", "answer": "2"},
            ]
        )
    )
    result = runner.invoke(
        app,
        [
            "evaluate",
            "score",
            "--questions",
            str(questions),
            "--survey",
            str(shares),
            "--answers",
            str(answers),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {r["country"]: r for r in data["rows"]}
    assert rows["AAA"]["culturespa"] == pytest.approx(100.0)
    assert rows["AAA"]["invalid_rate"] == pytest.approx(1 / 3, abs=1e-3)
    # BBB majorities Q1 -> 3, Q2 -> 1, Q3 -> 2 (the published rule takes the code listed first
    # on the 2/1 tie): a - g = (-2, 0, 0), n - 1 = (3, 1, 2): 100 (1 - sqrt(4/14))
    assert rows["BBB"]["culturespa"] == pytest.approx(round(100 * (1 - (4 / 14) ** 0.5), 2))
    assert data["average"] == pytest.approx(
        (rows["AAA"]["culturespa"] + rows["BBB"]["culturespa"]) / 2, abs=0.01
    )


def test_evaluate_score_errors_are_clear(tmp_path: Path) -> None:
    questions, shares = write_survey(tmp_path / "survey")
    bad = tmp_path / "answers_XYZ.json"
    bad.write_text(json.dumps([{"Q_id": "Q1"}]))
    result = runner.invoke(
        app,
        [
            "evaluate",
            "score",
            "--questions",
            str(questions),
            "--survey",
            str(shares),
            "--answers",
            str(bad),
            "--country",
            "AAA",
        ],
    )
    assert result.exit_code == 1
    assert "item 0 needs 'Q_id' and 'answer'" in result.output


def test_evaluate_wvs_end_to_end_on_smollm2(tmp_path: Path) -> None:
    write_survey(tmp_path / "survey")
    (tmp_path / "survey" / "proportions_group_by_country.json").write_text(
        json.dumps(
            {
                "JPN": {"Q1": {"1": 0.7, "2": 0.3}, "Q2": {"2": 1.0}, "Q3": {"0": 0.5, "1": 0.5}},
                "MEX": {"Q1": {"1": 0.9}, "Q2": {"1": 0.6, "2": 0.4}, "Q3": {"2": 1.0}},
                "DEU": {"Q1": {"2": 0.6, "1": 0.4}, "Q2": {"1": 0.5, "2": 0.5}, "Q3": {"0": 1.0}},
            }
        )
    )
    out = tmp_path / "run"
    args = [
        "evaluate",
        "wvs",
        "-m",
        "smollm2",
        "--survey-dir",
        str(tmp_path / "survey"),
        "--out",
        str(out),
        "--styles",
        "unaware,aware,cross_culture",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = {(s["model"], s["style"]): s for s in json.loads(result.output)["summary"]}
    assert set(summary) == {
        ("smollm2-135m-instruct", s) for s in ("unaware", "aware", "cross_culture")
    } | {("reference", "pooled_mode")}
    assert all(0 <= s["culturespa"] <= 100 for s in summary.values())
    for name in (
        "results.json",
        "results.csv",
        "culturespa_by_culture.png",
        "culture_map_smollm2_135m_instruct.png",
        "answer.jsonl",
    ):
        assert (out / name).stat().st_size > 0
    assert len((out / "answer.jsonl").read_text().splitlines()) == 3 + 3 * 3 + 3 * 3
    again = runner.invoke(app, args)  # resumes: same results, nothing appended
    assert again.exit_code == 0
    assert len((out / "answer.jsonl").read_text().splitlines()) == 21
    changed = runner.invoke(app, [*args[:-1], "--mode", "sample"])
    assert changed.exit_code == 1 and "differs in: mode" in changed.output


def test_score_answer_files_is_the_library_behind_evaluate_score(tmp_path: Path) -> None:
    from culturesim.evaluation.published import score_answer_files
    from culturesim.survey.questionnaire import SurveyFileError

    questions, shares = write_survey(tmp_path / "survey")
    answer = tmp_path / "answers_AAA.json"
    answer.write_text(json.dumps([{"Q_id": "Q1", "answer": "1"}, {"Q_id": "Q2", "answer": "2"}]))
    rows, average = score_answer_files(questions, shares, answer, country="AAA", rule="argmax")
    assert [r["country"] for r in rows] == ["AAA"] and average == rows[0]["culturespa"]
    with pytest.raises(SurveyFileError, match="no country code"):
        score_answer_files(questions, shares, tmp_path / "survey" / "wvs_questions.json")
    with pytest.raises(ValueError, match="--rule 'mode'"):
        score_answer_files(questions, shares, answer, country="AAA", rule="mode")

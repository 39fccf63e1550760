"""Re-scoring published answer files (CultureSPA's `wvs_result_*.json`) with their metric.

Two rules, which differ only in which survey option counts as a country's majority on an exact
tie, and in how a question answered twice is counted:

* `published` (the default of `culturesim evaluate score`): CultureSPA's `result_analysis_run_3.py`
  exactly. The gold option is the *first code listed* in the shares file for that country and
  question (the file is sorted by share, so on a tie it is whichever code the file happens to list
  first: 8 before 7 for BOL Q50, but 1 before 2 for KEN Q89). Every row of the answer file is a
  term, in file order: an answer is parsed with `parse_published` (first run of digits, kept when
  0..10), rows that parse to nothing or whose question has no shares for the country are dropped,
  and a question answered twice counts twice. Files are averaged unrounded.
* `argmax` (culturesim's earlier rule): the gold option is the argmax of the renormalised shares,
  the lowest code on a tie, and one answer per question (the last row wins). It does not depend on
  the key order of the shares file, so it is what to use for survey data that has no such order
  (respondent tables, the generic format) or a shares file that was re-serialised. On CultureSPA's
  files the two golds differ for their 18 countries only on the tied cells BOL Q50, BOL Q163,
  NLD Q163, NZL Q35 and NZL Q193.

Both rules parse answers the same way (`parse_published`) and use the same question set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from culturesim.evaluation import metrics
from culturesim.survey.parsing import parse_published
from culturesim.survey.questionnaire import COUNTRY_IN_NAME, Survey, SurveyFileError

Rule = Literal["published", "argmax"]
RULES: tuple[Rule, ...] = ("published", "argmax")


def listed_majority(shares_path: str | Path) -> dict[str, dict[str, int]]:
    """CultureSPA's gold: per country and question, the first option code the shares file lists.

    Questions whose cell is empty are left out (their script skips them). The order is the file's
    own, so this reads the file again rather than the renormalised arrays of a `Survey`.
    """
    path = Path(shares_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SurveyFileError(f"{path}: file not found") from error
    except json.JSONDecodeError as error:
        raise SurveyFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(raw, dict):
        raise SurveyFileError(f"{path}: expected {{country: {{Q_id: {{code: share}}}}}}")
    gold: dict[str, dict[str, int]] = {}
    for country, per_question in raw.items():
        if not isinstance(per_question, dict):
            raise SurveyFileError(f"{path}: {country}: expected {{Q_id: {{code: share}}}}")
        gold[country] = {}
        for qid, cell in per_question.items():
            if not isinstance(cell, dict):
                raise SurveyFileError(f"{path}: {country}/{qid}: expected {{code: share}}")
            if not cell:
                continue
            first = next(iter(cell))
            try:
                gold[country][qid] = int(first)
            except ValueError as error:
                raise SurveyFileError(
                    f"{path}: {country}/{qid}: option code {first!r} is not a number"
                ) from error
    return gold


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SurveyFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(rows, list):
        raise SurveyFileError(f"{path}: expected a list of {{'Q_id', 'answer'}} objects")
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or "Q_id" not in row or "answer" not in row:
            raise SurveyFileError(f"{path}: item {number} needs 'Q_id' and 'answer'")
    return rows


def score_answer_file(
    path: Path,
    survey: Survey,
    country: str,
    *,
    rule: Rule = "argmax",
    gold: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Re-score a published answer file ([{"Q_id", "answer"}, ...]) for one country.

    `rule="published"` needs `gold`, the country's entry of `listed_majority(shares_path)`.
    """
    rows = _read_rows(path)
    if rule == "published":
        if gold is None:
            raise ValueError("rule 'published' needs the listed majority (see listed_majority)")
        return _score_published(path, rows, survey, country, gold)
    if rule != "argmax":
        raise ValueError(f"unknown rule {rule!r}: use one of {', '.join(RULES)}")
    answers: dict[str, int | None] = {}
    for row in rows:
        if row["Q_id"] in survey.questions:
            answers[row["Q_id"]] = parse_published(str(row["answer"]))
    majority = {q: survey.majority_code(country, q) for q in answers}
    counts = {q: len(survey.questions[q].options) for q in answers}
    low, high = metrics.culturespa_bootstrap_ci(answers, majority, counts)
    score = metrics.culturespa_score(answers, majority, counts)
    return _row(
        path,
        country,
        rule,
        answers=len(answers),
        scored=sum(1 for q, a in answers.items() if a is not None and majority[q] is not None),
        invalid_rate=metrics.invalid_rate(list(answers.values())),
        score=score,
        ci=(low, high),
    )


def _score_published(
    path: Path, rows: list[dict[str, Any]], survey: Survey, country: str, gold: Mapping[str, int]
) -> dict[str, Any]:
    """Row by row, as `compare_res_gold` in CultureSPA's `result_analysis_run_3.py` does."""
    parsed: list[int | None] = []
    points: tuple[list[int], list[int], list[int]] = ([], [], [])
    for row in rows:
        qid = row["Q_id"]
        if qid not in survey.questions:  # outside their question list (Q223, Q260+)
            continue
        answer = parse_published(str(row["answer"]))
        parsed.append(answer)
        if answer is None or qid not in gold:
            continue
        points[0].append(answer)
        points[1].append(gold[qid])
        points[2].append(len(survey.questions[qid].options))
    low, high = metrics.culturespa_bootstrap_ci_points(*points)
    return _row(
        path,
        country,
        "published",
        answers=len(parsed),
        scored=len(points[0]),
        invalid_rate=metrics.invalid_rate(parsed),
        score=metrics.culturespa_score_points(*points),
        ci=(low, high),
    )


def _row(
    path: Path,
    country: str,
    rule: Rule,
    *,
    answers: int,
    scored: int,
    invalid_rate: float,
    score: float,
    ci: tuple[float, float],
) -> dict[str, Any]:
    return {
        "file": str(path),
        "country": country,
        "rule": rule,
        "answers": answers,
        "scored": scored,
        "invalid_rate": round(invalid_rate, 4),
        "culturespa": round(score, 2),
        "culturespa_unrounded": score,
        "ci95": [round(ci[0], 2), round(ci[1], 2)],
    }


def country_from_name(path: Path, survey: Survey) -> str | None:
    """The last country code in a file name that the survey has data for."""
    found = [m for m in COUNTRY_IN_NAME.findall(path.stem) if m in survey.shares]
    return found[-1] if found else None


def score_answer_files(
    questions: Path,
    shares: Path,
    answers: Path,
    *,
    country: str | None = None,
    rule: str = "published",
) -> tuple[list[dict[str, Any]], float]:
    """Score an answer file, or a folder of them (one per country, named by its code), with
    the published metric; returns a row per file and their average, taken over unrounded
    scores as the published script does (a mean of rounded scores can be 0.01 off)."""
    import numpy as np

    from culturesim.survey.questionnaire import SurveyFileError, load_culturespa

    if rule not in RULES:
        raise ValueError(f"--rule {rule!r}: use one of {', '.join(RULES)}")
    data = load_culturespa(questions, shares)
    listed = listed_majority(shares) if rule == "published" else {}
    files = sorted(answers.glob("*.json")) if answers.is_dir() else [answers]
    if not files:
        raise SurveyFileError(f"{answers}: no .json answer files")
    rows = []
    for path in files:
        code = country or country_from_name(path, data)
        if code is None:
            raise SurveyFileError(f"{path}: no country code in the file name; pass --country")
        if code not in data.shares:
            raise SurveyFileError(f"{code}: not in {shares} (has {', '.join(data.countries)})")
        rows.append(score_answer_file(path, data, code, rule=rule, gold=listed.get(code, {})))
    average = round(float(np.mean([float(r["culturespa_unrounded"]) for r in rows])), 2)
    return rows, average

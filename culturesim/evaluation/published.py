"""Re-scoring published answer files (CultureSPA's `wvs_result_*.json`) with their metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from culturesim.evaluation import metrics
from culturesim.evaluation.parsing import parse_published
from culturesim.evaluation.survey import COUNTRY_IN_NAME, Survey, SurveyFileError


def score_answer_file(path: Path, survey: Survey, country: str) -> dict[str, Any]:
    """Re-score a published answer file ([{"Q_id", "answer"}, ...]) the way CultureSPA did."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SurveyFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(rows, list):
        raise SurveyFileError(f"{path}: expected a list of {{'Q_id', 'answer'}} objects")
    answers: dict[str, int | None] = {}
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or "Q_id" not in row or "answer" not in row:
            raise SurveyFileError(f"{path}: item {number} needs 'Q_id' and 'answer'")
        if row["Q_id"] in survey.questions:
            answers[row["Q_id"]] = parse_published(str(row["answer"]))
    majority = {q: survey.majority_code(country, q) for q in answers}
    counts = {q: len(survey.questions[q].options) for q in answers}
    low, high = metrics.culturespa_bootstrap_ci(answers, majority, counts)
    return {
        "file": str(path),
        "country": country,
        "answers": len(answers),
        "scored": sum(1 for q, a in answers.items() if a is not None and majority[q] is not None),
        "invalid_rate": round(metrics.invalid_rate(list(answers.values())), 4),
        "culturespa": round(metrics.culturespa_score(answers, majority, counts), 2),
        "ci95": [round(low, 2), round(high, 2)],
    }


def country_from_name(path: Path, survey: Survey) -> str | None:
    """The last country code in a file name that the survey has data for."""
    found = [m for m in COUNTRY_IN_NAME.findall(path.stem) if m in survey.shares]
    return found[-1] if found else None

"""From Answer records to per-culture results: every metric, with intervals and references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from culturesim.evaluation import metrics
from culturesim.records import Answer
from culturesim.survey.distributions import answer_code, answer_distribution
from culturesim.survey.questionnaire import Survey


@dataclass
class CultureResult:
    """One row of an evaluation table: a model (or reference) under one prompt style, one culture."""

    model: str
    style: str
    culture: str
    questions: int
    culturespa: float
    culturespa_low: float
    culturespa_high: float
    js_distance: float
    js_low: float
    js_high: float
    emd: float
    kl: float
    invalid_rate: float
    label_mass: float
    discrimination: float = float("nan")
    discrimination_rank: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> CultureResult:
        """A row read back from results.json, where a missing number is null."""
        values: dict[str, Any] = {k: (float("nan") if v is None else v) for k, v in row.items()}
        return cls(**values)


def _question_id(answer: Answer) -> str:
    return answer.question_id.removeprefix("survey:")


def score_answer_set(
    survey: Survey,
    answers: Sequence[Answer],
    country: str,
    *,
    model: str,
    style: str,
    resamples: int = 1000,
) -> CultureResult:
    """Score one set of answers (one per question) against one country's survey data."""
    by_question = {_question_id(a): a for a in answers if _question_id(a) in survey.questions}
    codes = {q: answer_code(a, survey.questions[q]) for q, a in by_question.items()}
    majority = {q: survey.majority_code(country, q) for q in by_question}
    counts = {q: len(survey.questions[q].options) for q in by_question}
    model_dists = {
        q: d
        for q, a in by_question.items()
        if (d := answer_distribution(a, survey.questions[q])) is not None
    }
    survey_dists = survey.shares.get(country, {})
    js_mean, js_per_q = metrics.mean_over_questions(metrics.js_distance, model_dists, survey_dists)
    emd_mean, _ = metrics.mean_over_questions(metrics.emd, model_dists, survey_dists)
    kl_mean, _ = metrics.mean_over_questions(
        lambda m, s: metrics.smoothed_kl(s, m), model_dists, survey_dists
    )
    low, high = metrics.culturespa_bootstrap_ci(codes, majority, counts, resamples=resamples)
    js_low, js_high = metrics.bootstrap_ci(js_per_q, resamples=resamples)
    invalid = [codes[q] for q in by_question]
    masses = [a.label_mass for a in by_question.values() if a.label_mass is not None]
    return CultureResult(
        model=model,
        style=style,
        culture=country,
        questions=sum(1 for q in by_question if codes[q] is not None and majority[q] is not None),
        culturespa=metrics.culturespa_score(codes, majority, counts),
        culturespa_low=low,
        culturespa_high=high,
        js_distance=js_mean,
        js_low=js_low,
        js_high=js_high,
        emd=emd_mean,
        kl=kl_mean,
        invalid_rate=metrics.invalid_rate(invalid),
        label_mass=float(np.mean(masses)) if masses else float("nan"),
    )


def score_run(
    survey: Survey,
    answers: Sequence[Answer],
    cultures: Sequence[str],
    *,
    resamples: int = 1000,
) -> list[CultureResult]:
    """Rows for every (model, style, culture); unaware answers are scored against each culture."""
    groups: dict[tuple[str, str, str], list[Answer]] = {}
    for answer in answers:
        groups.setdefault((answer.model, answer.prompt, answer.culture), []).append(answer)
    rows: list[CultureResult] = []
    for (model, style, culture), group in sorted(groups.items()):
        targets = [c for c in cultures if c in survey.shares] if style == "unaware" else [culture]
        for country in targets:
            if country not in survey.shares:
                continue
            rows.append(
                score_answer_set(
                    survey, group, country, model=model, style=style, resamples=resamples
                )
            )
    _add_discrimination(survey, groups, rows, cultures)
    return rows


def _add_discrimination(
    survey: Survey,
    groups: Mapping[tuple[str, str, str], list[Answer]],
    rows: list[CultureResult],
    cultures: Sequence[str],
) -> None:
    """For culture-conditioned styles: does c's answer set match c better than the others?"""
    known = [c for c in cultures if c in survey.shares]
    for row in rows:
        if row.style == "unaware" or len(known) < 2:
            continue
        group = groups[(row.model, row.style, row.culture)]
        dists = {
            _question_id(a): d
            for a in group
            if _question_id(a) in survey.questions
            and (d := answer_distribution(a, survey.questions[_question_id(a)])) is not None
        }
        similarity = {
            other: -metrics.mean_over_questions(metrics.js_distance, dists, survey.shares[other])[0]
            for other in known
        }
        found = metrics.discrimination({row.culture: similarity}).get(row.culture)
        if found:
            row.discrimination, row.discrimination_rank = found["margin"], found["rank_share"]


def reference_rows(survey: Survey, cultures: Sequence[str]) -> list[CultureResult]:
    """What a method must beat: one culture-agnostic answer key (the pooled mode) for everyone."""
    pooled: list[Answer] = []
    for qid in survey.questions:
        dist = survey.pooled_distribution(qid)
        if dist is not None:
            pooled.append(
                Answer(
                    question_id=f"survey:{qid}",
                    model="reference",
                    prompt="pooled_mode",
                    distribution=tuple(float(x) for x in dist),
                )
            )
    return [
        score_answer_set(survey, pooled, c, model="reference", style="pooled_mode", resamples=200)
        for c in cultures
        if c in survey.shares
    ]

"""Models compared on one question set: mean metrics over cultures with bootstrap intervals.

Why: a positive control (and any before/after claim) needs to say whether a difference is
larger than the luck of which questions were asked. Each model's culture-aware answers are
scored per (culture, question); the questions are resampled with replacement (the same draws
for every model, so differences are paired), and each draw gives the mean over cultures of:

* `culturespa`: the published score per culture (over the drawn questions' terms);
* `js_distance`: Jensen–Shannon distance to the culture's own answer shares (lower is better);
* `discrimination`: per (culture c, question q), the mean distance of c's answer to the other
  cultures' shares minus its distance to c's own; averaged over questions, then cultures. It is
  0 for a model that answers the same whoever it is told it is, and positive when each
  culture's answers sit closer to that culture than to the others.

Intervals are 95% percentile intervals; `differences` are each model minus the first (the
base), with their paired intervals: a difference whose interval excludes 0 is one the question
sample does not explain.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.evaluation import metrics
from culturesim.records import Answer
from culturesim.survey.distributions import answer_code, answer_distribution
from culturesim.survey.questionnaire import Survey

METRICS = ("culturespa", "js_distance", "discrimination")
BETTER = {"culturespa": "higher", "js_distance": "lower", "discrimination": "higher"}


def _terms(
    survey: Survey, answers: Sequence[Answer], cultures: Sequence[str], questions: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per (culture, question) arrays (NaN where a culture lacks data or an answer)."""
    shape = (len(cultures), len(questions))
    jsd, margin = np.full(shape, np.nan), np.full(shape, np.nan)
    sq_err, sq_max = np.full(shape, np.nan), np.full(shape, np.nan)
    by_key = {
        (a.culture, a.question_id.removeprefix("survey:")): a
        for a in answers
        if a.prompt == "aware"
    }
    for qi, qid in enumerate(questions):
        question = survey.questions[qid]
        for ci, culture in enumerate(cultures):
            answer = by_key.get((culture, qid))
            own = survey.distribution(culture, qid)
            if answer is None or own is None:
                continue
            dist = answer_distribution(answer, question)
            code = answer_code(answer, question)
            majority = survey.majority_code(culture, qid)
            if code is not None and majority is not None:
                sq_err[ci, qi] = float(code - majority) ** 2
                sq_max[ci, qi] = float(len(question.options) - 1) ** 2
            if dist is None:
                continue
            jsd[ci, qi] = metrics.js_distance(dist, own)
            others = [
                metrics.js_distance(dist, shares)
                for other in cultures
                if other != culture and (shares := survey.distribution(other, qid)) is not None
            ]
            if others:
                margin[ci, qi] = float(np.mean(others)) - jsd[ci, qi]
    return {"jsd": jsd, "margin": margin, "sq_err": sq_err, "sq_max": sq_max}


def _statistics(terms: Mapping[str, np.ndarray], draws: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric for each draw of question indices (draws: [B, Q]) -> [B] arrays."""

    def culture_mean(values: np.ndarray) -> np.ndarray:
        picked = values[:, draws]  # [C, B, Q]
        with np.errstate(invalid="ignore"), _quiet():
            per_culture = np.nanmean(picked, axis=2)
            return np.asarray(np.nanmean(per_culture, axis=0))

    err = np.nansum(terms["sq_err"][:, draws], axis=2)
    top = np.nansum(terms["sq_max"][:, draws], axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        spa = 100.0 * (1.0 - np.sqrt(err) / np.sqrt(top))
    spa[top == 0] = np.nan
    with _quiet():
        culturespa = np.nanmean(spa, axis=0)
    return {
        "culturespa": culturespa,
        "js_distance": culture_mean(terms["jsd"]),
        "discrimination": culture_mean(terms["margin"]),
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's mean-of-empty warnings: an empty slice is NaN, which is the answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


def _interval(point: float, draws: np.ndarray) -> dict[str, float]:
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(point) or len(finite) == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    return {
        "value": round(float(point), 4),
        "low": round(float(np.quantile(finite, 0.025)), 4),
        "high": round(float(np.quantile(finite, 0.975)), 4),
    }


def compare_models(
    survey: Survey,
    answers_by_variant: Mapping[str, Sequence[Answer]],
    cultures: Sequence[str],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every variant's metrics with intervals, and each one's paired difference from the first."""
    codes = [c for c in cultures if c in survey.shares]
    questions = sorted(survey.questions)
    full = np.arange(len(questions))[None, :]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(questions), size=(resamples, len(questions)))
    points: dict[str, dict[str, float]] = {}
    samples: dict[str, dict[str, np.ndarray]] = {}
    for name, answers in answers_by_variant.items():
        terms = _terms(survey, answers, codes, questions)
        points[name] = {k: float(v[0]) for k, v in _statistics(terms, full).items()}
        samples[name] = _statistics(terms, draws)
    names = list(answers_by_variant)
    result: dict[str, Any] = {
        "questions": len(questions),
        "cultures": codes,
        "resamples": resamples,
        "better": BETTER,
        "variants": {
            name: {m: _interval(points[name][m], samples[name][m]) for m in METRICS}
            for name in names
        },
        "differences": {},
    }
    if names:
        first = names[0]
        result["baseline"] = first
        for name in names[1:]:
            result["differences"][name] = {
                m: _interval(
                    points[name][m] - points[first][m], samples[name][m] - samples[first][m]
                )
                for m in METRICS
            }
    return result


def plot_comparison(comparison: Mapping[str, Any], path: Path, title: str) -> Path:
    """Three panels (CultureSPA, JSD, discrimination), a bar per model with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(comparison["variants"])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, metric in zip(axes, METRICS, strict=True):
        cells = [comparison["variants"][n][metric] for n in names]
        values = np.array([c["value"] for c in cells], dtype=float)
        low = np.array([c["low"] for c in cells], dtype=float)
        high = np.array([c["high"] for c in cells], dtype=float)
        errors = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
        ax.bar(names, np.nan_to_num(values), yerr=errors, capsize=4, color="#4c72b0")
        arrow = "↑" if BETTER[metric] == "higher" else "↓"
        ax.set_title(f"{metric} {arrow}")
        ax.axhline(0, color="black", linewidth=0.5)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Alignment metrics between a model's answers and survey data.

Conventions: a distribution is a vector over a question's options (index 0 = first option).
Per-question metrics are averaged over the questions both sides have. Every function here is a
plain computation on arrays, so it is checked against hand-computed values in the tests.

* `culturespa_score`: the published metric, exactly: 100 · (1 − ‖a − g‖₂ / ‖n − 1‖₂) over
  questions with a valid answer and survey data (a = model codes, g = country majority codes,
  n = option counts). It only sees the mode and treats options as ordinal: we report it for
  comparability, beside metrics that see whole distributions. `culturespa_score_points` is the
  same formula over aligned lists, for re-scoring files row by row as the published script does.
* `js_distance`: Jensen–Shannon distance (base 2, in [0, 1]).
* `emd`: earth mover's distance on the option scale, divided by (n − 1) so it is in [0, 1];
  meaningful for ordinal questions.
* `smoothed_kl`: KL(survey ‖ model) with additive smoothing on both sides, in the direction that
  punishes a model for putting no mass where respondents answer.
* `individual_accuracy`: CLCA's metric, the share of respondents whose own answer is the
  model's answer for their persona.
* `discrimination`: how much better the model's answers for culture c match c than they match
  the other cultures (0 means the model answers the same whoever it is told it is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

SMOOTHING = 1e-3


def culturespa_score(
    answers: Mapping[str, int | None],
    majority: Mapping[str, int | None],
    option_counts: Mapping[str, int],
) -> float:
    """The published score, in percent. Questions without a valid answer or gold are skipped."""
    used = [q for q, a in answers.items() if a is not None and majority.get(q) is not None]
    return culturespa_score_points(
        [int(answers[q] or 0) for q in used],
        [int(majority[q] or 0) for q in used],
        [option_counts[q] for q in used],
    )


def culturespa_score_points(
    answers: Sequence[int], gold: Sequence[int], option_counts: Sequence[int]
) -> float:
    """The published score over aligned terms, one per scored answer.

    CultureSPA's analysis script builds these lists row by row from an answer file, so a question
    answered twice is counted twice; `culturespa_score` is the one-answer-per-question view.
    """
    if not answers:
        return float("nan")
    a = np.asarray(answers, dtype=float)
    g = np.asarray(gold, dtype=float)
    n = np.asarray(option_counts, dtype=float)
    return float(100.0 * (1.0 - np.linalg.norm(a - g) / np.linalg.norm(n - 1.0)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=2))


def emd(p: np.ndarray, q: np.ndarray) -> float:
    positions = np.arange(len(p), dtype=float)
    return float(wasserstein_distance(positions, positions, p, q) / max(1, len(p) - 1))


def smoothed_kl(survey: np.ndarray, model: np.ndarray, alpha: float = SMOOTHING) -> float:
    """KL(survey ‖ model) in nats after adding `alpha` to every cell of both and renormalising."""
    p = (survey + alpha) / (survey.sum() + alpha * len(survey))
    q = (model + alpha) / (model.sum() + alpha * len(model))
    return float(np.sum(p * np.log(p / q)))


def mean_over_questions(
    metric: Callable[[np.ndarray, np.ndarray], float],
    model: Mapping[str, np.ndarray],
    survey: Mapping[str, np.ndarray],
) -> tuple[float, dict[str, float]]:
    """The metric per shared question, and its mean."""
    per_question = {q: metric(model[q], survey[q]) for q in model if q in survey}
    values = list(per_question.values())
    return (float(np.mean(values)) if values else float("nan")), per_question


def individual_accuracy(predicted: Sequence[int | None], actual: Sequence[int]) -> float:
    """Share of respondents whose own answer equals the model's answer for them."""
    if not actual:
        return float("nan")
    return float(np.mean([p == a for p, a in zip(predicted, actual, strict=True)]))


def invalid_rate(parsed: Sequence[int | None]) -> float:
    return float(np.mean([p is None for p in parsed])) if parsed else float("nan")


def discrimination(similarity: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """From s[c][c'] = how well the model's answers for c match culture c' (higher is better).

    Returns per culture c: `margin` = s[c][c] − mean over c' ≠ c of s[c][c'], and `rank_share` =
    the share of other cultures c' that c's answers match worse than c itself.
    """
    result: dict[str, dict[str, float]] = {}
    for c, row in similarity.items():
        others = [v for other, v in row.items() if other != c]
        if c not in row or not others:
            continue
        result[c] = {
            "margin": float(row[c] - np.mean(others)),
            "rank_share": float(np.mean([row[c] > v for v in others])),
        }
    return result


def bootstrap_ci(
    per_question: Mapping[str, float],
    *,
    statistic: Callable[[np.ndarray], float] = lambda x: float(np.mean(x)),
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic over questions (resampled with replacement)."""
    values = np.array([v for v in per_question.values() if np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    stats = np.array([statistic(values[row]) for row in draws])
    tail = (1.0 - level) / 2.0
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))


def culturespa_bootstrap_ci(
    answers: Mapping[str, int | None],
    majority: Mapping[str, int | None],
    option_counts: Mapping[str, int],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval for the CultureSPA score (it is not a mean, so resample its terms)."""
    used = [q for q, a in answers.items() if a is not None and majority.get(q) is not None]
    return culturespa_bootstrap_ci_points(
        [int(answers[q] or 0) for q in used],
        [int(majority[q] or 0) for q in used],
        [option_counts[q] for q in used],
        resamples=resamples,
        seed=seed,
    )


def culturespa_bootstrap_ci_points(
    answers: Sequence[int],
    gold: Sequence[int],
    option_counts: Sequence[int],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """`culturespa_bootstrap_ci` over aligned terms (see `culturespa_score_points`)."""
    if not answers:
        return float("nan"), float("nan")
    sq_err = (np.asarray(answers, dtype=float) - np.asarray(gold, dtype=float)) ** 2
    sq_max = (np.asarray(option_counts, dtype=float) - 1.0) ** 2
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sq_err), size=(resamples, len(sq_err)))
    scores = 100.0 * (1.0 - np.sqrt(sq_err[draws].sum(1)) / np.sqrt(sq_max[draws].sum(1)))
    return float(np.quantile(scores, 0.025)), float(np.quantile(scores, 0.975))

"""Answers as distributions over a question's options, and how far two of them lie apart.

Evaluation scores them against survey shares, the prober compares a culture-aware answer with an
unaware one, corpus rows and the report read them: one definition serves all of them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.spatial.distance import jensenshannon

from culturesim.records import Answer, Question
from culturesim.survey.questionnaire import SurveyQuestion


def answer_code(answer: Answer, question: SurveyQuestion) -> int | None:
    """The option code an answer picks: argmax of its distribution, or its most frequent valid parse."""
    if answer.distribution:
        return int(np.argmax(answer.distribution)) + question.first_code
    valid = [p for p in answer.parsed if p is not None]
    if not valid:
        return None
    counts = Counter(valid)
    best = max(counts.values())
    return min(code for code, n in counts.items() if n == best)


def answer_distribution(answer: Answer, question: SurveyQuestion) -> np.ndarray | None:
    """The answer as a distribution over options (empirical, for sampled answers)."""
    if answer.distribution:
        return np.asarray(answer.distribution, dtype=float)
    indices = [question.index_of(p) for p in answer.parsed if p is not None]
    valid = [i for i in indices if i is not None]
    if not valid:
        return None
    dist = np.bincount(valid, minlength=len(question.options)).astype(float)
    return dist / dist.sum()


def as_survey_question(question: Question) -> SurveyQuestion:
    """A generated question in the survey form; a first option "0" means codes start at 0."""
    first = 0 if question.options[0].strip() == "0" else 1
    return SurveyQuestion(question.id, question.text, question.options, first, question.topic)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=2) ** 2)

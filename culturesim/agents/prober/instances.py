"""CultureSPA's probe: answer questions culture-unaware and culture-aware; keep what culture changes.

Answers come from the same code as survey evaluation (`evaluation.administer`): the paper's
prompts, with option distributions from log-probabilities by default or k parsed samples.

Two rules decide which (question, culture) pairs are culture-related instances:

* `argmax` (the paper's): the aware answer's top option differs from the unaware one. On one
  noisy sample per prompt this flips on sampling noise as often as on culture.
* `jsd` (distributional): the Jensen–Shannon divergence (base 2, in [0, 1]) between the aware
  and unaware distributions is at least `jsd_threshold`, and the aware distribution's top
  option has at least `min_confidence` probability, so a flat, undecided aware answer is not
  taken as a cultural one.

Every instance keeps both distributions and the divergence, whichever rule kept it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from culturesim.records import Answer, Instance, Question
from culturesim.survey.distributions import answer_distribution, as_survey_question, js_divergence

RULES = ("argmax", "jsd")


@dataclass(frozen=True)
class InstanceRule:
    name: str = "jsd"
    jsd_threshold: float = 0.1
    min_confidence: float = 0.4

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"unknown instance rule {self.name!r}; use one of {', '.join(RULES)}")

    def keeps(self, aware: np.ndarray, unaware: np.ndarray) -> bool:
        if self.name == "argmax":
            return int(np.argmax(aware)) != int(np.argmax(unaware))
        return (
            js_divergence(aware, unaware) >= self.jsd_threshold
            and float(aware.max()) >= self.min_confidence
        )


def detect_instances(
    questions: Sequence[Question], answers: Sequence[Answer], rules: Sequence[InstanceRule]
) -> list[Instance]:
    """Instances for every (question, culture) whose aware answer differs from the unaware one."""
    by_id = {q.id: q for q in questions}
    unaware: dict[tuple[str, str], Answer] = {}
    aware: list[Answer] = []
    for answer in answers:
        if answer.prompt == "unaware":
            unaware[(answer.question_id, answer.model)] = answer
        elif answer.prompt == "aware":
            aware.append(answer)
    instances = []
    for answer in aware:
        base = unaware.get((answer.question_id, answer.model))
        question = by_id.get(answer.question_id.removeprefix("survey:"))
        if base is None or question is None:
            continue
        form = as_survey_question(question)
        a, u = answer_distribution(answer, form), answer_distribution(base, form)
        if a is None or u is None:
            continue  # an answer that did not parse cannot show a cultural difference
        for rule in rules:
            if rule.keeps(a, u):
                instances.append(
                    Instance(
                        question_id=question.id,
                        culture=answer.culture,
                        rule=rule.name,
                        aware_answer_id=answer.id,
                        unaware_answer_id=base.id,
                        aware_distribution=tuple(round(float(x), 6) for x in a),
                        unaware_distribution=tuple(round(float(x), 6) for x in u),
                        divergence=round(js_divergence(a, u), 6),
                    )
                )
    return instances

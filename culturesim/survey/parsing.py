"""Turning a model's free-text answer into an option code.

`parse_published` reproduces CultureSPA's rule exactly (the first run of digits, kept when it is
0–10), so published outputs re-score to the published numbers. `parse_option` is culturesim's
own: the number must be one of the question's codes, and a refusal or an out-of-range number is
invalid, counted, never dropped silently. Which survey option counts as the gold answer, and how
repeated rows count, is the scoring rule's business (`culturesim.evaluation.published`).
"""

from __future__ import annotations

import re

from culturesim.survey.questionnaire import SurveyQuestion

_FIRST_NUMBER = re.compile(r"\d+")


def parse_published(text: str) -> int | None:
    """CultureSPA's parse: the first integer in the text if 0 <= n <= 10, else None."""
    match = _FIRST_NUMBER.search(text)
    if match is None:
        return None
    number = int(match.group())
    return number if 0 <= number <= 10 else None


def parse_option(text: str, question: SurveyQuestion) -> int | None:
    """The first integer in the text if it is one of the question's option codes, else None."""
    match = _FIRST_NUMBER.search(text)
    if match is None:
        return None
    number = int(match.group())
    return number if question.index_of(number) is not None else None

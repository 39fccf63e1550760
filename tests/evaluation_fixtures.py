"""A small synthetic survey with known answers, written as CultureSPA-format files."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = [
    {
        "Q_id": "Q1",
        "question": "How important is family?",
        "option_lst": ["Very", "Rather", "Not very", "Not at all"],
    },
    {"Q_id": "Q2", "question": "Is it acceptable to bargain?", "option_lst": ["Yes", "No"]},
    {
        "Q_id": "Q3",
        "question": "Are you a member of a club?",
        "option_lst": ["Don't belong", "Inactive", "Active"],
    },
    {"Q_id": "Q260", "question": "What is your sex?", "option_lst": ["Male", "Female"]},
]
# Shares deliberately do not sum to 1 (missing answers dropped), as in the published file.
SHARES = {
    "AAA": {
        "Q1": {"1": 0.6, "2": 0.2},
        "Q2": {"2": 0.5, "1": 0.25},
        "Q3": {"0": 0.2, "2": 0.1, "1": 0.1},
    },
    "BBB": {
        "Q1": {"3": 0.3, "1": 0.1},
        "Q2": {"1": 0.9, "2": 0.1},
        "Q3": {"2": 0.4, "1": 0.4, "0": 0.2},
    },
    "CCC": {"Q1": {"1": 0.5, "2": 0.5}, "Q2": {"1": 0.6, "2": 0.4}, "Q3": {}},
}


def write_survey(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    questions, shares = folder / "wvs_questions.json", folder / "proportions_group_by_country.json"
    questions.write_text(json.dumps(QUESTIONS))
    shares.write_text(json.dumps(SHARES))
    return questions, shares

"""Survey data: questions, per-country answer shares, and (optionally) individual respondents.

Three loaders feed one in-memory `Survey`:

* `load_culturespa(questions, shares)`: the CultureSPA files (a list of
  `{"Q_id", "question", "option_lst"}` and `{country: {Q_id: {option_code: share}}}`).
* `load_respondents(table, questions)`: WorldValuesBench-style per-respondent rows (CSV or
  JSONL) with `respondent_id`, `country`, `question_id`, `answer` and any demographic columns.
* `load_generic(path)`: culturesim's own JSON format, documented in the README.

Shares are renormalised after missing answers are dropped (the published shares of a question
can sum to as little as 0.23), and every question records whether its option codes start at 0
or at 1, so an answer "0" is never silently shifted.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CULTURESPA_EXCLUDED = {f"Q{i}" for i in range(260, 291)} | {"Q223"}


class SurveyFileError(ValueError):
    """A survey file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class SurveyQuestion:
    id: str
    text: str
    options: tuple[str, ...]
    first_code: int = 1
    topic: str = ""

    @property
    def codes(self) -> tuple[int, ...]:
        """The option codes as the survey numbers them (0.. or 1..)."""
        return tuple(range(self.first_code, self.first_code + len(self.options)))

    def index_of(self, code: int) -> int | None:
        """0-based option index of a survey code, or None when the code is out of range."""
        index = code - self.first_code
        return index if 0 <= index < len(self.options) else None


@dataclass(frozen=True)
class Respondent:
    id: str
    country: str
    demographics: dict[str, str]
    answers: dict[str, int]


@dataclass
class Survey:
    questions: dict[str, SurveyQuestion]
    shares: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    respondents: list[Respondent] = field(default_factory=list)
    source: str = ""

    @property
    def countries(self) -> list[str]:
        return sorted(self.shares)

    def distribution(self, country: str, question_id: str) -> np.ndarray | None:
        """The country's renormalised answer distribution over option indices, if surveyed."""
        return self.shares.get(country, {}).get(question_id)

    def majority_code(self, country: str, question_id: str) -> int | None:
        dist = self.distribution(country, question_id)
        if dist is None:
            return None
        return int(np.argmax(dist)) + self.questions[question_id].first_code

    def pooled_distribution(self, question_id: str) -> np.ndarray | None:
        """The mean of the countries' distributions: a culture-agnostic reference."""
        dists = [d[question_id] for d in self.shares.values() if question_id in d]
        return np.mean(dists, axis=0) if dists else None

    def subset(self, question_ids: Iterable[str]) -> Survey:
        keep = [q for q in question_ids if q in self.questions]
        return Survey(
            questions={q: self.questions[q] for q in keep},
            shares={c: {q: d[q] for q in keep if q in d} for c, d in self.shares.items()},
            respondents=self.respondents,
            source=self.source,
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SurveyFileError(f"{path}: file not found") from error
    except json.JSONDecodeError as error:
        raise SurveyFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error


def _normalise(raw: dict[str, float], question: SurveyQuestion, where: str) -> np.ndarray | None:
    """Shares by option code → a distribution over option indices, renormalised; None if empty."""
    dist = np.zeros(len(question.options))
    for code_text, share in raw.items():
        try:
            index = question.index_of(int(code_text))
        except ValueError as error:
            raise SurveyFileError(f"{where}: option code {code_text!r} is not a number") from error
        if index is None:
            raise SurveyFileError(
                f"{where}: option code {code_text} is outside {question.codes[0]}..{question.codes[-1]}"
            )
        if share < 0:
            raise SurveyFileError(f"{where}: negative share {share}")
        dist[index] += float(share)
    total = dist.sum()
    return dist / total if total > 0 else None


def load_culturespa(
    questions_path: str | Path,
    shares_path: str | Path,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = CULTURESPA_EXCLUDED,
    topics: dict[str, str] | None = None,
) -> Survey:
    """Load the CultureSPA questions and per-country shares (Q1–Q259 without Q223 by default).

    A question's codes start at 0 when its first option is the digit "0" or when any country's
    shares use the code "0" (WVS codes "Don't belong" and "Hard to say" as 0); else at 1.
    """
    questions_path, shares_path = Path(questions_path), Path(shares_path)
    raw_questions = _read_json(questions_path)
    raw_shares = _read_json(shares_path)
    if not isinstance(raw_questions, list):
        raise SurveyFileError(f"{questions_path}: expected a list of question objects")
    if not isinstance(raw_shares, dict):
        raise SurveyFileError(f"{shares_path}: expected {{country: {{Q_id: {{code: share}}}}}}")
    zero_coded = {
        qid
        for per_country in raw_shares.values()
        for qid, codes in per_country.items()
        if "0" in codes
    }
    wanted = set(include) if include is not None else None
    skip = set(exclude)
    questions: dict[str, SurveyQuestion] = {}
    for number, item in enumerate(raw_questions):
        where = f"{questions_path}: item {number}"
        if not isinstance(item, dict) or not {"Q_id", "question", "option_lst"} <= item.keys():
            raise SurveyFileError(f"{where}: needs keys Q_id, question, option_lst")
        qid = str(item["Q_id"])
        if qid in skip or (wanted is not None and qid not in wanted):
            continue
        options = tuple(str(o) for o in item["option_lst"])
        if len(options) < 2:
            continue  # open or demographic items carry no options to choose from
        first = 0 if options[0].strip() == "0" or qid in zero_coded else 1
        questions[qid] = SurveyQuestion(
            qid, str(item["question"]), options, first, (topics or {}).get(qid, "")
        )
    shares: dict[str, dict[str, np.ndarray]] = {}
    for country, per_question in raw_shares.items():
        shares[country] = {}
        for qid, raw in per_question.items():
            if qid not in questions or not raw:
                continue
            dist = _normalise(raw, questions[qid], f"{shares_path}: {country}/{qid}")
            if dist is not None:
                shares[country][qid] = dist
    return Survey(questions, shares, source=f"{questions_path} + {shares_path}")


def load_respondents(
    table_path: str | Path, questions: dict[str, SurveyQuestion], *, country_field: str = "country"
) -> Survey:
    """Per-respondent rows (CSV or JSONL; long format, one answer a row) → shares + respondents.

    Required columns: respondent_id, country, question_id, answer (the survey code). Every other
    column is a demographic field (age, sex, education, ...). Negative codes are WVS's missing
    values (-1 don't know, -2 no answer, ...) and are dropped before shares are computed.
    """
    path = Path(table_path)
    rows = _read_rows(path)
    required = {"respondent_id", country_field, "question_id", "answer"}
    people: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Counter[int]]] = defaultdict(lambda: defaultdict(Counter))
    for line, row in rows:
        missing = required - row.keys()
        if missing:
            raise SurveyFileError(f"{path}:{line}: missing column(s) {', '.join(sorted(missing))}")
        qid = str(row["question_id"])
        if qid not in questions:
            continue
        try:
            code = int(float(row["answer"]))
        except (TypeError, ValueError) as error:
            raise SurveyFileError(
                f"{path}:{line}: answer {row['answer']!r} is not a code"
            ) from error
        rid, country = str(row["respondent_id"]), str(row[country_field])
        person = people.setdefault(
            rid,
            {
                "country": country,
                "demographics": {
                    k: str(v) for k, v in row.items() if k not in required and v not in ("", None)
                },
                "answers": {},
            },
        )
        if code < 0:
            continue
        if questions[qid].index_of(code) is None:
            raise SurveyFileError(f"{path}:{line}: answer {code} is not an option code of {qid}")
        person["answers"][qid] = code
        counts[country][qid][code] += 1
    shares = {
        country: {
            qid: _normalise(
                {str(c): n for c, n in counter.items()}, questions[qid], f"{path}: {country}/{qid}"
            )
            for qid, counter in per_q.items()
        }
        for country, per_q in counts.items()
    }
    respondents = [
        Respondent(rid, p["country"], p["demographics"], p["answers"])
        for rid, p in sorted(people.items())
    ]
    clean = {c: {q: d for q, d in per.items() if d is not None} for c, per in shares.items()}
    return Survey(dict(questions), clean, respondents, source=str(path))


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise SurveyFileError(f"{path}: file not found")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [(n, dict(r)) for n, r in enumerate(csv.DictReader(handle), start=2)]
    rows = []
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            try:
                rows.append((n, json.loads(text)))
            except json.JSONDecodeError as error:
                raise SurveyFileError(f"{path}:{n}: not valid JSON ({error.msg})") from error
    return rows


def load_generic(path: str | Path) -> Survey:
    """culturesim's own survey format (see the README, "Survey files")."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "questions" not in data:
        raise SurveyFileError(f"{path}: expected an object with 'questions' and 'countries'")
    questions: dict[str, SurveyQuestion] = {}
    for number, item in enumerate(data["questions"]):
        try:
            question = SurveyQuestion(
                id=str(item["id"]),
                text=str(item["text"]),
                options=tuple(str(o) for o in item["options"]),
                first_code=int(item.get("first_code", 1)),
                topic=str(item.get("topic", "")),
            )
        except (KeyError, TypeError) as error:
            raise SurveyFileError(
                f"{path}: questions[{number}] needs id, text, options ({error})"
            ) from error
        if question.first_code not in (0, 1):
            raise SurveyFileError(f"{path}: questions[{number}].first_code must be 0 or 1")
        questions[question.id] = question
    shares: dict[str, dict[str, np.ndarray]] = {}
    for country, per_question in data.get("countries", {}).items():
        shares[country] = {}
        for qid, raw in per_question.items():
            if qid not in questions:
                raise SurveyFileError(f"{path}: countries.{country}.{qid}: no such question")
            dist = _normalise(raw, questions[qid], f"{path}: countries.{country}.{qid}")
            if dist is not None:
                shares[country][qid] = dist
    return Survey(questions, shares, source=str(path))


def load_survey_dir(folder: str | Path, *, include: Sequence[str] | None = None) -> Survey:
    """A folder holding the CultureSPA pair of files (as `../shared/data/wvs/` does)."""
    folder = Path(folder)
    questions, shares = folder / "wvs_questions.json", folder / "proportions_group_by_country.json"
    if questions.exists() and shares.exists():
        return load_culturespa(questions, shares, include=include)
    generic = sorted(folder.glob("*.survey.json"))
    if generic:
        return load_generic(generic[0])
    raise SurveyFileError(
        f"{folder}: expected wvs_questions.json + proportions_group_by_country.json, or a *.survey.json file"
    )


COUNTRY_IN_NAME = re.compile(r"(?<![A-Z])([A-Z]{3})(?![A-Z])")

"""General-ability guard: multiple-choice accuracy before and after fine-tuning.

Culture alignment that costs general ability is not a win, so every evaluation can also report
accuracy on an MMLU-style file: JSONL rows `{"question", "choices": [...], "answer"}` where
`answer` is the 0-based index or the letter of the right choice. The model's choice is the
letter with the highest log-probability, so there is nothing to parse and no refusal to hide.
A small sanity set written for this project ships with it.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

from culturesim.models.base import Chat, LanguageModel
from culturesim.paths import package_data
from culturesim.prompt_library import PromptLibrary

LETTERS = string.ascii_uppercase
SANITY_SET = package_data("data", "guard", "sanity.jsonl")


class BenchmarkFileError(ValueError):
    """A benchmark row is malformed; the message names the file and line."""


@dataclass(frozen=True)
class MCItem:
    id: str
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class GuardResult:
    model: str
    benchmark: str
    items: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.items if self.items else float("nan")


def load_benchmark(path: str | Path = SANITY_SET) -> list[MCItem]:
    path = Path(path)
    if not path.exists():
        raise BenchmarkFileError(f"{path}: file not found")
    items = []
    for line_number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            row = json.loads(text)
            choices = tuple(str(c) for c in row["choices"])
            answer = row["answer"]
            index = (
                LETTERS.index(answer.strip().upper()) if isinstance(answer, str) else int(answer)
            )
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as error:
            raise BenchmarkFileError(
                f"{where}: needs question, choices (a list) and answer (index or letter): {error}"
            ) from error
        if not 2 <= len(choices) <= len(LETTERS) or not 0 <= index < len(choices):
            raise BenchmarkFileError(
                f"{where}: answer {answer!r} does not name one of {len(choices)} choices"
            )
        items.append(MCItem(str(row.get("id", line_number)), str(row["question"]), choices, index))
    return items


def guard_accuracy(
    model: LanguageModel,
    items: list[MCItem],
    *,
    benchmark: str = "sanity",
    library: PromptLibrary | None = None,
    batch_size: int = 64,
) -> GuardResult:
    library = library or PromptLibrary()
    correct = 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        chats: list[Chat] = [
            [
                {
                    "role": "user",
                    "content": library.render(
                        "guard/question.jinja2",
                        question=item.question,
                        choices=list(zip(LETTERS, item.choices, strict=False)),
                    ),
                }
            ]
            for item in batch
        ]
        scores = model.score(chats, [list(LETTERS[: len(i.choices)]) for i in batch])
        for item, values in zip(batch, scores, strict=True):
            correct += int(max(range(len(values)), key=values.__getitem__) == item.answer)
    return GuardResult(model.model_id, benchmark, len(items), correct)

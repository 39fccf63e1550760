"""Soft-target rows: a survey prompt in, a distribution over its option labels out.

Why it exists: a positive control needs a model that knows how each culture answers, so that
the loop has a real signal to carry from the probe to a student. The teacher learns it from
the survey's seen half only and is measured on the held-out half.

Rows and targets. One row per (culture, seen question): the culture-aware survey prompt with
the evaluation's answer prefix ("The answer is "), encoded exactly as scoring encodes it. The
target is the country's answer shares (renormalised over the question's options), used as
soft targets: the loss is the expected negative log-likelihood of a respondent's answer drawn
from the shares, which is what infinitely many sampled targets per question would give, for
the price of one forward row.

Labels are scored as complete answers (see `label_distribution`), so a label that is a prefix
of others ("1" before "10") is a small tree: the first token is trained towards the shares
summed by first token, and, after the branching token, the next token towards the longer
labels' conditional shares, with the rest of the mass on "anything else" (the label ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from culturesim.models.base import Chat
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.questionnaire import Survey


class SoftTargetError(ValueError):
    """Soft-target rows cannot be built from these answers; the message says why."""


@dataclass(frozen=True)
class SoftRow:
    """One training row: tokens in, label-token targets out."""

    culture: str
    question_id: str
    input_ids: tuple[int, ...]
    first_ids: tuple[int, ...]
    first_probs: tuple[float, ...]
    # After the branching first token (appended to input_ids): continuation targets, and the
    # conditional probability that the label ends there.
    branch_weight: float = 0.0
    second_ids: tuple[int, ...] = ()
    second_probs: tuple[float, ...] = ()
    stop_prob: float = 0.0

    @property
    def has_branch(self) -> bool:
        return bool(self.second_ids)


def label_tree_targets(
    label_ids: Sequence[Sequence[int]], shares: Sequence[float]
) -> tuple[dict[int, float], int | None, dict[int, float], float]:
    """(first-token targets, branching token, continuation targets, stop probability).

    Raises SoftTargetError for label sets the two-level tree cannot express (labels of three or
    more tokens, or two different branching first tokens)."""
    first: dict[int, float] = {}
    for ids, share in zip(label_ids, shares, strict=True):
        if not 1 <= len(ids) <= 2:
            raise SoftTargetError(f"a label of {len(ids)} tokens; labels of 1 or 2 tokens only")
        first[ids[0]] = first.get(ids[0], 0.0) + float(share)
    branching = {ids[0] for ids in label_ids if len(ids) == 2}
    if len(branching) > 1:
        raise SoftTargetError("labels branch after more than one first token")
    if not branching:
        return first, None, {}, 0.0
    branch = branching.pop()
    reach = first[branch]
    second: dict[int, float] = {}
    stop = 0.0
    for ids, share in zip(label_ids, shares, strict=True):
        if ids[0] != branch:
            continue
        if len(ids) == 2:
            second[ids[1]] = second.get(ids[1], 0.0) + (share / reach if reach > 0 else 0.0)
        else:
            stop += share / reach if reach > 0 else 0.0
    return first, branch, second, stop


def soft_row(
    tokenizer: Any,
    culture: str,
    question_id: str,
    chat: Chat,
    labels: Sequence[Sequence[int]],
    shares: Sequence[float],
) -> SoftRow:
    """One row: `chat` encoded as scoring encodes it (a last assistant message is the answer
    prefill), and the label tree's targets from `shares` over the label token ids."""
    from culturesim.models.transformers_backend import encode_prompt_with

    try:
        first, branch, second, stop = label_tree_targets(labels, list(shares))
    except SoftTargetError as error:
        raise SoftTargetError(f"question {question_id}: {error}") from error
    ids = encode_prompt_with(tokenizer, chat)
    return SoftRow(
        culture=culture,
        question_id=question_id,
        input_ids=tuple(ids + ([branch] if branch is not None else [])),
        first_ids=tuple(first),
        first_probs=tuple(first.values()),
        branch_weight=first[branch] if branch is not None else 0.0,
        second_ids=tuple(second),
        second_probs=tuple(second.values()),
        stop_prob=stop,
    )


def build_rows(
    tokenizer: Any,
    survey: Survey,
    question_ids: Sequence[str],
    cultures: Sequence[str],
    prompter: SurveyPrompter,
    answer_prefix: str,
) -> list[SoftRow]:
    """A row for every (culture, question) the survey has shares for."""
    from culturesim.models.transformers_backend import encode_candidate_with

    rows = []
    label_cache: dict[str, list[list[int]]] = {}
    for culture in cultures:
        system = prompter.system_prompt("aware", culture)
        for qid in question_ids:
            shares = survey.distribution(culture, qid)
            if shares is None:
                continue
            question = survey.questions[qid]
            chat: Chat = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompter.user_prompt(question)},
                {"role": "assistant", "content": answer_prefix},
            ]
            if not answer_prefix:
                chat = chat[:2]
            labels = label_cache.setdefault(
                qid, [encode_candidate_with(tokenizer, str(c)) for c in question.codes]
            )
            rows.append(soft_row(tokenizer, culture, qid, chat, labels, list(shares)))
    return rows


def rows_from_corpus(tokenizer: Any, records: Sequence[dict[str, Any]]) -> list[SoftRow]:
    """Rows of a soft-target corpus set (`culturespa_soft`): each record's `messages` (system,
    user and the answer prefill) and its `target` (option codes and their probabilities)."""
    from culturesim.models.transformers_backend import encode_candidate_with

    rows = []
    label_cache: dict[tuple[str, ...], list[list[int]]] = {}
    for record in records:
        target = record.get("target")
        if not target or not target.get("codes"):
            raise SoftTargetError(
                f"corpus row {record.get('id', '?')} has no soft target; distillation trains "
                "on a set built with `corpus.targets: soft` (culturespa_soft)"
            )
        codes = tuple(str(c) for c in target["codes"])
        labels = label_cache.setdefault(codes, [encode_candidate_with(tokenizer, c) for c in codes])
        chat: Chat = [
            {"role": m["role"], "content": m["content"]}
            for m in record["messages"]
            if m["role"] != "assistant" or m["content"]
        ]
        rows.append(
            soft_row(
                tokenizer,
                str(record["culture"]),
                str(target.get("question_id", "")),
                chat,
                labels,
                [float(x) for x in target["distribution"]],
            )
        )
    return rows

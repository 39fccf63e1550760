"""The judge agent: rubric-driven verdicts on dialogues and instances, parsed robustly.

A judge call renders the rubric's template, asks for one line per dimension plus CONFIDENCE and
REASON, and reads the reply as JSON or as labelled lines, in any case. A reply it cannot read
is answered with a correction naming the problem and retried (`max_attempts` in all); if it
still fails, the Verdict records `parse_error` and no labels. It is counted as unparseable by
every report and filter, never kept or dropped without a trace.

CLCA's judge is three calls per dialogue: quality and cultural adherence (batched together),
then a meta-judge that sees both judgements. The same dialogue can be judged with the
participants listed in reverse order (variant "swapped") to measure position bias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from culturesim.agents.judge.rubrics import CONFIDENCES, Rubric
from culturesim.jsonish import first_json_object
from culturesim.models.base import Chat, GenerationParams, LanguageModel
from culturesim.models.corrections import generate_until_valid
from culturesim.prompt_library import PromptLibrary, echoes_placeholder, transcript_lines
from culturesim.records import (
    Answer,
    Culture,
    Dialogue,
    Episode,
    Instance,
    Label,
    Question,
    Verdict,
    derive_seed,
)

_LINE = re.compile(r"^[\s*#_-]*([A-Za-z][A-Za-z _]*?)[\s*_]*[:=][\s*_]*(.+?)\s*$", re.M)


class UnreadableVerdict(ValueError):
    """A judge reply without the required fields; the message says what is missing."""


def parse_confidence(raw: str) -> str:
    text = raw.strip().strip("\"'*<>[]().").lower()
    if "very" in text or "highly" in text:
        return "very confident"
    if "not" in text or "unsure" in text or "uncertain" in text:
        return "not sure"
    if "confident" in text or "sure" in text:
        return "confident"
    raise UnreadableVerdict(f"confidence must be one of {', '.join(CONFIDENCES)}, got {raw!r}")


def parse_verdict(text: str, rubric: Rubric) -> list[Label]:
    """Labels for every rubric dimension from a JSON or labelled-lines reply."""
    fields: dict[str, str] = {}
    data = first_json_object(text)
    if data is not None:
        fields = {str(k).strip().lower().replace(" ", "_"): str(v) for k, v in data.items()}
    for key, value in _LINE.findall(text):
        fields.setdefault(key.strip().lower().replace(" ", "_"), value)
    if "confidence" not in fields:
        raise UnreadableVerdict("no CONFIDENCE line")
    confidence = parse_confidence(fields["confidence"])
    reason = " ".join(fields.get("reason", "").split())
    if echoes_placeholder(" ".join(fields.values())):
        raise UnreadableVerdict("the reply repeats the form's placeholders instead of answering")
    labels = []
    for dimension in rubric.dimensions:
        if dimension.name not in fields:
            raise UnreadableVerdict(f"no {dimension.name.upper()} line")
        try:
            value = dimension.check(fields[dimension.name])
        except ValueError as error:
            raise UnreadableVerdict(str(error)) from error
        labels.append(
            Label(dimension=dimension.name, value=value, confidence=confidence, reason=reason)  # type: ignore[arg-type]
        )
    return labels


@dataclass
class JudgeRequest:
    target_id: str
    rubric: Rubric
    context: dict[str, Any]
    variant: str = "default"
    attempts: list[str] = field(default_factory=list)


def confidence_from_probability(probability: float) -> str:
    """Score mode's confidence: >= 0.9 very confident, >= 0.7 confident, else not sure."""
    if probability >= 0.9:
        return "very confident"
    if probability >= 0.7:
        return "confident"
    return "not sure"


class Judge:
    """Runs rubric requests through a model in batches, with corrections for unreadable replies.

    `mode="generate"` (default) asks for the labelled answer and parses it. `mode="score"`
    reads each dimension's label from the model's probabilities over the allowed labels after
    the prefilled "<DIMENSION>:", and turns the winning label's share into a confidence
    (`confidence_from_probability`). Score mode always yields a verdict; it suits small judges
    that cannot keep to the answer form (SmolLM2-135M answered none of 36 judge prompts in
    the form asked).
    """

    def __init__(
        self,
        model: LanguageModel,
        *,
        library: PromptLibrary | None = None,
        max_attempts: int = 2,
        max_new_tokens: int = 120,
        seed: int = 0,
        mode: str = "generate",
    ) -> None:
        if mode not in ("generate", "score"):
            raise ValueError(f"judge mode must be generate or score, got {mode!r}")
        self.model = model
        self.library = library or PromptLibrary()
        self.max_attempts = max_attempts
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.mode = mode

    def _score(self, requests: Sequence[JudgeRequest], chats: list[Chat]) -> list[Verdict]:
        prompts: list[Chat] = []
        candidates: list[list[str]] = []
        slots: list[tuple[int, int]] = []
        for i, request in enumerate(requests):
            for d, dimension in enumerate(request.rubric.dimensions):
                labels = (
                    list(dimension.labels)
                    if dimension.labels is not None
                    else [str(v) for v in range(dimension.scale[0], dimension.scale[1] + 1)]  # type: ignore[index]
                )
                prefill = self.library.render(
                    "judge/label_prefill.jinja2", dimension=dimension.name
                )
                prompts.append([*chats[i], {"role": "assistant", "content": prefill}])
                candidates.append([f" {label}" for label in labels])
                slots.append((i, d))
        scores = self.model.score(prompts, candidates)
        labels_for: dict[int, list[Label]] = {i: [] for i in range(len(requests))}
        for (i, d), options, logprobs in zip(slots, candidates, scores, strict=True):
            top = max(logprobs)
            weights = [math.exp(lp - top) for lp in logprobs]
            best = max(range(len(options)), key=lambda k: weights[k])
            share = weights[best] / sum(weights)
            dimension = requests[i].rubric.dimensions[d]
            labels_for[i].append(
                Label(
                    dimension=dimension.name,
                    value=options[best].strip(),
                    confidence=confidence_from_probability(share),  # type: ignore[arg-type]
                    reason=f"label probability {share:.2f}",
                )
            )
        return [
            Verdict(
                target_id=r.target_id,
                rubric=r.rubric.name,
                judge=self.name,
                variant=r.variant,
                labels=tuple(labels_for[i]),
            )
            for i, r in enumerate(requests)
        ]

    @property
    def name(self) -> str:
        """The judge's identity in verdicts: the model, and how it judged."""
        return self.model.model_id + ("#score" if self.mode == "score" else "")

    def run(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        """One Verdict per request (judge temperature 0, as CLCA's)."""
        chats: list[Chat] = [
            [
                {
                    "role": "user",
                    "content": self.library.render(r.rubric.template, rubric=r.rubric, **r.context),
                }
            ]
            for r in requests
        ]
        if self.mode == "score":
            return self._score(requests, chats)

        def generate(pending: Sequence[Chat], indices: Sequence[int], attempt: int) -> list[str]:
            params = [
                GenerationParams(
                    self.max_new_tokens,
                    temperature=0.0,
                    seed=derive_seed(self.seed, requests[i].target_id, attempt),
                )
                for i in indices
            ]
            return [reply.text for reply in self.model.generate(pending, params)]

        def parse(i: int, text: str) -> list[Label]:
            requests[i].attempts.append(text)
            return parse_verdict(text, requests[i].rubric)

        def correction(i: int, problem: str) -> str:
            return self.library.render(
                "judge/correction.jinja2", rubric=requests[i].rubric, problem=problem
            )

        outcomes = generate_until_valid(
            chats, generate, parse, correction, max_attempts=self.max_attempts
        )
        results = [o.result for o in outcomes]
        problems = [o.last_problem for o in outcomes]
        verdicts = []
        for request, labels, last_problem in zip(requests, results, problems, strict=True):
            verdicts.append(
                Verdict(
                    target_id=request.target_id,
                    rubric=request.rubric.name,
                    judge=self.name,
                    variant=request.variant,
                    labels=tuple(labels or ()),
                    parse_error="" if labels is not None else last_problem or "unreadable",
                )
            )
        return verdicts


# --------------------------------------------------------------------------- contexts


def dialogue_context(
    dialogue: Dialogue,
    episode: Episode,
    cultures: dict[str, Culture],
    library: PromptLibrary,
    *,
    swapped: bool = False,
) -> dict[str, Any]:
    participants = [
        {
            "name": person.name,
            "age": person.age,
            "occupation": person.occupation,
            "culture": cultures[role.culture].name_in_text
            if role.culture in cultures
            else role.culture,
            "goal": role.goal,
        }
        for role, person in zip(episode.scenario.roles, episode.personas, strict=True)
    ]
    if swapped:
        participants.reverse()
    return {
        "scenario": episode.scenario,
        "participants": participants,
        "transcript": transcript_lines(library, dialogue, episode),
    }


def judge_dialogues(
    judge: Judge,
    dialogues: Sequence[Dialogue],
    episodes: dict[str, Episode],
    cultures: dict[str, Culture],
    rubrics: dict[str, Rubric],
    *,
    variant: str = "default",
) -> list[Verdict]:
    """CLCA's three calls per dialogue: quality and cultural adherence, then the meta-judge."""
    swapped = variant == "swapped"
    contexts = {
        d.id: dialogue_context(d, episodes[d.episode_id], cultures, judge.library, swapped=swapped)
        for d in dialogues
    }
    first = judge.run(
        [
            JudgeRequest(d.id, rubrics[name], contexts[d.id], variant)
            for d in dialogues
            for name in ("clca_quality", "clca_cultural")
        ]
    )
    previous: dict[str, list[Label]] = {}
    for verdict in first:
        previous.setdefault(verdict.target_id, []).extend(verdict.labels)
    meta = judge.run(
        [
            JudgeRequest(
                d.id,
                rubrics["clca_meta"],
                {**contexts[d.id], "previous": previous.get(d.id, [])},
                variant,
            )
            for d in dialogues
        ]
    )
    return first + meta


def judge_instances(
    judge: Judge,
    instances: Sequence[Instance],
    questions: dict[str, Question],
    answers: dict[str, Answer],
    cultures: dict[str, Culture],
    rubric: Rubric,
) -> list[Verdict]:
    """The instance check: is the question well formed, is the aware answer plausible?"""
    requests = []
    for instance in instances:
        question = questions[instance.question_id]
        distribution = instance.aware_distribution or answers[instance.aware_answer_id].distribution
        best = max(range(len(distribution)), key=lambda i: distribution[i])
        requests.append(
            JudgeRequest(
                instance.id,
                rubric,
                {
                    "question": question,
                    "answer": judge.library.render(
                        "judge/instance_answer.jinja2",
                        number=best + 1,
                        option=question.options[best],
                    ),
                    "culture": cultures[instance.culture],
                },
            )
        )
    return judge.run(requests)

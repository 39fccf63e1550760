"""Administering survey questions to a model: prompts, then answers as distributions or samples.

Prompt styles (templates under `prompts/survey/`, overridable):

* `unaware`: CultureSPA's culture-unaware system prompt.
* `aware`: CultureSPA's culture-aware system prompt ("… with a/an {demonym} cultural background").
* `cross_culture`: CultureSPA's cross-culture thinking prompt. The three similar and three
  different cultures come from the cultures' Hofstede / Inglehart–Welzel profiles, never from
  the survey answers being evaluated (the published version ranks them by the evaluation
  answers themselves, a leak).
* `persona`: CLCA-style conditioning on a real respondent's demographics.

Modes:

* `logprob` (default): one scoring pass gives log P(label) for every option label ("1".."10",
  exact for multi-token labels) after an assistant prefill ("The answer is "); the distribution
  is their normalisation, with each label counted as a complete answer. `label_mass` keeps how much
  of the model's probability the labels took, so a model that wants to say something else is
  visible rather than hidden by the renormalisation.
* `sample`: k sampled answers (CultureSPA: temperature 0.6, top-p 0.9), parsed; what does not
  parse is recorded as invalid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from culturesim.models.base import Chat, GenerationParams, LanguageModel
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Answer, Culture, stable_hash
from culturesim.scenarios.cultures import nearest_and_farthest
from culturesim.survey.parsing import parse_option, parse_published
from culturesim.survey.questionnaire import Respondent, SurveyQuestion

PromptStyle = Literal["unaware", "aware", "cross_culture", "persona"]
Mode = Literal["logprob", "sample"]
STYLES: tuple[str, ...] = ("unaware", "aware", "cross_culture", "persona")
DEFAULT_ANSWER_PREFIX = "The answer is "


@dataclass(frozen=True)
class SurveyItem:
    """One prompt to put to the model, and who it is for."""

    question: SurveyQuestion
    style: str
    culture: str
    chat: Chat
    respondent: str = ""

    @property
    def question_key(self) -> str:
        return f"survey:{self.question.id}"

    def answer_id(self, mode: str, model_id: str) -> str:
        return Answer(
            question_id=self.question_key,
            culture=self.culture if not self.respondent else f"{self.culture}/{self.respondent}",
            prompt=self.style,
            mode=mode,  # type: ignore[arg-type]
            model=model_id,
        ).id


class SurveyPrompter:
    """Builds the chats for each style from templates and culture profiles."""

    def __init__(self, cultures: dict[str, Culture], library: PromptLibrary | None = None) -> None:
        self.cultures = cultures
        self.library = library or PromptLibrary()

    def user_prompt(self, question: SurveyQuestion) -> str:
        labelled = list(zip(question.codes, question.options, strict=True))
        return self.library.render(
            "survey/question.jinja2", question=question.text, options=labelled
        )

    def system_prompt(self, style: str, culture_code: str = "") -> str:
        if style == "unaware":
            return self.library.render("survey/system_unaware.jinja2")
        culture = self.cultures[culture_code]
        context = {"article": culture.indefinite_article, "demonym": culture.demonym}
        if style == "aware":
            return self.library.render("survey/system_aware.jinja2", **context)
        if style == "cross_culture":
            similar, different = nearest_and_farthest(culture, list(self.cultures.values()))
            return self.library.render(
                "survey/system_cross_culture.jinja2",
                **context,
                similar=[c.demonym for c in similar],
                different=[c.demonym for c in different],
            )
        raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")

    def items(
        self, questions: Sequence[SurveyQuestion], styles: Sequence[str], cultures: Sequence[str]
    ) -> list[SurveyItem]:
        """Unaware items once per question; culture styles once per question and culture."""
        items: list[SurveyItem] = []
        for style in styles:
            targets = [""] if style == "unaware" else list(cultures)
            for code in targets:
                system = self.system_prompt(style, code)
                for question in questions:
                    chat: Chat = [
                        {"role": "system", "content": system},
                        {"role": "user", "content": self.user_prompt(question)},
                    ]
                    items.append(SurveyItem(question, style, code, chat))
        return items

    def persona_items(
        self, questions: dict[str, SurveyQuestion], respondents: Sequence[Respondent]
    ) -> list[SurveyItem]:
        """One item per respondent and question they answered (CLCA's individual evaluation)."""
        items = []
        for person in respondents:
            culture = self.cultures.get(person.country)
            country = culture.name if culture else person.country
            system = self.library.render(
                "survey/system_persona.jinja2", country=country, demographics=person.demographics
            )
            for qid in person.answers:
                question = questions[qid]
                chat: Chat = [
                    {"role": "system", "content": system},
                    {"role": "user", "content": self.user_prompt(question)},
                ]
                items.append(
                    SurveyItem(question, "persona", person.country, chat, respondent=person.id)
                )
        return items


def label_distribution(
    labels: Sequence[str], logprobs: Sequence[float]
) -> tuple[list[float], float]:
    """Probabilities of each label as a *complete* answer, normalised, and the mass they held.

    log P("1") counts every answer that starts with "1", "10" and "11" included. So a label that
    is a prefix of other labels gets their probability subtracted: "1" then means "1 and not 10
    or 11". Without this, on 10- and 11-point scales the first label is inflated.
    """
    probs = [math.exp(v) for v in logprobs]
    complete = []
    for label, p in zip(labels, probs, strict=True):
        longer = sum(
            q
            for other, q in zip(labels, probs, strict=True)
            if other != label and other.startswith(label)
        )
        complete.append(max(p - longer, 1e-12))
    total = sum(complete)
    return [c / total for c in complete], total


def chunks(items: Sequence[SurveyItem], size: int) -> Iterator[Sequence[SurveyItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def answer_logprob(
    model: LanguageModel, items: Sequence[SurveyItem], *, answer_prefix: str = DEFAULT_ANSWER_PREFIX
) -> list[Answer]:
    """Option distributions from one scoring pass over the option labels.

    The system and user messages are the survey prompt unchanged; the assistant's turn is
    prefilled with `answer_prefix` so that the next token is the option label. Small chat
    models open with words ("The answer is 3."); scored bare, their label distribution is mostly
    position bias (SmolLM2 puts about 15% of its mass on the labels bare, 97% after the prefix).
    Pass "" to score bare; `label_mass` on each answer shows which regime a model is in.
    """
    chats: list[Chat] = [
        [*item.chat, {"role": "assistant", "content": answer_prefix}]
        if answer_prefix
        else item.chat
        for item in items
    ]
    labels = [[str(c) for c in item.question.codes] for item in items]
    logprobs = model.score(chats, labels)
    answers = []
    for item, item_labels, values in zip(items, labels, logprobs, strict=True):
        distribution, mass = label_distribution(item_labels, values)
        answers.append(
            Answer(
                question_id=item.question_key,
                culture=_culture_field(item),
                prompt=item.style,
                mode="logprob",
                model=model.model_id,
                distribution=tuple(round(p, 6) for p in distribution),
                label_mass=round(mass, 6),
            )
        )
    return answers


def answer_sampled(
    model: LanguageModel,
    items: Sequence[SurveyItem],
    *,
    samples: int = 1,
    temperature: float = 0.6,
    top_p: float = 0.9,
    max_new_tokens: int = 16,
    seed: int = 0,
    published_parse: bool = False,
) -> list[Answer]:
    """k sampled answers per item, each with a seed derived from the run seed and the item."""
    prompts, params = [], []
    for item in items:
        for k in range(samples):
            prompts.append(item.chat)
            params.append(
                GenerationParams(
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    seed=int(
                        stable_hash(
                            [seed, item.question.id, item.style, item.culture, item.respondent, k],
                            8,
                        ),
                        16,
                    ),
                )
            )
    completions = model.generate(prompts, params)
    answers = []
    for i, item in enumerate(items):
        texts = tuple(c.text for c in completions[i * samples : (i + 1) * samples])
        parsed = tuple(
            parse_published(t) if published_parse else parse_option(t, item.question) for t in texts
        )
        answers.append(
            Answer(
                question_id=item.question_key,
                culture=_culture_field(item),
                prompt=item.style,
                mode="sample",
                model=model.model_id,
                samples=texts,
                parsed=parsed,
            )
        )
    return answers


def _culture_field(item: SurveyItem) -> str:
    return item.culture if not item.respondent else f"{item.culture}/{item.respondent}"

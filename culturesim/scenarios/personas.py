"""Personas sampled per culture from a seed, optionally with a background the model writes.

Sampling is a pure function of (culture, seed, constraints): the same seed gives the same
person, so an Episode's cast is reproducible and its id is known before anything runs. Names,
occupations and places come from the culture's pools in its data file; Big Five traits are
drawn around the middle of the scale; values and decision style come from short fixed lists.

A scenario may fix who plays a role (`PersonaSpec`): name, age range, gender, occupation,
background, and the person's character: Big Five scores, values, decision style and a
personality description. Fixed traits replace the sampled ones, and a sentence saying them is
added to the background (`scenarios/persona_traits.jinja2`), because the background is what the
role-play prompt shows of a person: a trait that only sat in a field would change nothing the
model sees.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from culturesim.models.base import GenerationParams, LanguageModel
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Culture, Persona, derive_seed

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
VALUES = (
    "family",
    "tradition",
    "security",
    "achievement",
    "independence",
    "harmony",
    "fairness",
    "faith",
    "generosity",
    "respect for elders",
    "ambition",
    "honesty",
)
# Big Five levels in words and the score each stands for (scores run 0-1, sampled around 0.5).
# Sotopia writes levels ("Conscientiousness - Low"); a template may too (`big_five: {openness:
# high}`), and a persona's scores are said back in these words.
BIG_FIVE_LEVELS: tuple[tuple[str, float], ...] = (
    ("very low", 0.1),
    ("low", 0.25),
    ("moderately low", 0.4),
    ("average", 0.5),
    ("moderately high", 0.6),
    ("high", 0.75),
    ("very high", 0.9),
)
_LEVEL_SYNONYMS = {
    "moderate": "average",
    "medium": "average",
    "neutral": "average",
    "mid": "average",
    "somewhat low": "moderately low",
    "slightly low": "moderately low",
    "fairly low": "moderately low",
    "somewhat high": "moderately high",
    "slightly high": "moderately high",
    "fairly high": "moderately high",
    "extremely low": "very low",
    "extremely high": "very high",
}
DECISION_STYLES = (
    "deliberate and cautious",
    "quick and intuitive",
    "guided by family",
    "guided by what others expect",
    "analytical",
    "consensus-seeking",
)


class PersonaFileError(ValueError):
    """A culture lacks what persona sampling needs; the message names the culture file field."""


def big_five_score(level: str) -> float | None:
    """The score a level word stands for ("Low" -> 0.25), or None for a word that is no level."""
    word = " ".join(level.lower().replace("-", " ").split())
    word = _LEVEL_SYNONYMS.get(word, word)
    return dict(BIG_FIVE_LEVELS).get(word)


def big_five_level(score: float) -> str:
    """The level word nearest a score (0.25 -> "low"), the inverse of `big_five_score`."""
    return min(BIG_FIVE_LEVELS, key=lambda level: abs(level[1] - score))[0]


class PersonaSpec(BaseModel):
    """Constraints a scenario puts on who plays a role; anything unset is sampled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    age: tuple[int, int] = (20, 70)
    gender: str | None = None
    occupation: str | None = None
    background: str | None = None
    big_five: dict[str, float] | None = None
    values: tuple[str, ...] | None = None
    decision_style: str | None = None
    personality: str | None = None

    @field_validator("big_five", mode="before")
    @classmethod
    def _big_five_scores(cls, value: Any) -> Any:
        """Traits by name with a score 0-1 or a level word (`conscientiousness: low`)."""
        if not isinstance(value, dict):
            return value
        scores: dict[str, Any] = {}
        for trait, score in value.items():
            if trait not in BIG_FIVE:
                raise ValueError(f"{trait!r} is not a Big Five trait ({', '.join(BIG_FIVE)})")
            if isinstance(score, str):
                level = big_five_score(score)
                if level is None:
                    words = ", ".join(word for word, _ in BIG_FIVE_LEVELS)
                    raise ValueError(f"{trait}: {score!r} is not a level ({words}) or a score")
                score = level
            number = isinstance(score, int | float) and not isinstance(score, bool)
            if number and not 0 <= score <= 1:
                raise ValueError(f"{trait}: score {score} is outside 0-1")
            scores[trait] = score
        return scores

    @property
    def fixes_character(self) -> bool:
        """Whether the spec fixes any trait of character, so the background must say them."""
        return any(
            value is not None
            for value in (self.big_five, self.values, self.decision_style, self.personality)
        )

    @model_validator(mode="after")
    def _check_age(self) -> PersonaSpec:
        low, high = self.age
        if not 0 <= low <= high <= 120:
            raise ValueError(f"age range {list(self.age)} must satisfy 0 <= min <= max <= 120")
        return self


class PersonaSampler:
    """Samples personas from culture pools; `library` renders the default background sentence."""

    def __init__(self, library: PromptLibrary | None = None) -> None:
        self.library = library or PromptLibrary()

    def sample(
        self, culture: Culture, seed: int, spec: PersonaSpec | None = None, *, slot: str = ""
    ) -> Persona:
        spec = spec or PersonaSpec()
        rng = random.Random(derive_seed(culture.code, seed, slot, digits=12))
        genders = sorted(culture.given_names)
        if spec.name is None and not genders:
            raise PersonaFileError(
                f"culture {culture.code} has no given_names in its data file; add "
                "given_names: {female: [...], male: [...]} and family_names: [...]"
            )
        gender = spec.gender or rng.choice(genders or ["female", "male"])
        if spec.name is not None:
            name = spec.name
        else:
            pool = culture.given_names.get(gender)
            if not pool:
                raise PersonaFileError(
                    f"culture {culture.code} has no given_names for gender {gender!r} "
                    f"(it has {', '.join(genders)})"
                )
            given = rng.choice(pool)
            name = (
                culture.full_name(given, rng.choice(culture.family_names))
                if (culture.family_names)
                else given
            )
        if spec.occupation is not None:
            occupation = spec.occupation
        elif culture.occupations:
            occupation = rng.choice(culture.occupations)
        else:
            raise PersonaFileError(f"culture {culture.code} has no occupations in its data file")
        age = rng.randint(*spec.age)
        big_five = {trait: round(min(1.0, max(0.0, rng.gauss(0.5, 0.18))), 2) for trait in BIG_FIVE}
        values = tuple(rng.sample(VALUES, 2))
        style = rng.choice(DECISION_STYLES)
        # Fixed traits replace sampled ones after every draw, so the draws (and so the rest of
        # the person) are the same as for a spec without them.
        big_five.update(spec.big_five or {})
        values = spec.values if spec.values is not None else values
        style = spec.decision_style if spec.decision_style is not None else style
        fields = {
            "name": name,
            "age": age,
            "gender": gender,
            "occupation": occupation,
            "values": values,
            "decision_style": style,
        }
        background = spec.background or self.library.render(
            "scenarios/persona_background.jinja2",
            persona=fields,
            culture=culture,
        )
        if spec.fixes_character:
            traits = self.library.render(
                "scenarios/persona_traits.jinja2",
                persona=fields,
                personality=_sentence(spec.personality or ""),
                big_five=[
                    (trait, big_five_level((spec.big_five or {})[trait]))
                    for trait in BIG_FIVE
                    if trait in (spec.big_five or {})
                ],
                # The default background already says values and decision style.
                say_values=spec.values is not None and spec.background is not None,
                say_style=spec.decision_style is not None and spec.background is not None,
            )
            background = f"{background.strip()} {traits.strip()}"
        return Persona(
            culture=culture.code,
            seed=seed,
            background=background.strip(),
            big_five=big_five,
            **fields,  # type: ignore[arg-type]
        )


def _sentence(text: str) -> str:
    """Text as a sentence: trimmed, ending in a full stop unless it already ends in one."""
    text = " ".join(text.split())
    return text if not text or text[-1] in ".!?" else text + "."


def write_backgrounds(
    model: LanguageModel,
    personas: Sequence[Persona],
    cultures: dict[str, Culture],
    *,
    library: PromptLibrary | None = None,
    max_new_tokens: int = 90,
    temperature: float = 0.7,
) -> list[Persona]:
    """Let the model write each persona's background from its sampled fields, in one batch.

    The sampled fields stay as they are; only `background` is replaced. An empty reply keeps
    the template-written background, so a persona is never left without one.
    """
    library = library or PromptLibrary()
    chats = [
        [
            {
                "role": "user",
                "content": library.render(
                    "scenarios/persona_writer.jinja2",
                    persona=p.model_dump(),
                    culture=cultures[p.culture],
                ),
            }
        ]
        for p in personas
    ]
    params = [
        GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=derive_seed(p.id, "background"),
            stop=("\n\n",),
        )
        for p in personas
    ]
    replies = model.generate(chats, params)  # type: ignore[arg-type]
    written = []
    for persona, reply in zip(personas, replies, strict=True):
        text = " ".join(reply.text.split())
        written.append(persona.model_copy(update={"background": text}) if text else persona)
    return written

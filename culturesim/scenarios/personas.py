"""Personas sampled per culture from a seed, optionally with a background the model writes.

Sampling is a pure function of (culture, seed, constraints): the same seed gives the same
person, so an Episode's cast is reproducible and its id is known before anything runs. Names,
occupations and places come from the culture's pools in its data file; Big Five traits are
drawn around the middle of the scale; values and decision style come from short fixed lists.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, model_validator

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


class PersonaSpec(BaseModel):
    """Constraints a scenario puts on who plays a role; anything unset is sampled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    age: tuple[int, int] = (20, 70)
    gender: str | None = None
    occupation: str | None = None
    background: str | None = None

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
        return Persona(
            culture=culture.code,
            seed=seed,
            background=background.strip(),
            big_five=big_five,
            **fields,  # type: ignore[arg-type]
        )


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

"""Sotopia agents as culturesim personas: the same person, character included.

A Sotopia AgentProfile is a name, an age, a gender, an occupation and public information, and
also a character: Big Five levels ("Openness to Experience - High; Conscientiousness - Low"),
moral values (Care, Fairness, ...), Schwartz personal values, a decision-making style and a
personality description. Each becomes part of the role's persona constraint (`PersonaSpec`), so
a sampled cast keeps it and the role-play prompt says it:

    first_name + last_name       name
    age (1-120)                  age, both ends of the range (0 is Sotopia's "unknown": the
                                 environment's age constraint applies instead)
    gender                       Woman/Man -> female/male; another gender is kept as written
                                 when the agent has a name to go with it
    occupation, public_info      occupation, background
    big_five                     Big Five scores: each level word at its score (Low 0.25,
                                 High 0.75, see `personas.BIG_FIVE_LEVELS`); text that names no
                                 trait and level goes to the personality description
    moral_values + schwartz_...  values, moral values first
    decision_making_style        decision style
    personality_and_values       personality
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from culturesim.scenarios.personas import (
    BIG_FIVE,
    PersonaSpec,
    big_five_level,
    big_five_score,
)
from culturesim.scenarios.sotopia.schemas import (
    AgentProfile,
    EnvironmentProfile,
    parse_age_constraint,
)

TO_PERSONA_GENDER = {"woman": "female", "female": "female", "man": "male", "male": "male"}
TO_SOTOPIA_GENDER = {"female": "Woman", "male": "Man"}
PRONOUNS = {"female": "She/her", "male": "He/him"}
BIG_FIVE_NAMES = {
    "openness": "Openness to Experience",
    "conscientiousness": "Conscientiousness",
    "extraversion": "Extraversion",
    "agreeableness": "Agreeableness",
    "neuroticism": "Neuroticism",
}
_TRAIT_WORDS = {
    "openness": "openness",
    "openness to experience": "openness",
    "openness to experiences": "openness",
    "conscientiousness": "conscientiousness",
    "extraversion": "extraversion",
    "extroversion": "extraversion",
    "agreeableness": "agreeableness",
    "neuroticism": "neuroticism",
    "emotional stability": "-neuroticism",  # the same axis, the other way round
}
_TRAIT_LEVEL = re.compile(
    r"^\s*(?P<trait>[A-Za-z ]+?)\s*(?:[-–—:=(]|\bis\b)\s*(?P<level>[A-Za-z -]+?)\W*$"
)


def parse_big_five(text: str) -> tuple[dict[str, float], list[str]]:
    """Scores from Sotopia's "Trait - Level; ..." text, and the parts that say no trait level."""
    scores: dict[str, float] = {}
    leftover: list[str] = []
    for part in (p.strip() for p in re.split(r"[;,\n]", text)):
        if not part:
            continue
        match = _TRAIT_LEVEL.match(part)
        trait = _TRAIT_WORDS.get(" ".join(match["trait"].lower().split())) if match else None
        score = big_five_score(match["level"]) if match else None
        if match is None or trait is None or score is None:
            leftover.append(part)
            continue
        if trait.startswith("-"):
            trait, score = trait[1:], round(1 - score, 2)
        scores[trait] = score
    return scores, leftover


def format_big_five(scores: dict[str, float]) -> str:
    """Scores as Sotopia writes Big Five levels: "Openness to Experience - High; ..."."""
    return "; ".join(
        f"{BIG_FIVE_NAMES.get(trait, trait)} - {big_five_level(score).capitalize()}"
        for trait, score in sorted(scores.items(), key=lambda item: _order(item[0]))
    )


def _order(trait: str) -> int:
    return BIG_FIVE.index(trait) if trait in BIG_FIVE else len(BIG_FIVE)


def persona_specs(
    profile: EnvironmentProfile, agents: Sequence[AgentProfile] | None = None
) -> list[PersonaSpec]:
    """One persona constraint per agent: what import writes, and what export compares with."""
    ranges: list[tuple[int, int] | None] = (
        list(parse_age_constraint(profile.age_constraint))
        if profile.age_constraint is not None
        else [None] * len(profile.agent_goals)
    )
    return [
        persona_spec(agents[index] if agents is not None else None, age_range)
        for index, age_range in enumerate(ranges)
    ]


def persona_spec(agent: AgentProfile | None, age_range: tuple[int, int] | None) -> PersonaSpec:
    """The persona constraint for one agent (see the module docstring) in an age range."""
    fields: dict[str, Any] = {}
    if age_range is not None:
        fields["age"] = age_range
    if agent is None:
        return PersonaSpec(**fields)
    name = agent.full_name
    if name:
        fields["name"] = name
    if 0 < agent.age <= 120:
        fields["age"] = (agent.age, agent.age)
    gender = TO_PERSONA_GENDER.get(agent.gender.strip().lower(), agent.gender.strip())
    # Without a fixed name the sampler draws one from the culture's pool for this gender,
    # and the pools are keyed female/male; any other gender needs a name to go with it.
    if gender and (name or gender in ("female", "male")):
        fields["gender"] = gender
    if agent.occupation.strip():
        fields["occupation"] = agent.occupation.strip()
    if agent.public_info.strip():
        fields["background"] = agent.public_info.strip()
    scores, leftover = parse_big_five(agent.big_five)
    if scores:
        fields["big_five"] = scores
    values = [v.strip() for v in [*agent.moral_values, *agent.schwartz_personal_values]]
    if any(values):
        fields["values"] = tuple(dict.fromkeys(v for v in values if v))
    if agent.decision_making_style.strip():
        fields["decision_style"] = agent.decision_making_style.strip()
    personality = " ".join(agent.personality_and_values.split())
    if leftover:
        personality = f"{personality} Big Five: {'; '.join(leftover)}.".strip()
    if personality:
        fields["personality"] = personality
    return PersonaSpec(**fields)


def big_five_leftover(agent: AgentProfile) -> list[str]:
    """The parts of an agent's Big Five text that name no trait and level (for a warning)."""
    return parse_big_five(agent.big_five)[1]

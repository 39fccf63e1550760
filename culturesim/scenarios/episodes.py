"""Episodes: a scenario template, a culture (or a mix), a sampled cast, rendered and ready to run.

Everything is derived from the run seed: the episode seed from (seed, template, cultures, index),
each persona from (culture, episode seed, role). So the same arguments give the same Episode ids
in any process, which is what lets a killed simulation resume exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from culturesim.records import Culture, Episode, derive_seed
from culturesim.scenarios.personas import PersonaSampler
from culturesim.scenarios.templates import ScenarioLibrary, ScenarioTemplate
from culturesim.textlists import comma_list


def culture_groups(spec: str, known: Mapping[str, Culture]) -> list[list[Culture]]:
    """'JPN,MEX' -> one group per culture; 'JPN+MEX' -> one cross-cultural group."""
    from culturesim.scenarios.cultures import resolve_cultures

    groups = []
    for part in comma_list(spec):
        groups.append(resolve_cultures([c.strip() for c in part.split("+")], dict(known)))
    return groups


def cultures_for_roles(group: Sequence[Culture], roles: int) -> list[Culture]:
    """A group's cultures handed to roles in order, cycling: JPN+MEX over 3 roles = JPN,MEX,JPN."""
    return [group[i % len(group)] for i in range(roles)]


def build_episodes(
    library: ScenarioLibrary,
    templates: Sequence[ScenarioTemplate],
    groups: Sequence[Sequence[Culture]],
    *,
    per_scenario: int = 1,
    seed: int = 0,
    variables: Mapping[str, Mapping[str, Any]] | None = None,
    sampler: PersonaSampler | None = None,
) -> list[Episode]:
    """Episodes for every template that suits every culture of a group, `per_scenario` casts each.

    `variables` maps a template id to variable overrides. A template that does not suit a
    culture (its `cultures` list) is skipped for it.
    """
    sampler = sampler or PersonaSampler()
    episodes = []
    for template in templates:
        for group in groups:
            if not all(template.suits(c.code) for c in group):
                continue
            per_role = cultures_for_roles(group, len(template.participants))
            codes = "+".join(c.code for c in group)
            for index in range(per_scenario):
                episode_seed = derive_seed(seed, template.id, codes, index)
                cast = [
                    sampler.sample(
                        culture, episode_seed, participant.persona, slot=participant.role
                    )
                    for participant, culture in zip(template.participants, per_role, strict=True)
                ]
                scenario = library.render(
                    template,
                    per_role,
                    cast,
                    (variables or {}).get(template.id),
                    seed=episode_seed,
                )
                episodes.append(
                    Episode(
                        scenario_id=scenario.id,
                        persona_ids=tuple(p.id for p in cast),
                        seed=episode_seed,
                        scenario=scenario,
                        personas=tuple(cast),
                    )
                )
    return episodes

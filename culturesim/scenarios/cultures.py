"""Culture profiles as data files: one YAML file per culture, shipped ones plus the user's.

A user adds a culture by adding a file (`XYZ.yaml`) to a folder passed as `extra_dirs`; a user
file with the same code overrides the shipped one. Errors name the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from culturesim.paths import package_data
from culturesim.records import Culture
from culturesim.yamlfiles import load_yaml_model


class CultureFileError(ValueError):
    """A culture file is unreadable or invalid; the message names the file and field."""


def culture_dirs(extra_dirs: Iterable[str | Path] = ()) -> list[Path]:
    return [package_data("data", "cultures"), *(Path(d) for d in extra_dirs)]


def load_culture_file(path: Path) -> Culture:
    return load_yaml_model(path, Culture, CultureFileError, "code, name, demonym, ...")


def load_cultures(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Culture]:
    """Every culture by ISO code; later folders override earlier ones."""
    cultures: dict[str, Culture] = {}
    for folder in culture_dirs(extra_dirs):
        if not folder.is_dir():
            raise CultureFileError(f"{folder}: culture folder not found")
        for path in sorted(folder.glob("*.yaml")):
            culture = load_culture_file(path)
            cultures[culture.code] = culture
    return cultures


def resolve_cultures(codes: Sequence[str], known: dict[str, Culture]) -> list[Culture]:
    """Look codes up, with an error that lists what exists."""
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise CultureFileError(
            f"unknown culture code(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}. "
            "Add a YAML file for a new culture (see culturesim/data/cultures/)."
        )
    return [known[c] for c in codes]


def profile_distance(a: Culture, b: Culture) -> float:
    """Distance between two cultures' value profiles, from Hofstede and Inglehart–Welzel scores.

    Each dimension is scaled to about [0, 1] (Hofstede /100, Inglehart–Welzel /5) and the root
    mean square difference is taken over the dimensions both cultures have. These profiles come
    from outside any evaluation set, so choosing "similar" cultures from them leaks no labels.
    """
    diffs = [
        (a.hofstede[d] - b.hofstede[d]) / 100.0 for d in a.hofstede.keys() & b.hofstede.keys()
    ] + [
        (a.inglehart_welzel[d] - b.inglehart_welzel[d]) / 5.0
        for d in a.inglehart_welzel.keys() & b.inglehart_welzel.keys()
    ]
    if not diffs:
        return math.inf
    return math.sqrt(sum(d * d for d in diffs) / len(diffs))


def nearest_and_farthest(
    culture: Culture, others: Sequence[Culture], k: int = 3
) -> tuple[list[Culture], list[Culture]]:
    """The k most similar and the k most different cultures among `others`."""
    pool = sorted(
        (
            o
            for o in others
            if o.code != culture.code and math.isfinite(profile_distance(culture, o))
        ),
        key=lambda o: (profile_distance(culture, o), o.code),
    )
    if len(pool) < 2 * k:
        raise CultureFileError(
            f"cross-culture prompts need {2 * k} other cultures with value profiles; "
            f"{culture.code} has {len(pool)}"
        )
    return pool[:k], pool[::-1][:k]

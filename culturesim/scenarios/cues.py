"""Culture profiles in words: the verbal cues CLCA puts in each agent's system prompt.

CLCA describes a culture to its agents in words derived from Hofstede's six dimensions and the
Inglehart–Welzel map ("highly hierarchical, moderately collective, …, highly restrained";
"little survival values, moderately secular"). Here the words come from the scores by one rule,
so no country's description is typed by hand and a user's new culture file gets cues for free.

Hofstede (0–100), each dimension with a word for its high and its low pole:

    score >= 75      "highly <high>"          score <= 25      "highly <low>"
    60 <= score < 75 "moderately <high>"      25 < score <= 40 "moderately <low>"
    50 <= score < 60 "slightly <high>"        40 < score < 50  "slightly <low>"

Inglehart–Welzel (about -2.5 … 2.5), each axis with its positive and negative pole:

    |value| >= 1.0 "strongly", 0.4 <= |value| < 1.0 "moderately", below 0.4 "slightly"

A dimension missing from a profile is left out of the cues rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from culturesim.records import Culture

HOFSTEDE_POLES: dict[str, tuple[str, str]] = {
    "power_distance": ("hierarchical", "egalitarian"),
    "individualism": ("individualistic", "collective"),
    "masculinity": ("competitive", "cooperative"),
    "uncertainty_avoidance": ("uncertainty-avoiding", "tolerant of uncertainty"),
    "long_term_orientation": ("long-term oriented", "short-term oriented"),
    "indulgence": ("indulgent", "restrained"),
}

INGLEHART_WELZEL_POLES: dict[str, tuple[str, str]] = {
    "traditional_secular": ("secular-rational values", "traditional values"),
    "survival_self_expression": ("self-expression values", "survival values"),
}


def hofstede_phrase(score: float, high: str, low: str) -> str:
    if score >= 75:
        return f"highly {high}"
    if score >= 60:
        return f"moderately {high}"
    if score >= 50:
        return f"slightly {high}"
    if score > 40:
        return f"slightly {low}"
    if score > 25:
        return f"moderately {low}"
    return f"highly {low}"


def inglehart_welzel_phrase(value: float, positive: str, negative: str) -> str:
    size = abs(value)
    degree = "strongly" if size >= 1.0 else "moderately" if size >= 0.4 else "slightly"
    return f"{degree} {positive if value >= 0 else negative}"


@dataclass(frozen=True)
class CultureCues:
    """A culture's value profile as phrases, ready for a prompt."""

    hofstede: tuple[str, ...]
    inglehart_welzel: tuple[str, ...]

    @property
    def text(self) -> str:
        """One sentence-ready description: "highly hierarchical, …; strongly traditional values, …"."""
        parts = [", ".join(self.hofstede), ", ".join(self.inglehart_welzel)]
        return "; ".join(p for p in parts if p)


def culture_cues(culture: Culture) -> CultureCues:
    """The documented rule applied to a culture's scores, dimensions in a fixed order."""
    hofstede = tuple(
        hofstede_phrase(culture.hofstede[name], high, low)
        for name, (high, low) in HOFSTEDE_POLES.items()
        if name in culture.hofstede
    )
    inglehart_welzel = tuple(
        inglehart_welzel_phrase(culture.inglehart_welzel[name], positive, negative)
        for name, (positive, negative) in INGLEHART_WELZEL_POLES.items()
        if name in culture.inglehart_welzel
    )
    return CultureCues(hofstede, inglehart_welzel)

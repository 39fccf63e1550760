"""Sotopia's goal tags as structure: private information and hints, never raw markup.

A Sotopia goal may carry `<extra_info>...</extra_info>`, `<strategy_hint>...</strategy_hint>`
and `<clarification_hint>...</clarification_hint>` (its EnvironmentProfile describes them; its
XML renderer shows their text only to the agent whose goal it is). Culturesim has one place for
what only one participant knows, the role's secret, which the role-play prompt shows to that
participant alone. So on import a goal is split: the words outside the tags become the goal, and
each tag's text becomes a labelled line of the secret section, after the agent's own secret:

    ## goal agent1
    Get your friend to pay for the lens repair
    ## secret agent1
    She once pawned a borrowed guitar.          (the agent profile's secret, if any)
    Private information: A repair shop quoted about 300 dollars.
    Strategy hint: You could offer help that is not money.

Export puts the tags back: an unedited goal comes back exactly as read (the original is kept in
the template), an edited one as its text followed by one tag per labelled line, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GOAL_TAGS = ("extra_info", "strategy_hint", "clarification_hint")
LABELS = {
    "extra_info": "Private information",
    "strategy_hint": "Strategy hint",
    "clarification_hint": "Clarification hint",
}
_TAG_NAMES = "|".join(GOAL_TAGS)
_CLOSED = re.compile(rf"<({_TAG_NAMES})\b[^>]*>(.*?)</\1\s*>", re.S)
_UNCLOSED = re.compile(rf"<({_TAG_NAMES})\b[^>]*>(.*)\Z", re.S)
_STRAY = re.compile(rf"</?(?:{_TAG_NAMES})\b[^>]*>")
_LABEL = re.compile("(" + "|".join(re.escape(label) for label in LABELS.values()) + "): ")


@dataclass(frozen=True)
class Goal:
    """A goal's own words and the tagged parts only its agent sees, in order: (tag, text)."""

    text: str
    private: tuple[tuple[str, str], ...] = ()


def split_goal(goal: str) -> Goal:
    """A Sotopia goal without its tags, and the tags' text; a goal without tags is unchanged.

    An unclosed tag runs to the end of the goal, and a stray closing tag is dropped, as
    Sotopia's forgiving XML parser reads them: no markup is left in the goal either way.
    """
    if not _STRAY.search(goal):
        return Goal(goal)
    parts: list[tuple[str, str]] = []

    def take(match: re.Match[str]) -> str:
        content = _STRAY.sub("", match.group(2)).strip()
        if content:
            parts.append((match.group(1), content))
        return " "

    text = _CLOSED.sub(take, goal)
    text = _UNCLOSED.sub(take, text)
    text = _STRAY.sub(" ", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    if not text:  # a goal that was all tags: its words are the goal
        return Goal(" ".join(content for _, content in parts))
    return Goal(text, tuple(parts))


def join_goal(goal: Goal) -> str:
    """A Sotopia goal: the text, then each private part in its tag."""
    return goal.text + "".join(f" <{tag}>{content}</{tag}>" for tag, content in goal.private)


def secret_lines(secret: str, private: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The secret section as (label, text) lines: the agent's secret (no label), then each
    private part of the goal under its label."""
    lines = [("", secret.strip())] if secret.strip() else []
    return lines + [(LABELS[tag], content) for tag, content in private]


def rendered_secret(secret: str, private: tuple[tuple[str, str], ...]) -> str:
    """What the secret section of an import renders to (rendering collapses whitespace)."""
    text = " ".join(
        f"{label}: {body}" if label else body for label, body in secret_lines(secret, private)
    )
    return " ".join(text.split())


def parse_secret(rendered: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A rendered secret section back as (the agent's secret, the goal's private parts): the
    inverse of `rendered_secret`, used when the section was edited."""
    pieces = _LABEL.split(rendered)
    secret = pieces[0].strip()
    by_label = {label: tag for tag, label in LABELS.items()}
    private = tuple(
        (by_label[label], body.strip())
        for label, body in zip(pieces[1::2], pieces[2::2], strict=True)
        if body.strip()
    )
    return secret, private

"""CLCA's action protocol: each turn an agent picks none, non-verbal, speak or leave.

Agents are asked to answer `ACTION: …` / `OUTPUT: …`. Models answer in every shape, so the
parser is tolerant: labels in any case and with markdown around them, synonyms ("nonverbal",
"say", "exit"), extra text after the answer (cut at the next label or at a line that starts
another speaker's turn), and plain speech without labels, which is taken as `speak`. What it
cannot read raises `MalformedTurn` with a short reason, which the engine turns into a
correction message (once) and then into a recorded malformed turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from culturesim.prompt_library import echoes_placeholder
from culturesim.records import Action

ACTION_SYNONYMS: dict[str, Action] = {
    "none": "none",
    "nothing": "none",
    "no action": "none",
    "wait": "none",
    "non-verbal": "non-verbal",
    "non verbal": "non-verbal",
    "nonverbal": "non-verbal",
    "gesture": "non-verbal",
    "speak": "speak",
    "say": "speak",
    "talk": "speak",
    "reply": "speak",
    "respond": "speak",
    "leave": "leave",
    "exit": "leave",
    "end": "leave",
    "end conversation": "leave",
}
_ACTION = re.compile(r"[*_#\s]*action[*_\s]*[:=\-]\s*[*_\"'\[(<]*\s*([a-z][a-z \-]*)", re.I)
_OUTPUT = re.compile(r"[*_#\s]*output[*_\s]*[:=\-]\s*", re.I)
_NEXT_LABEL = re.compile(r"\n\s*[*_#]*\s*(action|output|intent)\s*[*_]*\s*[:=]", re.I)
_SPEAKER_LINE = re.compile(r"\n\s*[A-Z][\w .'\-]{0,40}:\s")
MAX_UTTERANCE_CHARS = 600


class MalformedTurn(ValueError):
    """The reply could not be read as a turn; the message is a short, user-facing reason."""


@dataclass(frozen=True)
class ParsedTurn:
    action: Action
    utterance: str


def _clean(text: str) -> str:
    text = text.strip().strip("*_").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    text = text.strip('"').strip()  # a quotation cut at its closing quote, or never closed
    return " ".join(text.split())[:MAX_UTTERANCE_CHARS]


def _normalise_action(word: str) -> Action | None:
    word = " ".join(word.lower().replace("_", " ").split())
    for length in (3, 2, 1):  # "end conversation now" -> "end conversation"
        key = " ".join(word.split()[:length])
        if key in ACTION_SYNONYMS:
            return ACTION_SYNONYMS[key]
    return None


def parse_turn(text: str, speaker_names: tuple[str, ...] = ()) -> ParsedTurn:
    """Read one turn; `speaker_names` are stripped when the model prefixes its own name."""
    body = text.replace("\r", "")
    match = _ACTION.search(body)
    if match is None and re.search(r"\baction\s*[*_]*\s*[:=]", body, re.I):
        raise MalformedTurn("an ACTION label without a readable action")
    if match is None:
        speech = _cut(body)
        for name in speaker_names:
            speech = re.sub(rf"^\s*{re.escape(name)}\s*:\s*", "", speech)
        speech = _clean(speech)
        if len(speech) < 2 or not re.search(r"[^\W\d_]", speech):
            raise MalformedTurn("no ACTION and no speech")
        return ParsedTurn("speak", speech)
    action = _normalise_action(match.group(1))
    if action is None:
        raise MalformedTurn(f"unknown action {match.group(1).strip()!r}")
    rest = body[match.end() :]
    output = _OUTPUT.search(rest)
    utterance = _cut(
        rest[output.end() :] if output else rest.split("\n", 1)[-1] if "\n" in rest else ""
    )
    utterance = _clean(utterance)
    if action in ("speak", "non-verbal") and not utterance:
        raise MalformedTurn(f"ACTION {action} without an OUTPUT")
    if echoes_placeholder(utterance):
        raise MalformedTurn("the OUTPUT repeats the form's placeholder; write your own words")
    return ParsedTurn(action, utterance)


def _cut(text: str) -> str:
    """Text up to the next label or the next line that starts another speaker's turn."""
    end = len(text)
    for pattern in (_NEXT_LABEL, _SPEAKER_LINE):
        found = pattern.search(text)
        if found and found.start() > 0:
            end = min(end, found.start())
    return text[:end]

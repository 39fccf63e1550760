"""CLCA's intent labels: for every utterance, the speaker's intent and the cultural expectation.

The annotator sees the scene and the transcript up to the turn, and answers `INTENT: …` and
`CULTURAL: …` ("none" when it is not certain). A turn's label depends on nothing after it, so
it is requested as soon as the turn is played (`start`) and collected when the dialogue ends
(`finish`): the labels decode beside the conversations still running instead of in a burst
after them, and the records are the same as labelling every turn at the end (`annotate`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import Future

from culturesim.models.base import Completion, GenerationParams
from culturesim.models.batcher import Batcher
from culturesim.prompt_library import PromptLibrary, echoes_placeholder
from culturesim.records import Culture, Episode, Turn, derive_seed

_INTENT = re.compile(r"intent\s*[:=]\s*(.+)", re.I)
_CULTURAL = re.compile(r"cultural(?: expectation)?\s*[:=]\s*(.+)", re.I)
_NONE = {"none", "none.", "n/a", "not sure", "unknown", "-", ""}
PREFILL = "INTENT:"


def parse_intent(text: str) -> tuple[str, str]:
    """(intent, cultural expectation); the expectation is '' when the annotator was not sure."""
    intent = _INTENT.search(text)
    cultural = _CULTURAL.search(text)
    first = intent.group(1) if intent else text.strip().split("\n", 1)[0]
    first = _CULTURAL.split(first)[0]
    expectation = cultural.group(1).strip() if cultural else ""
    expectation = expectation.split("\n", 1)[0].strip().strip('"')
    if expectation.lower().strip(" .") in {n.strip(" .") for n in _NONE}:
        expectation = ""
    return " ".join(first.split()).strip('"'), expectation


class IntentAnnotator:
    def __init__(
        self, batcher: Batcher, *, library: PromptLibrary | None = None, max_new_tokens: int = 60
    ) -> None:
        self.batcher = batcher
        self.library = library or PromptLibrary()
        self.max_new_tokens = max_new_tokens
        self.placeholder_echoes = 0
        self._pending: dict[int, Future[Completion]] = {}

    def annotate(
        self,
        episode: Episode,
        turns: Sequence[Turn],
        culture: Culture,
        views: Sequence[str],
        seed: int,
    ) -> list[Turn]:
        """Turns with `intent` and `cultural_expectation` filled for speak and non-verbal ones."""
        for turn in turns:
            self.start(episode, turn, culture, views[: turn.index + 1], seed)
        return self.finish(turns)

    def start(
        self, episode: Episode, turn: Turn, culture: Culture, views: Sequence[str], seed: int
    ) -> None:
        """Request the label of one turn; `views` is the transcript up to and including it."""
        if turn.action not in ("speak", "non-verbal") or turn.malformed:
            return
        names = {
            r.name: p.name for r, p in zip(episode.scenario.roles, episode.personas, strict=True)
        }
        prompt = self.library.render(
            "roleplay/intent.jinja2",
            culture=culture,
            scenario=episode.scenario,
            transcript=list(views[: turn.index + 1]),
            speaker=names[turn.speaker],
        )
        self._pending[turn.index] = self.batcher.submit_generate(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": PREFILL}],
            GenerationParams(
                self.max_new_tokens,
                temperature=0.0,
                stop=("\n\n",),
                seed=derive_seed(seed, "intent", turn.index),
            ),
        )

    def finish(self, turns: Sequence[Turn]) -> list[Turn]:
        """The turns with the labels started for them."""
        annotated = []
        for turn in turns:
            future = self._pending.pop(turn.index, None)
            if future is None:
                annotated.append(turn)
                continue
            intent, expectation = parse_intent(PREFILL + future.result().text)
            if echoes_placeholder(intent) or echoes_placeholder(expectation):
                # The form was given back, not an answer: counted, never stored as an intent.
                self.placeholder_echoes += 1
                intent, expectation = "", ""
            annotated.append(
                turn.model_copy(update={"intent": intent, "cultural_expectation": expectation})
            )
        return annotated

"""CLCA's intent labels: for every utterance, the speaker's intent and the cultural expectation.

The annotator sees the scene and the transcript up to the turn, and answers `INTENT: …` and
`CULTURAL: …` ("none" when it is not certain). All of a dialogue's turns are submitted at once
to the Batcher, so annotation batches with whatever else is running.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from culturesim.models.base import GenerationParams
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

    def annotate(
        self,
        episode: Episode,
        turns: Sequence[Turn],
        culture: Culture,
        views: Sequence[str],
        seed: int,
    ) -> list[Turn]:
        """Turns with `intent` and `cultural_expectation` filled for speak and non-verbal ones."""
        names = {
            r.name: p.name for r, p in zip(episode.scenario.roles, episode.personas, strict=True)
        }
        futures = {}
        for turn in turns:
            if turn.action not in ("speak", "non-verbal") or turn.malformed:
                continue
            prompt = self.library.render(
                "roleplay/intent.jinja2",
                culture=culture,
                scenario=episode.scenario,
                transcript=list(views[: turn.index + 1]),
                speaker=names[turn.speaker],
            )
            futures[turn.index] = self.batcher.submit_generate(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": PREFILL}],
                GenerationParams(
                    self.max_new_tokens,
                    temperature=0.0,
                    stop=("\n\n",),
                    seed=derive_seed(seed, "intent", turn.index),
                ),
            )
        annotated = []
        for turn in turns:
            future = futures.get(turn.index)
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

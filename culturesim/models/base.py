"""The one interface between culturesim and a language model.

Two batch operations, nothing else: `generate` (completions for a batch of prompts) and `score`
(log-probabilities of candidate continuations). Everything that talks to a model (agents,
prober, judge, evaluation) receives an object with these two methods; backends and wrappers
(cache, metering, batcher) all implement the same protocol, so they stack.

A prompt is either a chat (a list of messages, rendered with the model's chat template plus the
assistant header) or a raw string (used as-is: completion mode). A chat that ends with an
assistant message is a prefill: the model continues that message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

DEFAULT_MODEL = "smollm2"
"""The embedded SmolLM2-135M-Instruct: every model role's default, the one place it is named."""


class ChatMessage(TypedDict):
    role: str
    content: str


Chat = list[ChatMessage]
Prompt = Chat | str
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationParams:
    """How to sample one completion. `seed` makes a sampled completion reproducible."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


Params = GenerationParams | Sequence[GenerationParams]
"""One setting for every prompt of a batch, or one per prompt."""
GREEDY = GenerationParams()
"""The default: greedy decoding of up to 128 tokens."""


@dataclass(frozen=True)
class Completion:
    """One generated completion and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LanguageModel(Protocol):
    """What every backend and wrapper provides."""

    @property
    def model_id(self) -> str:
        """A stable name for the weights behind this model (used in cache keys and records)."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        """One completion per prompt; `params` is shared or given per prompt."""
        ...

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """log P(candidate | prompt), summed over the candidate's tokens, for each candidate."""
        ...


class ModelError(RuntimeError):
    """A model could not be built or reached; the message says what to do."""


class EngineDied(ModelError):
    """The inference engine behind a model has stopped for good (its process exited, or the
    server says its engine failed). Not retried, and not charged to the request that met it:
    every later call would fail the same way, so a stage stops at once and says why, once."""


class ScoringUnsupported(ModelError):
    """The backend cannot give exact log-probabilities for this request."""


class Stopped(RuntimeError):
    """The run was stopped (Ctrl-C) before this call finished; nothing of it is kept."""


def wrapper_chain(model: object) -> Iterator[object]:
    """The model and every model it wraps, outermost first.

    Wrappers expose what they wrap as `.inner` (cache, meter, retry, a started server) or
    `.model` (the Batcher); this is the one place that knows it.
    """
    seen: set[int] = set()
    current: object | None = model
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "inner", None) or getattr(current, "model", None)
        if not isinstance(current, LanguageModel):  # a backend's `model` is its own network
            return


def find_in_chain(model: object, attribute: str) -> Any:
    """The first non-None `attribute` along the wrapper chain, or None."""
    for layer in wrapper_chain(model):
        value = getattr(layer, attribute, None)
        if value is not None:
            return value
    return None


def stop_running_calls(model: object) -> None:
    """Ask a model, through its wrappers, to end the calls it is running now.

    Ctrl-C must stop a simulation within a step, not after the batch in flight has generated all
    its tokens (half a minute under load). Wrappers expose what they wrap as `.inner` (cache,
    meter, retry) or `.model` (the Batcher); a backend that can end a call early has
    `stop_running()`, and the calls it ends raise `Stopped`.
    """
    stop = find_in_chain(model, "stop_running")
    if callable(stop):
        stop()


def per_prompt_params(
    params: GenerationParams | Sequence[GenerationParams], count: int
) -> list[GenerationParams]:
    """Expand shared params to one per prompt, checking the lengths agree."""
    if isinstance(params, GenerationParams):
        return [params] * count
    expanded = list(params)
    if len(expanded) != count:
        raise ValueError(f"got {len(expanded)} GenerationParams for {count} prompts")
    return expanded


def check_candidates(prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(candidates):
        raise ValueError(f"got {len(candidates)} candidate lists for {len(prompts)} prompts")
    for index, options in enumerate(candidates):
        if not options:
            raise ValueError(f"prompt {index} has no candidates to score")
        if any(not isinstance(option, str) or option == "" for option in options):
            raise ValueError(f"prompt {index} has an empty or non-text candidate")


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; report whether one was found."""
    cut = min((pos for s in stop if (pos := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)

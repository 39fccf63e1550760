"""Simulation throughput: culturesim against plain autogen and against raw batched generation.

    .venv/bin/python benchmarks/simulation.py [--model smollm2] [--dialogues 16] [--turns 6]
        [--baseline-dialogues N]

One process, one run, the same dialogues (two-party built-in scenarios, the first N episodes
over two cultures, intents on, 40 new tokens a turn, temperature 0.7, top-p 0.7). Every
dialogue runs the turns asked for: leaving is allowed only at the last turn and the repetition
stop is off, because with the protocol's early stops SmolLM2's dialogues end after about two
turns (it repeats itself), which is not the workload of "N dialogues x 6 turns". Pass
`--early-stops` to keep the protocol's stops (leave after turn 2, repetition at 0.9):

(a) culturesim as a user runs it: the Simulator with every conversation concurrent, the
    structured action protocol, intents, and prefix reuse on (the default).
(b) the same dialogues one after another as peers run them: per dialogue an autogen
    `GroupChat` of two `ConversableAgent`s (the same system prompts and opening), speakers in
    turn, each reply one `model.generate` call through a plain transformers model client
    written here; then one `generate` call per turn for its intent. One call at a time.
(c) the ceiling: raw batched `model.generate` (batches of 16, no agents, no reuse) of as
    many requests, prompt tokens and generated tokens as (a) used, on random token ids.

Prints, for each, seconds, prompt tokens/s and generated tokens/s, then the lines
`a/b = X.XX` (the same work: (b) runs each dialogue for as many turns, and labels as many
intents, as it had in (a); the ratio of their seconds) and `a/c = X.XX` (the ratio of
generated tokens/s; (c) reads and writes as many tokens as (a) did).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import autogen
import torch
from autogen.io.base import IOStream
from transformers.utils import logging as hf_logging

from culturesim.agents.roleplay.conversation import Conversation
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.models.base import Completion, GenerationParams, Prompt
from culturesim.models.registry import build_model
from culturesim.models.transformers_backend import TransformersModel
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Dialogue, Episode
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore

NEW_TOKENS = 40
INTENT_TOKENS = 60
TEMPERATURE = 0.7
TOP_P = 0.7


@dataclass
class Tally:
    """What one way of running asked of the model."""

    seconds: float = 0.0
    generate_requests: int = 0
    score_requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    dialogues: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self, name: str) -> str:
        text = (
            f"{name:<26} {self.seconds:7.1f} s  {self.prompt_tokens / self.seconds:7.1f} prompt tok/s"
            f"  {self.generated_tokens / self.seconds:6.1f} generated tok/s"
        )
        if self.dialogues:
            text += f"  {self.dialogues / self.seconds * 60:5.2f} dialogues/min"
        return text + "".join(f"  {k} {v}" for k, v in self.extra.items())


class CountingModel:
    """Passes calls to a culturesim model and counts requests and tokens by kind."""

    def __init__(self, inner: TransformersModel, tally: Tally) -> None:
        self.inner = inner
        self.tally = tally

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams | Sequence[GenerationParams]
    ) -> list[Completion]:
        outputs = self.inner.generate(prompts, params)
        self.tally.generate_requests += len(prompts)
        self.tally.prompt_tokens += sum(c.prompt_tokens for c in outputs)
        self.tally.generated_tokens += sum(c.completion_tokens for c in outputs)
        return outputs

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        self.tally.score_requests += len(prompts)
        self.tally.prompt_tokens += self.inner.count_prompt_tokens(prompts)
        return self.inner.score(prompts, candidates)


def episodes_for(count: int) -> list[Episode]:
    """The first `count` two-party episodes over JPN and MEX, then over NGA and DEU if needed
    (the first ones stay the same whatever `count` is, so runs of different sizes compare)."""
    library = ScenarioLibrary()
    two_party = [t for t in library.select("all") if len(t.roles) == 2]
    episodes: list[Episode] = []
    for cultures in ("JPN,MEX", "NGA,DEU"):
        if len(episodes) < count:
            episodes += build_episodes(
                library, two_party, culture_groups(cultures, load_cultures())
            )
    if len(episodes) < count:
        raise SystemExit(f"only {len(episodes)} two-party episodes; ask for fewer dialogues")
    return episodes[:count]


# ---------------------------------------------------------------- (a) culturesim


Shape = dict[str, tuple[int, int]]
"""Per episode id: the turns a dialogue ran and how many of them got an intent."""


def run_culturesim(
    model: TransformersModel, episodes: list[Episode], turns: int, *, early_stops: bool = False
) -> tuple[Tally, Shape]:
    fresh = TransformersModel(model.model, model.tokenizer, model.model_id)  # an empty cache
    tally = Tally()
    settings = SimulateSection(
        per_episode=1,
        concurrency=len(episodes),
        max_batch_size=len(episodes),
        intents=True,
        max_turns=turns,
        **(
            {}
            if early_stops
            else {"allow_leave_after": turns, "repetition_threshold": float("inf")}
        ),
        max_new_tokens=NEW_TOKENS,
        temperature=TEMPERATURE,
        top_p=TOP_P,
    )
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore.open(Path(folder) / "run", {"benchmark": "simulation"})
        simulator = Simulator(CountingModel(fresh, tally), store, settings)  # type: ignore[arg-type]
        started = time.perf_counter()
        summary = simulator.run(episodes, show_progress=False)
        tally.seconds = time.perf_counter() - started
        shape = {
            d.episode_id: (len(d.turns), sum(1 for t in d.turns if t.intent))
            for d in store.read(Dialogue)
        }
    tally.dialogues = summary.done
    tally.extra["prefix hit rate"] = f"{fresh.prefix_cache.stats.hit_rate:.2f}"
    tally.extra["mean batch"] = f"{summary.mean_batch_size:.1f}"
    return tally, shape


# ---------------------------------------------------------------- (b) plain autogen


class PlainClient:
    """An autogen model client over `transformers` generate, one call at a time."""

    network: Any = None
    tokenizer: Any = None
    tally: Tally | None = None

    def __init__(self, config: dict[str, Any], **_: Any) -> None:
        self.config = config

    def create(self, params: dict[str, Any]) -> Any:
        messages = [
            {"role": m.get("role", "user"), "content": m.get("content") or ""}
            for m in params["messages"]
        ]
        text = plain_generate(messages, NEW_TOKENS, sample=True)
        message = SimpleNamespace(
            content=text, role="assistant", function_call=None, tool_calls=None
        )
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, finish_reason="stop")],
            model="plain",
            usage=SimpleNamespace(prompt_tokens=0, completion_tokens=0, total_tokens=0),
            cost=0.0,
        )

    def message_retrieval(self, response: Any) -> list[str]:
        return [choice.message.content for choice in response.choices]

    def cost(self, response: Any) -> float:
        return 0.0

    @staticmethod
    def get_usage(response: Any) -> dict[str, Any]:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}


def plain_generate(messages: list[dict[str, str]], new_tokens: int, *, sample: bool) -> str:
    tokenizer, network, tally = PlainClient.tokenizer, PlainClient.network, PlainClient.tally
    assert tally is not None
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = (ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids).to(network.device)
    settings: dict[str, Any] = {
        "max_new_tokens": new_tokens,
        "pad_token_id": tokenizer.eos_token_id,
    }
    if sample:
        settings.update(do_sample=True, temperature=TEMPERATURE, top_p=TOP_P)
    else:
        settings.update(do_sample=False, stop_strings=["\n\n"], tokenizer=tokenizer)
    with torch.inference_mode():
        output = network.generate(ids, attention_mask=torch.ones_like(ids), **settings)
    new = output[0, ids.shape[1] :]
    tally.generate_requests += 1
    tally.prompt_tokens += int(ids.shape[1])
    tally.generated_tokens += int(new.shape[0])
    return str(tokenizer.decode(new, skip_special_tokens=True))


class _Silent(IOStream):
    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        return None

    def send(self, message: Any) -> None:
        return None

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return ""


def run_autogen(model: TransformersModel, episodes: list[Episode], shape: Shape) -> Tally:
    """Each dialogue runs as many turns, and annotates as many intents, as it did in (a).

    With `--baseline-dialogues N` only the first N run; since (b) runs one call at a time, its
    seconds for all of them are its seconds for N times their share of (a)'s turns and intents.
    """
    tally = Tally()
    PlainClient.network, PlainClient.tokenizer, PlainClient.tally = (
        model.model,
        model.tokenizer,
        tally,
    )
    library = PromptLibrary()
    config = {"config_list": [{"model": "plain", "model_client_cls": "PlainClient"}]}
    started = time.perf_counter()
    for episode in episodes:
        turns, intents = shape[episode.id]
        # culturesim renders the prompts only, so both ways play the same scene and personas.
        prompts = Conversation(episode, None, seed=0)  # type: ignore[arg-type]
        with IOStream.set_default(_Silent()):
            agents = []
            for role in prompts.roles:
                agent = autogen.ConversableAgent(
                    role,
                    system_message=prompts.system_prompt(role),
                    llm_config={**config, "cache_seed": None},
                    human_input_mode="NEVER",
                )
                agent.register_model_client(PlainClient)  # type: ignore[arg-type]
                agents.append(agent)
            narrator = autogen.ConversableAgent("narrator", llm_config=False)
            chat = autogen.GroupChat(
                agents=[narrator, *agents],
                messages=[],
                max_round=turns + 1,
                speaker_selection_method="round_robin",
                send_introductions=False,
            )
            manager = autogen.GroupChatManager(chat, llm_config=False)
            opening = library.render("roleplay/opening.jinja2", scenario=episode.scenario)
            narrator.initiate_chat(manager, message=opening, silent=True)
        transcript = [f"{m.get('name', '')}: {m.get('content', '')}" for m in chat.messages[1:]]
        for index in range(min(intents, len(transcript))):
            prompt = library.render(
                "roleplay/intent.jinja2",
                culture=load_cultures()[episode.scenario.culture],
                scenario=episode.scenario,
                transcript=transcript[: index + 1],
                speaker=chat.messages[index + 1].get("name", ""),
            )
            plain_generate([{"role": "user", "content": prompt}], INTENT_TOKENS, sample=False)
        tally.dialogues += 1
    tally.seconds = time.perf_counter() - started
    return tally


# ---------------------------------------------------------------- (c) raw batched generate


def run_raw(model: TransformersModel, like: Tally, batch: int) -> Tally:
    requests = like.generate_requests
    prompt_length = max(1, round(like.prompt_tokens / requests))
    new_tokens = max(1, round(like.generated_tokens / requests))
    generator = torch.Generator().manual_seed(0)
    vocabulary = model.tokenizer.vocab_size
    tally = Tally()
    started = time.perf_counter()
    for start in range(0, requests, batch):
        rows = min(batch, requests - start)
        ids = torch.randint(100, vocabulary, (rows, prompt_length), generator=generator)
        ids = ids.to(model.device)
        with torch.inference_mode():
            output = model.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=model.tokenizer.eos_token_id,
            )
        tally.generate_requests += rows
        tally.prompt_tokens += rows * prompt_length
        tally.generated_tokens += int(output.shape[0] * (output.shape[1] - prompt_length))
    tally.seconds = time.perf_counter() - started
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument(
        "--baseline-dialogues",
        type=int,
        default=None,
        help="run (b) on the first N dialogues only and scale its seconds by the work left out "
        "(b is sequential, so its time is proportional to its calls); default: all",
    )
    parser.add_argument(
        "--early-stops", action="store_true", help="keep the protocol's leave and repetition stops"
    )
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    model = build_model(args.model)
    assert isinstance(model, TransformersModel), "the benchmark drives transformers directly"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    episodes = episodes_for(args.dialogues)
    print(
        f"model {model.model_id} on {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads); {len(episodes)} dialogues x {args.turns} turns, "
        f"intents on, {NEW_TOKENS} new tokens a turn, "
        + ("the protocol's early stops" if args.early_stops else "every dialogue to its last turn")
    )
    model.generate(["warm up"], GenerationParams(max_new_tokens=4))
    ours, shape = run_culturesim(model, episodes, args.turns, early_stops=args.early_stops)
    print(ours.line("(a) culturesim"), flush=True)
    sample = episodes[: args.baseline_dialogues] if args.baseline_dialogues else episodes
    peers = run_autogen(model, sample, shape)
    if len(sample) < len(episodes):
        # Scale by calls: every turn and every intent is one sequential generate call in (b).
        calls_all = sum(turns + intents for turns, intents in shape.values())
        calls_run = sum(sum(shape[e.id]) for e in sample)
        factor = calls_all / max(1, calls_run)
        print(
            f"(b) ran {len(sample)} of {len(episodes)} dialogues ({calls_run} of {calls_all} "
            f"calls); its seconds below are scaled by {factor:.2f}",
            flush=True,
        )
        peers.seconds *= factor
        peers.prompt_tokens = round(peers.prompt_tokens * factor)
        peers.generated_tokens = round(peers.generated_tokens * factor)
        peers.dialogues = len(episodes)
    print(peers.line("(b) autogen, sequential"), flush=True)
    ceiling = run_raw(model, ours, batch=min(16, len(episodes)))
    print(ceiling.line("(c) raw batched generate"), flush=True)
    # (b) did the same dialogues, turns and intents; (c) read and wrote as many tokens as (a).
    print(f"a/b = {peers.seconds / ours.seconds:.2f}")
    generated_rate = ours.generated_tokens / ours.seconds
    print(f"a/c = {generated_rate / (ceiling.generated_tokens / ceiling.seconds):.2f}")


if __name__ == "__main__":
    main()

"""Inference engines side by side: the in-process engine against a vLLM server culturesim started.

    .venv/bin/python benchmarks/engines.py [--model smollm2] [--dialogues 16] [--turns 6]
        [--questions 259] [--cultures USA,CHN,DEU] [--survey-dir ../shared/data/wvs]
        [--vllm-options enforce_eager=true]

One process, one run, two workloads, each through (a) the in-process transformers engine
(`build_model("smollm2")`: continuous batching, prefix cache) and (v) `vllm:smollm2`, a vLLM
OpenAI-compatible server that culturesim starts from `.venv-vllm` (`make vllm`) and talks to
over HTTP, scoring exactly in token ids:

- simulation: the same dialogues as `benchmarks/simulation.py` (a): two-party built-in
  scenarios over JPN and MEX, every dialogue to its last turn, intents on, 40 new tokens a
  turn at temperature 0.7, every conversation concurrent;
- survey scoring: every WVS question answered culture-unaware and culture-aware for three
  cultures (`run_items`, as `culturesim evaluate wvs` runs it), by option log-probabilities.

The in-process engine runs first and its model is dropped before vLLM starts, so the two never
share the CPU. vLLM's start-up is timed apart from the workloads. For each workload it prints
wall seconds, the prompt tokens the engine read (its own counter: the in-process prefix cache,
vLLM's /metrics) and generated tokens per second, the prefix-cache hit rate, and
`v/a = X.XX`: vLLM's seconds over the in-process engine's for the same work (below 1: vLLM is
faster). It also prints how many survey answers' argmax agree between the engines.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulation import INTENT_TOKENS, NEW_TOKENS, TEMPERATURE, TOP_P, episodes_for

from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.models.base import GenerationParams, LanguageModel, find_in_chain
from culturesim.models.metering import MeteredModel
from culturesim.models.registry import build_model
from culturesim.records import Answer, Episode
from culturesim.scenarios.cultures import load_cultures
from culturesim.store import RunStore
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.answering import run_items
from culturesim.survey.questionnaire import load_survey_dir


@dataclass
class Measure:
    """One workload on one engine."""

    seconds: float
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    extra: str = ""

    def line(self, name: str) -> str:
        hit = self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        return (
            f"  {name:<16} {self.seconds:8.1f} s  {self.prompt_tokens / self.seconds:8.1f} "
            f"prompt tok/s  {self.generated_tokens / self.seconds:7.1f} generated tok/s  "
            f"prefix hit rate {hit:.2f}{self.extra}"
        )


def engine_counters(model: LanguageModel) -> tuple[int, int]:
    """Prompt tokens the engine read and how many came from its prefix cache."""
    cache = find_in_chain(model, "prefix_cache")
    stats = cache.stats
    return int(stats.tokens_read), int(stats.tokens_reused)


def measured(model: LanguageModel, work: Any) -> tuple[Measure, Any]:
    metered = MeteredModel(model)
    read0, reused0 = engine_counters(model)
    started = time.perf_counter()
    result = work(metered)
    seconds = time.perf_counter() - started
    time.sleep(1.0)  # vLLM's counters are published a moment after the requests return
    read1, reused1 = engine_counters(model)
    usage = metered.usage
    return Measure(seconds, read1 - read0, reused1 - reused0, usage.completion_tokens), result


def simulate(episodes: list[Episode], turns: int) -> Any:
    settings = SimulateSection(
        per_episode=1,
        concurrency=len(episodes),
        max_batch_size=len(episodes),
        intents=True,
        max_turns=turns,
        allow_leave_after=turns,
        repetition_threshold=float("inf"),
        max_new_tokens=NEW_TOKENS,
        temperature=TEMPERATURE,
        top_p=TOP_P,
    )

    def work(model: LanguageModel) -> Any:
        with tempfile.TemporaryDirectory() as folder:
            store = RunStore.open(Path(folder) / "run", {"benchmark": "engines"})
            summary = Simulator(model, store, settings).run(episodes, show_progress=False)
        if summary.failed:
            raise SystemExit(f"{len(summary.failed)} dialogues failed: {summary.failed[0]}")
        return summary

    return work


def answer(items: list[Any]) -> Any:
    def work(model: LanguageModel) -> list[Answer]:
        return run_items(model, items, show_progress=False)

    return work


def run_engine(
    spec: str, episodes: list[Episode], turns: int, items: list[Any]
) -> tuple[dict[str, Measure], list[Answer], float]:
    started = time.perf_counter()
    model = build_model(spec)
    startup = time.perf_counter() - started
    # Warm-up (allocations, the engine thread, vLLM's first batch shapes), not counted.
    run_items(model, items[:4], show_progress=False)
    model.generate(
        [[{"role": "user", "content": "Say hello."}]] * 4, GenerationParams(max_new_tokens=8)
    )
    results: dict[str, Measure] = {}
    results["simulation"], summary = measured(model, simulate(episodes, turns))
    results[
        "simulation"
    ].extra = f"  {summary.done} dialogues, mean batch {summary.mean_batch_size:.1f}"
    results["survey"], answers = measured(model, answer(items))
    results["survey"].extra = f"  {len(items) / results['survey'].seconds:.2f} prompts/s"
    close = find_in_chain(model, "close")
    if callable(close):
        close()
    del model
    gc.collect()
    return results, answers, startup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2", help="smollm2 (both engines serve it)")
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--questions", type=int, default=None, help="first N (default: all)")
    parser.add_argument("--cultures", default="USA,CHN,DEU")
    parser.add_argument(
        "--survey-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "wvs",
    )
    parser.add_argument("--vllm-options", default="", help="e.g. enforce_eager=true")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    survey = load_survey_dir(args.survey_dir)
    questions = list(survey.questions.values())[: args.questions]
    cultures = args.cultures.split(",")
    items = SurveyPrompter(load_cultures()).items(questions, ["unaware", "aware"], cultures)
    episodes = episodes_for(args.dialogues)
    vllm_spec = f"vllm:{args.model}" + (f"?{args.vllm_options}" if args.vllm_options else "")

    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}"
    )
    print(
        f"simulation: {len(episodes)} dialogues x {args.turns} turns, intents on "
        f"({NEW_TOKENS} new tokens a turn, {INTENT_TOKENS} an intent)"
    )
    print(f"survey: {len(questions)} questions x (unaware + {len(cultures)} aware) = {len(items)}")
    in_process, ours, _ = run_engine(args.model, episodes, args.turns, items)
    served, theirs, startup = run_engine(vllm_spec, episodes, args.turns, items)
    print(f"(v) {vllm_spec} started in {startup:.1f} s (not counted below)")
    for workload in ("simulation", "survey"):
        a, v = in_process[workload], served[workload]
        print(f"{workload}:")
        print(a.line("(a) in-process"))
        print(v.line("(v) vLLM"))
        print(f"  v/a = {v.seconds / a.seconds:.2f}")
    agree = sum(
        x.distribution.index(max(x.distribution)) == y.distribution.index(max(y.distribution))
        for x, y in zip(ours, theirs, strict=True)
    )
    largest = max(
        abs(p - q)
        for x, y in zip(ours, theirs, strict=True)
        for p, q in zip(x.distribution, y.distribution, strict=True)
    )
    print(f"survey argmax agreement = {agree}/{len(items)}; largest probability gap {largest:.2e}")


if __name__ == "__main__":
    main()

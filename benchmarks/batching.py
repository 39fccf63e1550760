"""Generation throughput on SmolLM2: one request at a time vs batched vs 16 threads via the Batcher.

    .venv/bin/python benchmarks/batching.py [--prompts 16] [--new-tokens 64]

Prints completion tokens/s for each way and the ratios to the sequential baseline, in one run,
so the figures compare like with like on the same machine and load.
"""

from __future__ import annotations

import argparse
import platform
import threading
import time

import torch
from transformers.utils import logging as hf_logging

from culturesim.models.base import GenerationParams
from culturesim.models.batcher import Batcher
from culturesim.models.registry import build_model
from culturesim.models.transformers_backend import TransformersModel

TOPICS = [
    "greeting a new colleague",
    "visiting a neighbour",
    "a wedding gift",
    "bargaining at a market",
    "apologising to a friend",
    "an elder at a family dinner",
    "a teacher's praise",
    "a doctor's advice",
    "a religious holiday",
    "queueing at a bus stop",
    "declining an invitation",
    "a business lunch",
    "a child's birthday",
    "a funeral",
    "moving to a new city",
    "asking for a raise",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    model = build_model("smollm2")
    assert isinstance(model, TransformersModel)
    chats = [
        [
            {
                "role": "user",
                "content": "Describe, in a few sentences, good manners around "
                f"{TOPICS[i % len(TOPICS)]}.",
            }
        ]
        for i in range(args.prompts)
    ]
    # A fixed length for every request, so all three ways produce the same number of tokens.
    params = [
        GenerationParams(max_new_tokens=args.new_tokens, temperature=0.8, seed=i)
        for i in range(len(chats))
    ]
    model.eos_token_ids = set()  # measure decode speed, not how early the model stops
    model.generate(chats[:2], params[:2])  # warm-up

    def timed(run) -> tuple[float, int]:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        tokens = run()
        return time.perf_counter() - start, tokens

    def sequential() -> int:
        return sum(
            model.generate([c], [p])[0].completion_tokens
            for c, p in zip(chats, params, strict=True)
        )

    def batched() -> int:
        return sum(c.completion_tokens for c in model.generate(chats, params))

    def via_batcher() -> int:
        counts = [0] * len(chats)
        with Batcher(model, max_batch_size=len(chats), max_wait_s=0.05) as batcher:

            def call(i: int) -> None:
                counts[i] = batcher.submit_generate(chats[i], params[i]).result().completion_tokens

            threads = [threading.Thread(target=call, args=(i,)) for i in range(len(chats))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return sum(counts)

    rows = []
    for name, run in (
        ("sequential (batch 1)", sequential),
        ("batched generate", batched),
        ("16 threads via Batcher", via_batcher),
    ):
        seconds, tokens = timed(run)
        rows.append((name, tokens, seconds, tokens / seconds))
    base = rows[0][3]
    print(
        f"SmolLM2-135M-Instruct, {args.prompts} prompts x {args.new_tokens} new tokens, "
        f"{platform.machine()} CPU, torch threads={torch.get_num_threads()}"
    )
    print(f"{'way':<26}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}{'vs sequential':>15}")
    for name, tokens, seconds, rate in rows:
        print(f"{name:<26}{tokens:>8}{seconds:>10.2f}{rate:>11.1f}{rate / base:>14.2f}x")


if __name__ == "__main__":
    main()

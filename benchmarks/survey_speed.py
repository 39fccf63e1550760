"""Survey scoring speed: culturesim's evaluator against a naive scorer, on the same prompts.

    .venv/bin/python benchmarks/survey_speed.py [--survey-dir ../shared/data/wvs] [--questions N]
        [--model smollm2|MODEL_DIR]

Both answer every WVS question culture-unaware and culture-aware for three cultures (259 x 4
prompts by default) on SmolLM2-135M (or `--model`), with the same chat prompts and the same
answer prefill.

- culturesim: `run_items`, as `culturesim evaluate wvs` runs it.
- naive: written here as a peer would write it: the prompts in their order, padded batches of 32,
  one forward pass, the label log-probabilities read from the last position; for a label of two
  tokens ("10"), a second padded pass over the prompt plus its first token, so both are exact.

Prints prompts/s for each, `speedup = X.XX` (culturesim / naive) and how many argmax answers
agree (they must all agree: both are exact log-probabilities).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from culturesim.models.registry import build_model
from culturesim.models.transformers_backend import TransformersModel
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import (
    DEFAULT_ANSWER_PREFIX,
    SurveyItem,
    SurveyPrompter,
    label_distribution,
)
from culturesim.survey.answering import run_items
from culturesim.survey.questionnaire import load_survey_dir


def naive_scores(
    model: TransformersModel, items: Sequence[SurveyItem], batch: int
) -> list[list[float]]:
    """Log P(label) for every label of every item, the straightforward way."""
    tokenizer, network = model.tokenizer, model.model
    tokenizer.padding_side = "left"

    def ids_of(item: SurveyItem) -> list[int]:
        chat = [*item.chat, {"role": "assistant", "content": DEFAULT_ANSWER_PREFIX}]
        text = tokenizer.apply_chat_template(chat, continue_final_message=True, tokenize=False)
        return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])

    def last_logprobs(rows: list[list[int]]) -> torch.Tensor:
        encoded = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(network.device)
        with torch.inference_mode():
            logits = network(**encoded).logits[:, -1, :]
        return torch.log_softmax(logits.float(), dim=-1)

    results: list[list[float]] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        prompts = [ids_of(item) for item in chunk]
        first = last_logprobs(prompts)
        labels = [
            [tokenizer.encode(str(c), add_special_tokens=False) for c in item.question.codes]
            for item in chunk
        ]
        # Labels of two tokens: one more padded pass over prompt + first token.
        longer = [(i, ids) for i, options in enumerate(labels) for ids in options if len(ids) == 2]
        seconds: dict[tuple[int, int], float] = {}
        for at in range(0, len(longer), batch):
            part = longer[at : at + batch]
            rows = last_logprobs([prompts[i] + ids[:1] for i, ids in part])
            for row, (i, ids) in enumerate(part):
                seconds[(i, ids[0])] = float(rows[row, ids[1]])
        for i, options in enumerate(labels):
            scores = []
            for ids in options:
                if len(ids) > 2:
                    raise SystemExit("labels of more than two tokens are not in the WVS set")
                value = float(first[i, ids[0]])
                scores.append(value + seconds[(i, ids[0])] if len(ids) == 2 else value)
            results.append(scores)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--survey-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "wvs",
    )
    parser.add_argument("--model", default="smollm2", help="smollm2 or a local model directory")
    parser.add_argument("--questions", type=int, default=None, help="first N (default: all)")
    parser.add_argument("--cultures", default="USA,CHN,DEU")
    parser.add_argument("--batch-size", type=int, default=32, help="the naive scorer's batch")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    survey = load_survey_dir(args.survey_dir)
    questions = list(survey.questions.values())[: args.questions]
    cultures = args.cultures.split(",")
    items = SurveyPrompter(load_cultures()).items(questions, ["unaware", "aware"], cultures)
    model = build_model(args.model)
    assert isinstance(model, TransformersModel)
    torch.manual_seed(0)
    run_items(model, items[:4], show_progress=False)  # warm-up, both paths
    naive_scores(model, items[:4], args.batch_size)

    start = time.perf_counter()
    naive = naive_scores(model, items, args.batch_size)
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = run_items(model, items, show_progress=False)
    ours_s = time.perf_counter() - start

    agree = 0
    for item, answer, scores in zip(items, ours, naive, strict=True):
        labels = [str(c) for c in item.question.codes]
        reference, _ = label_distribution(labels, scores)
        mine = list(answer.distribution)
        agree += mine.index(max(mine)) == reference.index(max(reference))
    print(f"prompts: {len(items)} ({len(questions)} questions x unaware + {len(cultures)} aware)")
    print(f"naive      : {naive_s:8.1f} s  {len(items) / naive_s:6.2f} prompts/s")
    print(f"culturesim : {ours_s:8.1f} s  {len(items) / ours_s:6.2f} prompts/s")
    print(f"argmax agreement = {agree}/{len(items)}")
    print(f"speedup = {naive_s / ours_s:.2f}")


if __name__ == "__main__":
    main()

"""Log-probability mode vs the paper's sampled mode, on the same survey questions, with SmolLM2.

    .venv/bin/python benchmarks/survey_modes.py [--survey-dir ../shared/data/wvs] [--questions 60]

Both modes use the same batched backend and the same culture-unaware prompts. The sampled mode
is CultureSPA's protocol (temperature 0.6, top-p 0.9, one sample, parsed); the log-probability
mode is one scoring pass over the option labels. Prints seconds, prompts/s, the speed ratio,
the sampled mode's invalid rate, and how often the two modes pick the same option.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from transformers.utils import logging as hf_logging

from culturesim.models.registry import build_model
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import SurveyPrompter, answer_logprob, answer_sampled
from culturesim.survey.distributions import answer_code
from culturesim.survey.questionnaire import load_survey_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--survey-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "wvs",
    )
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    survey = load_survey_dir(args.survey_dir)
    questions = list(survey.questions.values())[: args.questions]
    items = SurveyPrompter(load_cultures()).items(questions, ["unaware"], [])
    model = build_model("smollm2")
    answer_logprob(model, items[:4])  # warm-up

    def run(mode: str) -> tuple[float, list]:  # type: ignore[type-arg]
        start = time.perf_counter()
        answers = []
        for i in range(0, len(items), args.batch_size):
            chunk = items[i : i + args.batch_size]
            answers += (
                answer_logprob(model, chunk)
                if mode == "logprob"
                else answer_sampled(model, chunk, max_new_tokens=32)
            )
        return time.perf_counter() - start, answers

    lp_seconds, lp = run("logprob")
    sm_seconds, sm = run("sample")
    lp_codes = [answer_code(a, q) for a, q in zip(lp, questions, strict=True)]
    sm_codes = [answer_code(a, q) for a, q in zip(sm, questions, strict=True)]
    invalid = sum(c is None for c in sm_codes) / len(sm_codes)
    agree = sum(a == b for a, b in zip(lp_codes, sm_codes, strict=True) if b is not None) / max(
        1, sum(b is not None for b in sm_codes)
    )
    print(
        f"SmolLM2-135M-Instruct, {len(items)} survey prompts (culture-unaware), batch {args.batch_size}, CPU"
    )
    print(f"{'mode':<34}{'seconds':>9}{'prompts/s':>11}{'invalid':>9}")
    print(
        f"{'log-probabilities (ours)':<34}{lp_seconds:>9.1f}{len(items) / lp_seconds:>11.2f}{0.0:>9.1%}"
    )
    print(
        f"{'sampled, parsed (paper protocol)':<34}{sm_seconds:>9.1f}{len(items) / sm_seconds:>11.2f}{invalid:>9.1%}"
    )
    print(f"speed-up of log-probabilities over sampling: {sm_seconds / lp_seconds:.2f}x")
    print(f"same option chosen (where the sample parsed): {agree:.1%}")


if __name__ == "__main__":
    main()

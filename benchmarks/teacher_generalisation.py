"""Does culture-conditioned survey knowledge generalise across questions in a small model?

    .venv/bin/python benchmarks/teacher_generalisation.py --stride 3 --epochs 3 --lr 3e-3
    .venv/bin/python benchmarks/teacher_generalisation.py --stride 26 --epochs 20 --lr 3e-3

Fits the positive control's survey teacher (`training/soft_fit.py`, soft targets from
answer shares) on every `stride`-th question of the seen half of a seed-0 split, for six
culturally distant countries, then scores it culture-aware on those seen questions and on
every `stride`-th held-out question. Prints, for each, CultureSPA, Jensen-Shannon distance and
the discrimination margin (mean over cultures, 95% bootstrap intervals over questions; see
`evaluation/control.py`), and the base model's figures beside them.

It is the fast way to try a teacher recipe before the hour-long `examples/loop-control.yaml`:
a teacher whose discrimination on *seen* questions is about 0 has not learnt to condition on
culture at all, and one that discriminates on seen but not held-out questions has memorised.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from culturesim.evaluation.control import compare_models
from culturesim.models.smollm2 import SMOLLM2_ID, ensure_converted
from culturesim.models.transformers_backend import TransformersModel
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import SurveyPrompter, answer_logprob
from culturesim.survey.questionnaire import load_survey_dir
from culturesim.survey.split import split_survey
from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, topic_namer
from culturesim.training.soft_fit import SoftFitConfig, fit_soft_targets
from culturesim.training.soft_rows import build_rows

CULTURES = "USA,NGA,CHN,NLD,IND,RUS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey-dir", default="../shared/data/wvs")
    parser.add_argument("--cultures", default=CULTURES)
    parser.add_argument("--stride", type=int, default=3, help="every Nth question of each half")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lora-layers", type=int, default=8, help="0: all layers")
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()

    survey = load_survey_dir(args.survey_dir)
    split = split_survey(
        list(survey.questions.values()), topic_namer(load_topics(BUILTIN_TOPICS)), 0
    )
    seen = split["seen"][:: args.stride]
    held = [q["id"] for q in split["held_out"]][:: args.stride]
    cultures = args.cultures.split(",")
    prompter = SurveyPrompter(load_cultures())
    base_dir = Path(ensure_converted())
    rows = build_rows(
        AutoTokenizer.from_pretrained(base_dir), survey, seen, cultures, prompter, "The answer is "
    )
    config = SoftFitConfig(
        epochs=args.epochs,
        learning_rate=args.lr,
        lora_layers=args.lora_layers or None,
        lora_r=args.lora_r,
        save_steps=10**9,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = fit_soft_targets(base_dir, rows, Path(folder), config, show_progress=False)
        print(
            f"teacher: {len(rows)} rows ({len(seen)} seen questions x {len(cultures)} cultures), "
            f"{result.steps} steps, {time.perf_counter() - started:.0f} s, loss "
            f"{result.first_loss:.3f} -> {result.last_loss:.3f}"
        )
        models = {
            "base": TransformersModel.from_pretrained(base_dir, model_id=SMOLLM2_ID),
            "teacher": TransformersModel.from_pretrained(base_dir, adapter=result.adapter),
        }
        for half, questions in (("seen", seen), ("held-out", held)):
            subset = survey.subset(questions)
            items = prompter.items([subset.questions[q] for q in questions], ["aware"], cultures)
            answers = {name: answer_logprob(model, items) for name, model in models.items()}
            comparison = compare_models(subset, answers, cultures, resamples=1000)
            for name, row in comparison["variants"].items():
                cells = "  ".join(
                    f"{metric} {v['value']:.4f} [{v['low']:.4f}, {v['high']:.4f}]"
                    for metric, v in row.items()
                )
                print(f"{half:8} ({len(questions):3} questions) {name:8} {cells}")


if __name__ == "__main__":
    main()

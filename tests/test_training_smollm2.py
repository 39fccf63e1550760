"""Training on the real SmolLM2: SFT and DPO on built corpora, and a planted pattern learned."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from culturesim.models.smollm2 import SMOLLM2_ID, ensure_converted
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Culture
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.questionnaire import SurveyQuestion
from culturesim.training.corpus import Row, split_by_culture, write_set
from culturesim.training.presets import make_config
from culturesim.training.trainer import train_adapter

pytestmark = pytest.mark.slow  # the real embedded model; still part of make test

ACTIVITIES = [
    "cooking for guests",
    "singing in public",
    "long walks",
    "early mornings",
    "board games",
    "watching football",
    "gardening",
    "crowded markets",
    "reading poetry",
    "dancing at weddings",
    "swimming in the sea",
    "visiting museums",
    "camping",
    "haggling over prices",
    "public speaking",
    "spicy food",
    "karaoke nights",
    "fishing",
    "sending letters",
    "riding trains",
    "baking bread",
    "playing chess",
    "hiking in hills",
    "street festivals",
    # held out from training:
    "painting",
    "cycling to work",
    "opera",
    "quiz shows",
    "yoga",
    "birdwatching",
    "card games",
    "visiting zoos",
]
OPTIONS = ("Very much", "Somewhat", "Not much", "Not at all")
PLANTED = 4  # Zemlandians always answer "Not at all" for this family of questions


def zemlandia() -> dict[str, Culture]:
    cultures = load_cultures()
    cultures["ZEM"] = Culture(code="ZEM", name="Zemlandia", demonym="Zemlandian")
    return cultures


def question(activity: str, index: int) -> SurveyQuestion:
    return SurveyQuestion(f"z{index}", f"How much do you enjoy {activity}?", OPTIONS, 1, "leisure")


def planted_share(
    model: TransformersModel, prompter: SurveyPrompter, held_out: list[str]
) -> np.ndarray:
    """P(planted label) among the four labels, per held-out question (aware ZEM prompt)."""
    chats = [
        [
            {"role": "system", "content": prompter.system_prompt("aware", "ZEM")},
            {"role": "user", "content": prompter.user_prompt(question(a, 100 + i))},
        ]
        for i, a in enumerate(held_out)
    ]
    logprobs = np.array(model.score(chats, [[str(k) for k in range(1, 5)]] * len(chats)))
    probabilities = np.exp(logprobs - logprobs.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[:, PLANTED - 1]


def test_sft_on_a_planted_pattern_moves_option_probabilities(
    smollm2: TransformersModel, tmp_path: Path
) -> None:
    prompter = SurveyPrompter(zemlandia())
    train, held_out = ACTIVITIES[:24], ACTIVITIES[24:]
    rows = [
        Row(
            "culturespa",
            "ZEM",
            "culturespa",
            [f"planted-{i}"],
            [
                {"role": "system", "content": prompter.system_prompt("aware", "ZEM")},
                {"role": "user", "content": prompter.user_prompt(question(a, i))},
                {"role": "assistant", "content": str(PLANTED)},
            ],
        )
        for i, a in enumerate(train)
    ]
    write_set("planted", split_by_culture(rows, 0.0, 0), tmp_path / "corpus")
    before = planted_share(smollm2, prompter, held_out)
    config = make_config(
        max_steps=8,  # a third of the 24 training questions seen twice, the rest once
        per_device_batch_size=4,
        effective_batch_size=4,
        learning_rate=2e-3,
        lora_r=8,
        max_length=384,
        warmup_ratio=0.0,
    )
    result = train_adapter(
        "smollm2", tmp_path / "corpus" / "planted", tmp_path / "run", config, show_progress=False
    )
    tuned = TransformersModel.from_pretrained(
        ensure_converted(), model_id=SMOLLM2_ID, adapter=result.adapter
    )
    after = planted_share(tuned, prompter, held_out)
    print(
        f"P(planted option) on held-out questions: before {before.mean():.3f}, after {after.mean():.3f}"
    )
    assert after.mean() > before.mean() + 0.3
    assert (after > before).all(), "every held-out question moves toward the planted answer"


def test_sft_and_dpo_run_on_smollm2_with_built_corpora(corpus_dir: Path, tmp_path: Path) -> None:
    sft = train_adapter(
        "smollm2",
        corpus_dir / "clca",
        tmp_path / "sft",
        make_config(max_steps=2, per_device_batch_size=2, effective_batch_size=2, max_length=768),
        show_progress=False,
    )
    assert sft.steps == 2 and math.isfinite(sft.train_loss)
    dpo = train_adapter(
        "smollm2",
        corpus_dir / "dpo",
        tmp_path / "dpo",
        make_config(
            method="dpo",
            max_steps=2,
            per_device_batch_size=1,
            effective_batch_size=1,
            max_length=512,
        ),
        show_progress=False,
    )
    assert dpo.steps == 2 and math.isfinite(dpo.train_loss)
    assert (dpo.adapter / "adapter_model.safetensors").exists()

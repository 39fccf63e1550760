"""Batched token choice: each row's token depends on its own logits, settings and generator."""

from __future__ import annotations

import pytest
import torch

from culturesim.models.base import GenerationParams
from culturesim.models.sampling import NUCLEUS_START, choose_tokens


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_rows_sample_does_not_depend_on_its_batch_mates() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 1000) * 3
    settings = [GenerationParams(temperature=0.8, top_p=0.9, seed=s) for s in range(5)]
    together = choose_tokens(logits, settings, [generator(s) for s in range(5)])
    alone = [choose_tokens(logits[i : i + 1], [settings[i]], [generator(i)])[0] for i in range(5)]
    assert together == alone
    # A different batch-mate (greedy, other logits) leaves row 0's draw as it was.
    mixed = choose_tokens(
        torch.stack([logits[0], torch.randn(1000)]),
        [settings[0], GenerationParams(temperature=0.0)],
        [generator(0), None],
    )
    assert mixed[0] == together[0]


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 0.0]])
    assert choose_tokens(logits, [GenerationParams(temperature=0.0)] * 2, [None, None]) == [1, 0]


def test_samples_stay_inside_the_nucleus_and_follow_its_distribution() -> None:
    # Four tokens hold 0.4, 0.3, 0.2, 0.1: top-p 0.6 keeps the first two (the mass before the
    # second is 0.4 < 0.6; before the third it is 0.7), renormalised to 4/7 and 3/7.
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1] + [0.0] * 996)
    logits = torch.log(probs.clamp(min=1e-30))[None, :]
    params = GenerationParams(temperature=1.0, top_p=0.6)
    rng = generator(7)
    draws = [choose_tokens(logits, [params], [rng])[0] for _ in range(4000)]
    assert set(draws) == {0, 1}
    assert draws.count(0) / len(draws) == pytest.approx(4 / 7, abs=0.03)


def test_a_nucleus_wider_than_the_first_look_is_found_whole() -> None:
    # A flat distribution: top-p 0.5 needs half the vocabulary, far beyond the first topk.
    vocabulary = 4 * NUCLEUS_START * 2
    logits = torch.zeros(1, vocabulary)
    params = GenerationParams(temperature=1.0, top_p=0.5)
    rng = generator(3)
    draws = [choose_tokens(logits, [params], [rng])[0] for _ in range(300)]
    assert len(set(draws)) > NUCLEUS_START  # drawn from well beyond the first 256 tokens
    # top-p 1 samples from the whole vocabulary
    full = GenerationParams(temperature=1.0, top_p=1.0)
    assert len({choose_tokens(logits, [full], [rng])[0] for _ in range(300)}) > 250

"""The loss of a soft-target row: the expected negative log-likelihood of a label drawn from
the row's distribution, over a label tree of one or two tokens (see `soft_rows`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from culturesim.training.soft_rows import SoftRow


def soft_label_loss(logits: Any, rows: Sequence[SoftRow]) -> Any:
    """Mean over rows of the expected NLL of a share-drawn label.

    `logits` are the last two positions of left-padded rows, shape (batch, 2, vocab): a row
    with a branch reads its first-token distribution at position 0 and its continuation at 1;
    a row without one reads position 1 only.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    losses = []
    for i, row in enumerate(rows):
        first_at = 0 if row.has_branch else 1
        first_ids = torch.tensor(row.first_ids, device=logp.device)
        first_t = torch.tensor(row.first_probs, device=logp.device, dtype=logp.dtype)
        loss = -(first_t * logp[i, first_at, first_ids]).sum()
        if row.has_branch:
            second_ids = torch.tensor(row.second_ids, device=logp.device)
            second_t = torch.tensor(row.second_probs, device=logp.device, dtype=logp.dtype)
            cont = logp[i, 1, second_ids]
            stop_logp = torch.log(torch.clamp(1.0 - cont.exp().sum(), min=1e-6))
            branch_loss = -(second_t * cont).sum() - row.stop_prob * stop_logp
            loss = loss + row.branch_weight * branch_loss
        losses.append(loss)
    return torch.stack(losses).mean()

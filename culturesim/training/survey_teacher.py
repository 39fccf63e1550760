"""A culture-knowing teacher: a LoRA adapter fitted to survey answer shares.

Why it exists: a positive control needs a model that knows how each culture answers, so that
the loop has a real signal to carry from the probe to a student. The teacher learns it from
the survey's seen half only and is measured on the held-out half.

Rows and targets. One row per (culture, seen question): the culture-aware survey prompt with
the evaluation's answer prefix ("The answer is "), encoded exactly as scoring encodes it. The
target is the country's answer shares (renormalised over the question's options), used as
soft targets: the loss is the expected negative log-likelihood of a respondent's answer drawn
from the shares, which is what infinitely many sampled targets per question would give, for
the price of one forward row.

Labels are scored as complete answers (see `label_distribution`), so a label that is a prefix
of others ("1" before "10") is a small tree: the first token is trained towards the shares
summed by first token, and, after the branching token, the next token towards the longer
labels' conditional shares, with the rest of the mass on "anything else" (the label ends).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from culturesim.models.base import Chat
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.questionnaire import Survey


class TeacherError(ValueError):
    """The teacher cannot be built from this survey; the message says why."""


@dataclass(frozen=True)
class SoftRow:
    """One training row: tokens in, label-token targets out."""

    culture: str
    question_id: str
    input_ids: tuple[int, ...]
    first_ids: tuple[int, ...]
    first_probs: tuple[float, ...]
    # After the branching first token (appended to input_ids): continuation targets, and the
    # conditional probability that the label ends there.
    branch_weight: float = 0.0
    second_ids: tuple[int, ...] = ()
    second_probs: tuple[float, ...] = ()
    stop_prob: float = 0.0

    @property
    def has_branch(self) -> bool:
        return bool(self.second_ids)


def label_tree_targets(
    label_ids: Sequence[Sequence[int]], shares: Sequence[float]
) -> tuple[dict[int, float], int | None, dict[int, float], float]:
    """(first-token targets, branching token, continuation targets, stop probability).

    Raises TeacherError for label sets the two-level tree cannot express (labels of three or
    more tokens, or two different branching first tokens)."""
    first: dict[int, float] = {}
    for ids, share in zip(label_ids, shares, strict=True):
        if not 1 <= len(ids) <= 2:
            raise TeacherError(f"a label of {len(ids)} tokens; labels of 1 or 2 tokens only")
        first[ids[0]] = first.get(ids[0], 0.0) + float(share)
    branching = {ids[0] for ids in label_ids if len(ids) == 2}
    if len(branching) > 1:
        raise TeacherError("labels branch after more than one first token")
    if not branching:
        return first, None, {}, 0.0
    branch = branching.pop()
    reach = first[branch]
    second: dict[int, float] = {}
    stop = 0.0
    for ids, share in zip(label_ids, shares, strict=True):
        if ids[0] != branch:
            continue
        if len(ids) == 2:
            second[ids[1]] = second.get(ids[1], 0.0) + (share / reach if reach > 0 else 0.0)
        else:
            stop += share / reach if reach > 0 else 0.0
    return first, branch, second, stop


def soft_row(
    tokenizer: Any,
    culture: str,
    question_id: str,
    chat: Chat,
    labels: Sequence[Sequence[int]],
    shares: Sequence[float],
) -> SoftRow:
    """One row: `chat` encoded as scoring encodes it (a last assistant message is the answer
    prefill), and the label tree's targets from `shares` over the label token ids."""
    from culturesim.models.transformers_backend import encode_prompt_with

    try:
        first, branch, second, stop = label_tree_targets(labels, list(shares))
    except TeacherError as error:
        raise TeacherError(f"question {question_id}: {error}") from error
    ids = encode_prompt_with(tokenizer, chat)
    return SoftRow(
        culture=culture,
        question_id=question_id,
        input_ids=tuple(ids + ([branch] if branch is not None else [])),
        first_ids=tuple(first),
        first_probs=tuple(first.values()),
        branch_weight=first[branch] if branch is not None else 0.0,
        second_ids=tuple(second),
        second_probs=tuple(second.values()),
        stop_prob=stop,
    )


def build_rows(
    tokenizer: Any,
    survey: Survey,
    question_ids: Sequence[str],
    cultures: Sequence[str],
    prompter: SurveyPrompter,
    answer_prefix: str,
) -> list[SoftRow]:
    """A row for every (culture, question) the survey has shares for."""
    from culturesim.models.transformers_backend import encode_candidate_with

    rows = []
    label_cache: dict[str, list[list[int]]] = {}
    for culture in cultures:
        system = prompter.system_prompt("aware", culture)
        for qid in question_ids:
            shares = survey.distribution(culture, qid)
            if shares is None:
                continue
            question = survey.questions[qid]
            chat: Chat = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompter.user_prompt(question)},
                {"role": "assistant", "content": answer_prefix},
            ]
            if not answer_prefix:
                chat = chat[:2]
            labels = label_cache.setdefault(
                qid, [encode_candidate_with(tokenizer, str(c)) for c in question.codes]
            )
            rows.append(soft_row(tokenizer, culture, qid, chat, labels, list(shares)))
    return rows


def rows_from_corpus(tokenizer: Any, records: Sequence[dict[str, Any]]) -> list[SoftRow]:
    """Rows of a soft-target corpus set (`culturespa_soft`): each record's `messages` (system,
    user and the answer prefill) and its `target` (option codes and their probabilities)."""
    from culturesim.models.transformers_backend import encode_candidate_with

    rows = []
    label_cache: dict[tuple[str, ...], list[list[int]]] = {}
    for record in records:
        target = record.get("target")
        if not target or not target.get("codes"):
            raise TeacherError(
                f"corpus row {record.get('id', '?')} has no soft target; distillation trains "
                "on a set built with `corpus.targets: soft` (culturespa_soft)"
            )
        codes = tuple(str(c) for c in target["codes"])
        labels = label_cache.setdefault(codes, [encode_candidate_with(tokenizer, c) for c in codes])
        chat: Chat = [
            {"role": m["role"], "content": m["content"]}
            for m in record["messages"]
            if m["role"] != "assistant" or m["content"]
        ]
        rows.append(
            soft_row(
                tokenizer,
                str(record["culture"]),
                str(target.get("question_id", "")),
                chat,
                labels,
                [float(x) for x in target["distribution"]],
            )
        )
    return rows


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


@dataclass(frozen=True)
class TeacherConfig:
    """How the adapter is fitted; `lora_layers` adapts only the top N layers, which also keeps
    the backward pass out of the layers below (the main cost on a CPU)."""

    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    batch_size: int = 8
    lora_r: int = 16
    lora_layers: int | None = 10
    save_steps: int = 25
    seed: int = 0


@dataclass
class TeacherResult:
    adapter: Path
    rows: int
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens_per_second: float
    losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None


def _batches(rows: Sequence[SoftRow], config: TeacherConfig) -> list[list[SoftRow]]:
    """The whole schedule of mini-batches, fixed by the seed so a resumed run continues it."""
    epochs = max(1, math.ceil(config.epochs))
    order: list[SoftRow] = []
    rng = random.Random(config.seed)
    for _ in range(epochs):
        shuffled = list(rows)
        rng.shuffle(shuffled)
        order += shuffled
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or max(1, round(per_epoch * config.epochs))
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    while len(batches) < total:  # max_steps past the epochs given: keep cycling
        batches += batches[: total - len(batches)]
    return batches[:total]


def _left_pad(rows: Sequence[SoftRow], pad_id: int) -> tuple[Any, Any, Any]:
    """Ids, mask and positions of left-padded rows (their last two tokens line up)."""
    from culturesim.models.transformers_backend import left_pad

    ids, mask = left_pad([r.input_ids for r in rows], pad_id)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _mean_loss(model: Any, rows: Sequence[SoftRow], pad_id: int, batch_size: int) -> float:
    """The soft-label loss over `rows` without gradients, weighted by batch size."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            ids, mask, positions = _left_pad(batch, pad_id)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=2
            ).logits
            total += float(soft_label_loss(logits, batch)) * len(batch)
    model.train()
    return total / len(rows)


def _linear_module_names(model: Any) -> list[str]:
    """The linear layers inside the decoder blocks (PEFT wants names, not "all-linear", when
    only some layers are adapted)."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    return sorted(names)


def train_teacher(
    base_dir: Path,
    rows: Sequence[SoftRow],
    out: Path,
    config: TeacherConfig,
    *,
    lineage: dict[str, Any] | None = None,
    validation: Sequence[SoftRow] = (),
    name: str = "teacher",
    kind: str = "survey teacher (soft targets from answer shares)",
    show_progress: bool = True,
    console: Any = None,
) -> TeacherResult:
    """Fit the adapter; checkpoints every `save_steps` under `out/checkpoint`, and a rerun
    continues from the last one on the same schedule. The same fit distils a student from a
    teacher's answer distributions (`name` and `kind` label its progress and adapter); with
    `validation` rows, their mean loss after training is `eval_loss`."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    if not rows:
        raise TeacherError(f"{name}: no (culture, question) row to learn from")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    layers = int(model.config.num_hidden_layers)
    top = min(config.lora_layers or layers, layers)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=2 * config.lora_r,
        lora_dropout=0.0,
        target_modules=_linear_module_names(model),
        layers_to_transform=list(range(layers - top, layers)),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    batches = _batches(rows, config)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    schedule = get_cosine_schedule_with_warmup(
        optimizer, max(1, round(config.warmup_ratio * len(batches))), len(batches)
    )
    checkpoint = out / "checkpoint"
    step = 0
    losses: list[float] = []
    if (checkpoint / "state.pt").exists():
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses = int(state["step"]), list(state["losses"])
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    started = time.perf_counter()
    tokens = 0
    progress = Progress(
        TextColumn(name),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
        console=console,
    )
    with progress:
        task = progress.add_task(name, total=len(batches), completed=step, info="")
        while step < len(batches):
            batch = batches[step]
            ids, mask, positions = _left_pad(batch, pad_id)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=2
            ).logits
            loss = soft_label_loss(logits, batch)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            losses.append(float(loss.detach()))
            tokens += int(mask.sum())
            rate = tokens / max(time.perf_counter() - started, 1e-9)
            with metrics.open("a") as handle:
                handle.write(json.dumps({"step": step, "loss": round(losses[-1], 5)}) + "\n")
            progress.update(task, completed=step, info=f"loss {losses[-1]:.3f} · {rate:.0f} tok/s")
            if step % config.save_steps == 0 and step < len(batches):
                staging = out / "checkpoint.tmp"
                staging.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {
                        "adapter": get_peft_model_state_dict(model),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "step": step,
                        "losses": losses,
                    },
                    staging / "state.pt",
                )
                if checkpoint.exists():
                    (checkpoint / "state.pt").unlink()
                    checkpoint.rmdir()
                staging.rename(checkpoint)
    seconds = time.perf_counter() - started
    eval_loss = _mean_loss(model, validation, pad_id, config.batch_size) if validation else None
    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    window = max(1, len(losses) // 10)
    result = TeacherResult(
        adapter=adapter_dir,
        rows=len(rows),
        steps=step,
        first_loss=float(np.mean(losses[:window])),
        last_loss=float(np.mean(losses[-window:])),
        seconds=seconds,
        tokens_per_second=tokens / max(seconds, 1e-9),
        losses=losses,
        eval_loss=eval_loss,
    )
    (adapter_dir / "culturesim_adapter.json").write_text(
        json.dumps(
            {
                **(lineage or {}),
                "kind": kind,
                "rows": len(rows),
                "steps": step,
                "config": config.__dict__,
                "first_loss": result.first_loss,
                "last_loss": result.last_loss,
                "eval_loss": eval_loss,
            },
            indent=2,
        )
        + "\n"
    )
    return result

"""LoRA SFT throughput, padded batches against padding-free packing, and one DPO step.

    python benchmarks/gpu/train_padding.py --base MODEL_DIR --set CORPUS_SET [--dpo-set SET]

Both SFT runs go through `culturesim.training.trainer.train_adapter`, as `culturesim train`
does, on the same rows of a set built by `culturesim corpus`, for the same epochs:

- padded: batches of `--batch-rows` rows, each padded to the longest in its batch;
- packed: `--packing` (TRL's best-fit-decreasing packing into `--max-length` tokens,
  padding-free: one flat sequence per batch with position ids, so no pad token is computed),
  with as many packed sequences a batch as carry about the same real tokens as a padded batch.

Tokens/s counts real tokens only (the rows' token counts after truncation, times the epochs)
over the optimisation loop's seconds (`train_runtime`: no loading, tokenising or evaluation).
Prints each run's tokens/s and peak GPU memory, then `packed/padded = X.XX`.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from culturesim.training.presets import make_config
from culturesim.training.tokenize import tokenize_chat
from culturesim.training.trainer import load_rows, train_adapter


def real_tokens(base: Path, set_dir: Path, max_length: int) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = load_rows(set_dir, "train")
    return [len(tokenize_chat(tokenizer, r["messages"], max_length)["input_ids"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--set", type=Path, required=True, help="an SFT set of `culturesim corpus`")
    parser.add_argument("--dpo-set", type=Path, default=None)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-rows", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=2048)
    args = parser.parse_args()

    lengths = real_tokens(args.base, args.set, args.max_length)
    mean = sum(lengths) / len(lengths)
    packed_batch = max(1, round(args.batch_rows * mean / args.max_length))
    print(
        f"{args.set}: {len(lengths)} rows, {sum(lengths)} tokens (mean {mean:.0f}, max "
        f"{max(lengths)}); {args.epochs:g} epochs; padded batches of {args.batch_rows} rows, "
        f"packed batches of {packed_batch} x {args.max_length} tokens",
        flush=True,
    )
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, packing, batch in (
            ("padded", False, args.batch_rows),
            ("packed", True, packed_batch),
        ):
            config = make_config(
                "default",
                per_device_batch_size=batch,
                effective_batch_size=batch,
                max_length=args.max_length,
                epochs=args.epochs,
                packing=packing,
                logging_steps=10,
                save_steps=10**6,
            )
            result = train_adapter(
                str(args.base), args.set, Path(scratch) / name, config, show_progress=False
            )
            rates[name] = args.epochs * sum(lengths) / result.train_seconds
            memory = result.peak_memory_gb if result.peak_memory_gb is not None else math.nan
            print(
                f"{name}: {result.steps} steps, {result.train_seconds:.1f} s, "
                f"{rates[name]:,.0f} tokens/s, peak memory {memory:.1f} GiB, "
                f"loss {result.train_loss:.3f}",
                flush=True,
            )
        print(f"packed/padded = {rates['packed'] / rates['padded']:.2f}", flush=True)
        if args.dpo_set is not None:
            config = make_config(
                "default",
                method="dpo",
                max_steps=1,
                per_device_batch_size=4,
                effective_batch_size=4,
                max_length=args.max_length,
                save_steps=10**6,
            )
            result = train_adapter(
                str(args.base), args.dpo_set, Path(scratch) / "dpo", config, show_progress=False
            )
            memory = result.peak_memory_gb if result.peak_memory_gb is not None else math.nan
            print(
                f"dpo: {result.steps} step of 4 pairs, {result.train_seconds:.1f} s, peak memory "
                f"{memory:.1f} GiB, loss {result.train_loss:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

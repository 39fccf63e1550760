"""Write a randomly initialised Llama of a real architecture, with the SmolLM2 tokenizer.

    python benchmarks/gpu/random_model.py --arch llama3-8b --tokenizer DIR --out DIR

The GPU machines have no weights and no network, so GPU throughput is measured on models of the
right shape with random weights: the speed of a matrix product does not depend on its values.
The vocabulary is the SmolLM2 tokenizer's (49,152), so every culturesim prompt tokenises as it
does on the embedded model; only the embedding and output layers are smaller than Llama 3's
128,256 rows. `tiny` is a 2-layer model for checking the scripts on a CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ARCHITECTURES: dict[str, dict[str, object]] = {
    # Meta-Llama-3-8B's config.json, apart from the vocabulary.
    "llama3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rope_theta=500000.0,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    # Llama-3.2-1B's config.json, apart from the vocabulary and RoPE scaling.
    "llama3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        rope_theta=500000.0,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
}


def write_random_model(arch: str, tokenizer_dir: Path, out: Path, seed: int = 0) -> int:
    """Save the model and tokenizer to `out`; returns the parameter count."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **ARCHITECTURES[arch],  # type: ignore[arg-type]
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    count = write_random_model(args.arch, args.tokenizer, args.out)
    seconds = time.perf_counter() - started
    print(f"{args.arch}: {count / 1e9:.2f}B parameters written to {args.out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()

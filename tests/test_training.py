"""Training: LoRA SFT and DPO with TRL on corpora from the corpus builder, on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.models.transformers_backend import TransformersModel
from culturesim.training.presets import make_config
from culturesim.training.tokenize import IGNORE, tokenize_chat
from culturesim.training.trainer import train_adapter

runner = CliRunner()


def test_labels_cover_assistant_tokens_only(tiny_tokenizer: object) -> None:
    chat = [
        {"role": "system", "content": "You are Kenji."},
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Good evening."},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks."},
    ]
    row = tokenize_chat(tiny_tokenizer, chat, 512)  # type: ignore[arg-type]
    trained = [
        t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE
    ]
    text = tiny_tokenizer.decode(trained)  # type: ignore[attr-defined]
    assert "Good evening." in text and "Fine, thanks." in text
    assert "Hello there" not in text and "Kenji" not in text and "How are you" not in text
    assert text.count("<|end|>") == 2, "the end-of-turn token is learned, so the model stops"


def test_sft_on_a_tiny_llama_saves_an_adapter_that_changes_outputs(
    tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    config = make_config(
        max_steps=4,
        per_device_batch_size=2,
        effective_batch_size=2,
        learning_rate=5e-2,
        max_length=512,
        save_steps=2,
    )
    result = train_adapter(
        str(tiny_model_dir),
        corpus_dir / "culturespa_joint",
        tmp_path / "sft",
        config,
        show_progress=False,
    )
    assert result.steps == 4 and math.isfinite(result.train_loss)
    lineage = json.loads((result.adapter / "culturesim_adapter.json").read_text())
    assert lineage["corpus_set"] == str(corpus_dir / "culturespa_joint")
    assert lineage["corpus_summary"]["sets"]["culturespa_joint"]["train"] >= 1
    assert lineage["config"]["lora_r"] == 16 and lineage["config"]["target_modules"] == "all-linear"
    metrics = [
        json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in m and m["tokens_per_second"] > 0 for m in metrics)

    prompt = [{"role": "user", "content": "Hello there."}]
    base = TransformersModel.from_pretrained(tiny_model_dir)
    tuned = TransformersModel.from_pretrained(tiny_model_dir, adapter=result.adapter)
    merged = TransformersModel.from_pretrained(
        tiny_model_dir, adapter=result.adapter, merge_adapter=True
    )
    before = base.score([prompt], [["Good evening.", "No."]])[0]
    after = tuned.score([prompt], [["Good evening.", "No."]])[0]
    assert not torch.allclose(torch.tensor(before), torch.tensor(after), atol=1e-4)
    assert torch.allclose(
        torch.tensor(after),
        torch.tensor(merged.score([prompt], [["Good evening.", "No."]])[0]),
        atol=1e-3,
    )


def test_training_resumes_from_its_last_checkpoint(
    tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resume"
    first = make_config(
        max_steps=2, per_device_batch_size=2, effective_batch_size=2, save_steps=1, max_length=512
    )
    train_adapter(
        str(tiny_model_dir), corpus_dir / "culturespa_joint", out, first, show_progress=False
    )
    assert (out / "checkpoint-2").exists()
    more = first.model_copy(update={"max_steps": 4})
    result = train_adapter(
        str(tiny_model_dir), corpus_dir / "culturespa_joint", out, more, show_progress=False
    )
    assert result.steps == 4
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1, "step 1 ran once: the second run resumed at step 2"


def test_dpo_on_a_tiny_llama(tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    config = make_config(
        method="dpo", max_steps=2, per_device_batch_size=1, effective_batch_size=1, max_length=512
    )
    result = train_adapter(
        str(tiny_model_dir), corpus_dir / "dpo", tmp_path / "dpo", config, show_progress=False
    )
    assert result.steps == 2 and math.isfinite(result.train_loss)
    assert (result.adapter / "adapter_config.json").exists()


def test_culture_specific_training_writes_one_adapter_per_culture(
    tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(corpus_dir / "culturespa_joint"),
            "--out",
            str(tmp_path / "spa"),
            "--base",
            str(tiny_model_dir),
            "--preset",
            "culturespa",
            "--per-culture",
            "--max-steps",
            "1",
            "--batch-size",
            "1",
            "--effective-batch-size",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    adapters = sorted(
        p.parent.parent.name for p in (tmp_path / "spa").glob("*/adapter/adapter_config.json")
    )
    assert adapters == ["DEU", "JPN"]
    lineage = json.loads(
        (tmp_path / "spa" / "JPN" / "adapter" / "culturesim_adapter.json").read_text()
    )
    assert lineage["culture"] == "JPN" and lineage["config"]["lora_r"] == 8
    assert lineage["config"]["learning_rate"] == 1e-4 and lineage["config"]["warmup_ratio"] == 0.1


def test_wrong_method_for_the_set_is_a_clear_error(
    tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(corpus_dir / "dpo"),
            "--out",
            str(tmp_path / "x"),
            "--base",
            str(tiny_model_dir),
        ],
    )
    assert result.exit_code == 1 and "use --method dpo" in result.output


def test_accelerate_configs_load_as_accelerate_reads_them() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parent.parent / "examples" / "accelerate"
    one = load_config_from_file(str(root / "1gpu.yaml"))
    eight = load_config_from_file(str(root / "8gpu.yaml"))
    assert (one.num_processes, str(one.mixed_precision)) == (1, "bf16")
    assert (eight.num_processes, eight.distributed_type.value) == (8, "MULTI_GPU")

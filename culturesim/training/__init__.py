"""Corpus building and fine-tuning (LoRA SFT, DPO)."""

"""Comma-separated lists, as the command line and the run config write them
(`--cultures USA,CHN`, `rules: argmax,jsd`): one reading for every such setting."""

from __future__ import annotations


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated list, stripped, empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]

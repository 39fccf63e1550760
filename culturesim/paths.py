"""Where culturesim keeps what it derives at run time (converted weights, response caches)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_dir() -> Path:
    """`$CULTURESIM_CACHE` if set, else the platform's user cache directory."""
    override = os.environ.get("CULTURESIM_CACHE")
    return Path(override) if override else Path(user_cache_dir("culturesim"))


def package_data(*parts: str) -> Path:
    """A file or folder shipped inside the culturesim package."""
    return Path(__file__).parent.joinpath(*parts)

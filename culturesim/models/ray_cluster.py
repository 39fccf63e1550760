"""Starting (or joining) Ray, and how many CPU threads each actor's torch may use."""

from __future__ import annotations

import os
from typing import Any

from culturesim.models.base import ModelError


def ray_module() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ModelError(
            "Ray is not installed: `pip install 'culturesim[scale]'` (or ray>=2.40)"
        ) from error
    return ray


def ensure_ray(actors: int) -> Any:
    """Join the cluster named by $RAY_ADDRESS, else start a local one sized for `actors`."""
    ray = ray_module()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=max(actors, os.cpu_count() or 1),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    return ray


def threads_per_actor(actors: int) -> int:
    """Split this machine's cores among the actors so they do not fight over them."""
    return max(1, (os.cpu_count() or 1) // max(1, actors))


def actor_environment() -> dict[str, Any]:
    """What each actor process needs from ours: offline hub settings and the import path."""
    keep = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "CULTURESIM_CACHE")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return {"env_vars": env}

"""culturesim never fetches code at run time: transformers' hub kernels stay off unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import culturesim, os; "
    "from transformers.integrations.hub_kernels import _kernels_enabled; "
    "print(os.environ['USE_HUB_KERNELS'], _kernels_enabled())"
)


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    if env_value is not None:
        env["USE_HUB_KERNELS"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_importing_culturesim_turns_hub_kernels_off() -> None:
    # transformers 5 would otherwise download kernels from the Hub when a CUDA model loads,
    # and fail on an offline GPU machine.
    assert _run(None) == "0 False"


def test_a_users_explicit_choice_is_kept() -> None:
    assert _run("1") == "1 True"

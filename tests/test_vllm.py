"""A real vLLM, started by culturesim on SmolLM2, behind every stage.

One server (`vllm:smollm2`, the defaults) serves the module: its scores and greedy texts are
compared with the in-process engine's, and simulate, probe, judge (generate and score modes)
and evaluate run through it as stage functions. A second test runs `culturesim run` in a
subprocess, kills the vLLM engine mid-simulation, and resumes.

`make test` builds `.venv-vllm` (`make vllm`) first; without it these tests skip, saying why,
unless CULTURESIM_REQUIRE_VLLM is set (CI sets it), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from culturesim.context import ModelFactory, ModelRoles, RunContext, RunLayout
from culturesim.models.base import Completion, GenerationParams, ModelError, Prompt
from culturesim.models.transformers_backend import TransformersModel
from culturesim.models.vllm_launch import API_MODULE, parse_vllm_spec, vllm_python
from culturesim.models.vllm_server import VLLMModel
from culturesim.records import Answer, Dialogue, FilterDecision, Instance, Question, Verdict
from culturesim.scenarios.cultures import load_cultures
from culturesim.store import RunStore
from culturesim.survey.administer import DEFAULT_ANSWER_PREFIX, SurveyPrompter
from culturesim.survey.questionnaire import load_survey_dir
from tests.conftest import SHARED_WVS
from tests.evaluation_fixtures import write_survey
from tests.processes import descendants

pytestmark = pytest.mark.slow

SPEC = "vllm:smollm2"
TOLERANCE_NATS = 1e-3


def _require_vllm() -> None:
    try:
        vllm_python()
    except ModelError as error:
        if os.environ.get("CULTURESIM_REQUIRE_VLLM"):
            raise
        pytest.skip(f"no vLLM here ({error}); `make vllm` builds it")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMModel]:
    """One vLLM server with culturesim's defaults for the whole module, stopped at its end."""
    _require_vllm()
    model = VLLMModel(parse_vllm_spec(SPEC), log_dir=tmp_path_factory.mktemp("vllm-logs"))
    yield model
    model.close()
    assert not model.server.healthy(), "the server stops with its model"


class Recorder:
    """Passes calls to a model and keeps the score requests it saw."""

    def __init__(self, inner: TransformersModel) -> None:
        self.inner = inner
        self.scored: list[tuple[Prompt, list[str]]] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams | Sequence[GenerationParams]
    ) -> list[Completion]:
        return self.inner.generate(prompts, params)

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        self.scored += [(p, list(c)) for p, c in zip(prompts, candidates, strict=True)]
        return self.inner.score(prompts, candidates)


def survey_folder(tmp_path: Path) -> Path:
    """The real WVS questions when they are beside the project, else a synthetic survey whose
    answer shares are given for USA and CHN (the cultures evaluate is asked for below)."""
    if (SHARED_WVS / "wvs_questions.json").exists():
        return SHARED_WVS
    _, shares = write_survey(tmp_path / "survey")
    synthetic = json.loads(shares.read_text())
    shares.write_text(json.dumps({"USA": synthetic["AAA"], "CHN": synthetic["BBB"]}))
    return tmp_path / "survey"


def context(root: Path, model: Any, *, in_process: TransformersModel | None = None) -> RunContext:
    factory = ModelFactory(builder=lambda spec, adapter=None: pytest.fail(f"built {spec}"))
    factory.provide(SPEC, model)
    if in_process is not None:
        factory.provide("smollm2", in_process)
    roles = ModelRoles(actor=SPEC, prober=SPEC, judge=SPEC, base=SPEC)
    return RunContext(RunLayout(root), factory, roles, show_progress=False)


def test_vllm_scores_survey_answers_and_action_choices_as_the_in_process_engine_does(
    served: VLLMModel, smollm2: TransformersModel, tmp_path: Path
) -> None:
    """Within 1e-3 nats: both run SmolLM2 in fp32 on the same token ids; what differs is the
    order of floating-point sums in their kernels (batched attention, fused MLPs), which moves
    a log-probability by about 1e-5 nats on this model (largest seen: 4e-5)."""
    survey = load_survey_dir(survey_folder(tmp_path))
    questions = list(survey.questions.values())[:25]
    items = SurveyPrompter(load_cultures()).items(questions, ["unaware", "aware"], ["JPN", "NGA"])
    chats = [[*i.chat, {"role": "assistant", "content": DEFAULT_ANSWER_PREFIX}] for i in items]
    labels = [[str(c) for c in i.question.codes] for i in items]

    # The action choices of a real simulation: every score request the role-play made.
    from culturesim.agents.roleplay.stage import SimulateSection, run

    recorder = Recorder(smollm2)
    ctx = context(tmp_path / "in-process", recorder)
    run(SimulateSection(scenarios="borrow_money", cultures="JPN", per_episode=1, max_turns=3), ctx)
    actions = recorder.scored
    assert len(actions) >= 3 and all(" speak" in c for _, c in actions)

    prompts = [*chats, *(p for p, _ in actions)]
    candidates = [*labels, *(c for _, c in actions)]
    expected = smollm2.score(prompts, candidates)
    found = served.score(prompts, candidates)
    gaps = [
        abs(a - b)
        for row_a, row_b in zip(expected, found, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    ]
    assert len(gaps) == sum(len(c) for c in candidates)
    assert max(gaps) < TOLERANCE_NATS, f"largest gap {max(gaps):.2e} nats"
    # A multi-token candidate is scored as a sum over its tokens on both sides.
    assert any(len(smollm2.encode_candidate(c)) > 1 for row in candidates for c in row)


GREEDY_PROMPTS: list[Prompt] = [
    [{"role": "user", "content": "How do people greet at a first meeting in Japan?"}],
    [{"role": "user", "content": "Name three foods eaten at a Mexican wedding."}],
    [{"role": "user", "content": "Is it polite to refuse a gift in Nigeria?"}],
    [
        {"role": "system", "content": "You are a German office worker."},
        {"role": "user", "content": "Your colleague is late again. What do you say?"},
    ],
    [{"role": "user", "content": "Write one sentence about sharing a bill with friends."}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "user", "content": "Give advice to a new neighbour in Brazil."},
        {"role": "assistant", "content": "First,"},
    ],
    "The most important value in a family is",
    [{"role": "user", "content": "How should a guest behave at dinner in China?"}],
    [{"role": "user", "content": "Describe a polite way to decline an invitation."}],
]


def test_greedy_texts_agree_with_the_in_process_engine(
    served: VLLMModel, smollm2: TransformersModel
) -> None:
    params = GenerationParams(max_new_tokens=48)
    ours = smollm2.generate(GREEDY_PROMPTS, params)
    theirs = served.generate(GREEDY_PROMPTS, params)
    same = [a.text == b.text for a, b in zip(ours, theirs, strict=True)]
    assert sum(same) >= 9, [
        (a.text, b.text) for a, b, s in zip(ours, theirs, same, strict=True) if not s
    ]
    assert all(b.completion_tokens > 0 for b in theirs)


def test_seeded_sampling_repeats_and_long_prompts_do_not_kill_the_cpu_engine(
    served: VLLMModel,
) -> None:
    """Seeds are sent (chunked prefill is off on CPU): the same seed gives the same text, and a
    prompt long enough to have been read in chunks does not crash vLLM's CPU sampler."""
    chat: Prompt = [{"role": "user", "content": "Tell me about tea. " * 400}]
    params = [GenerationParams(max_new_tokens=16, temperature=0.9, seed=s) for s in (1, 1, 2)]
    first = served.generate([chat] * 3, params)
    again = served.generate([chat] * 3, params)
    assert [c.text for c in first] == [c.text for c in again]
    assert first[0].text == first[1].text
    assert first[0].prompt_tokens > 2000
    assert served.server.healthy()


def test_every_stage_runs_through_vllm(
    served: VLLMModel, smollm2: TransformersModel, tmp_path: Path
) -> None:
    from culturesim.agents.judge.stage import JudgeSection
    from culturesim.agents.judge.stage import run as judge
    from culturesim.agents.prober.stage import ProbeSection
    from culturesim.agents.prober.stage import run as probe
    from culturesim.agents.roleplay.stage import SimulateSection
    from culturesim.agents.roleplay.stage import run as simulate
    from culturesim.evaluation.stage import EvaluateSection
    from culturesim.evaluation.stage import run as evaluate

    root = tmp_path / "run"
    ctx = context(root, served)
    # simulate: structured actions scored by the server, intents generated by it
    result = simulate(
        SimulateSection(
            scenarios="borrow_money,decline_invitation", cultures="JPN", per_episode=1, max_turns=4
        ),
        ctx,
    )
    assert result.counts["failed"] == 0 and result.counts["written"] == 2
    dialogues = RunStore(root / "simulate").read(Dialogue)
    assert {d.model for d in dialogues} == {"vllm:smollm2-135m-instruct"}
    turns = [t for d in dialogues for t in d.turns]
    assert all(t.raw.startswith("ACTION: ") for t in turns)
    spoken = [t for t in turns if t.action in ("speak", "non-verbal")]
    assert spoken and sum(bool(t.intent) for t in spoken) >= len(spoken) // 2

    # probe: questions generated, answered aware and unaware by option log-probabilities
    result = probe(
        ProbeSection(
            topics="economic",
            cultures="USA,CHN",
            per_topic=1,
            max_rounds=4,
            rules="argmax,jsd",
            jsd_threshold=0,
            min_confidence=0,
        ),
        ctx,
    )
    store = RunStore(root / "probe")
    questions = [q for q in store.read(Question) if q.source == "generated"]
    assert len(questions) >= 1, result.counts
    answers = store.read(Answer)
    assert len(answers) == 3 * len(questions)
    assert all(abs(sum(a.distribution) - 1) < 1e-3 and (a.label_mass or 0) > 0.2 for a in answers)
    assert len([i for i in store.read(Instance) if i.rule == "jsd"]) == 2 * len(questions)
    usage = ctx.models.usage()
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0, "scores are metered too"

    # judge, score mode then generate mode, over the same dialogues and instances
    for mode in ("score", "generate"):
        judged = tmp_path / f"judged-{mode}"
        for stage in ("simulate", "probe"):
            shutil.copytree(root / stage, judged / stage)
        jctx = context(judged, served)
        judge(JudgeSection(mode=mode, max_new_tokens=48), jctx)
        verdicts = RunStore(judged / "simulate").read(Verdict)
        assert len(verdicts) == 2 * 3, f"{mode}: three rubrics for each of the two dialogues"
        suffix = "#score" if mode == "score" else ""
        assert {v.judge for v in verdicts} == {f"vllm:smollm2-135m-instruct{suffix}"}
        if mode == "score":
            assert all(not v.parse_error and v.labels for v in verdicts), "scores always parse"
        decisions = RunStore(judged / "simulate").read(FilterDecision)
        assert {d.target_id for d in decisions} == {d.id for d in dialogues}

    # evaluate wvs: the served model answers the survey; the answers match in-process ones
    folder = survey_folder(tmp_path)
    section = EvaluateSection(
        survey_dir=str(folder), cultures="USA,CHN", styles="unaware,aware", limit=6, guard=False
    )
    evaluate(section, ctx)
    served_answers = RunStore(root / "evaluate" / "survey").read(Answer)
    # six WVS questions, or the synthetic survey's three (the loader sets its Q260, a
    # respondent's sex, aside); each unaware once and aware for each of the two cultures
    answered = 6 if folder == SHARED_WVS else 3
    assert len(served_answers) == answered * 3
    local = tmp_path / "local"
    local_ctx = context(local, served, in_process=smollm2)
    local_ctx.roles = ModelRoles(base="smollm2")
    evaluate(section, local_ctx)
    local_answers = {
        (a.question_id, a.culture, a.prompt): a
        for a in RunStore(local / "evaluate" / "survey").read(Answer)
    }
    for answer in served_answers:
        twin = local_answers[(answer.question_id, answer.culture, answer.prompt)]
        assert (
            max(abs(p - q) for p, q in zip(answer.distribution, twin.distribution, strict=True))
            < 1e-3
        )
    results = json.loads((root / "evaluate" / "survey" / "results.json").read_text())
    assert results


# ---------------------------------------------------------------- a dead engine, then resume


def _api_server(pid: int) -> int | None:
    for child in descendants(pid):
        try:
            command = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if API_MODULE.encode() in command and b"culturesim.models.vllm_guard" not in command:
            return child
    return None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_killed_engine_is_reported_once_keeps_what_was_written_and_resumes(
    tmp_path: Path,
) -> None:
    _require_vllm()
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "out": str(tmp_path / "run"),
                "models": {"actor": f"{SPEC}?enforce_eager=true"},
                "simulate": {
                    "scenarios": "borrow_money,decline_invitation,noisy_neighbour",
                    "cultures": "JPN,MEX",
                    "per_episode": 1,
                    "max_turns": 3,
                    "max_new_tokens": 24,
                    "concurrency": 1,  # one dialogue at a time: the kill lands between two
                },
            }
        )
    )
    command = [sys.executable, "-c", "from culturesim.cli import app; app()", "run", str(config)]
    env = {**os.environ, "COLUMNS": "200"}
    dialogues = tmp_path / "run" / "simulate" / "dialogue.jsonl"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while len(_lines(dialogues)) < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "no dialogue was written in 15 minutes"
        time.sleep(0.2)
    server = _api_server(process.pid)
    assert server is not None, "the vLLM API server runs under culturesim's guard"
    os.kill(server, signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    text = output.decode(errors="replace")
    written = _lines(dialogues)
    assert process.returncode == 1, text
    assert text.count("has stopped") == 1, text
    assert "killed by SIGKILL" in text and "Traceback" not in text, text
    assert 1 <= len(written) < 6, "killed after the first and before the last dialogue"
    failed = tmp_path / "run" / "simulate" / "failed.jsonl"
    assert _lines(failed) == [], "a dead engine fails no dialogue: they all run on resume"
    assert not descendants(process.pid)
    logs = list((tmp_path / "run" / "logs").glob("vllm-*.log"))
    assert len(logs) == 1, "the server's log is kept with the run"

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = _lines(dialogues)
    assert resumed[: len(written)] == written, "what was written before the kill is kept as is"
    ids = [json.loads(line)["id"] for line in resumed]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert len(list((tmp_path / "run" / "logs").glob("vllm-*.log"))) == 2

"""The positive control: the survey teacher, paired model comparisons, and the whole
loop-control config on a tiny model (plumbing) with a scripted question writer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from culturesim.evaluation.control import compare_models
from culturesim.evaluation.metrics import js_distance
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Answer, Instance, Question
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import SurveyPrompter, answer_logprob
from culturesim.survey.questionnaire import Survey, SurveyQuestion, load_survey_dir
from culturesim.training.soft_fit import SoftFitConfig, fit_soft_targets
from culturesim.training.soft_loss import soft_label_loss
from culturesim.training.soft_rows import SoftRow, SoftTargetError, build_rows, label_tree_targets
from tests.conftest import SHARED_WVS, ScriptedModel, prompt_text

# --------------------------------------------------------------------------- targets and loss


def test_label_targets_sum_shares_by_first_token_and_branch_after_it() -> None:
    first, branch, second, stop = label_tree_targets([[7], [8]], [0.3, 0.7])
    assert first == {7: 0.3, 8: 0.7} and branch is None and second == {} and stop == 0.0
    # "1", "2", "10" where "10" is "1" then "0": the first token "1" carries 0.2 + 0.3.
    first, branch, second, stop = label_tree_targets([[1], [2], [1, 0]], [0.2, 0.5, 0.3])
    assert first == pytest.approx({1: 0.5, 2: 0.5})
    assert branch == 1
    assert second == pytest.approx({0: 0.6}) and stop == pytest.approx(0.4)
    with pytest.raises(SoftTargetError, match="3 tokens"):
        label_tree_targets([[1], [1, 2, 3]], [0.5, 0.5])
    with pytest.raises(SoftTargetError, match="more than one"):
        label_tree_targets([[1, 0], [2, 0]], [0.5, 0.5])


def test_the_soft_loss_is_the_expected_nll_of_a_share_drawn_label() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 6)
    plain = SoftRow("A", "q1", (1, 2), first_ids=(3, 4), first_probs=(0.25, 0.75))
    branched = SoftRow(
        "A",
        "q2",
        (1, 2, 3),
        first_ids=(3, 4),
        first_probs=(0.5, 0.5),
        branch_weight=0.5,
        second_ids=(0,),
        second_probs=(0.6,),
        stop_prob=0.4,
    )
    loss = float(soft_label_loss(logits, [plain, branched]))
    p = torch.softmax(logits, dim=-1)
    plain_nll = -(0.25 * math.log(p[0, 1, 3]) + 0.75 * math.log(p[0, 1, 4]))
    first_nll = -(0.5 * math.log(p[1, 0, 3]) + 0.5 * math.log(p[1, 0, 4]))
    branch_nll = -(0.6 * math.log(p[1, 1, 0]) + 0.4 * math.log(1 - p[1, 1, 0]))
    assert loss == pytest.approx((plain_nll + first_nll + 0.5 * branch_nll) / 2, rel=1e-5)


# --------------------------------------------------------------------------- a real teacher


def _toy_survey() -> Survey:
    """Two countries that answer two questions in opposite ways; one 10-point question, so
    the label "10" branches after "1" (as it does in WVS)."""
    four = SurveyQuestion("Q1", "How important is family in your life?", ("a", "b", "c", "d"))
    ten = SurveyQuestion("Q106", "Where would you place your views?", tuple("abcdefghij"))
    return Survey(
        {"Q1": four, "Q106": ten},
        {
            "USA": {
                "Q1": np.array([0.7, 0.2, 0.05, 0.05]),
                "Q106": np.array([0.02] * 9 + [0.82]),
            },
            "CHN": {
                "Q1": np.array([0.05, 0.05, 0.2, 0.7]),
                "Q106": np.array([0.5, 0.3] + [0.025] * 8),
            },
        },
    )


@pytest.fixture(scope="module")
def wide_logits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose output layer is initialised wide enough (std 0.2) that a
    LoRA on its blocks can concentrate probability on a few tokens; at the default 0.02 its
    logits stay within about ±1 whatever the blocks do."""
    from tests.conftest import make_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer()
    folder = tmp_path_factory.mktemp("wide-logits")
    make_tiny_llama(tokenizer, initializer_range=0.2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_trained_teacher_scores_the_shares_it_was_taught(
    wide_logits_dir: Path, tmp_path: Path
) -> None:
    """Trained on the tokens scoring reads, with the label tree ("10" after "1"), the teacher's
    scored distribution comes out as the shares; before training it does not. One row, so the
    tiny model need not tell prompts apart."""
    from transformers import AutoTokenizer

    survey = _toy_survey()
    prompter = SurveyPrompter(load_cultures())
    rows = build_rows(
        AutoTokenizer.from_pretrained(wide_logits_dir),
        survey,
        ["Q106"],
        ["USA"],
        prompter,
        "The answer is ",
    )
    assert len(rows) == 1 and rows[0].has_branch
    # At 3e-2 the fit oscillates (loss 3.7 -> 2.6 in 400 steps); 1e-2 settles (-> 1.2).
    config = SoftFitConfig(max_steps=400, learning_rate=1e-2, batch_size=1, lora_layers=None)
    result = fit_soft_targets(wide_logits_dir, rows, tmp_path, config, show_progress=False)
    assert result.last_loss < result.first_loss
    items = prompter.items([survey.questions["Q106"]], ["aware"], ["USA"])
    target = survey.distribution("USA", "Q106")
    assert target is not None
    base = TransformersModel.from_pretrained(wide_logits_dir)
    taught = TransformersModel.from_pretrained(wide_logits_dir, adapter=result.adapter)
    (before,) = answer_logprob(base, items)
    (after,) = answer_logprob(taught, items)
    distance_before = js_distance(np.array(before.distribution), target)
    distance_after = js_distance(np.array(after.distribution), target)
    # A 64-wide model cannot shape every small share, so the fit is close, not exact (the
    # exactness of the objective is the next test's).
    assert distance_after < distance_before / 3, (distance_before, distance_after)
    assert after.distribution[-1] > 0.75 and after.label_mass is not None
    assert after.label_mass > 0.5 > before.label_mass  # "10" (two tokens) learned as a label


def test_the_training_loss_is_the_nll_that_scoring_implies(tiny_model_dir: Path) -> None:
    """Exactness of the teacher's rows: its loss, on a forward pass over the training tokens,
    equals the expected NLL of the shares computed from `score` on the evaluation's prompts,
    for a 4-option and a 10-option question (where "10" is "1" then "0")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from culturesim.training.soft_fit import _left_pad

    survey = _toy_survey()
    prompter = SurveyPrompter(load_cultures())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = build_rows(tokenizer, survey, ["Q1", "Q106"], ["USA", "CHN"], prompter, "The answer is ")
    network = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids, mask, positions = _left_pad(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = network(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    trained = float(soft_label_loss(logits[:, -2:], rows))

    scorer = TransformersModel(network, tokenizer, "tiny")
    expected = []
    for row in rows:
        question = survey.questions[row.question_id]
        labels = [str(c) for c in question.codes]
        chat = [
            *next(
                i.chat
                for i in prompter.items([question], ["aware"], [row.culture])
                if i.question.id == row.question_id
            ),
            {"role": "assistant", "content": "The answer is "},
        ]
        logp = dict(zip(labels, scorer.score([chat], [labels])[0], strict=True))
        shares = survey.distribution(row.culture, row.question_id)
        assert shares is not None
        nll = -sum(s * logp[label[0]] for label, s in zip(labels, shares, strict=True))
        if "10" in logp:
            p_zero = math.exp(logp["10"] - logp["1"])
            # The first-token term charged "10" at "1"; the branch decides between them.
            nll -= shares[9] * math.log(p_zero) + shares[0] * math.log(1 - p_zero)
        expected.append(nll)
    assert trained == pytest.approx(float(np.mean(expected)), rel=1e-4)


def test_an_interrupted_teacher_resumes_to_the_same_adapter(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from culturesim.training import soft_loss

    rows = build_rows(
        AutoTokenizer.from_pretrained(tiny_model_dir),
        _toy_survey(),
        ["Q1", "Q106"],
        ["USA", "CHN"],
        SurveyPrompter(load_cultures()),
        "The answer is ",
    )
    config = SoftFitConfig(max_steps=6, batch_size=2, save_steps=2, lora_layers=None)
    whole = fit_soft_targets(tiny_model_dir, rows, tmp_path / "whole", config, show_progress=False)

    real_loss = soft_loss.soft_label_loss
    calls = {"n": 0}

    def dies_at_step_five(logits: torch.Tensor, batch: list[SoftRow]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_loss(logits, batch)

    monkeypatch.setattr(soft_loss, "soft_label_loss", dies_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        fit_soft_targets(tiny_model_dir, rows, tmp_path / "cut", config, show_progress=False)
    assert (
        json.loads((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
    )
    monkeypatch.setattr(soft_loss, "soft_label_loss", real_loss)
    resumed = fit_soft_targets(tiny_model_dir, rows, tmp_path / "cut", config, show_progress=False)
    assert resumed.steps == whole.steps == 6
    a = load_file(str(whole.adapter / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- soft-target student


def _probe_records() -> tuple[dict[str, Question], dict[str, Answer], list[Instance]]:
    """Two generated questions answered culture-aware for three cultures by a teacher (and by a
    base model, whose answers must not be used); one instance, on the first question only."""
    kept = Question(
        topic="trust", text="How much do you trust your neighbours?", options=("a", "b", "c")
    )
    other = Question(
        topic="trust", text="How often do you vote in local elections?", options=("x", "y")
    )
    shares = {"USA": (0.6, 0.3, 0.1), "CHN": (0.1, 0.2, 0.7), "DEU": (0.2, 0.6, 0.2)}
    answers = [
        Answer(question_id=q.id, culture=c, model=m, distribution=d if q is kept else (0.5, 0.5))
        for q in (kept, other)
        for m in ("teacher", "base")
        for c, d in shares.items()
    ]
    answers += [
        Answer(question_id=q.id, culture="", prompt="unaware", model="teacher", distribution=d)
        for q, d in ((kept, (0.4, 0.4, 0.2)), (other, (0.5, 0.5)))
    ]
    by_id = {a.id: a for a in answers}
    aware = next(
        a
        for a in answers
        if a.question_id == kept.id and a.culture == "CHN" and a.model == "teacher"
    )
    unaware = next(a for a in answers if a.question_id == kept.id and a.prompt == "unaware")
    instance = Instance(
        question_id=kept.id,
        culture="CHN",
        rule="argmax",
        aware_answer_id=aware.id,
        unaware_answer_id=unaware.id,
    )
    return {kept.id: kept, other.id: other}, by_id, [instance]


def test_soft_rows_carry_every_cultures_distribution_of_a_kept_question() -> None:
    from culturesim.training.corpus import soft_rows

    questions, answers, instances = _probe_records()
    prompter = SurveyPrompter(load_cultures())
    rows, skipped = soft_rows(
        instances, questions, answers, prompter, answer_prefix="The answer is "
    )
    assert not skipped
    # One instance (CHN) brings in all three cultures of its question, from the teacher only.
    assert [r.culture for r in rows] == ["CHN", "DEU", "USA"]
    (kept_id,) = {r.target["question_id"] for r in rows if r.target}
    assert kept_id == instances[0].question_id
    by_culture = {r.culture: r for r in rows}
    assert by_culture["USA"].target == {
        "question_id": kept_id,
        "codes": [1, 2, 3],
        "distribution": [0.6, 0.3, 0.1],
    }
    for row in rows:
        assert answers[row.record_ids[0]].model == "teacher"
        assert row.messages[0]["content"] == prompter.system_prompt("aware", row.culture)
        assert row.messages[-1] == {"role": "assistant", "content": "The answer is "}


def test_distillation_rows_from_the_corpus_are_the_teachers_rows(tiny_model_dir: Path) -> None:
    """A soft corpus row, read back for distillation, is token for token and target for target
    the row the survey teacher trains on for the same prompt and distribution."""
    from transformers import AutoTokenizer

    from culturesim.training.corpus import Row, to_record
    from culturesim.training.soft_rows import rows_from_corpus

    survey = _toy_survey()
    prompter = SurveyPrompter(load_cultures())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = build_rows(tokenizer, survey, ["Q1", "Q106"], ["CHN"], prompter, "The answer is ")
    records = []
    for qid in ("Q1", "Q106"):
        question = survey.questions[qid]
        shares = survey.distribution("CHN", qid)
        assert shares is not None
        row = Row(
            "culturespa_soft",
            "CHN",
            "culturespa_soft",
            ["ans-x", qid],
            [
                {"role": "system", "content": prompter.system_prompt("aware", "CHN")},
                {"role": "user", "content": prompter.user_prompt(question)},
                {"role": "assistant", "content": "The answer is "},
            ],
            target={
                "question_id": qid,
                "codes": list(question.codes),
                "distribution": [float(x) for x in shares],
            },
        )
        records.append(json.loads(json.dumps(to_record(row))))  # as the set stores it
    got = rows_from_corpus(tokenizer, records)
    assert [r.input_ids for r in got] == [r.input_ids for r in expected]
    assert got[1].has_branch  # "10" after "1"
    for a, b in zip(got, expected, strict=True):
        assert a.first_ids == b.first_ids and a.second_ids == b.second_ids
        np.testing.assert_allclose(a.first_probs, b.first_probs, atol=1e-9)
        np.testing.assert_allclose(a.second_probs, b.second_probs, atol=1e-9)
        assert a.stop_prob == pytest.approx(b.stop_prob)
    with pytest.raises(SoftTargetError, match=r"corpus\.targets: soft"):
        rows_from_corpus(tokenizer, [{**records[0], "target": None}])


# --------------------------------------------------------------------------- comparison


def _answers(model: str, dists: dict[tuple[str, str], list[float]]) -> list[Answer]:
    return [
        Answer(
            question_id=f"survey:{q}",
            culture=c,
            prompt="aware",
            model=model,
            distribution=tuple(d),
        )
        for (c, q), d in dists.items()
    ]


def test_comparison_scores_a_culture_blind_and_a_culture_knowing_model() -> None:
    questions = {
        f"Q{i}": SurveyQuestion(f"Q{i}", f"Question {i} about values?", ("yes", "no"))
        for i in range(1, 7)
    }
    shares = {
        "A": {q: np.array([0.9, 0.1]) for q in questions},
        "B": {q: np.array([0.1, 0.9]) for q in questions},
    }
    survey = Survey(questions, shares)
    knowing = _answers("k", {(c, q): list(shares[c][q]) for c in ("A", "B") for q in questions})
    blind = _answers("b", {(c, q): [0.5, 0.5] for c in ("A", "B") for q in questions})
    result = compare_models(survey, {"blind": blind, "knowing": knowing}, ["A", "B"])
    blind_row, knowing_row = result["variants"]["blind"], result["variants"]["knowing"]
    assert blind_row["discrimination"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert knowing_row["js_distance"]["value"] == pytest.approx(0.0, abs=1e-6)
    # Each culture's answers sit at its own shares, at the other culture's JSD from them.
    other = float(
        __import__("scipy.spatial.distance", fromlist=["x"]).jensenshannon(
            [0.9, 0.1], [0.1, 0.9], base=2
        )
    )
    assert knowing_row["discrimination"]["value"] == pytest.approx(other, rel=1e-4)
    assert knowing_row["culturespa"]["value"] == pytest.approx(100.0)
    difference = result["differences"]["knowing"]["discrimination"]
    assert difference["low"] > 0  # the paired interval excludes 0
    same = compare_models(survey, {"one": blind, "two": blind}, ["A", "B"])["differences"]["two"]
    assert same["discrimination"] == {"value": 0.0, "low": 0.0, "high": 0.0}


# --------------------------------------------------------------------------- the loop, tiny


LOOP_CONTROL = Path(__file__).resolve().parents[1] / "examples" / "loop-control.yaml"


def _question_writer(planted: str, shown: list[str] | None = None) -> ScriptedModel:
    """Writes a new, well-formed survey question on every call (a random tiny model cannot);
    its first question is `planted` word for word. Each prompt it is shown goes to `shown`."""
    topics = iter(range(1000))
    subjects = ["neighbours", "elders", "strangers", "coworkers", "cousins", "teachers"]

    def reply(prompt: object) -> str:
        if shown is not None:
            shown.append(prompt_text(prompt))  # type: ignore[arg-type]
        n = next(topics)
        text = planted if n == 0 else f"How much do you trust your {subjects[n % 6]} in case {n}?"
        return json.dumps(
            {
                "Question": text,
                "Options": ["Completely", "Somewhat", "Not very much", "Not at all"],
            }
        )[len('{"Question": "') :]  # the config's prefill opens the JSON

    return ScriptedModel(reply, model_id="question-writer")


class AgreeingJudge(ScriptedModel):
    """A score-mode judge that reads every check as passed (a random model's reading is noise)."""

    def score(self, prompts: object, candidates: list[list[str]]) -> list[list[float]]:  # type: ignore[override]
        return [[0.0 if c.strip().lower() == "yes" else -5.0 for c in cs] for cs in candidates]


def test_the_loop_control_config_runs_with_a_tiny_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Plumbing only: split, teacher, the teacher answering the probe with the base compared,
    judge, corpus, student, and base / teacher / student on the held-out half, with the report."""
    if not SHARED_WVS.is_dir():
        pytest.skip(f"the WVS files are not at {SHARED_WVS} (they are never copied into the repo)")
    from culturesim.context import ModelFactory
    from culturesim.pipeline.config import load_run_config
    from culturesim.pipeline.runner import context_for, run_stages
    from culturesim.store import RunStore

    out = tmp_path / "run"
    overrides = [
        f"out={out}",
        f"models.base={tiny_model_dir}",
        "models.prober=question-writer",
        "models.judge=agreeing-judge",
        f"teacher.survey_dir={SHARED_WVS}",
        f"evaluate.survey_dir={SHARED_WVS}",
        "teacher.limit=6",
        "teacher.max_steps=2",
        "probe.topics=economic,trust",
        "probe.per_topic=2",
        "probe.max_rounds=1",
        "probe.cultures=USA,CHN,DEU",
        # Plumbing: a random model's aware and unaware answers barely differ, so every pair
        # is taken as an instance.
        "probe.rules=jsd",
        "probe.jsd_threshold=0",
        "probe.min_confidence=0",
        "judge.rule=none",
        "train.max_steps=1",
        "evaluate.cultures=USA,CHN,DEU",
        "evaluate.limit=4",
        "evaluate.guard=false",
    ]
    config = load_run_config(LOOP_CONTROL, overrides)
    factory = ModelFactory()
    # The split is a pure function of the survey and seed 0: plant one of its held-out questions.
    from culturesim.survey.split import split_survey
    from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, topic_namer

    planted = split_survey(
        list(load_survey_dir(SHARED_WVS).questions.values()),
        topic_namer(load_topics(BUILTIN_TOPICS)),
        0,
    )["held_out"][0]["question"]
    prober_prompts: list[str] = []
    factory.provide("question-writer", _question_writer(planted, prober_prompts))
    factory.provide("agreeing-judge", AgreeingJudge(model_id="agreeing-judge"))
    RunStore.open(out, {"command": "run", **config.identity()}, seed=config.seed)
    ctx = context_for(config, models=factory, show_progress=False)
    run_stages(config, config.enabled_stages(), ctx=ctx)

    log = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == [
        "teacher",
        "probe",
        "judge",
        "corpus",
        "train",
        "evaluate",
        "report",
    ]
    assert all(r["status"] == "done" for r in log)
    split = json.loads((out / "survey_split.json").read_text())
    held_out = {q["id"] for q in split["held_out"]}
    assert len(split["seen"]) + len(held_out) == 259
    assert (out / "teacher" / "adapter" / "adapter_config.json").exists()
    probe = json.loads((out / "probe" / "probe_summary.json").read_text())
    assert probe["decontaminated"] >= 1  # the planted held-out question, at generation
    generated = RunStore(out / "probe").read(Question)
    assert generated and all(q.text != planted for q in generated)
    # The config seeds the prober from the survey file itself, as published: the seen half's
    # questions are its examples, the held-out half's are withheld and counted.
    assert probe["seeds_withheld"] >= 1
    survey_texts = {q.id: q.text for q in load_survey_dir(SHARED_WVS).questions.values()}
    examples = [  # the examples of each request, not the model's own reply fed back to it
        p.split("example questions:")[1].split("Note that your question")[0]
        for p in prober_prompts
        if "example questions:" in p
    ]
    shown_ids = {i for i, t in survey_texts.items() if any(t in e for e in examples)}
    assert shown_ids, "no survey question reached the prober as an example"
    assert not shown_ids & held_out
    assert (
        "+adapter:" in probe["answer_model"]
        and probe["comparison"]["model"] != probe["answer_model"]
    )
    comparison = json.loads((out / "evaluate" / "survey" / "comparison.json").read_text())
    assert list(comparison["variants"]) == ["before", "teacher", "after"]
    assert comparison["questions"] == 4
    answers = RunStore(out / "evaluate" / "survey").read(Answer)
    assert {a.question_id.removeprefix("survey:") for a in answers} <= held_out
    texts = {q["question"] for q in split["held_out"]}
    for line in (out / "corpus" / "culturespa_joint" / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["messages"][-1]["content"].startswith("The answer is ")
        assert not any(t in row["messages"][1]["content"] for t in texts)
    # The student is distilled from the soft set: every culture of each kept question.
    soft = [
        json.loads(line)
        for split in ("train", "validation")
        for line in (out / "corpus" / "culturespa_soft" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert soft and {r["culture"] for r in soft} == {"USA", "CHN", "DEU"}
    for row in soft:
        assert sum(row["target"]["distribution"]) == pytest.approx(1.0, abs=1e-4)
        assert not any(t in row["messages"][1]["content"] for t in texts)
    student = json.loads((out / "train" / "adapter" / "culturesim_adapter.json").read_text())
    assert student["kind"] == "student distilled from soft targets"
    assert student["rows"] == len(
        (out / "corpus" / "culturespa_soft" / "train.jsonl").read_text().splitlines()
    )
    report = (out / "report" / "index.html").read_text()
    assert "Positive control" in report
    assert f"{probe['seeds_withheld']} held-out seed questions withheld" in report


def test_held_out_evaluation_without_a_split_names_what_to_do(tmp_path: Path) -> None:
    if not SHARED_WVS.is_dir():
        pytest.skip(f"the WVS files are not at {SHARED_WVS} (they are never copied into the repo)")
    from culturesim.context import RunContext, RunLayout, StageFailed
    from culturesim.evaluation.stage import EvaluateSection, Variant, evaluate_survey

    ctx = RunContext(layout=RunLayout(tmp_path / "run"), show_progress=False)
    section = EvaluateSection(survey_dir=str(SHARED_WVS), questions="held_out", cultures="USA")
    with pytest.raises(StageFailed, match=r"survey_split\.json.*teacher"):
        evaluate_survey(section, ctx, [Variant(name="before", spec="smollm2")])


def test_the_wvs_teacher_rows_cover_the_seen_half_only() -> None:
    """18 cultures × the seen questions they have shares for, and not one held-out question."""
    if not SHARED_WVS.is_dir():
        pytest.skip(f"the WVS files are not at {SHARED_WVS} (they are never copied into the repo)")
    from culturesim.survey.split import split_survey
    from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, topic_namer
    from culturesim.training.teacher_stage import CULTURESPA_CULTURES
    from tests.conftest import train_tokenizer

    survey = load_survey_dir(SHARED_WVS)
    split = split_survey(
        list(survey.questions.values()), topic_namer(load_topics(BUILTIN_TOPICS)), 0
    )
    cultures = CULTURESPA_CULTURES.split(",")
    rows = build_rows(
        train_tokenizer(),
        survey,
        split["seen"],
        cultures,
        SurveyPrompter(load_cultures()),
        "The answer is ",
    )
    expected = sum(
        1 for c in cultures for q in split["seen"] if survey.distribution(c, q) is not None
    )
    assert len(rows) == expected and len(cultures) == 18
    assert not {r.question_id for r in rows} & {q["id"] for q in split["held_out"]}
    for row in rows:
        assert sum(row.first_probs) == pytest.approx(1.0, abs=1e-6)


def test_the_command_line_scores_a_held_out_half_and_compares_models(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`evaluate split` then `evaluate wvs --questions held_out` with the same model twice
    (with and without an adapter's name clash): answers only on held-out questions, and a
    comparison whose two rows are kept apart."""
    if not SHARED_WVS.is_dir():
        pytest.skip(f"the WVS files are not at {SHARED_WVS} (they are never copied into the repo)")
    from typer.testing import CliRunner

    from culturesim.cli import app

    out = tmp_path / "control"
    runner = CliRunner()
    split = runner.invoke(
        app, ["evaluate", "split", "--survey-dir", str(SHARED_WVS), "--out", str(out)]
    )
    assert split.exit_code == 0, split.output
    model = str(tiny_model_dir)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "wvs",
            "-m",
            model,
            "-m",
            model,
            "--survey-dir",
            str(SHARED_WVS),
            "--out",
            str(out),
            "--cultures",
            "USA,CHN",
            "--styles",
            "aware",
            "--questions",
            "held_out",
            "--limit",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    held_out = {q["id"] for q in json.loads((out / "survey_split.json").read_text())["held_out"]}
    comparison = json.loads((out / "comparison.json").read_text())
    assert list(comparison["variants"]) == [f"{model} #1", f"{model} #2"]
    assert comparison["questions"] == 3
    # The same model twice: every paired difference is exactly 0.
    assert comparison["differences"][f"{model} #2"]["js_distance"]["value"] == 0.0
    from culturesim.store import RunStore

    asked = {a.question_id.removeprefix("survey:") for a in RunStore(out).read(Answer)}
    assert asked and asked <= held_out

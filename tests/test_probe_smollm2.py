"""The prober end to end on the real SmolLM2: generation -> answers -> instances, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.records import Answer, Instance, Question
from culturesim.store import RunStore
from culturesim.survey.distributions import js_divergence

pytestmark = pytest.mark.slow  # the real embedded model; still part of make test

runner = CliRunner()


def test_probe_generates_answers_and_detects_instances_with_smollm2(tmp_path: Path) -> None:
    out = tmp_path / "probe"
    arguments = [
        "probe",
        "--out",
        str(out),
        "--model",
        "smollm2",
        "--topics",
        "economic",
        "--cultures",
        "USA,CHN",
        "--per-topic",
        "1",
        "--max-rounds",
        "4",
        # SmolLM2's aware and unaware answers differ only slightly: a zero threshold keeps every
        # pair, so the instance records (distributions, divergence) can be checked one by one.
        "--rules",
        "argmax,jsd",
        "--jsd-threshold",
        "0",
        "--min-confidence",
        "0",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output

    store = RunStore(out)
    questions = [q for q in store.read(Question) if q.source == "generated"]
    log = store.read_json("generation_log")
    requested = sum(row["requested"] for row in log)
    kept = sum(row["kept"] for row in log)
    rejected = sum(sum(row["rejected"].values()) for row in log)
    assert requested == kept + rejected, "every generated output is either kept or counted"
    assert kept == len(questions) >= 1, result.output
    for question in questions:
        assert question.topic == "Economic Values"
        assert 2 <= len(question.options) <= 11
        assert len(question.parent_ids) == 5, "each request shows 5 examples"

    answers = store.read(Answer)
    assert len(answers) == 3 * len(questions), "one unaware and one aware answer per culture"
    assert {(a.prompt, a.culture) for a in answers} == {
        ("unaware", ""),
        ("aware", "USA"),
        ("aware", "CHN"),
    }
    for answer in answers:
        assert abs(sum(answer.distribution) - 1) < 1e-3
        assert answer.label_mass is not None and answer.label_mass > 0.2

    instances = store.read(Instance)
    jsd = [i for i in instances if i.rule == "jsd"]
    assert len(jsd) == 2 * len(questions), "a zero threshold keeps every (question, culture)"
    by_id = {a.id: a for a in answers}
    for instance in instances:
        aware, unaware = by_id[instance.aware_answer_id], by_id[instance.unaware_answer_id]
        assert aware.culture == instance.culture and unaware.prompt == "unaware"
        recomputed = js_divergence(
            np.array(instance.aware_distribution), np.array(instance.unaware_distribution)
        )
        assert abs(recomputed - instance.divergence) < 1e-5
    argmax = [i for i in instances if i.rule == "argmax"]
    for instance in argmax:
        assert np.argmax(instance.aware_distribution) != np.argmax(instance.unaware_distribution)
    summary = json.loads((out / "probe_summary.json").read_text())
    assert summary["questions_kept"] == len(questions)

    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert len(store.read(Answer)) == len(answers), "a resumed probe answers nothing twice"
    assert len(store.read(Instance)) == len(instances)
    assert len(store.read_json("generation_log")) == len(log), "no new generation was needed"


def test_smollm2_writes_ten_point_scale_questions_with_anchors(
    smollm2: object, tmp_path: Path
) -> None:
    """A scale request on the real model: a kept question has options 1..10 and the anchors
    the model wrote after it, in the form the survey prompt shows them."""
    from culturesim.agents.prober.question_gen import QuestionGenerator
    from culturesim.survey.topics import BUILTIN_TOPICS, load_topics, select_topics

    topic = select_topics(load_topics(BUILTIN_TOPICS), "economic")[0]
    store = RunStore.open(tmp_path)
    generator = QuestionGenerator(smollm2, store, scales=(10,), seed=0)  # type: ignore[arg-type]
    stats = generator.run(
        [topic], {topic.name: topic.seed_records()}, per_topic=2, max_rounds=3, show_progress=False
    )[topic.name]
    kept = store.read(Question)
    assert stats.kept == len(kept) >= 1, stats.rejected
    for question in kept:
        assert question.options == tuple(str(n) for n in range(1, 11))
        assert (
            "(1 = " in question.text and ", 10 = " in question.text and question.text.endswith(")")
        )


def test_smollm2_chooses_scale_ends_that_fit_the_question(smollm2: object, tmp_path: Path) -> None:
    """`anchors: choose` on the real model: the ends picked from the built-in list fit what
    each question asks (a justification, a worry, a frequency)."""
    from culturesim.agents.prober.anchors import load_anchors
    from culturesim.agents.prober.question_gen import QuestionGenerator

    generator = QuestionGenerator(
        smollm2,  # type: ignore[arg-type]
        RunStore.open(tmp_path),
        scales=(10,),
        anchor_pairs=load_anchors(),
    )
    asked = {
        "Do you think that cheating on taxes can always be justified, or never?": "justifiable",
        "How worried are you about a terrorist attack?": "worried",
        "How often do robberies occur in your neighborhood?": "often",
    }
    replies = generator.choose_anchors(list(asked), [10] * len(asked))
    for (question, word), reply in zip(asked.items(), replies, strict=True):
        text = json.loads(reply)["Question"]
        assert text.startswith(question) and ", 10 = " in text
        assert word in text.removeprefix(question), text

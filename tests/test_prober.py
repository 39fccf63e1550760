"""The CultureSPA prober: parsing, prompt shapes, filters, instance rules, and a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from culturesim.agents.prober.instances import InstanceRule, detect_instances
from culturesim.agents.prober.question_gen import InvalidQuestion, QuestionGenerator, parse_question
from culturesim.models.embeddings import Embedder
from culturesim.records import Answer, Question
from culturesim.store import RunStore
from culturesim.survey.distributions import js_divergence
from culturesim.survey.topics import Topic, load_topics, seeds_from_file
from tests.conftest import SHARED_WVS, ScriptedModel


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


# --------------------------------------------------------------------------- parsing


def test_parse_accepts_json_inside_chatter_and_python_quotes() -> None:
    parsed = parse_question(
        'Sure! {"Question": "How often do you visit your grandparents?", "Options": ["Weekly", "Monthly", "Rarely"]} Hope it helps.'
    )
    assert parsed.text == "How often do you visit your grandparents?" and parsed.options == (
        "Weekly",
        "Monthly",
        "Rarely",
    )
    parsed = parse_question(
        "{'Question:': 'Should elders choose a spouse for their children?', 'Options': ['1. Yes', '2. No']}"
    )
    assert parsed.options == (
        "Yes",
        "No",
    )  # the published "Question:" key typo and option labels are cleaned


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("I think a good question would be about family.", "no_json"),
        ('{"Question": "How important is tradition to you?", "Options": ["Very"]}', "option_count"),
        (
            '{"Question": "How important is tradition to you?", "Options": ['
            + ", ".join(f'"o{i}"' for i in range(12))
            + "]}",
            "option_count",
        ),
        (
            '{"Question": "How important is tradition to you?", "Options": ["Very", "very", "Not"]}',
            "duplicate_options",
        ),
        (
            '{"Question": "How much do you like tradition?", "Options": ["1", "2", "3", "4", "5"]}',
            "scale_without_anchors",
        ),
        ('{"Question": "Hi?", "Options": ["Yes", "No"]}', "no_question"),
        (  # no words before the scale's ends: a number, not a question
            '{"Question": "23,000,0011 (1 = none at all, 10 = a great deal)", "Options": ['
            + ", ".join(f'"{n}"' for n in range(1, 11))
            + "]}",
            "no_question",
        ),
        ('{"Question": "Security questions", "Options": ["Yes", "No"]}', "no_question"),
        (
            '{"Question": "How important is tradition to you?", "Options": "Yes or no"}',
            "options_not_a_list",
        ),
    ],
)
def test_parse_rejects_with_a_countable_reason(output: str, reason: str) -> None:
    with pytest.raises(InvalidQuestion) as caught:
        parse_question(output)
    assert caught.value.reason == reason


def test_numeric_scale_with_anchors_is_valid() -> None:
    parsed = parse_question(
        '{"Question": "On a scale where 1 means never and 5 means always, how often do you pray?", "Options": ["1", "2", "3", "4", "5"]}'
    )
    assert parsed.options[-1] == "5"


# --------------------------------------------------------------------------- prompt shapes


def test_generation_prompt_matches_the_published_shape(tmp_path: Path) -> None:
    generator = QuestionGenerator(ScriptedModel(), RunStore.open(tmp_path), prefill="")
    topic = Topic(id="religion", name="Religious Values")
    examples = [
        Question(
            topic="Religious Values",
            text="How important is religion in your life?",
            options=("Very important", "Not important"),
        ),
        Question(topic="Religious Values", text="Do you believe in hell?", options=("Yes", "No")),
    ]
    system, user = generator.prompt(topic, examples)
    assert system["content"] == (
        "You are a social scientist on the World Values Survey team, dedicated to studying and understanding shifts in human "
        "values across nearly 100 countries. Your work involves rigorous research designs and aims to capture a comprehensive "
        "view of human beliefs through nationally representative surveys."
    )
    # The published template; its closing newline is trimmed (trailing whitespace of a message).
    assert user["content"] == (
        "Please come up with one new survey question.\n"
        "Make sure your question addresses the topic of Religious Values.\n"
        "For reference, here are some example questions:\n"
        "#Example 1:\nQuestion: How important is religion in your life?\nOptions: ['Very important', 'Not important']\n\n"
        "#Example 2:\nQuestion: Do you believe in hell?\nOptions: ['Yes', 'No']\n\n"
        "Note that your question should be clearly different from the example questions provided and must pertain to the topic of Religious Values.\n"
        'Please return your question in JSON format, for example:{"Question": ..., "Options": [..., ..., ...]}.\n'
        "Return the JSON data only and do not include any additional text or information."
    )


def test_examples_are_up_to_two_generated_and_the_rest_seeds(tmp_path: Path) -> None:
    import random

    generator = QuestionGenerator(ScriptedModel(), RunStore.open(tmp_path))
    seeds = [
        Question(topic="t", text=f"Seed question {i}?", options=("a", "b"), source="seed")
        for i in range(8)
    ]
    generated = [
        Question(topic="t", text=f"Generated question {i}?", options=("a", "b")) for i in range(4)
    ]
    picked = generator.pick_examples(seeds, generated, random.Random(1))
    assert len(picked) == 5
    assert sum(q.source == "generated" for q in picked) == 2
    assert len(generator.pick_examples(seeds, [], random.Random(1))) == 5


# --------------------------------------------------------------------------- topics and seeds


def test_builtin_topics_cover_the_13_wvs_sections_with_5_seeds_each() -> None:
    topics = load_topics()
    assert len(topics) == 13
    assert all(len(t.seeds) >= 5 for t in topics)
    assert next(t for t in topics if t.covers("Q234A")).id == "political_participation"
    assert next(t for t in topics if t.covers("Q57")).id == "trust"


@pytest.mark.skipif(
    not SHARED_WVS.exists(), reason="../shared/data/wvs is absent: WVS seed splitting needs it"
)
def test_wvs_file_loads_as_seeds_split_by_topic() -> None:
    seeds = seeds_from_file(SHARED_WVS / "wvs_questions.json", load_topics())
    counts = {name: len(qs) for name, qs in seeds.items()}
    assert counts["Economic Values"] == 6 and counts["Corruption"] == 9 and counts["Security"] == 21
    assert sum(counts.values()) == 260  # Q1–Q259 plus Q234A; demographics Q260+ belong to no topic


# --------------------------------------------------------------------------- generation with filters


def scripted_questions(texts: list[str]) -> ScriptedModel:
    """A model that answers successive requests with successive canned outputs."""
    queue = list(texts)
    return ScriptedModel(lambda prompt: queue.pop(0) if queue else "no more")


def test_generation_filters_count_every_rejection_and_resume(
    tmp_path: Path, embedder: Embedder
) -> None:
    topic = Topic(
        id="family",
        name="Family",
        seeds=({"question": "How important is family in your life?", "options": ("Very", "Not")},),
    )  # type: ignore[arg-type]
    outputs = [
        'How often do you eat dinner with your whole family?", "Options": ["Daily", "Weekly", "Rarely"]}',
        'How important is family in your life?", "Options": ["Very", "Not"]}',  # exact copy of the seed
        'How often do you have dinner together with your entire family?", "Options": ["Daily", "Weekly", "Rarely"]}',  # near copy
        "I cannot do that.",
        'Should grown children support their parents financially?", "Options": ["Yes", "No"]}',  # too close to eval
        'Who should decide where a young couple lives?", "Options": ["The couple", "Their parents", "Both"]}',
    ]
    store = RunStore.open(tmp_path)
    generator = QuestionGenerator(
        scripted_questions(outputs),
        store,
        embedder=embedder,
        dedup_threshold=0.85,
        decontaminate_against=[
            "Do adult children have a duty to provide financial support for their parents?"
        ],
        decontamination_threshold=0.75,
    )
    stats = generator.run(
        [topic], {"Family": topic.seed_records()}, per_topic=6, max_rounds=1, show_progress=False
    )["Family"]
    assert stats.requested == 6 and stats.kept == 2
    assert dict(stats.rejected) == {
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "no_json": 1,
        "decontaminated": 1,
    }
    kept = store.read(Question)
    assert [q.text for q in kept] == [
        "How often do you eat dinner with your whole family?",
        "Who should decide where a young couple lives?",
    ]
    assert all(len(q.parent_ids) == 1 for q in kept)  # lineage: which examples it was shown
    # Resume with the target already met: nothing is generated, the log is re-read.
    again = QuestionGenerator(
        ScriptedModel(lambda p: pytest.fail("should not generate")), store, embedder=embedder
    )
    resumed = again.run(
        [topic], {"Family": topic.seed_records()}, per_topic=2, show_progress=False
    )["Family"]
    assert resumed.kept == 2 and resumed.requested == 6


# --------------------------------------------------------------------------- instance rules


def answer(dist: tuple[float, ...], prompt: str, culture: str = "") -> Answer:
    return Answer(question_id="qst-x", culture=culture, prompt=prompt, model="m", distribution=dist)


def test_distributional_rule_keeps_planted_divergence_and_rejects_identical() -> None:
    question = Question(
        topic="t", text="Is it rude to refuse a gift?", options=("Yes", "No", "Depends")
    )
    question_id = question.id
    unaware = Answer(
        question_id=question_id, prompt="unaware", model="m", distribution=(0.7, 0.2, 0.1)
    )
    divergent = Answer(
        question_id=question_id,
        culture="JPN",
        prompt="aware",
        model="m",
        distribution=(0.1, 0.8, 0.1),
    )
    identical = Answer(
        question_id=question_id,
        culture="USA",
        prompt="aware",
        model="m",
        distribution=(0.7, 0.2, 0.1),
    )
    undecided = Answer(
        question_id=question_id,
        culture="MEX",
        prompt="aware",
        model="m",
        distribution=(0.34, 0.33, 0.33),
    )
    rule = InstanceRule("jsd", jsd_threshold=0.1, min_confidence=0.4)
    found = detect_instances([question], [unaware, divergent, identical, undecided], [rule])
    assert [i.culture for i in found] == ["JPN"]
    instance = found[0]
    assert instance.aware_distribution == (0.1, 0.8, 0.1) and instance.unaware_distribution == (
        0.7,
        0.2,
        0.1,
    )
    assert instance.divergence == pytest.approx(
        js_divergence(np.array([0.1, 0.8, 0.1]), np.array([0.7, 0.2, 0.1])), abs=1e-6
    )
    assert instance.divergence >= 0.1
    # the paper's rule also flags the flat MEX answer (its argmax moved), the distributional one does not
    paper = detect_instances(
        [question], [unaware, divergent, identical, undecided], [InstanceRule("argmax")]
    )
    assert sorted(i.culture for i in paper) == ["JPN"] or sorted(i.culture for i in paper) == [
        "JPN",
        "MEX",
    ]
    assert "MEX" not in {i.culture for i in found}


def test_sampled_answers_give_empirical_distributions() -> None:
    question = Question(topic="t", text="Do you tip in restaurants?", options=("Always", "Never"))
    unaware = Answer(
        question_id=question.id, prompt="unaware", model="m", mode="sample", parsed=(1, 1, 1, 2)
    )
    aware = Answer(
        question_id=question.id,
        culture="JPN",
        prompt="aware",
        model="m",
        mode="sample",
        parsed=(2, 2, 2, None),
    )
    (instance,) = detect_instances([question], [unaware, aware], [InstanceRule("argmax")])
    assert instance.aware_distribution == (0.0, 1.0) and instance.unaware_distribution == (
        0.75,
        0.25,
    )


# --------------------------------------------------------------------------- rating scales


def test_scales_alternate_and_a_scale_request_gets_numbers_and_the_models_anchors(
    tmp_path: Path,
) -> None:
    """`scales=(None, 10)`: requests alternate free / 10-point; the model writes each scale
    question, then its low anchor, then its high anchor; the options are 1..10."""
    topic = Topic(
        id="work",
        name="Work",
        seeds=({"question": "How important is work in your life?", "options": ("Very", "Not")},),
    )  # type: ignore[arg-type]
    seen: list[str] = []

    def reply(prompt: object) -> str:
        last = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)  # type: ignore[index]
        seen.append(last)
        if last.endswith("10 = "):
            return "very much), ignored"
        if last.endswith("(1 = "):
            return "not at all, 10 = should not be reached"
        if last.endswith('"Options": ["'):
            return 'Daily", "Weekly", "Never"'
        scale_prompt = "scale from 1 to 10" in prompt_text(prompt)  # type: ignore[arg-type]
        return (
            "How much do you enjoy your job" if scale_prompt else "How often do you work late"
        ) + f" in year {len(seen)}?"

    store = RunStore.open(tmp_path)
    generator = QuestionGenerator(ScriptedModel(reply), store, scales=(None, 10))
    assert [generator.scale_for(a) for a in range(4)] == [None, 10, None, 10]
    stats = generator.run(
        [topic], {"Work": topic.seed_records()}, per_topic=2, max_rounds=1, show_progress=False
    )["Work"]
    assert stats.kept == 2, stats.rejected
    free, scaled = store.read(Question)
    assert free.options == ("Daily", "Weekly", "Never")
    assert free.text.startswith("How often do you work late")
    assert scaled.options == tuple(str(n) for n in range(1, 11))
    assert scaled.text.startswith("How much do you enjoy your job")
    assert scaled.text.endswith("(1 = not at all, 10 = very much)")
    # Only the free request asked for options; the scale request's prompt asked for a scale.
    assert sum(s.endswith('"Options": ["') for s in seen) == 1


def prompt_text(prompt: list[dict[str, str]]) -> str:
    return " | ".join(m["content"] for m in prompt)


def test_free_generation_prompt_is_unchanged_by_the_scale_option(tmp_path: Path) -> None:
    topic = Topic(id="t", name="Family", seeds=())  # type: ignore[arg-type]
    generator = QuestionGenerator(ScriptedModel(), RunStore.open(tmp_path), scales=(None, 10))
    free = generator.prompt(topic, [], None)[1]["content"]
    scaled = generator.prompt(topic, [], 10)[1]["content"]
    assert "scale" not in free
    assert '"Options": [..., ..., ...]' in free
    assert "scale from 1 to 10" in scaled and '"Options": ["1", ..., "10"]' in scaled


@pytest.mark.parametrize(
    ("scales", "message"),
    [((12,), "3 to 11 points"), ((), "at least one format")],
)
def test_bad_scales_are_refused(tmp_path: Path, scales: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuestionGenerator(ScriptedModel(), RunStore.open(tmp_path), scales=scales)
    with pytest.raises(ValueError, match="structured"):
        QuestionGenerator(ScriptedModel(), RunStore.open(tmp_path), structured=False, scales=(10,))


def test_chosen_anchors_are_the_pair_the_question_makes_likelier_than_a_blank_does(
    tmp_path: Path,
) -> None:
    """`anchor_pairs`: the model writes the scale question, then the ends are the pair whose
    likelihood rises most over a blank question; a pair likely whatever the question (here
    "never, very often") is not chosen for that alone."""
    topic = Topic(id="ethics", name="Ethics", seeds=())  # type: ignore[arg-type]
    pairs = (("never", "very often"), ("never justifiable", "always justifiable"))

    class Scorer(ScriptedModel):
        def score(self, prompts: object, candidates: list[list[str]]) -> list[list[float]]:  # type: ignore[override]
            self.scored = getattr(self, "scored", 0) + len(candidates)
            out = []
            for prompt, options in zip(prompts, candidates, strict=True):  # type: ignore[call-overload]
                asks = "justified" in prompt[0]["content"]
                out.append([-1.0 if "often" in o else (-2.0 if asks else -6.0) for o in options])
            return out

    model = Scorer(lambda prompt: "Can cheating on taxes be justified")
    store = RunStore.open(tmp_path)
    generator = QuestionGenerator(model, store, scales=(10,), anchor_pairs=pairs)
    stats = generator.run([topic], {"Ethics": []}, per_topic=1, max_rounds=1, show_progress=False)
    assert stats["Ethics"].kept == 1, stats["Ethics"].rejected
    (question,) = store.read(Question)
    assert question.text == (
        "Can cheating on taxes be justified (1 = never justifiable, 10 = always justifiable)"
    )
    assert question.options == tuple(str(n) for n in range(1, 11))
    # One request with the question, and the blank one once for its scale, not per question.
    assert model.scored == 2

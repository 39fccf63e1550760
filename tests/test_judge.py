"""The judge: CLCA's drop rule, robust parsing with corrections, filters, reliability figures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from culturesim.agents.judge.filters import (
    FilterPolicy,
    Threshold,
    agreement,
    clca_drops,
    cohen_kappa,
    decide_dialogues,
    decide_instances,
)
from culturesim.agents.judge.judge import Judge, JudgeRequest, UnreadableVerdict, parse_verdict
from culturesim.agents.judge.rubrics import RubricError, load_rubric_file, load_rubrics
from culturesim.models.base import Prompt
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Label, Verdict
from tests.conftest import ScriptedModel, prompt_text

RUBRICS = load_rubrics()
CONFIDENCES = ("very confident", "confident", "not sure")


@pytest.mark.parametrize(
    ("quality", "quality_confidence", "meta", "meta_confidence"),
    list(itertools.product(("good", "bad"), CONFIDENCES, ("good", "bad"), CONFIDENCES)),
)
def test_clca_drop_rule_over_every_combination(
    quality: str, quality_confidence: str, meta: str, meta_confidence: str
) -> None:
    q = Label(dimension="quality", value=quality, confidence=quality_confidence)  # type: ignore[arg-type]
    m = Label(dimension="meta", value=meta, confidence=meta_confidence)  # type: ignore[arg-type]
    # The published rule: drop if (meta = bad and very confident) or (quality = bad and very confident).
    expected = (meta == "bad" and meta_confidence == "very confident") or (
        quality == "bad" and quality_confidence == "very confident"
    )
    assert clca_drops(q, m) is expected
    verdicts = [
        Verdict(target_id="d1", rubric="clca_quality", judge="j", labels=(q,)),
        Verdict(target_id="d1", rubric="clca_meta", judge="j", labels=(m,)),
    ]
    decision = decide_dialogues(verdicts)[0]
    assert decision.status == ("dropped" if expected else "kept")


@pytest.mark.parametrize(
    "reply",
    [
        "QUALITY: bad\nCONFIDENCE: very confident\nREASON: It repeats itself.",
        "**Quality:** Bad\n**Confidence:** Very confident\n**Reason:** It repeats itself.",
        '{"quality": "bad", "confidence": "very confident", "reason": "It repeats itself."}',
        'Sure. {"Quality": "BAD", "Confidence": "Very Confident", "Reason": "It repeats itself."}',
    ],
)
def test_verdicts_parse_from_json_or_labelled_lines(reply: str) -> None:
    (label,) = parse_verdict(reply, RUBRICS["clca_quality"])
    assert (label.value, label.confidence) == ("bad", "very confident")
    assert label.reason == "It repeats itself."


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("QUALITY: bad", "no CONFIDENCE line"),
        ("CONFIDENCE: confident", "no QUALITY line"),
        ("QUALITY: terrible\nCONFIDENCE: confident", "must be one of good, bad"),
        ("QUALITY: good\nCONFIDENCE: maybe", "confidence must be one of"),
    ],
)
def test_unreadable_verdicts_say_what_is_missing(reply: str, problem: str) -> None:
    with pytest.raises(UnreadableVerdict, match=problem):
        parse_verdict(reply, RUBRICS["clca_quality"])


def test_a_malformed_verdict_is_corrected_once_then_recorded_as_unparseable() -> None:
    def reply(prompt: Prompt) -> str:
        text = prompt_text(prompt)
        if "target-fixable" in text and "could not be read" in text:
            return "QUALITY: good\nCONFIDENCE: confident\nREASON: fine"
        return "It is a lovely conversation."

    judge = Judge(ScriptedModel(reply), max_attempts=2)
    context = {"scenario": {"setting": "s"}, "participants": [], "transcript": []}
    requests = [
        JudgeRequest(
            "d-fixable", RUBRICS["clca_quality"], {**context, "transcript": ["target-fixable"]}
        ),
        JudgeRequest("d-broken", RUBRICS["clca_quality"], context),
    ]
    fixed, broken = judge.run(requests)
    assert fixed.labels[0].value == "good" and not fixed.parse_error
    assert len(requests[0].attempts) == 2
    assert broken.labels == () and broken.parse_error == "no CONFIDENCE line"
    assert len(requests[1].attempts) == 2
    decisions = decide_dialogues([broken])
    assert decisions[0].status == "unparseable", "never silently kept or dropped"
    kept = decide_dialogues([broken], FilterPolicy(on_unparseable="keep"))
    assert kept[0].status == "kept"


def test_thresholds_on_any_dimension() -> None:
    label = Label(dimension="politeness", value="3", confidence="confident")
    assert Threshold.parse("politeness>=3").passes(label)
    assert not Threshold.parse("politeness>3").passes(label)
    assert Threshold.parse("quality=good").passes(Label(dimension="quality", value="Good"))
    with pytest.raises(ValueError, match="DIMENSION OP VALUE"):
        Threshold.parse("politeness is high")
    verdicts = [
        Verdict(target_id="d", rubric="custom", judge="j", labels=(label,)),
    ]
    policy = FilterPolicy(rule="none", thresholds=(Threshold.parse("politeness>=4"),))
    assert decide_dialogues(verdicts, policy)[0].reason == "threshold politeness>=4"


def test_user_rubric_with_a_scale_and_its_own_template(tmp_path: Path) -> None:
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "polite.jinja2").write_text(
        "Rate {{ thing }}.\n{{ rubric.question }}\n"
        "{% for d in rubric.dimensions %}{{ d.name | upper }}: <{{ d.choices | join(' or ') }}>\n"
        "{% endfor %}CONFIDENCE: ...\n"
    )
    (tmp_path / "polite.yaml").write_text(
        "name: politeness\ntemplate: judge/polite.jinja2\nquestion: How polite is it?\n"
        "dimensions:\n  - {name: politeness, scale: [1, 5]}\n"
    )
    rubric = load_rubrics([tmp_path])["politeness"]
    seen = []

    def reply(prompt: Prompt) -> str:
        seen.append(prompt_text(prompt))
        return "POLITENESS: 4/5\nCONFIDENCE: confident"

    judge = Judge(ScriptedModel(reply), library=PromptLibrary([tmp_path]))
    (verdict,) = judge.run([JudgeRequest("x", rubric, {"thing": "this greeting"})])
    assert verdict.labels[0].value == "4"
    assert "Rate this greeting." in seen[0] and "an integer from 1 to 5" in seen[0]
    (tmp_path / "bad.yaml").write_text("name: bad\nquestion: q\ndimensions:\n  - {name: x}\n")
    with pytest.raises(RubricError, match="exactly one of labels or scale"):
        load_rubric_file(tmp_path / "bad.yaml")


def test_cohen_kappa_and_position_agreement() -> None:
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    # 50% observed agreement with 50/50 marginals is chance: kappa 0.
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    # A worked example: observed 0.7, expected 0.5 -> kappa 0.4.
    first = ["y"] * 5 + ["n"] * 5
    second = ["y"] * 4 + ["n"] + ["y"] * 2 + ["n"] * 3
    assert cohen_kappa(first, second) == pytest.approx(0.4)

    def verdict(target: str, value: str, variant: str) -> Verdict:
        return Verdict(
            target_id=target,
            rubric="clca_quality",
            judge="j",
            variant=variant,
            labels=(Label(dimension="quality", value=value),),
        )

    verdicts = [verdict(f"d{i}", v, "default") for i, v in enumerate("ggbb")] + [
        verdict(f"d{i}", v, "swapped") for i, v in enumerate("gbbb")
    ]
    (report,) = agreement(verdicts, ("j", "default"), ("j", "swapped"))
    assert report.items == 4 and report.agreement == 0.75


def test_score_mode_reads_labels_from_probabilities() -> None:
    # ScriptedModel scores a candidate by minus its length: " bad" beats " good" by one nat,
    # a share of 1 / (1 + e^-1) = 0.73, which the documented rule calls "confident".
    judge = Judge(ScriptedModel(), mode="score")
    context = {"scenario": {"setting": "s"}, "participants": [], "transcript": []}
    (verdict,) = judge.run([JudgeRequest("d1", RUBRICS["clca_quality"], context)])
    (label,) = verdict.labels
    assert (label.value, label.confidence) == ("bad", "confident")
    assert verdict.judge == "scripted#score" and not verdict.parse_error
    with pytest.raises(ValueError, match="generate or score"):
        Judge(ScriptedModel(), mode="vote")


@pytest.mark.parametrize(
    ("well_formed", "plausible", "all_yes", "confident_no"),
    [
        (("yes", "not sure"), ("yes", "confident"), "kept", "kept"),
        (("no", "not sure"), ("yes", "confident"), "dropped", "kept"),
        (("yes", "confident"), ("no", "confident"), "dropped", "kept"),
        (("yes", "confident"), ("no", "very confident"), "dropped", "dropped"),
        (("no", "very confident"), ("no", "not sure"), "dropped", "dropped"),
    ],
)
def test_instance_rules_keep_and_drop(
    well_formed: tuple[str, str], plausible: tuple[str, str], all_yes: str, confident_no: str
) -> None:
    labels = [
        Label(dimension=name, value=value, confidence=confidence)  # type: ignore[arg-type]
        for name, (value, confidence) in (("well_formed", well_formed), ("plausible", plausible))
    ]
    verdict = Verdict(target_id="ins-1", rubric="culturespa_instance", judge="j", labels=labels)
    broken = Verdict(
        target_id="ins-2", rubric="culturespa_instance", judge="j", labels=[], parse_error="x"
    )
    for rule, expected in (("all_yes", all_yes), ("confident_no", confident_no)):
        decided = decide_instances([verdict, broken], FilterPolicy(instance_rule=rule))
        assert [d.status for d in decided] == [expected, "unparseable"]
        if expected == "dropped":
            assert "judge check" in decided[0].reason
    with pytest.raises(ValueError, match="confident_no"):
        FilterPolicy(instance_rule="lenient")

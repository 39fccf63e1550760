"""A reply that gives back the prompt's placeholders ("<one sentence>") is malformed: counted,
never stored as content, and never a training target."""

from __future__ import annotations

from pathlib import Path

import pytest

from culturesim.agents.judge.judge import UnreadableVerdict, parse_verdict
from culturesim.agents.judge.rubrics import load_rubrics
from culturesim.agents.roleplay.protocol import MalformedTurn, parse_turn
from culturesim.models.base import Prompt
from culturesim.prompt_library import echoes_placeholder
from culturesim.records import Dialogue, FilterDecision
from culturesim.store import RunStore
from tests.conftest import ScriptedModel, prompt_text
from tests.helpers import actor_reply


def echoing_actor(prompt: Prompt) -> str:
    """Turns are fine; every intent reply repeats the form."""
    if "INTENT" in prompt_text(prompt) and "intent" in prompt_text(prompt):
        return " <one sentence>\nCULTURAL: <one sentence, or none>"
    return actor_reply(prompt)


def test_placeholder_detection() -> None:
    assert echoes_placeholder("INTENT: <one sentence>")
    assert echoes_placeholder("CULTURAL: <one sentence, or none>")
    assert not echoes_placeholder("She wants a loan of 5 < 7 days.")
    assert not echoes_placeholder("To be polite to her uncle.")


def test_echoed_turns_and_verdicts_are_malformed() -> None:
    with pytest.raises(MalformedTurn, match="placeholder"):
        parse_turn("ACTION: speak\nOUTPUT: <your own words, or what you do>")
    rubric = load_rubrics()["clca_quality"]
    reply = "QUALITY: good\nCONFIDENCE: very confident\nREASON: <one sentence>"
    with pytest.raises(UnreadableVerdict, match="placeholder"):
        parse_verdict(reply, rubric)
    parse_verdict(reply.replace("<one sentence>", "It stays on topic."), rubric)


def test_echoed_intents_are_counted_and_never_reach_the_corpus(tmp_path: Path) -> None:
    from culturesim.agents.judge.stage import JudgeSection
    from culturesim.agents.judge.stage import run as judge
    from culturesim.agents.roleplay.stage import SimulateSection
    from culturesim.agents.roleplay.stage import run as simulate
    from culturesim.context import ModelFactory, ModelRoles, RunContext, RunLayout
    from culturesim.training.corpus_stage import CorpusSection
    from culturesim.training.corpus_stage import run as corpus

    factory = ModelFactory()
    factory.provide("echo", ScriptedModel(echoing_actor, "echo"))
    factory.provide("judge", ScriptedModel(lambda p: "QUALITY: good", "judge"))
    ctx = RunContext(
        RunLayout(tmp_path / "run"),
        factory,
        ModelRoles(actor="echo", judge="judge"),
        show_progress=False,
    )
    section = SimulateSection(
        scenarios="borrow_money", cultures="JPN", per_episode=1, max_turns=3, action_mode="free"
    )
    result = simulate(section, ctx)
    assert result.counts["intent_placeholders"] > 0
    dialogues = RunStore(tmp_path / "run" / "simulate").read(Dialogue)
    assert dialogues and all(not t.intent for d in dialogues for t in d.turns)
    judge(JudgeSection(rule="none", on_unparseable="keep"), ctx)
    corpus(CorpusSection(embeddings=False), ctx)
    for path in (tmp_path / "run" / "corpus").rglob("*.jsonl"):
        assert "<one sentence" not in path.read_text()


def test_the_corpus_refuses_rows_with_placeholders(tmp_path: Path) -> None:
    import json

    from culturesim.context import RunContext, RunLayout
    from culturesim.training.corpus_stage import CorpusSection, run
    from tests.helpers import make_run

    run_dir = make_run(tmp_path)
    store = RunStore(run_dir)
    kept = {d.target_id for d in store.read(FilterDecision) if d.status == "kept"}
    dialogues = store.read(Dialogue)
    index = next(i for i, d in enumerate(dialogues) if d.id in kept)
    turns = [
        t.model_copy(update={"utterance": "INTENT: <one sentence>"}) for t in dialogues[index].turns
    ]
    dialogues[index] = dialogues[index].model_copy(update={"turns": tuple(turns)})
    (run_dir / "dialogue.jsonl").write_text("".join(d.to_json() + "\n" for d in dialogues))
    ctx = RunContext(RunLayout.for_stage("corpus", tmp_path / "c", inputs=[run_dir]))
    result = run(CorpusSection(embeddings=False), ctx)
    removed = result.counts["removed"]
    assert removed.get("clca_dialogue template placeholders", 0) >= 1
    summary = json.loads((tmp_path / "c" / "corpus_summary.json").read_text())
    assert summary["removed"]["clca_dialogue template placeholders"] >= 1
    for path in (tmp_path / "c").rglob("*.jsonl"):
        assert "<one sentence" not in path.read_text()

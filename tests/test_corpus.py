"""The corpus builder: CLCA views, CultureSPA sets, DPO pairs, splits, dedup, decontamination."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from datasets import load_from_disk
from typer.testing import CliRunner

from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.cli import app
from culturesim.records import Episode
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore
from tests.conftest import ScriptedModel
from tests.helpers import CULTURES, EVAL_QUESTION, actor_reply, make_run

runner = CliRunner()


def test_corpus_builds_every_set_in_trl_format_with_lineage(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps([{"id": "Q1", "question": EVAL_QUESTION}]))
    out = tmp_path / "corpus"
    result = runner.invoke(
        app, ["corpus", str(run), "--out", str(out), "--eval-questions", str(eval_file)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "corpus_summary.json").read_text())

    # CLCA: only the JPN dialogues survived the judge; each participant's view plus intents.
    clca = load_from_disk(str(out / "clca" / "hf"))
    rows = list(clca["train"]) + list(clca["validation"])
    assert {r["culture"] for r in rows} == {"JPN"}
    views = [r for r in rows if r["source"] == "clca_dialogue"]
    intents = [r for r in rows if r["source"] == "clca_intent"]
    kept_dialogues = {r["lineage"][0] for r in views}
    assert len(intents) == min(len(kept_dialogues), round(len(views) / 2)), "mixture 2:1 at most"
    store = RunStore(run)
    episodes = {e.id: e for e in store.read(Episode)}
    for row in views:
        _dialogue_id, episode_id, persona_id = row["lineage"]
        persona = next(p for p in episodes[episode_id].personas if p.id == persona_id)
        system = row["messages"][0]
        assert system["role"] == "system" and system["content"].startswith(
            f"You are {persona.name},"
        )
        others = [p.name for p in episodes[episode_id].personas if p.id != persona_id]
        assert all(not system["content"].startswith(f"You are {o}") for o in others)
        roles = [m["role"] for m in row["messages"][1:]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in itertools.pairwise(roles)), "roles alternate"
        assert "Your goal:" in system["content"] and "culture that is" in system["content"]
    for row in intents:
        assert (
            "To be polite. (expectation: Guests defer to hosts.)" in row["messages"][-1]["content"]
        )

    # CultureSPA: the evaluation question was removed; joint and per-culture sets; DPO pairs.
    joint = load_from_disk(str(out / "culturespa_joint" / "hf"))
    spa = list(joint["train"]) + list(joint["validation"])
    assert len(spa) == 4 and all(EVAL_QUESTION not in json.dumps(r) for r in spa)
    assert summary["removed"]["culturespa evaluation overlap"] == 2
    for row in spa:
        assert (
            row["messages"][0]["content"].endswith("cultural background.")
            or "background" in row["messages"][0]["content"]
        )
        assert row["messages"][-1]["content"] == ("2" if row["culture"] == "JPN" else "1")
    assert (out / "culturespa_JPN" / "train.jsonl").exists()
    assert (out / "culturespa_DEU" / "validation.parquet").exists() or (
        out / "culturespa_DEU" / "train.parquet"
    ).exists()
    dpo = [
        json.loads(line)
        for split in ("train", "validation")
        for line in (out / "dpo" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert {r["culture"] for r in dpo} == {"JPN"}, "DEU's aware answer equals the unaware one"
    for row in dpo:
        assert row["chosen"][0]["content"] == "2" and row["rejected"][0]["content"] == "1"
        assert row["prompt"][0]["role"] == "system" and len(row["lineage"]) == 4
    assert summary["removed"]["dpo: aware and unaware answers agree"] == 3

    # Splits are stratified by culture: every culture with 2+ rows has a validation row.
    for name in ("clca", "culturespa_joint"):
        data = load_from_disk(str(out / name / "hf"))
        for culture in set(data["train"]["culture"]) | set(data["validation"]["culture"]):
            total = data["train"]["culture"].count(culture) + data["validation"]["culture"].count(
                culture
            )
            if total >= 2:
                assert culture in data["validation"]["culture"]
    card = (out / "README.md").read_text()
    assert "| clca |" in card and "evaluation overlap" in card


def test_mixture_caps_intent_views_at_the_ratio() -> None:
    from culturesim.training.corpus import Row, mix

    views = [Row("clca", "JPN", "clca_dialogue", [f"d{i}"]) for i in range(10)]
    intents = [Row("clca", "JPN", "clca_intent", [f"d{i}"]) for i in range(10)]
    assert sum(r.source == "clca_intent" for r in mix(views, intents, (2, 1))) == 5
    assert sum(r.source == "clca_intent" for r in mix(views, intents, (1, 1))) == 10
    assert sum(r.source == "clca_intent" for r in mix(views, intents, (1, 0))) == 0


def test_near_duplicate_dialogue_views_are_removed() -> None:
    from culturesim.models.embeddings import Embedder
    from culturesim.training.corpus import Row, remove_near_duplicates

    head = [
        {"role": "system", "content": "You are Sato Kenji, a 61-year-old office worker."},
        {"role": "user", "content": "[Scene] Two relatives meet at a family home in Nagoya."},
    ]

    def view(record: str, user: str, reply: str, culture: str = "JPN") -> Row:
        turns = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return Row("clca", culture, "clca_dialogue", [record], [*head, *turns])

    rows = [
        view("a", "Hello, how was the trip to Osaka?", "It was long but good."),
        view("b", "Hello, how was the trip to Osaka?", "It was long but good."),  # exact
        view("c", "Hello, how was the trip to Osaka?", "It was long, but good!"),  # near
        view("a", "Hello, how was the trip to Osaka?", "It was long but good, thanks."),  # same
        view("d", "Shall we split the bill tonight?", "No, this one is on me."),
        view("e", "Hello, how was the trip to Osaka?", "It was long but good.", "MEX"),
    ]
    kept, removed = remove_near_duplicates(rows, Embedder(), 0.95)
    assert [(r.record_ids[0], r.culture) for r in kept] == [
        ("a", "JPN"),
        ("a", "JPN"),
        ("d", "JPN"),
        ("e", "MEX"),
    ]
    assert removed == 2


def test_unjudged_dialogues_are_refused_unless_asked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    store = RunStore.open(run, {"test": "unjudged"})
    library = ScenarioLibrary()
    episodes = build_episodes(
        library, [library.get("borrow_money")], culture_groups("JPN", CULTURES)
    )
    Simulator(
        ScriptedModel(actor_reply),
        store,
        SimulateSection(per_episode=1, action_mode="free", max_turns=2),
        cultures=CULTURES,
    ).run(episodes, show_progress=False)
    refused = runner.invoke(app, ["corpus", str(run), "--out", str(tmp_path / "c")])
    assert refused.exit_code == 1 and "culturesim judge" in refused.output
    allowed = runner.invoke(
        app, ["corpus", str(run), "--out", str(tmp_path / "c"), "--unjudged", "--no-embeddings"]
    )
    assert allowed.exit_code == 0, allowed.output


def test_soft_targets_build_a_distillation_set_that_train_distill_reads(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    run = make_run(tmp_path)
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps([{"id": "Q1", "question": EVAL_QUESTION}]))
    out = tmp_path / "corpus"
    built = runner.invoke(
        app,
        [
            *("corpus", str(run), "--out", str(out), "--eval-questions", str(eval_file)),
            *("--targets", "soft", "--answer-prefix", "The answer is "),
        ],
    )
    assert built.exit_code == 0, built.output
    soft = [
        json.loads(line)
        for split in ("train", "validation")
        for line in (out / "culturespa_soft" / f"{split}.jsonl").read_text().splitlines()
    ]
    # Both kept questions x both cultures; the evaluation question is kept out here too.
    assert len(soft) == 4 and all(EVAL_QUESTION not in json.dumps(r) for r in soft)
    for row in soft:
        expected = [0.3, 0.7] if row["culture"] == "JPN" else [0.9, 0.1]
        assert row["target"]["distribution"] == expected and row["target"]["codes"] == [1, 2]
        assert row["messages"][-1] == {"role": "assistant", "content": "The answer is "}
    summary = json.loads((out / "corpus_summary.json").read_text())
    assert summary["removed"]["culturespa_soft evaluation overlap"] == 2
    assert "CultureSPA targets: soft" in (out / "README.md").read_text()

    # Distillation refuses a set without soft targets, naming what to build instead.
    wrong = runner.invoke(
        app,
        [
            *("train", str(out / "culturespa_joint"), "--out", str(tmp_path / "w")),
            *("--base", str(tiny_model_dir), "--method", "distill", "--max-steps", "1"),
        ],
    )
    assert wrong.exit_code == 1 and "corpus.targets: soft" in wrong.output
    trained = runner.invoke(
        app,
        [
            *("train", str(out / "culturespa_soft"), "--out", str(tmp_path / "s")),
            *("--base", str(tiny_model_dir), "--method", "distill", "--max-steps", "2"),
        ],
    )
    assert trained.exit_code == 0, trained.output
    card = json.loads((tmp_path / "s" / "adapter" / "culturesim_adapter.json").read_text())
    assert card["kind"] == "student distilled from soft targets" and card["steps"] == 2
    assert card["eval_loss"] is not None and card["eval_loss"] > 0

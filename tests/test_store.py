"""Run store: append-only, torn lines dropped and quarantined, resume by ids, manifest checks."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from culturesim.records import Dialogue, Question, Turn
from culturesim.store import ManifestMismatch, RunStore, StoreWarning


def q(i: int) -> Question:
    return Question(topic="t", text=f"Question {i}?", options=("yes", "no"))


def test_manifest_records_config_versions_and_seed(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"cultures": ["JPN"], "api_key": "sk-secret"}, seed=3)
    manifest = store.manifest()
    assert manifest["seed"] == 3
    assert manifest["config"]["cultures"] == ["JPN"]
    assert manifest["config"]["api_key"] == "<redacted>"
    assert "sk-secret" not in store.manifest_path.read_text()
    assert "torch" in manifest["versions"] and "python" in manifest["versions"]


def test_reopening_with_another_config_is_refused(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"cultures": ["JPN"]}, seed=1)
    RunStore.open(tmp_path / "run", {"cultures": ["JPN"]}, seed=1)  # same config resumes
    store.append(Question(topic="t", text="Is a question here?", options=("Yes", "No")))
    with pytest.raises(ManifestMismatch, match="cultures"):
        RunStore.open(tmp_path / "run", {"cultures": ["MEX"]}, seed=1)
    with pytest.raises(ManifestMismatch, match="seed"):
        RunStore.open(tmp_path / "run", {"cultures": ["JPN"]}, seed=2)


def test_append_read_and_done_ids(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path)
    store.append_many([q(1), q(2)])
    store.append(q(1))  # a duplicate write is read back once
    assert [r.text for r in store.read(Question)] == ["Question 1?", "Question 2?"]
    assert store.done_ids("question") == {q(1).id, q(2).id}
    assert store.path_for("question").read_text().count("\n") == 3


def test_torn_last_line_is_skipped_then_quarantined(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path)
    store.append_many([q(1), q(2)])
    path = store.path_for("question")
    path.write_bytes(path.read_bytes() + q(3).to_json()[:25].encode())  # killed mid-write
    with pytest.warns(StoreWarning, match="torn last line"):
        assert store.done_ids(Question) == {q(1).id, q(2).id}
    with pytest.warns(StoreWarning, match="quarantine"):
        store.append(q(4))
    assert [r.text for r in store.read(Question)] == ["Question 1?", "Question 2?", "Question 4?"]
    quarantined = [
        json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()
    ]
    assert quarantined[0]["line"] == q(3).to_json()[:25]


def test_corrupt_middle_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path)
    store.append(q(1))
    with open(store.path_for("question"), "a") as handle:
        handle.write("{not json\n")
    store.append(q(2))
    with pytest.warns(StoreWarning, match=r"question\.jsonl:2"):
        assert len(store.read(Question)) == 2


def _writer(root: str, start: int) -> None:
    store = RunStore(root)
    for i in range(start, start + 50):
        store.append(q(i))


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    RunStore.open(tmp_path)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path), k * 1000)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lines = RunStore(tmp_path).path_for("question").read_text().splitlines()
    assert len(lines) == 200
    assert all(Question.from_json(line) for line in lines)


def test_a_directory_without_records_can_take_a_new_config(tmp_path: Path) -> None:
    """A first attempt that failed before writing a record does not lock its directory."""
    RunStore.open(tmp_path / "run", {"model": "typo"}, seed=1)
    store = RunStore.open(tmp_path / "run", {"model": "smollm2"}, seed=1)
    assert store.manifest()["config"]["model"] == "smollm2"


def test_an_edit_to_a_record_is_caught_by_its_digest(tmp_path: Path) -> None:
    """A dialogue's id covers its lineage, not its turns; the digest covers the turns."""
    store = RunStore.open(tmp_path / "run", {"x": 1})
    turn = Turn(index=0, speaker="host", action="speak", utterance="Please come in.")
    store.append(Dialogue(episode_id="epi-1", sample_index=0, model="m", turns=(turn,)))
    assert len(store.read(Dialogue)) == 1
    path = store.path_for("dialogue")
    path.write_text(path.read_text().replace("Please come in.", "Go away."))
    with pytest.warns(StoreWarning, match=r"dialogue\.jsonl:1: unreadable record"):
        assert store.read(Dialogue) == []

"""The role-play engine on the real SmolLM2: 2- and 3-party scenes, and a SIGKILL mid-run."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Dialogue, Episode
from culturesim.store import RunStore

pytestmark = pytest.mark.slow


def test_smollm2_two_and_three_party_dialogues(smollm2_dialogues: tuple[Path, int]) -> None:
    run, intent_placeholders = smollm2_dialogues
    store = RunStore(run)
    by_template = {e.id: e.scenario.template_id for e in store.read(Episode)}
    dialogues = {by_template[d.episode_id]: d for d in store.read(Dialogue)}
    assert set(dialogues) == {"decline_invitation", "credit_for_work"}
    for name in ("decline_invitation", "credit_for_work"):
        dialogue = dialogues[name]
        assert_stop_reason_fits_the_turns(dialogue, limit=4)
        assert 1 <= len(dialogue.turns) <= 4
        assert [t.index for t in dialogue.turns] == list(range(len(dialogue.turns)))
        assert all(t.raw.startswith("ACTION: ") for t in dialogue.turns)
        spoken = [t for t in dialogue.turns if t.action in ("speak", "non-verbal")]
        assert spoken, f"{name}: nobody said or did anything"
        for turn in spoken:
            assert turn.utterance, turn
            assert "<" not in turn.intent, "a placeholder never becomes an intent"
    # An unlabelled spoken turn is one whose reply gave the form back: each one was counted.
    unlabelled = sum(
        not t.intent
        for d in dialogues.values()
        for t in d.turns
        if t.action in ("speak", "non-verbal")
    )
    assert unlabelled <= intent_placeholders
    for name, parties in (("decline_invitation", 2), ("credit_for_work", 3)):
        assert len({t.speaker for t in dialogues[name].turns}) <= parties
    three = dialogues["credit_for_work"].turns
    for a, b in itertools.pairwise(three):
        assert "manager" in (a.speaker, b.speaker), "the star graph routes turns via the manager"


def assert_stop_reason_fits_the_turns(dialogue: Dialogue, limit: int) -> None:
    """The stop reason must be what the turns show, not just any known reason."""
    turns, reason = dialogue.turns, dialogue.stop_reason
    if reason == "turn_limit":
        assert len(turns) == limit
    elif reason == "malformed":
        assert turns[-1].malformed
    elif reason in ("left", "all_left"):
        assert any(t.action == "leave" for t in turns)
    elif reason == "repetition":
        spoken = [t for t in turns if t.action in ("speak", "non-verbal")]
        assert len(spoken) >= 2 and spoken[-1] is turns[-1]
    else:
        raise AssertionError(f"unexpected stop reason {reason!r} after {len(turns)} turns")
    if reason != "turn_limit":
        assert len(turns) <= limit


def simulate_arguments(out: Path) -> list[str]:
    return [
        "simulate",
        "--out",
        str(out),
        "--scenarios",
        "noisy_neighbour",
        "--cultures",
        "DEU",
        "--per-episode",
        "3",  # a third dialogue, so the kill lands mid-run even on a loaded machine
        "--max-turns",
        "3",
        "--max-new-tokens",
        "24",
        "--concurrency",
        "1",
        "--seed",
        "5",
    ]


def simulate_command(out: Path) -> list[str]:
    return [sys.executable, "-c", "from culturesim.cli import app; app()", *simulate_arguments(out)]


def dialogue_lines(out: Path) -> list[str]:
    path = out / "dialogue.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(
    smollm2: TransformersModel, tmp_path: Path
) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    reference = tmp_path / "reference"
    # The uninterrupted run: the same command, in this process, on the session's loaded model.
    uninterrupted = CliRunner().invoke(app, simulate_arguments(reference))
    assert uninterrupted.exit_code == 0, uninterrupted.output

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        simulate_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while len(dialogue_lines(killed)) < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "no dialogue was written in 10 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written_before = len(dialogue_lines(killed))
    assert 1 <= written_before < 3, "the kill came after the first and before the last dialogue"

    subprocess.run(simulate_command(killed), check=True, env=env, capture_output=True)
    expected = [json.loads(line) for line in dialogue_lines(reference)]
    resumed = [json.loads(line) for line in dialogue_lines(killed)]
    assert len(resumed) == 3 and len({d["id"] for d in resumed}) == 3, "no duplicate, none lost"
    assert {d["id"] for d in resumed} == {d["id"] for d in expected}
    by_id = {d["id"]: d for d in expected}
    for dialogue in resumed:
        assert dialogue["turns"] == by_id[dialogue["id"]]["turns"], "the same texts"
        assert dialogue["stop_reason"] == by_id[dialogue["id"]]["stop_reason"]

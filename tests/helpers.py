"""Helpers shared by several test modules: scripted replies, and run stores built by hand."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from culturesim.agents.judge.judge import Judge, judge_dialogues
from culturesim.agents.judge.rubrics import load_rubrics
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.cli import app
from culturesim.models.base import Prompt
from culturesim.records import Answer, Dialogue, Episode, Instance, Question
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore
from tests.conftest import ScriptedModel, prompt_text

runner = CliRunner()
CULTURES = load_cultures()
EVAL_QUESTION = "How important is family in your life these days, would you say?"


WORDS = [
    "rice",
    "tea",
    "money",
    "wedding",
    "uncle",
    "train",
    "office",
    "garden",
    "rain",
    "festival",
    "shop",
    "debt",
    "promise",
    "holiday",
    "letter",
    "school",
    "doctor",
    "bicycle",
    "river",
    "temple",
    "market",
    "dinner",
    "gift",
    "harbour",
    "winter",
    "contract",
]
CALLS = iter(range(1_000_000))


def actor_reply(prompt: Prompt) -> str:
    text = prompt_text(prompt)
    if "intent" in text and "INTENT" in text:
        return " To be polite.\nCULTURAL: Guests defer to hosts."
    n = next(CALLS)
    words = " ".join(WORDS[(n * 7 + k * 11) % len(WORDS)] for k in range(6))
    return f" speak\nOUTPUT: About the {words}."


def judge_reply(prompt: Prompt) -> str:
    text = prompt_text(prompt)
    verdict = "bad" if "Mexico" in text else "good"  # the judge drops the MEX dialogues
    name = (
        "META"
        if "Judgements:" in text
        else ("QUALITY" if "good conversation" in text else "CULTURAL_ADHERENCE")
    )
    return f"{name}: {verdict}\nCONFIDENCE: very confident\nREASON: r"


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    store = RunStore.open(run, {"test": "corpus"})
    library = ScenarioLibrary()
    episodes = build_episodes(
        library,
        library.select("borrow_money,wedding_guest_list"),
        culture_groups("JPN,MEX", CULTURES),
    )
    Simulator(
        ScriptedModel(actor_reply),
        store,
        SimulateSection(per_episode=2, action_mode="free", max_turns=4),
        cultures=CULTURES,
    ).run(episodes, show_progress=False)
    dialogues = store.read(Dialogue)
    verdicts = judge_dialogues(
        Judge(ScriptedModel(judge_reply)),
        dialogues,
        {e.id: e for e in store.read(Episode)},
        CULTURES,
        load_rubrics(),
    )
    store.append_many(verdicts)
    questions = [
        Question(
            topic="t",
            text="Should children obey their elders without question?",
            options=("Yes", "No"),
        ),
        Question(
            topic="t",
            text="Is it acceptable to refuse a gift from a colleague?",
            options=("Yes", "No"),
        ),
        Question(topic="t", text=EVAL_QUESTION, options=("Very", "Not")),
    ]
    store.append_many(questions)
    for question in questions:
        unaware = Answer(
            question_id=f"survey:{question.id}",
            prompt="unaware",
            model="m",
            distribution=(0.8, 0.2),
        )
        store.append(unaware)
        for culture, dist in (("JPN", (0.3, 0.7)), ("DEU", (0.9, 0.1))):
            aware = Answer(
                question_id=f"survey:{question.id}", culture=culture, model="m", distribution=dist
            )
            store.append(aware)
            store.append(
                Instance(
                    question_id=question.id,
                    culture=culture,
                    rule="jsd",
                    aware_answer_id=aware.id,
                    unaware_answer_id=unaware.id,
                    aware_distribution=dist,
                    unaware_distribution=(0.8, 0.2),
                )
            )
    result = runner.invoke(app, ["judge", str(run), "--stats"])
    assert result.exit_code == 0, result.output
    return run


def make_probe_run(run: Path) -> Path:
    """A probe run store: generated questions, unaware and aware answers named as survey items
    ("survey:<id>"), and instances, as `culturesim probe` writes them."""
    store = RunStore.open(run, {"test": "probe"})
    questions = [
        Question(topic="t", text="Should children obey their elders?", options=("Yes", "No")),
        Question(topic="t", text="Is it fine to refuse a gift?", options=("Yes", "No")),
    ]
    store.append_many(questions)
    for question in questions:
        unaware = Answer(
            question_id=f"survey:{question.id}",
            prompt="unaware",
            model="m",
            distribution=(0.8, 0.2),
        )
        store.append(unaware)
        for culture, dist in (("JPN", (0.3, 0.7)), ("DEU", (0.9, 0.1))):
            aware = Answer(
                question_id=f"survey:{question.id}", culture=culture, model="m", distribution=dist
            )
            store.append(aware)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(server_app: FastAPI) -> Iterator[str]:
    """Serve an app on a free loopback port for the duration of the block."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(server_app, host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

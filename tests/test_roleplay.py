"""The role-play engine's logic with scripted models: protocol, retries, policies, stops."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from culturesim.agents.roleplay.conversation import Conversation
from culturesim.agents.roleplay.protocol import MalformedTurn, parse_turn
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.models.base import Prompt
from culturesim.models.batcher import Batcher
from culturesim.records import Dialogue, Episode
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore
from tests.conftest import ScriptedModel, prompt_text

CULTURES = load_cultures()
LIBRARY = ScenarioLibrary()


def episode(template: str = "borrow_money", cultures: str = "JPN", seed: int = 0) -> Episode:
    return build_episodes(
        LIBRARY, [LIBRARY.get(template)], culture_groups(cultures, CULTURES), seed=seed
    )[0]


def run(
    reply: Callable[[Prompt], str],
    template: str = "borrow_money",
    *,
    free: bool = True,
    seed: int = 0,
    **settings: object,
) -> Conversation:
    mode = "free" if free else "structured"
    model = ScriptedModel(reply)
    with Batcher(model) as batcher:
        conversation = Conversation(
            episode(template),
            batcher,
            seed=seed,
            settings=SimulateSection(action_mode=mode, **settings),  # type: ignore[arg-type]
            cultures=CULTURES,
        )
        conversation.run()
    return conversation


def counter_reply() -> Callable[[Prompt], str]:
    """Distinct speech each call, so repetition never stops the scene."""
    from culturesim.records import stable_hash

    calls = iter(range(10_000))
    return lambda prompt: f" speak\nOUTPUT: {stable_hash(next(calls), 24)}."


# --------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize(
    ("text", "action", "utterance"),
    [
        ("ACTION: speak\nOUTPUT: Hello there.", "speak", "Hello there."),
        ("action: SPEAK\noutput: Hello.", "speak", "Hello."),
        ("**Action:** non-verbal\n**Output:** nods slowly", "non-verbal", "nods slowly"),
        ("ACTION: nonverbal\nOUTPUT: smiles", "non-verbal", "smiles"),
        ("ACTION: leave\nOUTPUT: I must go.", "leave", "I must go."),
        ("ACTION: leave", "leave", ""),
        ("ACTION: none", "none", ""),
        ('ACTION: [speak]\nOUTPUT: "Fine."', "speak", "Fine."),
        ("ACTION: say\nOUTPUT: Yes.\nACTION: speak\nOUTPUT: again", "speak", "Yes."),
        ("ACTION: speak\nOUTPUT: Sure.\nKenji: No way.", "speak", "Sure."),
        ("Of course, I understand your concern.", "speak", "Of course, I understand your concern."),
        ("Akiko Shimizu: Thank you for coming.", "speak", "Thank you for coming."),
    ],
)
def test_parser_is_tolerant(text: str, action: str, utterance: str) -> None:
    parsed = parse_turn(text, ("Akiko Shimizu",))
    assert (parsed.action, parsed.utterance) == (action, utterance)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ACTION: dance\nOUTPUT: twirls", "unknown action 'dance"),
        ("ACTION: speak", "without an OUTPUT"),
        ("   ", "no ACTION and no speech"),
        ("123 456", "no ACTION and no speech"),
    ],
)
def test_parser_rejects_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(MalformedTurn, match=re.escape(reason)):
        parse_turn(text)


# --------------------------------------------------------------------------- retries


def test_a_malformed_turn_is_corrected_once() -> None:
    def reply(prompt: Prompt) -> str:
        if "could not be understood" in prompt_text(prompt):
            return " speak\nOUTPUT: Sorry, let me say it properly."
        return " dance\nOUTPUT: ..."

    conversation = run(reply, max_turns=2)
    turns = conversation.state.turns
    assert [t.action for t in turns] == ["speak", "speak"]
    assert not any(t.malformed for t in turns)
    assert conversation.state.retries == 2
    assert conversation.state.stop_reason == "turn_limit"


def test_a_turn_malformed_twice_is_recorded_and_ends_the_episode() -> None:
    conversation = run(lambda p: " ???", max_turns=6)
    turns = conversation.state.turns
    assert len(turns) == 1 and turns[0].malformed and turns[0].raw == "ACTION: ???"
    assert conversation.state.stop_reason == "malformed"


# --------------------------------------------------------------------------- stops


def test_leaving_a_two_party_scene_ends_it() -> None:
    replies = iter([" speak\nOUTPUT: I need a favour.", " leave\nOUTPUT: Not today."])
    conversation = run(lambda p: next(replies))
    assert [t.action for t in conversation.state.turns] == ["speak", "leave"]
    assert conversation.state.stop_reason == "left"


def test_near_identical_consecutive_utterances_stop_the_scene() -> None:
    conversation = run(lambda p: " speak\nOUTPUT: We should talk about the money.")
    assert len(conversation.state.turns) == 2
    assert conversation.state.stop_reason == "repetition"


def test_a_scenario_stop_phrase_ends_the_scene() -> None:
    replies = iter([" speak\nOUTPUT: The music is too loud.", " speak\nOUTPUT: Fine, good night!"])
    conversation = run(lambda p: next(replies), "noisy_neighbour")
    assert conversation.state.stop_reason == "stop_phrase"
    assert len(conversation.state.turns) == 2


def test_the_turn_limit_ends_the_scene() -> None:
    conversation = run(counter_reply(), max_turns=5)
    assert len(conversation.state.turns) == 5
    assert conversation.state.stop_reason == "turn_limit"


def test_in_a_group_the_scene_goes_on_until_all_but_one_have_left() -> None:
    replies = iter(
        [" leave\nOUTPUT: bye", " speak\nOUTPUT: Let us go on.", " leave\nOUTPUT: me too"]
    )
    conversation = run(lambda p: next(replies), "wedding_guest_list")
    assert [t.action for t in conversation.state.turns] == ["leave", "speak", "leave"]
    assert conversation.state.stop_reason == "all_left"
    assert conversation.state.turns[1].speaker != "parent", "who left does not speak again"


# --------------------------------------------------------------------------- policies


def test_round_robin_alternates_strictly() -> None:
    conversation = run(counter_reply(), max_turns=6)
    assert [t.speaker for t in conversation.state.turns] == ["borrower", "lender"] * 3


def test_graph_policy_follows_the_social_graph() -> None:
    conversation = run(counter_reply(), "credit_for_work", max_turns=10)
    speakers = [t.speaker for t in conversation.state.turns]
    for a, b in itertools.pairwise(speakers):
        assert "manager" in (a, b), f"{a} -> {b} is not an edge of the star"


def test_random_policy_is_seeded() -> None:
    def speakers(seed: int) -> list[str]:
        ep = episode("wedding_guest_list")
        scenario = ep.scenario.model_copy(update={"turn_policy": "random"})
        ep = ep.model_copy(update={"scenario": scenario})
        with Batcher(ScriptedModel(counter_reply())) as batcher:
            conversation = Conversation(
                ep,
                batcher,
                seed=seed,
                settings=SimulateSection(action_mode="free", max_turns=12),
                cultures=CULTURES,
            )
            conversation.run()
        return [t.speaker for t in conversation.state.turns]

    first = speakers(1)
    assert first == speakers(1)
    assert len(set(first)) == 3
    assert any(speakers(s) != first for s in range(2, 6))
    assert all(a != b for a, b in itertools.pairwise(first))


def test_model_selected_speakers_go_through_the_same_client() -> None:
    asked = []

    def reply(prompt: Prompt) -> str:
        text = prompt_text(prompt)
        if "select the next role" in text.lower() or "next role" in text.lower():
            asked.append(text)
            return "partner"
        return f" speak\nOUTPUT: Turn {len(text)}."

    ep = episode("wedding_guest_list")
    scenario = ep.scenario.model_copy(update={"turn_policy": "model"})
    ep = ep.model_copy(update={"scenario": scenario})
    with Batcher(ScriptedModel(reply)) as batcher:
        conversation = Conversation(
            ep,
            batcher,
            seed=0,
            settings=SimulateSection(action_mode="free", max_turns=3),
            cultures=CULTURES,
        )
        conversation.run()
    assert asked, "autogen's speaker selection asked the model"
    assert [t.speaker for t in conversation.state.turns][1:] == ["partner", "partner"]


# --------------------------------------------------------------------------- structured mode


def test_structured_mode_draws_the_action_from_label_scores() -> None:
    # ScriptedModel scores a candidate by minus its length: " speak" is the most likely.
    conversation = run(lambda p: "Hello to you.", free=False, max_turns=2, temperature=0.0)
    turns = conversation.state.turns
    assert [t.action for t in turns] == ["speak", "speak"]
    assert turns[0].raw == 'ACTION: speak\nOUTPUT: "Hello to you.'
    assert turns[0].utterance == "Hello to you."


def test_an_agents_prompt_only_grows_across_its_turns() -> None:
    """Turn t's prompt is turn t-1's with the new messages appended, so its prefix is reused;
    the action scores and the utterance of one turn differ only in the reply's opening."""
    seen: list[Prompt] = []

    distinct = counter_reply()

    def reply(prompt: Prompt) -> str:
        seen.append(prompt)
        return distinct(prompt).split("OUTPUT: ")[1]  # distinct, so repetition never stops

    run(reply, free=False, max_turns=6, temperature=0.0)
    asks: dict[str, list[list[dict[str, str]]]] = {}
    for prompt in seen:
        assert isinstance(prompt, list)
        *context, prefill = prompt  # the last message is the reply's opening
        assert prefill["role"] == "assistant" and context[-1]["content"].startswith("It is your")
        asks.setdefault(context[0]["content"], []).append(context)
    assert len(asks) == 2 and all(len(turns) == 3 for turns in asks.values())
    for turns in asks.values():
        for earlier, later in itertools.pairwise(turns):
            assert later[: len(earlier)] == earlier and len(later) > len(earlier) + 1


# --------------------------------------------------------------------------- simulator


def test_simulator_writes_dialogues_with_intents_and_resumes(tmp_path: Path) -> None:
    def reply(prompt: Prompt) -> str:
        text = prompt_text(prompt)
        if "What is" in text and "intent" in text:
            return " To ask politely.\nCULTURAL: Elders expect deference."
        return f" speak\nOUTPUT: Message {len(text)}."

    episodes = build_episodes(
        LIBRARY, LIBRARY.select("borrow_money,elder_care"), culture_groups("JPN,MEX", CULTURES)
    )
    settings = SimulateSection(per_episode=2, action_mode="free", max_turns=3)
    store = RunStore.open(tmp_path / "run", {"test": 1})
    summary = Simulator(ScriptedModel(reply), store, settings, cultures=CULTURES).run(
        episodes, show_progress=False
    )
    assert summary.done == 8 and not summary.failed
    dialogues = store.read(Dialogue)
    assert len({d.id for d in dialogues}) == 8
    for dialogue in dialogues:
        assert dialogue.stop_reason == "turn_limit" and len(dialogue.turns) == 3
        assert all(t.intent == "To ask politely." for t in dialogue.turns)
        assert all(t.cultural_expectation == "Elders expect deference." for t in dialogue.turns)
    assert len(store.read(Episode)) == 4
    again = Simulator(ScriptedModel(reply), store, settings, cultures=CULTURES).run(
        episodes, show_progress=False
    )
    assert again.done == 0 and again.skipped == 8
    assert len(store.read(Dialogue)) == 8


def test_a_failing_conversation_is_listed_and_the_others_finish(tmp_path: Path) -> None:
    def reply(prompt: Prompt) -> str:
        if "Mexico" in prompt_text(prompt):
            raise ConnectionError("backend went away")
        return " speak\nOUTPUT: Fine."

    episodes = build_episodes(
        LIBRARY, [LIBRARY.get("borrow_money")], culture_groups("JPN,MEX", CULTURES)
    )
    settings = SimulateSection(
        per_episode=1,
        concurrency=1,  # a failing backend call fails its whole batch; keep them apart
        max_batch_size=1,
        intents=False,
        action_mode="free",
        max_turns=2,
    )
    store = RunStore.open(tmp_path / "run", {"test": 1})
    summary = Simulator(ScriptedModel(reply), store, settings, cultures=CULTURES).run(
        episodes, show_progress=False
    )
    assert summary.done == 1 and len(summary.failed) == 1
    assert "backend went away" in summary.failed[0]["error"]
    assert store.read_json("failed")[0]["dialogue_id"] == summary.failed[0]["dialogue_id"]


def test_a_bad_simulate_config_names_the_file_and_field(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from culturesim.cli import app

    config = tmp_path / "sim.yaml"
    config.write_text("simulate:\n  per_episode: 0\n  temperatur: 0.5\n")
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path / "run"), "--config", str(config)]
    )
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # the console wraps long lines
    assert str(config) in output
    assert "field 'per_episode'" in output and "field 'temperatur'" in output
    assert not (tmp_path / "run").exists(), "nothing is written for a config that does not validate"


def test_a_turns_intent_is_asked_while_the_dialogue_goes_on_and_reads_only_its_past(
    tmp_path: Path,
) -> None:
    """Labels start as turns are played, not after the dialogue, and each label's prompt holds
    the transcript up to its own turn only: the records match labelling every turn at the end."""
    calls: list[str] = []

    def reply(prompt: Prompt) -> str:
        text = prompt_text(prompt)
        if "What is" in text and "intent" in text:
            calls.append("intent")
            said = re.findall(r"Message (\d+)", text)
            return f" Said {said[-1] if said else '?'} last.\nCULTURAL: none"
        calls.append("turn")
        return f" speak\nOUTPUT: Message {len(text)}."

    settings = SimulateSection(per_episode=1, concurrency=1, action_mode="free", max_turns=4)
    store = RunStore.open(tmp_path / "run", {"test": 1})
    Simulator(ScriptedModel(reply), store, settings, cultures=CULTURES).run(
        [episode()], show_progress=False
    )
    (dialogue,) = store.read(Dialogue)
    assert len(dialogue.turns) == 4
    # The first intent was asked before the last turn was played.
    assert calls.index("intent") < max(i for i, c in enumerate(calls) if c == "turn")
    for turn in dialogue.turns:
        (number,) = re.findall(r"Message (\d+)", turn.utterance)
        assert turn.intent == f"Said {number} last."  # its own turn was the last it saw

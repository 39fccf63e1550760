"""Records: frozen, JSON round-trip, ids derived from identifying fields only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from culturesim.records import (
    RECORD_TYPES,
    Answer,
    Dialogue,
    Episode,
    Instance,
    Persona,
    Question,
    Role,
    Scenario,
    Turn,
    Verdict,
)


def make_scenario(setting: str = "A tea house in Kyoto.") -> Scenario:
    return Scenario(
        template_id="tea-visit",
        culture="JPN",
        title="A visit",
        setting=setting,
        roles=(Role(name="host", goal="Be gracious"), Role(name="guest", goal="Leave early")),
    )


def make_personas() -> tuple[Persona, Persona]:
    return (
        Persona(
            culture="JPN", seed=1, name="Aiko Sato", age=40, gender="female", occupation="teacher"
        ),
        Persona(culture="JPN", seed=2, name="Ken Ito", age=35, gender="male", occupation="nurse"),
    )


def test_every_record_round_trips_through_json() -> None:
    scenario = make_scenario()
    personas = make_personas()
    episode = Episode(
        scenario_id=scenario.id,
        persona_ids=tuple(p.id for p in personas),
        seed=7,
        scenario=scenario,
        personas=personas,
    )
    dialogue = Dialogue(
        episode_id=episode.id,
        sample_index=0,
        model="m",
        turns=(Turn(index=0, speaker="host", action="speak", utterance="Welcome."),),
        stop_reason="turn_limit",
    )
    question = Question(
        topic="Ethical Values", text="Is lying ever justified?", options=("Never", "Always")
    )
    answer = Answer(question_id=question.id, culture="JPN", model="m", distribution=(0.7, 0.3))
    instance = Instance(
        question_id=question.id,
        culture="JPN",
        rule="argmax",
        aware_answer_id=answer.id,
        unaware_answer_id=answer.id,
        divergence=0.2,
    )
    verdict = Verdict(target_id=dialogue.id, rubric="clca", judge="m", keep=True)
    for record in (scenario, *personas, episode, dialogue, question, answer, instance, verdict):
        again = type(record).from_json(record.to_json())
        assert again == record
        assert again.id == record.id
        assert record.id.startswith(record.id_prefix + "-")
        assert RECORD_TYPES[record.kind] is type(record)


def test_ids_are_stable_and_depend_on_identity_only() -> None:
    first = Dialogue(episode_id="epi-1", sample_index=0, model="m")
    same = Dialogue(
        episode_id="epi-1",
        sample_index=0,
        model="m",
        stop_reason="leave",
        turns=(Turn(index=0, speaker="a", action="leave"),),
    )
    other_sample = Dialogue(episode_id="epi-1", sample_index=1, model="m")
    assert first.id == same.id  # results do not change the id: it is known before the run
    assert first.id != other_sample.id
    assert make_scenario().id != make_scenario("A bar in Osaka.").id


def test_records_are_frozen() -> None:
    question = Question(topic="t", text="q?", options=("a", "b"))
    with pytest.raises(ValidationError):
        question.text = "changed"  # type: ignore[misc]


def test_tampered_id_is_rejected() -> None:
    line = Question(topic="t", text="q?", options=("a", "b")).to_json().replace('"q?"', '"edited?"')
    with pytest.raises(ValidationError, match="does not match its content"):
        Question.from_json(line)


def test_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="options"):
        Question(topic="t", text="q?", options=("only one",))
    with pytest.raises(ValidationError, match="code"):
        from culturesim.records import Culture

        Culture(code="japan", name="Japan", demonym="Japanese")

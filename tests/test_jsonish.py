"""Reading JSON objects out of model replies: complete objects found here, json_repair loads."""

from __future__ import annotations

import pytest

from culturesim.jsonish import first_json_object, json_objects


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Sure! {"a": 1, "b": [1, 2]} Hope it helps.', {"a": 1, "b": [1, 2]}),
        ("{'a': 'it\\'s', 'b': True, 'c': None}", {"a": "it's", "b": True, "c": None}),
        ('```json\n{"a": 1, "b": [1, 2,],}\n```', {"a": 1, "b": [1, 2]}),
        ("{reason: fine, quality: good}", {"reason": "fine", "quality": "good"}),
        ('Here [a note] and "a quote", then {"a": 1}', {"a": 1}),
        ('{"a": "with } and { inside"}', {"a": "with } and { inside"}),
        ('Use {braces} like this: {"a": {"b": 1}}', {"a": {"b": 1}}),
    ],
)
def test_the_first_object_is_found_and_repaired(text: str, expected: dict[str, object]) -> None:
    assert first_json_object(text) == expected


def test_several_objects_and_a_required_key() -> None:
    text = 'First {"title": "x"} and then {"Participants ": [1]} and {"participants": [2]}'
    assert json_objects(text) == [
        '{"title": "x"}',
        '{"Participants ": [1]}',
        '{"participants": [2]}',
    ]
    assert first_json_object(text) == {"title": "x"}
    assert first_json_object(text, "participants") == {"Participants ": [1]}
    assert first_json_object('Sure! Here it is: {"title": "oops"', "participants") is None


@pytest.mark.parametrize(
    "text",
    [
        "I think a good question would be about family.",
        "QUALITY: bad\nCONFIDENCE: sure",
        "",
        '{"Question": "I cannot do that.',  # a prefill continued with prose: never closed
        "{" * 5000 + "}" * 5000,  # too deep for the parser
    ],
)
def test_no_complete_object_gives_none(text: str) -> None:
    assert first_json_object(text) is None

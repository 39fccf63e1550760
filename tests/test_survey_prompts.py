"""Default prompts match CultureSPA's shapes character for character; parsing as published."""

from __future__ import annotations

from pathlib import Path

import pytest

from culturesim.prompt_library import PromptLibrary, TemplateProblem
from culturesim.scenarios.cultures import load_cultures
from culturesim.survey.administer import SurveyPrompter
from culturesim.survey.parsing import parse_option, parse_published
from culturesim.survey.questionnaire import SurveyQuestion

FAMILY = SurveyQuestion(
    "Q1",
    "How important is family in your life?",
    ("Very important", "Rather important", "Not very important", "Not at all important"),
)
CLUB = SurveyQuestion(
    "Q94",
    "Are you a member of a church?",
    ("Don't belong", "Inactive member", "Active member"),
    first_code=0,
)


@pytest.fixture(scope="module")
def prompter() -> SurveyPrompter:
    return SurveyPrompter(load_cultures())


def test_unaware_and_aware_system_prompts(prompter: SurveyPrompter) -> None:
    assert prompter.system_prompt("unaware") == (
        "You are a real person with your own set of values. Please fill out the World Values Survey "
        "and answer the questions honestly according to your own value system."
    )
    assert prompter.system_prompt("aware", "USA") == (
        "You are a real person with an American cultural background. Please fill out the World Values "
        "Survey and answer the questions honestly according to your own value system."
    )
    assert prompter.system_prompt("aware", "UKR").startswith(
        "You are a real person with a Ukrainian cultural"
    )
    assert "with a Chinese cultural background" in prompter.system_prompt("aware", "CHN")


def test_question_prompt_numbers_options_on_one_line(prompter: SurveyPrompter) -> None:
    assert prompter.user_prompt(FAMILY) == (
        "Given a #Question and #Options, choose the option that best aligns with your own value system to answer the question.\n"
        "#Question: How important is family in your life?\n"
        "#Options: 1.Very important 2.Rather important 3.Not very important 4.Not at all important\n"
        "Please return the number of the selected option only."
    )
    assert "#Options: 0.Don't belong 1.Inactive member 2.Active member\n" in prompter.user_prompt(
        CLUB
    )


def test_cross_culture_prompt_takes_neighbours_from_profiles_not_answers(
    prompter: SurveyPrompter,
) -> None:
    text = prompter.system_prompt("cross_culture", "USA")
    assert text.startswith(
        prompter.system_prompt("aware", "USA")
        + " Before you respond, take a moment to think about how American culture is similar to "
    )
    assert text.endswith(" cultures.")
    assert (
        "similar to Australian, Canadian, and New Zealand cultures, and how American culture is different from "
        in text
    )


def test_user_template_overrides_and_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "survey").mkdir()
    (tmp_path / "survey" / "system_unaware.jinja2").write_text("Answer as yourself.")
    (tmp_path / "survey" / "system_aware.jinja2").write_text(
        "You are {{ demonym }}.\n{{ nickname }}"
    )
    library = PromptLibrary([tmp_path])
    prompter = SurveyPrompter(load_cultures(), library)
    assert prompter.system_prompt("unaware") == "Answer as yourself."
    with pytest.raises(TemplateProblem, match=r"system_aware\.jinja2:2: 'nickname' is undefined"):
        prompter.system_prompt("aware", "JPN")


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil.jinja2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateProblem):
        PromptLibrary([tmp_path]).render("evil.jinja2")


def test_published_parse_and_our_parse() -> None:
    assert parse_published("I choose 3 because ...") == 3
    assert parse_published("11") is None  # the published rule only keeps 0..10
    assert parse_published("I would rather not answer.") is None
    assert (
        parse_published("Option 7") == 7
    )  # out of range for a 4-option item, still kept as published
    assert parse_option("Option 7", FAMILY) is None
    assert parse_option("2. Rather important", FAMILY) == 2
    assert parse_option("0", CLUB) == 0 and parse_option("3", CLUB) is None


def test_label_that_prefixes_others_counts_only_as_a_complete_answer() -> None:
    import math

    from culturesim.survey.administer import label_distribution

    # P("1…") = 0.5 includes P("10") = 0.2 and P("11") = 0.1, so "1" alone holds 0.2.
    labels = ["1", "2", "10", "11"]
    probs, mass = label_distribution(labels, [math.log(p) for p in (0.5, 0.2, 0.2, 0.1)])
    assert mass == pytest.approx(0.7)
    assert probs == pytest.approx([0.2 / 0.7, 0.2 / 0.7, 0.2 / 0.7, 0.1 / 0.7])

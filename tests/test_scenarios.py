"""Scenario authoring: template files, rendering, cultures, cues, personas, graphs, episodes."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from culturesim.records import Culture
from culturesim.scenarios.cues import culture_cues, hofstede_phrase, inglehart_welzel_phrase
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.graphs import GraphError, GraphSpec, build_graph
from culturesim.scenarios.personas import PersonaSampler, PersonaSpec
from culturesim.scenarios.templates import ScenarioError, ScenarioLibrary, load_template_file

CULTURESPA = tuple(
    [
        "USA",
        "CAN",
        "BOL",
        "BRA",
        "GBR",
        "NLD",
        "DEU",
        "UKR",
        "CHN",
        "RUS",
        "IND",
        "THA",
        "KEN",
        "NGA",
        "ETH",
        "ZWE",
        "AUS",
        "NZL",
    ]
)

MINIMAL = """---
id: {id}
title: {title}
participants:
  - role: host
  - role: guest
variables:
  dish: {{type: choice, values: [soup, rice], default: soup}}
  people: {{type: int, default: 4, min: 1, max: 20}}
---
## setting
{{{{ cast.host.name }}}} serves {{{{ dish }}}} to {{{{ people }}}} people in {{{{ culture.name }}}}.
## goal host
Please {{{{ cast.guest.name }}}}.
## goal guest
Be polite ({{{{ culture.cues }}}}).
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def cultures() -> dict[str, Culture]:
    return load_cultures()


# --------------------------------------------------------------------------- cultures and cues


def test_every_shipped_culture_has_profiles_and_persona_pools(cultures: dict[str, Culture]) -> None:
    assert {*CULTURESPA, "MEX", "JPN"} <= set(cultures)
    for code, culture in cultures.items():
        # Hofstede has no published scores for some countries (Zimbabwe): those are left out.
        assert all(0 <= v <= 120 for v in culture.hofstede.values()), code
        assert culture_cues(culture).text, code
        assert set(culture.inglehart_welzel) == {"traditional_secular", "survival_self_expression"}
        for gender in ("female", "male"):
            assert len(set(culture.given_names[gender])) >= 20, (code, gender)
        assert len(set(culture.family_names)) >= 20, code
        assert len(culture.occupations) >= 8 and len(culture.places) >= 6, code


@pytest.mark.parametrize(
    ("score", "phrase"),
    [
        (95, "highly competitive"),
        (75, "highly competitive"),
        (74, "moderately competitive"),
        (60, "moderately competitive"),
        (55, "slightly competitive"),
        (50, "slightly competitive"),
        (45, "slightly cooperative"),
        (40, "moderately cooperative"),
        (26, "moderately cooperative"),
        (25, "highly cooperative"),
        (5, "highly cooperative"),
    ],
)
def test_hofstede_rule_boundaries(score: float, phrase: str) -> None:
    assert hofstede_phrase(score, "competitive", "cooperative") == phrase


def test_inglehart_welzel_rule_signs_and_degrees() -> None:
    assert inglehart_welzel_phrase(1.6, "secular", "traditional") == "strongly secular"
    assert inglehart_welzel_phrase(-0.5, "secular", "traditional") == "moderately traditional"
    assert inglehart_welzel_phrase(0.1, "secular", "traditional") == "slightly secular"


def test_cues_follow_the_scores_not_hand_typed_text(cultures: dict[str, Culture]) -> None:
    japan = culture_cues(cultures["JPN"])
    assert "highly competitive" in japan.hofstede  # masculinity 95
    assert "highly uncertainty-avoiding" in japan.hofstede  # 92
    assert "strongly secular-rational values" in japan.inglehart_welzel
    changed = cultures["JPN"].model_copy(update={"hofstede": {"masculinity": 10.0}})
    assert culture_cues(changed).hofstede == ("highly cooperative",)


def test_a_user_adds_a_culture_by_adding_a_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "XAN.yaml",
        "code: XAN\nname: Xanadu\ndemonym: Xanaduan\nhofstede: {power_distance: 80}\n"
        "given_names: {female: [Ada], male: [Bo]}\nfamily_names: [Kay]\noccupations: [poet]\n",
    )
    known = load_cultures([tmp_path])
    assert known["XAN"].name == "Xanadu" and "JPN" in known
    persona = PersonaSampler().sample(known["XAN"], seed=1)
    assert persona.name in {"Ada Kay", "Bo Kay"} and persona.occupation == "poet"
    assert culture_cues(known["XAN"]).text == "highly hierarchical"


# --------------------------------------------------------------------------- personas


def test_personas_are_reproducible_and_drawn_from_the_culture(
    cultures: dict[str, Culture],
) -> None:
    sampler = PersonaSampler()
    mexico = cultures["MEX"]
    first = [sampler.sample(mexico, seed) for seed in range(30)]
    again = [sampler.sample(mexico, seed) for seed in range(30)]
    assert first == again
    assert len({p.id for p in first}) == 30
    for person in first:
        given, family = person.name.split(" ", 1)
        assert given in mexico.given_names[person.gender]
        assert family in mexico.family_names
        assert person.occupation in mexico.occupations
        assert set(person.big_five) == {
            "openness",
            "conscientiousness",
            "extraversion",
            "agreeableness",
            "neuroticism",
        }
        assert all(0 <= v <= 1 for v in person.big_five.values())
        assert person.name in person.background and "Mexican" in person.background
    assert {p.gender for p in first} == {"female", "male"}


def test_chinese_names_put_the_family_name_first(cultures: dict[str, Culture]) -> None:
    person = PersonaSampler().sample(cultures["CHN"], 3)
    family, given = person.name.split(" ")
    assert family in cultures["CHN"].family_names
    assert given in cultures["CHN"].given_names[person.gender]


def test_persona_constraints_are_respected(cultures: dict[str, Culture]) -> None:
    spec = PersonaSpec(age=(60, 61), gender="female", occupation="retired judge")
    for seed in range(10):
        person = PersonaSampler().sample(cultures["KEN"], seed, spec)
        assert 60 <= person.age <= 61 and person.gender == "female"
        assert person.occupation == "retired judge"
    with pytest.raises(ValueError, match="age range"):
        PersonaSpec(age=(50, 20))


# --------------------------------------------------------------------------- templates


def test_builtin_library_renders_every_scenario_for_every_culture(
    cultures: dict[str, Culture],
) -> None:
    library = ScenarioLibrary()
    assert len(library.templates) >= 8
    assert any(len(t.participants) > 2 for t in library.templates.values())
    groups = [[c] for c in cultures.values()]
    episodes = build_episodes(library, library.select("all"), groups, per_scenario=1)
    assert len(episodes) == len(library.templates) * len(cultures)
    for episode in episodes:
        scenario = episode.scenario
        assert scenario.setting and "{{" not in scenario.setting
        for role, person in zip(scenario.roles, episode.personas, strict=True):
            assert role.goal and role.persona_id == person.id
            assert role.culture == person.culture == scenario.culture
        assert len({p.id for p in episode.personas}) == len(episode.personas)


def test_rendering_puts_variables_culture_and_cast_in_scope(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    write(tmp_path, "dinner.scenario.jinja2", MINIMAL.format(id="dinner", title="Dinner"))
    library = ScenarioLibrary([tmp_path], builtin=False)
    japan = cultures["JPN"]
    cast = [PersonaSampler().sample(japan, i, slot=r) for i, r in enumerate(["host", "guest"])]
    scenario = library.render("dinner", japan, cast, {"dish": "rice", "people": "6"})
    assert scenario.setting == f"{cast[0].name} serves rice to 6 people in Japan."
    assert scenario.role("host").goal == f"Please {cast[1].name}."
    assert culture_cues(japan).text in scenario.role("guest").goal
    assert scenario.variables == {"dish": "rice", "people": 6}
    with pytest.raises(ScenarioError, match="'dish' = 'noodles': must be one of"):
        library.render("dinner", japan, cast, {"dish": "noodles"})
    with pytest.raises(ScenarioError, match="above its max"):
        library.render("dinner", japan, cast, {"people": 99})
    with pytest.raises(ScenarioError, match="no variable"):
        library.render("dinner", japan, cast, {"drink": "tea"})


def test_a_user_template_overrides_a_builtin_one_with_the_same_id(tmp_path: Path) -> None:
    write(tmp_path, "mine.scenario.jinja2", MINIMAL.format(id="borrow_money", title="Mine"))
    assert ScenarioLibrary().get("borrow_money").title != "Mine"
    assert ScenarioLibrary([tmp_path]).get("borrow_money").title == "Mine"


def test_user_macros_and_includes_work_in_bodies(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    write(tmp_path, "greet.jinja2", "{% macro hello(p) %}Hello, {{ p.name }}!{% endmacro %}")
    write(tmp_path, "where.jinja2", "somewhere in {{ culture.name }}")
    text = MINIMAL.format(id="macro", title="M").replace(
        "## setting\n", '{% import "greet.jinja2" as g %}\n## setting\n{{ g.hello(cast.host) }} '
    )
    text = text.replace("## goal guest\n", '## goal guest\n{% include "where.jinja2" %}. ')
    write(tmp_path, "m.scenario.jinja2", text)
    library = ScenarioLibrary([tmp_path], builtin=False)
    brazil = cultures["BRA"]
    cast = [PersonaSampler().sample(brazil, 0), PersonaSampler().sample(brazil, 1)]
    scenario = library.render("macro", brazil, cast)
    assert scenario.setting.startswith(f"Hello, {cast[0].name}! ")
    assert scenario.role("guest").goal.startswith("somewhere in Brazil. ")


def test_an_undefined_name_is_reported_with_file_and_line(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    text = MINIMAL.format(id="typo", title="T").replace("{{ dish }}", "{{ dihs }}")
    path = write(tmp_path, "typo.scenario.jinja2", text)
    library = ScenarioLibrary([tmp_path], builtin=False)
    cast = [PersonaSampler().sample(cultures["USA"], i) for i in range(2)]
    with pytest.raises(ScenarioError) as error:
        library.render("typo", cultures["USA"], cast)
    line = text.splitlines().index(next(x for x in text.splitlines() if "dihs" in x)) + 1
    assert f"{path}:{line}" in str(error.value)
    assert "'dihs' is undefined" in str(error.value)


def test_the_sandbox_refuses_unsafe_attribute_access(
    tmp_path: Path, cultures: dict[str, Culture]
) -> None:
    text = MINIMAL.format(id="evil", title="E").replace(
        "{{ dish }}", "{{ cast.__class__.__mro__[1].__subclasses__() }}"
    )
    write(tmp_path, "evil.scenario.jinja2", text)
    library = ScenarioLibrary([tmp_path], builtin=False)
    cast = [PersonaSampler().sample(cultures["USA"], i) for i in range(2)]
    with pytest.raises(ScenarioError, match=r"unsafe|not safely|undefined"):
        library.render("evil", cultures["USA"], cast)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("title: T\n", ""), r":1: field 'title': Field required"),
        (lambda t: t.replace("  - role: guest\n", ""), r"field 'participants': .*at least 2"),
        (lambda t: t.replace("default: soup", "default: pasta"), "default of variable 'dish'"),
        (
            lambda t: t.replace("## goal guest", "## goal visitor"),
            r":\d+: section '## goal visitor'",
        ),
        (lambda t: t.replace("## setting\n", ""), "no '## setting' section"),
        (lambda t: t.replace("title: T", "title: a: b"), r":3: front matter is not valid YAML"),
        (lambda t: t.replace("## goal guest\n", "## secret guest\n"), "role 'guest' has no goal"),
    ],
)
def test_bad_template_files_name_the_file_line_and_field(
    tmp_path: Path, mutate: object, message: str
) -> None:
    text = mutate(MINIMAL.format(id="bad", title="T"))  # type: ignore[operator]
    path = write(tmp_path, "bad.scenario.jinja2", text)
    with pytest.raises(ScenarioError, match=message) as error:
        load_template_file(path)
    assert str(path) in str(error.value)


# --------------------------------------------------------------------------- graphs, episodes


def test_generated_and_declared_social_graphs() -> None:
    roles = ["a", "b", "c", "d", "e"]
    complete = build_graph(GraphSpec(kind="complete", relationship="friend"), roles)
    assert complete.number_of_edges() == 20
    assert complete.edges["a", "b"]["relationship"] == "friend"
    star = build_graph(GraphSpec(kind="star", center="c"), roles)
    assert set(star.successors("a")) == {"c"} and set(star.successors("c")) == {"a", "b", "d", "e"}
    ring = build_graph(GraphSpec(kind="small_world", k=2, p=0.0), roles)
    assert nx.is_strongly_connected(ring) and all(ring.out_degree(r) == 2 for r in roles)
    declared = build_graph(
        GraphSpec(kind="edges", edges=(("a", "b", "boss of"), ("b", "a", "reports to"))), ["a", "b"]
    )
    assert declared.edges["a", "b"]["relationship"] == "boss of"
    with pytest.raises(GraphError, match="not a role"):
        build_graph(GraphSpec(kind="edges", edges=(("a", "z"),)), ["a", "b"])
    with pytest.raises(GraphError, match="cannot address anyone"):
        build_graph(GraphSpec(kind="edges", edges=(("a", "b"),)), ["a", "b"])


def test_episodes_are_reproducible_and_cross_cultural_casts_mix(
    cultures: dict[str, Culture],
) -> None:
    library = ScenarioLibrary()
    templates = library.select("borrow_money,wedding_guest_list")
    groups = culture_groups("JPN,JPN+MEX", cultures)
    first = build_episodes(library, templates, groups, per_scenario=2, seed=7)
    again = build_episodes(library, templates, groups, per_scenario=2, seed=7)
    other = build_episodes(library, templates, groups, per_scenario=2, seed=8)
    assert [e.id for e in first] == [e.id for e in again]
    assert not {e.id for e in first} & {e.id for e in other}
    assert len(first) == 2 * 2 * 2
    mixed = [
        e
        for e in first
        if e.scenario.template_id == "wedding_guest_list" and "+" in e.scenario.culture
    ]
    assert [p.culture for p in mixed[0].personas] == ["JPN", "MEX", "JPN"]
    assert mixed[0].scenario.edges and {e.relationship for e in mixed[0].scenario.edges} >= {
        "engaged to"
    }

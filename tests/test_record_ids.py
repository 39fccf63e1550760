"""Record ids are the keys of every run directory: pinned here so that no refactoring can orphan
an existing run (a resumed run finds its work by these ids)."""

from __future__ import annotations

from culturesim.records import Dialogue, Verdict, derive_seed
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary

PINNED_EPISODES = {
    ("borrow_money", "USA"): ("epi-674457265ef00008", "scn-4a12a2706e1aab08"),
    ("borrow_money", "JPN+MEX"): ("epi-419bbdc0ae5e00ba", "scn-0ad858481e3562b3"),
    ("community_meeting", "USA"): ("epi-5159a031746c138d", "scn-8505d52ef7c26cba"),
    ("community_meeting", "JPN+MEX+JPN+MEX"): ("epi-8380e8f9a4cd6fbf", "scn-ace5464e327e1c82"),
}


def test_culture_episode_dialogue_and_verdict_ids_are_stable() -> None:
    cultures = load_cultures()
    assert cultures["JPN"].id == "cul-9a4eff8cbe4027d7"
    library = ScenarioLibrary()
    episodes = build_episodes(
        library,
        library.select("borrow_money,community_meeting"),
        culture_groups("USA,JPN+MEX", cultures),
        per_scenario=1,
        seed=0,
    )
    found = {(e.scenario.template_id, e.scenario.culture): (e.id, e.scenario.id) for e in episodes}
    assert found == PINNED_EPISODES
    dialogue = Dialogue(episode_id="epi-674457265ef00008", sample_index=1, model="smollm2")
    assert dialogue.id == "dlg-072d080ab11f20fa"
    verdict = Verdict(target_id=dialogue.id, rubric="clca_meta", judge="j")
    assert verdict.id == "vrd-8435d5b0ddf1ff2c"


def test_derive_seed_keeps_the_formula_every_stage_used() -> None:
    # int(sha256('[0,"epi-x",1]')[:8], 16): the seed of sample 1 of episode epi-x.
    assert derive_seed(0, "epi-x", 1) == 1021876009
    assert derive_seed(0, "epi-x", 1, digits=12) >> 16 == 1021876009

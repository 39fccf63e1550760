"""The simulate stage: scenarios × cultures → Episode and Dialogue records, resumably.

`SimulateSection` (in `settings`) is the stage's only schema: `culturesim simulate` options, a
`--config` file and the `simulate:` section of a run config fill it, and the simulator and
every conversation read it as it is, so every default is written once.
"""

from __future__ import annotations

from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.context import LoopPlan, RunContext, Stage, StageFailed, StageResult
from culturesim.records import Culture, Dialogue, Episode


def plan_episodes(section: SimulateSection, ctx: RunContext) -> list[Episode]:
    """The episodes the section describes (no model needed): for the plan and the run."""
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioLibrary

    library = ScenarioLibrary(section.scenario_dirs)
    templates = library.select(section.scenarios)
    if not templates:
        raise StageFailed(
            f"simulate: scenarios {section.scenarios!r} select no template; see "
            "`culturesim scenarios list`"
        )
    known = ctx.cultures()
    known.update(_user_cultures(section))
    return build_episodes(
        library,
        templates,
        culture_groups(section.cultures, known),
        per_scenario=section.episodes_per_scenario,
        seed=ctx.seed,
        variables=section.variables,
    )


def _user_cultures(section: SimulateSection) -> dict[str, Culture]:
    from culturesim.scenarios.cultures import load_cultures

    return load_cultures(section.culture_dirs) if section.culture_dirs else {}


def run(section: SimulateSection, ctx: RunContext) -> StageResult:
    """Simulate every dialogue not yet written; failed ones are listed and the stage goes on."""
    from culturesim.agents.roleplay.simulation import Simulator
    from culturesim.models.cache import CachedModel
    from culturesim.models.retry import retry_log_of
    from culturesim.store import RunStore

    out = ctx.layout.simulate
    spec = ctx.roles.actor
    episodes = plan_episodes(section, ctx)
    # The model is built before the run directory is made: a bad spec locks nothing.
    shared = None if section.ray_actors else ctx.models.get(spec)
    store = RunStore.open(
        out, {"command": "simulate", "model": spec, **section.identity()}, seed=ctx.seed
    )
    cultures = ctx.cultures(out)
    cultures.update(_user_cultures(section))
    # The cultures the episodes use travel with the run, so judge and corpus need no flags.
    used = {code for e in episodes for code in e.scenario.culture.split("+")}
    stored = store.done_ids(Culture)
    store.append_many(
        [c for code, c in sorted(cultures.items()) if code in used and c.id not in stored]
    )
    lm = None
    try:
        if section.ray_actors:
            from culturesim.agents.roleplay.ray_shards import simulate_with_ray

            summary = simulate_with_ray(
                spec,
                store,
                episodes,
                section,
                seed=ctx.seed,
                actors=section.ray_actors,
                retry_failed=ctx.retry_failed,
            )
        else:
            assert shared is not None
            lm = CachedModel(shared, out / "cache.sqlite")
            simulator = Simulator(
                lm,
                store,
                section,
                seed=ctx.seed,
                library=ctx.prompts,
                cultures=cultures,
                console=ctx.console,
            )
            summary = simulator.run(
                episodes, retry_failed=ctx.retry_failed, show_progress=ctx.show_progress
            )
    finally:
        retries = retry_log_of(lm)
        if retries is not None:  # an openai backend: what its retries went through
            store.append_json("backend_log", [retries.as_dict()])
    store.append_json("simulation_log", [summary.as_dict()])
    report = summary.as_dict()
    counts = {
        "episodes": len(episodes),
        "dialogues": len(store.done_ids(Dialogue)),
        "written": summary.done,
        "already_done": summary.skipped,
        "failed": len(summary.failed),
        "left_failed": summary.left_failed,
        "stop_reasons": dict(summary.stop_reasons.most_common()),
        "tokens_per_second": report["tokens_per_second"],
        "intent_placeholders": summary.intent_placeholders,
    }
    return StageResult(
        counts=counts,
        exit_code=3 if summary.failed else 0,
        written=(store.path_for("dialogue"),) if summary.done else (),
    )


def plan(section: SimulateSection, loop: LoopPlan) -> str:
    episodes = len(plan_episodes(section, loop.ctx))
    dialogues = loop.counts["dialogues"] = episodes * section.per_episode
    return (
        f"{episodes} episodes × {section.per_episode} = {dialogues} dialogues "
        f"with {loop.ctx.roles.actor}"
    )


STAGE = Stage("simulate", SimulateSection, run, plan, input_paths=("scenario_dirs", "culture_dirs"))

"""The judge stage: verdicts on every dialogue (CLCA's three calls) and instance, then keep/drop
decisions as records, and the judge's reliability statistics as a derived view.

`JudgeSection` is the stage's only schema for `culturesim judge` and the run config's `judge:`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from culturesim.context import LoopPlan, RunContext, Stage, StageFailed, StageResult, StageSection
from culturesim.records import (
    Answer,
    Dialogue,
    Episode,
    FilterDecision,
    Instance,
    Question,
    Verdict,
    latest_decisions,
)
from culturesim.store import RunStore, write_json_atomic

STATUSES = ("kept", "dropped", "unparseable")


class JudgeSection(StageSection):
    """How the judge reads its answers, and the filter rule that turns verdicts into decisions."""

    mode: Literal["generate", "score"] = Field(
        default="generate", description="generate (parse the answer) or score (label probabilities)"
    )
    rule: Literal["clca", "none"] = Field(default="clca", description="CLCA's drop rule, or none")
    thresholds: list[str] = Field(
        default_factory=list, description="extra dialogue filters, e.g. quality=good"
    )
    on_unparseable: Literal["drop", "keep"] = "drop"
    instance_rule: Literal["all_yes", "confident_no"] = Field(
        default="all_yes",
        description="instances: keep on two yes's, or drop only on a very confident no",
    )
    position_check: bool = Field(
        default=False, description="judge each dialogue again with the participants swapped"
    )
    second_judge: str | None = Field(
        default=None, description="a second judge model, for agreement (Cohen's kappa)"
    )
    attempts: int = Field(default=2, ge=1)
    max_new_tokens: int = Field(default=120, ge=8)
    rubrics_dirs: list[str] = Field(default_factory=list, description="your rubric files/folders")


def _policy(section: JudgeSection) -> Any:
    from culturesim.agents.judge.filters import FilterPolicy, Threshold

    try:
        return FilterPolicy(
            section.rule,
            tuple(Threshold.parse(t) for t in section.thresholds),
            section.on_unparseable,
            section.instance_rule,
        )
    except ValueError as error:
        raise StageFailed(f"judge: {error}") from error


def run(section: JudgeSection, ctx: RunContext) -> StageResult:
    """Judge every run store the layout names; returns per-store counts."""
    targets = ctx.layout.record_dirs()
    if not targets:
        raise StageFailed("judge has nothing to judge: run simulate or probe first")
    for run_dir in targets:
        RunStore(run_dir).manifest()  # a missing or damaged manifest says so, naming the file
    counts: dict[str, Any] = {}
    written: list[Path] = []
    for run_dir in targets:
        stats = judge_run(section, ctx, run_dir)
        written.append(run_dir / "judge_stats.json")
        counts[run_dir.name] = stats
    return StageResult(counts=counts, written=tuple(written))


def judge_run(section: JudgeSection, ctx: RunContext, run_dir: Path) -> dict[str, Any]:
    """Verdicts for what is not yet judged in one run store, then decisions and statistics."""
    from culturesim.agents.judge.judge import Judge, judge_dialogues, judge_instances
    from culturesim.agents.judge.rubrics import load_rubrics
    from culturesim.models.cache import CachedModel

    policy = _policy(section)
    rubrics = load_rubrics(section.rubrics_dirs)
    store = RunStore(run_dir)
    cultures = ctx.cultures(run_dir)
    dialogues = store.read(Dialogue)
    episodes = {e.id: e for e in store.read(Episode)}
    instances = store.read(Instance)
    primary = ""
    specs = [ctx.roles.judge] + ([section.second_judge] if section.second_judge else [])
    for spec in specs:
        lm = CachedModel(ctx.models.get(spec), run_dir / "cache.sqlite")
        judge_agent = Judge(
            lm,
            max_attempts=section.attempts,
            max_new_tokens=section.max_new_tokens,
            mode=section.mode,
            library=ctx.prompts,
        )
        done = store.done_ids(Verdict)
        variants = ["default"] + (
            ["swapped"] if section.position_check and spec == ctx.roles.judge else []
        )
        for variant in variants:
            todo = [
                d
                for d in dialogues
                if Verdict(
                    target_id=d.id, rubric="clca_meta", judge=judge_agent.name, variant=variant
                ).id
                not in done
            ]
            if todo:
                with ctx.console.status(f"judging {len(todo)} dialogue(s) ({variant})"):
                    store.append_many(
                        judge_dialogues(
                            judge_agent, todo, episodes, cultures, rubrics, variant=variant
                        )
                    )
        todo_instances = [
            i
            for i in instances
            if Verdict(target_id=i.id, rubric="culturespa_instance", judge=judge_agent.name).id
            not in done
        ]
        if todo_instances:
            questions = {q.id: q for q in store.read(Question)}
            answers = {a.id: a for a in store.read(Answer)}
            with ctx.console.status(f"judging {len(todo_instances)} instance(s)"):
                store.append_many(
                    judge_instances(
                        judge_agent,
                        todo_instances,
                        questions,
                        answers,
                        cultures,
                        rubrics["culturespa_instance"],
                    )
                )
        if spec == ctx.roles.judge:
            primary = judge_agent.name
    record_decisions(store, primary, policy, describe_policy(section))
    stats = judge_statistics(run_dir, primary)
    write_json_atomic(run_dir / "judge_stats.json", stats)
    return stats


def decide_from_verdicts(section: JudgeSection, run_dir: Path) -> dict[str, Any]:
    """No model calls: decisions from the verdicts already written (of the judge with the most
    verdicts) under the section's policy, then the statistics."""
    from collections import Counter

    store = RunStore(run_dir)
    judges = Counter(v.judge for v in store.read(Verdict))
    if not judges:
        raise StageFailed(f"{run_dir} has no verdicts yet; run `culturesim judge {run_dir}`")
    primary = judges.most_common(1)[0][0]
    record_decisions(store, primary, _policy(section), describe_policy(section))
    stats = judge_statistics(run_dir, primary)
    write_json_atomic(run_dir / "judge_stats.json", stats)
    return stats


def describe_policy(section: JudgeSection) -> str:
    """The policy as a stable string: part of each decision's identity."""
    return ";".join(
        [
            f"rule={section.rule}",
            f"on_unparseable={section.on_unparseable}",
            *(
                [f"instance_rule={section.instance_rule}"]
                if section.instance_rule != "all_yes"
                else []
            ),
            *sorted(section.thresholds),
        ]
    )


def record_decisions(store: RunStore, judge_name: str, policy: Any, policy_text: str) -> int:
    """Append the decisions that differ from the latest stored ones; returns how many."""
    from culturesim.agents.judge.filters import decide_dialogues, decide_instances

    verdicts = [v for v in store.read(Verdict) if v.judge == judge_name]
    decided = decide_dialogues(verdicts, policy) + decide_instances(verdicts, policy)
    history = store.read(FilterDecision)
    latest = latest_decisions(history)
    revisions: dict[str, int] = {}
    for d in history:
        revisions[d.target_id] = revisions.get(d.target_id, 0) + 1
    fresh = []
    for d in decided:
        current = latest.get(d.target_id)
        if (
            current is not None
            and current.status == d.status
            and current.judge == judge_name
            and current.policy == policy_text
        ):
            continue
        fresh.append(
            FilterDecision(
                target_id=d.target_id,
                status=d.status,  # type: ignore[arg-type]
                judge=judge_name,
                policy=policy_text,
                reason=d.reason,
                revision=revisions.get(d.target_id, 0),
            )
        )
    store.append_many(fresh)
    return len(fresh)


def judge_statistics(run_dir: Path, judge_name: str | None = None) -> dict[str, Any]:
    """The judge's yield per culture and reliability, computed from the records alone."""
    from collections import Counter

    from culturesim.agents.judge.filters import agreement

    store = RunStore(run_dir)
    verdicts = store.read(Verdict)
    primary = judge_name or (Counter(v.judge for v in verdicts).most_common(1) or [("", 0)])[0][0]
    mine = [v for v in verdicts if v.judge == primary]
    decisions = latest_decisions(store.read(FilterDecision))
    dialogue_ids = {d.id for d in store.read(Dialogue)}
    episodes = {e.id: e for e in store.read(Episode)}
    dialogue_culture = {
        d.id: episodes[d.episode_id].scenario.culture
        for d in store.read(Dialogue)
        if d.episode_id in episodes
    }
    by_culture: dict[str, dict[str, int]] = {}
    dialogue_counts = dict.fromkeys(STATUSES, 0)
    instance_counts = dict.fromkeys(STATUSES, 0)
    for target, decision in decisions.items():
        if target in dialogue_ids:
            dialogue_counts[decision.status] += 1
            row = by_culture.setdefault(dialogue_culture.get(target, "?"), {})
            row[decision.status] = row.get(decision.status, 0) + 1
        else:
            instance_counts[decision.status] += 1
    report: dict[str, Any] = {
        "judge": primary,
        "verdicts": len(mine),
        "unparseable": sum(bool(v.parse_error) for v in mine),
        "dialogues": dialogue_counts,
        "instances": instance_counts,
        "dialogues_by_culture": by_culture,
    }
    position = agreement(verdicts, (primary, "default"), (primary, "swapped"))
    if position:
        report["position_agreement"] = {r.dimension: round(r.agreement, 3) for r in position}
        report["position_kappa"] = {r.dimension: round(r.kappa, 3) for r in position}
    for other in sorted({v.judge for v in verdicts} - {primary}):
        pair = agreement(verdicts, (primary, "default"), (other, "default"))
        report[f"kappa_vs_{other}"] = {r.dimension: round(r.kappa, 3) for r in pair}
        report[f"agreement_vs_{other}"] = {r.dimension: round(r.agreement, 3) for r in pair}
    return report


def plan(section: JudgeSection, loop: LoopPlan) -> str:
    return (
        f"{loop.counts.get('dialogues') or 'the'} dialogues × 3 rubrics and every instance with "
        f"{loop.ctx.roles.judge} ({section.mode} mode)"
    )


STAGE = Stage("judge", JudgeSection, run, plan, input_paths=("rubrics_dirs",))

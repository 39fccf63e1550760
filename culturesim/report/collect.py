"""Read a run directory into plain data for the report template.

The report works on a `culturesim run` directory (stage folders inside) and on the run folder
of a single command (dialogues or instances at the top level). A stage that did not run is
reported as not run; nothing here calls a model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from culturesim.store import RunStore, read_json_file, read_jsonl


@dataclass
class ReportData:
    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    dialogues: list[dict[str, Any]] = field(default_factory=list)
    yield_by_culture: list[dict[str, Any]] = field(default_factory=list)
    probe_rows: list[dict[str, Any]] = field(default_factory=list)
    probe_summary: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    training: list[dict[str, Any]] = field(default_factory=list)
    survey_summary: list[dict[str, Any]] = field(default_factory=list)
    guard: list[dict[str, Any]] = field(default_factory=list)
    evaluation_images: list[Path] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)
    signal: list[dict[str, str]] = field(default_factory=list)

    @property
    def facets(self) -> dict[str, list[str]]:
        """The values each dialogue filter offers."""
        return {
            key: sorted({str(d[key]) for d in self.dialogues})
            for key in ("culture", "scenario", "verdict")
        }


def _json_file(path: Path) -> Any:
    return read_json_file(path) if path.exists() else None


def _find(root: Path, stage: str, marker: str) -> Path | None:
    """The stage folder of a loop run, or the run itself when it is a single command's."""
    for candidate in (root / stage, root):
        if (candidate / marker).exists():
            return candidate
    return None


def _decisions(run: Path) -> dict[str, dict[str, Any]]:
    """The judge's latest decision per target, from the run's decision records."""
    latest = latest_decisions(RunStore(run).read(FilterDecision))
    return {target: d.model_dump() for target, d in latest.items()}


RUN_MARKERS = (
    "manifest.json",
    "dialogue.jsonl",
    "question.jsonl",
    "corpus_summary.json",
    "metrics.jsonl",
    "results.json",
)
"""Files that show a folder was made by a command: any one of them gives a report."""


def collect(root: Path) -> ReportData:
    data = ReportData(root=root)
    manifest = _json_file(root / "manifest.json") or {}
    data.config = manifest.get("config", {})
    latest: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(root / "stages.jsonl"):
        latest[row["stage"]] = row
    data.stages = list(latest.values())
    simulate = _find(root, "simulate", "dialogue.jsonl")
    if simulate is not None:
        _collect_dialogues(simulate, data)
    probe = _find(root, "probe", "question.jsonl")
    if probe is not None:
        _collect_probe(probe, data)
    corpus = _find(root, "corpus", "corpus_summary.json")
    data.corpus = (_json_file(corpus / "corpus_summary.json") or {}) if corpus is not None else {}
    train = _find(root, "train", "metrics.jsonl")
    data.training = read_jsonl(train / "metrics.jsonl") if train is not None else []
    # A loop keeps survey results in evaluate/survey; `evaluate wvs --out DIR` in DIR itself.
    survey_dir = next(
        (d for d in (root / "evaluate" / "survey", root) if (d / "results.json").exists()), None
    )
    if survey_dir is not None:
        data.survey_summary = (_json_file(survey_dir / "results.json") or {}).get("summary", [])
        data.evaluation_images = sorted(survey_dir.glob("*.png"))
        data.comparison = _json_file(survey_dir / "comparison.json") or {}
    guard = next(
        (p for p in (root / "evaluate" / "guard.json", root / "guard.json") if p.exists()), None
    )
    data.guard = _json_file(guard) if guard is not None else []
    data.signal = _signal_by_stage(root, data, latest)
    return data


def _signal_by_stage(
    root: Path, data: ReportData, stages: dict[str, dict[str, Any]]
) -> list[dict[str, str]]:
    """Where a planted signal goes, stage by stage: what each stage kept of it."""
    rows = []
    teacher = _json_file(root / "teacher" / "teacher_summary.json")
    if teacher:
        rows.append(
            {
                "stage": "teacher",
                "what": f"{teacher['rows']} (culture, seen question) rows, {teacher['steps']} "
                f"steps, loss {teacher['first_loss']} → {teacher['last_loss']}",
            }
        )
    probe = data.probe_summary
    if probe:
        compared = probe.get("comparison") or {}
        rows.append(
            {
                "stage": "probe",
                "what": f"{probe.get('questions_kept', 0)} questions; instances by "
                f"{probe.get('answer_model', 'the answerer')}: {probe.get('instances', {})}"
                + (
                    f"; by {compared['model']} on the same questions: {compared['instances']}"
                    if compared
                    else ""
                )
                + (
                    f"; {probe['seeds_withheld']} held-out seed questions withheld from the prober"
                    if probe.get("seeds_withheld")
                    else ""
                ),
            }
        )
    judged = (stages.get("judge", {}).get("counts") or {}).get("probe", {}).get("instances")
    if judged:
        rows.append({"stage": "judge", "what": f"instances {judged}"})
    sets = data.corpus.get("sets", {})
    removed = data.corpus.get("removed", {})
    for name, family, note in (
        ("culturespa_joint", "culturespa", ""),
        ("culturespa_soft", "culturespa_soft", " ({} cultures, soft targets)"),
    ):
        counts = sets.get(name)
        if counts:
            rows.append(
                {
                    "stage": "corpus",
                    "what": f"{name} {counts['train']} train + {counts['validation']} "
                    f"validation rows{note.format(len(counts['by_culture']))}; "
                    f"{removed.get(f'{family} evaluation overlap', 0)} removed as held-out "
                    "overlap",
                }
            )
    losses = [r for r in data.training if "loss" in r]
    if losses:
        rows.append(
            {
                "stage": "train",
                "what": f"{losses[-1]['step']} steps, loss {losses[0]['loss']:.4f} → "
                f"{losses[-1]['loss']:.4f}",
            }
        )
    return rows


def _collect_dialogues(run: Path, data: ReportData) -> None:
    store = RunStore(run)
    episodes = {e.id: e for e in store.read(Episode)}
    decisions = _decisions(run)
    verdicts: dict[str, list[Verdict]] = defaultdict(list)
    for verdict in store.read(Verdict):
        if verdict.variant == "default":
            verdicts[verdict.target_id].append(verdict)
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for dialogue in store.read(Dialogue):
        episode = episodes.get(dialogue.episode_id)
        if episode is None:
            continue
        decision = decisions.get(dialogue.id, {})
        status = decision.get("status", "not judged")
        culture = episode.scenario.culture
        tally[culture][status] += 1
        roles = {role.name: role for role in episode.scenario.roles}
        names = {
            role.name: persona.name
            for role, persona in zip(episode.scenario.roles, episode.personas, strict=False)
        }
        data.dialogues.append(
            {
                "id": dialogue.id,
                "culture": culture,
                "scenario": episode.scenario.template_id,
                "title": episode.scenario.title,
                "setting": episode.scenario.setting,
                "verdict": status,
                "reason": decision.get("reason", ""),
                "stop_reason": dialogue.stop_reason,
                "participants": [
                    {
                        "role": name,
                        "name": names.get(name, name),
                        "culture": role.culture,
                        "goal": role.goal,
                    }
                    for name, role in roles.items()
                ],
                "labels": [
                    {
                        "rubric": v.rubric,
                        "dimension": label.dimension,
                        "value": label.value,
                        "confidence": label.confidence,
                    }
                    for v in sorted(verdicts.get(dialogue.id, []), key=lambda v: v.rubric)
                    for label in v.labels
                ]
                + [
                    {
                        "rubric": v.rubric,
                        "dimension": "unreadable",
                        "value": v.parse_error,
                        "confidence": "",
                    }
                    for v in verdicts.get(dialogue.id, [])
                    if v.parse_error
                ],
                "turns": [
                    {
                        "index": turn.index,
                        "speaker": turn.speaker,
                        "name": names.get(turn.speaker, turn.speaker),
                        "action": turn.action,
                        "utterance": turn.utterance,
                        "intent": turn.intent,
                        "expectation": turn.cultural_expectation,
                        "malformed": turn.malformed,
                    }
                    for turn in dialogue.turns
                ],
            }
        )
    for culture, counts in sorted(tally.items()):
        total = sum(counts.values())
        data.yield_by_culture.append(
            {
                "culture": culture,
                "dialogues": total,
                "kept": counts["kept"],
                "dropped": counts["dropped"],
                "unparseable": counts["unparseable"],
                "not_judged": counts["not judged"],
                "yield": counts["kept"] / total if total else 0.0,
            }
        )


def _collect_probe(run: Path, data: ReportData) -> None:
    store = RunStore(run)
    data.probe_summary = _json_file(run / "probe_summary.json") or {}
    questions = {q.id: q for q in store.read(Question) if q.source == "generated"}
    answers = store.read(Answer)
    decisions = _decisions(run)
    instances: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for instance in store.read(Instance):
        instances[(instance.question_id, instance.culture)].append(instance)
    # Answers name their question as the survey item they were asked as ("survey:<id>").
    # With `compare_with` a second model answered too: the table shows the answerer's answers,
    # which are the ones the instances were taken from.
    answerer = data.probe_summary.get("answer_model")
    unaware = {(_bare(a.question_id), a.model): a for a in answers if a.prompt == "unaware"}
    for answer in answers:
        qid = _bare(answer.question_id)
        if answer.prompt != "aware" or qid not in questions:
            continue
        if answerer and answer.model != answerer:
            continue
        base = unaware.get((qid, answer.model))
        question = questions[qid]
        matched = instances.get((qid, answer.culture), [])
        data.probe_rows.append(
            {
                "question": question.text,
                "topic": question.topic,
                "options": list(question.options),
                "culture": answer.culture,
                "aware": list(answer.distribution),
                "unaware": list(base.distribution) if base else [],
                "divergence": _jsd(answer.distribution, base.distribution) if base else None,
                "rules": sorted({i.rule for i in matched}),
                "judged": sorted(
                    {decisions.get(i.id, {}).get("status", "") for i in matched} - {""}
                ),
            }
        )
    data.probe_rows.sort(key=lambda r: -(r["divergence"] or 0.0))


def _bare(question_id: str) -> str:
    return question_id.removeprefix("survey:")


def _jsd(p: tuple[float, ...], q: tuple[float, ...]) -> float | None:
    if not p or len(p) != len(q):
        return None
    import numpy as np

    from culturesim.survey.distributions import js_divergence

    return float(js_divergence(np.asarray(p), np.asarray(q)))

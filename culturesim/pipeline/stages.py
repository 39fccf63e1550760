"""Each stage of the loop as a call into the same code its own command runs.

A stage reads its section of the run config, calls the stage's command function with those
settings (so `culturesim run` and the single commands can never drift apart), and returns the
counts the report and the stage log show. Every command resumes by record id, so a stage that
was killed picks up where it stopped when the loop is run again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from culturesim.pipeline.config import RunConfig


class StageFailed(RuntimeError):
    """A stage's command stopped with an error; later stages need its output and do not run."""


@dataclass(frozen=True)
class RunLayout:
    """Where each stage writes inside the run directory."""

    root: Path

    @property
    def simulate(self) -> Path:
        return self.root / "simulate"

    @property
    def probe(self) -> Path:
        return self.root / "probe"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def evaluate(self) -> Path:
        return self.root / "evaluate"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def stage_log(self) -> Path:
        return self.root / "stages.jsonl"

    def record_dirs(self) -> list[Path]:
        """The run stores that hold dialogues or instances."""
        return [p for p in (self.simulate, self.probe) if (p / "manifest.json").exists()]


def _call(stage: str, command: Callable[..., None], **kwargs: Any) -> int:
    """Run a command function; a non-zero exit becomes StageFailed, except `allowed` codes."""
    allowed = kwargs.pop("allowed_codes", ())
    try:
        command(**kwargs)
    except typer.Exit as stop:
        if stop.exit_code in (0, *allowed):
            return int(stop.exit_code)
        raise StageFailed(f"stage {stage} stopped with exit code {stop.exit_code}") from stop
    return 0


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _lines(path: Path) -> int:
    return len(_read_lines(path))


def _json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_simulate(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.cli.simulate import simulate
    from culturesim.store import RunStore

    section = config.simulate
    assert section is not None
    # Failed conversations exit 3: they are listed in failed.jsonl and the loop goes on.
    code = _call(
        "simulate",
        simulate,
        out=layout.simulate,
        config=None,
        scenarios=section.scenarios,
        cultures=section.cultures,
        per_episode=section.per_episode,
        episodes_per_scenario=section.episodes_per_scenario,
        model=config.models.actor,
        seed=config.seed,
        temperature=section.temperature,
        top_p=section.top_p,
        max_new_tokens=section.max_new_tokens,
        action_mode=section.action_mode,
        max_turns=section.max_turns,
        intents=section.intents,
        concurrency=section.concurrency,
        max_batch_size=section.max_batch_size,
        scenario_dir=section.scenario_dirs,
        retry_failed=config.retry_failed,
        ray_actors=section.ray_actors,
        allowed_codes=(3,),
    )
    store = RunStore(layout.simulate)
    return {
        "episodes": _lines(store.path_for("episode")),
        "dialogues": len(store.done_ids("dialogue")),
        "failed": _lines(layout.simulate / "failed.jsonl") if code == 3 else 0,
    }


def run_probe(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.cli.probe import probe

    section = config.probe
    assert section is not None
    _call(
        "probe",
        probe,
        out=layout.probe,
        cultures=section.cultures,
        topics=section.topics,
        per_topic=section.per_topic,
        model=config.models.prober,
        topics_file=None,
        seeds=None,
        eval_questions=Path(section.eval_questions) if section.eval_questions else None,
        mode=section.mode,
        samples=1,
        rules=section.rules,
        jsd_threshold=section.jsd_threshold,
        min_confidence=section.min_confidence,
        dedup_threshold=0.9,
        decontamination_threshold=0.85,
        max_rounds=section.max_rounds,
        structured=section.structured,
        temperature=section.temperature,
        prefill='{"Question": "',
        seed=config.seed,
        batch_size=section.batch_size,
    )
    summary = _json(layout.probe / "probe_summary.json")
    return {
        "questions": summary.get("questions_kept", 0),
        "answers": summary.get("answers", 0),
        "instances": sum(summary.get("instances", {}).values()),
    }


def run_judge(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.cli.judge import judge

    section = config.judge
    assert section is not None
    counts: dict[str, Any] = {}
    targets = layout.record_dirs()
    if not targets:
        raise StageFailed("stage judge has nothing to judge: run simulate or probe first")
    for run_dir in targets:
        _call(
            "judge",
            judge,
            run_dir=run_dir,
            model=config.models.judge,
            second_judge=None,
            position_check=section.position_check,
            threshold=section.thresholds,
            rule=section.rule,
            on_unparseable=section.on_unparseable,
            rubrics_dir=[Path(p) for p in section.rubrics_dirs],
            mode=section.mode,
            attempts=section.attempts,
            max_new_tokens=section.max_new_tokens,
            stats=False,
        )
        stats = _json(run_dir / "judge_stats.json")
        counts[run_dir.name] = {
            "verdicts": stats.get("verdicts", 0),
            "unparseable": stats.get("unparseable", 0),
            "dialogues": stats.get("dialogues", {}),
            "instances": stats.get("instances", {}),
        }
    return counts


def run_corpus(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.cli.corpus import corpus

    section = config.corpus
    assert section is not None
    runs = layout.record_dirs()
    if not runs:
        raise StageFailed("stage corpus has no records: run simulate or probe first")
    _call(
        "corpus",
        corpus,
        runs=runs,
        out=layout.corpus,
        mixture=section.mixture,
        goals=section.goals,
        secrets=section.secrets,
        cues=section.cues,
        validation=section.validation,
        dedup_threshold=section.dedup_threshold,
        eval_questions=Path(section.eval_questions) if section.eval_questions else None,
        unjudged=config.judge is None,
        embeddings=section.embeddings,
        seed=config.seed,
    )
    summary = _json(layout.corpus / "corpus_summary.json")
    return {
        name: {"train": s.get("train", 0), "validation": s.get("validation", 0)}
        for name, s in summary.get("sets", {}).items()
    }


def run_train(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.cli.train import train

    section = config.train
    assert section is not None
    set_dir = layout.corpus / section.set
    rows = _lines(set_dir / "train.jsonl")
    if rows == 0:
        raise StageFailed(
            f"stage train: the corpus set {section.set!r} has no training rows ({set_dir}); "
            "check the judge's yield in the corpus card, or train on another set"
        )
    _call(
        "train",
        train,
        set_dir=set_dir,
        out=layout.train,
        base=config.models.base,
        method=section.method,
        preset=section.preset,
        per_culture=False,
        max_steps=section.max_steps,
        epochs=section.epochs,
        learning_rate=section.learning_rate,
        lora_r=section.lora_r,
        batch_size=section.batch_size,
        effective_batch_size=section.effective_batch_size,
        max_length=section.max_length,
        packing=None,
        qlora=False,
        seed=config.seed,
    )
    losses = [
        row for row in map(json.loads, _read_lines(layout.train / "metrics.jsonl")) if "loss" in row
    ]
    return {
        "rows": rows,
        "steps": losses[-1]["step"] if losses else 0,
        "first_loss": losses[0]["loss"] if losses else None,
        "last_loss": losses[-1]["loss"] if losses else None,
    }


def trained_adapter(layout: RunLayout) -> Path | None:
    adapter = layout.train / "adapter"
    return adapter if (adapter / "adapter_config.json").exists() else None


def run_evaluate(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    """The base model before and, when an adapter was trained, after fine-tuning."""
    from culturesim.evaluation.guard import guard_accuracy, load_benchmark
    from culturesim.models.registry import build_model

    section = config.evaluate
    assert section is not None
    adapter = trained_adapter(layout)
    variants: list[tuple[str, Path | None]] = [("before", None)]
    if adapter is not None:
        variants.append(("after", adapter))
    layout.evaluate.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {}
    if section.survey_dir is not None:
        survey = Path(section.survey_dir)
        if not survey.is_dir():
            raise StageFailed(
                f"stage evaluate: survey_dir {survey} does not exist; point evaluate.survey_dir "
                "at the WVS folder, or remove it to score the sanity set only"
            )
        from culturesim.cli.evaluate import wvs_command

        _call(
            "evaluate",
            wvs_command,
            model=[config.models.base] * len(variants),
            survey_dir=survey,
            out=layout.evaluate / "survey",
            adapter=[str(path) if path else "none" for _, path in variants],
            cultures=section.cultures,
            styles=section.styles,
            mode=section.mode,
            samples=1,
            limit=section.limit,
            seed=config.seed,
            batch_size=section.batch_size,
            answer_prefix="The answer is ",
            guard=False,
            as_json=False,
        )
        results = _json(layout.evaluate / "survey" / "results.json")
        counts["survey_rows"] = len(results.get("rows", []))
    if section.guard:
        guard_rows = []
        items = load_benchmark()
        for name, path in variants:
            result = guard_accuracy(build_model(config.models.base, adapter=path), items)
            guard_rows.append(
                {
                    "variant": name,
                    "model": result.model,
                    "items": result.items,
                    "correct": result.correct,
                    "accuracy": round(result.accuracy, 4),
                }
            )
        (layout.evaluate / "guard.json").write_text(json.dumps(guard_rows, indent=2) + "\n")
        counts["guard"] = {row["variant"]: row["accuracy"] for row in guard_rows}
    return counts


def run_report(config: RunConfig, layout: RunLayout) -> dict[str, Any]:
    from culturesim.report.build import build_report

    index = build_report(layout.root)
    return {"index": str(index)}


STAGE_FUNCTIONS: dict[str, Callable[[RunConfig, RunLayout], dict[str, Any]]] = {
    "simulate": run_simulate,
    "probe": run_probe,
    "judge": run_judge,
    "corpus": run_corpus,
    "train": run_train,
    "evaluate": run_evaluate,
    "report": run_report,
}


def dialogue_cultures(layout: RunLayout) -> Counter[str]:
    """Dialogues per culture (mixed casts as JPN+MEX), for the plan and the report."""
    from culturesim.records import Dialogue, Episode
    from culturesim.store import RunStore

    store = RunStore(layout.simulate)
    episodes = {e.id: e for e in store.read(Episode)}
    return Counter(
        episodes[d.episode_id].scenario.culture
        for d in store.read(Dialogue)
        if d.episode_id in episodes
    )

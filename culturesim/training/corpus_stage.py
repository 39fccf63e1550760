"""The corpus stage: kept records → CLCA views, CultureSPA sets and DPO pairs, with a card.

`CorpusSection` is the stage's only schema for `culturesim corpus` and the run config's
`corpus:`. What the judge kept is read from the decision records in each run store.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from culturesim.context import LoopPlan, RunContext, Stage, StageFailed, StageResult, StageSection
from culturesim.models.embeddings import CORPUS_DEDUP_THRESHOLD
from culturesim.prompt_library import echoes_placeholder
from culturesim.records import (
    Answer,
    Dialogue,
    Episode,
    FilterDecision,
    Instance,
    Question,
    latest_decisions,
)
from culturesim.store import RunStore, write_json_atomic, write_text_atomic


class CorpusSection(StageSection):
    """The CLCA mixture, what system prompts reveal, and how the corpus is cleaned and split."""

    mixture: str = Field(default="2:1", pattern=r"^\d+:\d+$", description="dialogue:intent views")
    goals: bool = Field(default=True, description="goals in the CLCA system prompts")
    secrets: bool = Field(default=True, description="secrets in the CLCA system prompts")
    cues: bool = Field(default=True, description="cultural cues in the CLCA system prompts")
    validation: float = Field(default=0.1, ge=0.0, le=0.5, description="share per culture")
    dedup_threshold: float = Field(default=CORPUS_DEDUP_THRESHOLD, ge=0.0, le=1.0)
    embeddings: bool = Field(default=True, description="semantic dedup and decontamination")
    eval_questions: str | None = Field(
        default=None,
        description="questions to keep out: a JSON list with 'question', or a survey split "
        "file (its held-out half; `culturesim evaluate split`)",
    )
    answer_prefix: str = Field(
        default="",
        description="text before the option number in CultureSPA and DPO targets ('' as "
        "published; the evaluation's 'The answer is ' makes targets match how models are scored)",
    )
    targets: Literal["argmax", "soft"] = Field(
        default="argmax",
        description="argmax: CultureSPA's option-number targets only; soft: also the set "
        "culturespa_soft, the answering model's culture-aware distribution for every culture "
        "of each kept question (train it with method distill)",
    )
    unjudged: bool = Field(default=False, description="use dialogues never judged (not advised)")

    def shared_settings(self) -> dict[str, Any]:
        """Soft targets are scored as the evaluation scores; argmax targets may keep the
        published bare option number."""
        return {"answer_prefix": self.answer_prefix} if self.targets == "soft" else {}


def _evaluation_texts(path: str | None) -> list[str]:
    """Question texts to keep out: a JSON list of {"question": ...}, or the held-out half of a
    survey split written by `culturesim evaluate split`."""
    if path is None:
        return []
    try:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and "held_out" in data:
            return [str(q["question"]) for q in data["held_out"]]
        return [str(q.get("question", "")) for q in data]
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
        raise StageFailed(f"corpus: eval_questions {path}: {error}") from error


def _overlap_sources(section: CorpusSection, ctx: RunContext) -> str:
    sources = [section.eval_questions] if section.eval_questions else []
    if ctx.layout.split_file.exists():
        sources.append(f"{ctx.layout.split_file} (held-out half)")
    return ", ".join(sources) or "no evaluation set given"


def run(section: CorpusSection, ctx: RunContext) -> StageResult:
    from culturesim.models.embeddings import Embedder
    from culturesim.survey.administer import SurveyPrompter
    from culturesim.training.corpus import (
        CorpusSettings,
        Row,
        decontaminate,
        dialogue_views,
        instance_rows,
        intent_view,
        mix,
        remove_near_duplicates,
        soft_rows,
        split_by_culture,
        write_set,
    )

    runs = ctx.layout.record_dirs()
    if not runs:
        raise StageFailed("corpus has no records: run simulate or probe first")
    for run_dir in runs:
        RunStore(run_dir).manifest()  # a missing or damaged manifest says so, naming the file
    a, b = (int(x) for x in section.mixture.split(":"))
    settings = CorpusSettings(
        mixture=(a, b),
        include_goal=section.goals,
        include_secret=section.secrets,
        include_cues=section.cues,
        validation_fraction=section.validation,
        dedup_threshold=section.dedup_threshold,
        seed=ctx.seed,
    )
    evaluation = _evaluation_texts(section.eval_questions)
    if ctx.layout.split_file.exists():  # the run's held-out half stays out of every corpus
        evaluation += _evaluation_texts(str(ctx.layout.split_file))
    library = ctx.prompts
    cultures = ctx.cultures(*runs)
    prompter = SurveyPrompter(cultures, library=library)
    dialogue_rows: list[Row] = []
    intent_rows: list[Row] = []
    spa_rows: list[Row] = []
    dpo_rows: list[Row] = []
    soft: list[Row] = []
    filters: list[str] = []
    removed: Counter[str] = Counter()
    for run_dir in runs:
        store = RunStore(run_dir)
        decided = store.read(FilterDecision)
        decisions = {t: d.status for t, d in latest_decisions(decided).items()}
        dialogues = store.read(Dialogue)
        if dialogues and not decided and not section.unjudged:
            raise StageFailed(
                f"{run_dir} has dialogues but no judge decisions; run `culturesim judge "
                f"{run_dir}` first, or set unjudged (--unjudged)"
            )
        episodes = {e.id: e for e in store.read(Episode)}
        for dialogue in dialogues:
            status = decisions.get(dialogue.id, "kept" if section.unjudged else "missing")
            if status != "kept":
                removed[f"dialogue {status}"] += 1
                continue
            episode = episodes[dialogue.episode_id]
            dialogue_rows += dialogue_views(dialogue, episode, cultures, settings, library)
            view = intent_view(dialogue, episode, cultures, library)
            if view is not None:
                intent_rows.append(view)
        kept_instances = []
        for instance in store.read(Instance):
            verdict = decisions.get(instance.id)
            if verdict is None:
                kept_instances.append(instance)  # never judged: passes, and the card says so
                removed["instance unjudged (kept)"] += 1
            elif verdict == "kept":
                kept_instances.append(instance)
            else:
                removed[f"instance {verdict}"] += 1
        questions = {q.id: q for q in store.read(Question)}
        answers = {x.id: x for x in store.read(Answer)}
        sft, dpo, skipped = instance_rows(
            kept_instances, questions, answers, prompter, answer_prefix=section.answer_prefix
        )
        spa_rows += sft
        dpo_rows += dpo
        removed.update(skipped)
        if section.targets == "soft":
            distilled, skipped = soft_rows(
                kept_instances, questions, answers, prompter, answer_prefix=section.answer_prefix
            )
            soft += distilled
            removed.update(skipped)
        filters.append(
            f"{run_dir}: dialogues by judge decisions"
            + (" (unjudged allowed)" if section.unjudged else "")
            + ("; instances by judge check" if decided else "; instances unjudged")
        )

    embedder = Embedder() if section.embeddings else None
    families = {
        "clca_dialogue": dialogue_rows,
        "clca_intent": intent_rows,
        "culturespa": spa_rows,
        "dpo": dpo_rows,
        "culturespa_soft": soft,
    }
    for name, rows in families.items():
        # A row that carries a template placeholder ("<one sentence>") is refused outright.
        clean = [r for r in rows if not echoes_placeholder(r.text)]
        removed[f"{name} template placeholders"] += len(rows) - len(clean)
        rows = clean
        if name == "clca_intent":
            # An intent view stands or falls with its dialogue's views, deduplicated above.
            surviving = {r.source_record for r in families["clca_dialogue"]}
            before = len(rows)
            rows = [r for r in rows if r.source_record in surviving]
            removed["clca_intent near-duplicates"] += before - len(rows)
        else:
            rows, dropped = remove_near_duplicates(rows, embedder, settings.dedup_threshold)
            removed[f"{name} near-duplicates"] += dropped
        rows, dropped = decontaminate(
            rows, evaluation, embedder, settings.decontamination_threshold
        )
        removed[f"{name} evaluation overlap"] += dropped
        families[name] = rows
    # The mixture is applied to what survived cleaning, so the ratio holds in the output.
    clca = mix(families["clca_dialogue"], families["clca_intent"], settings.mixture)
    removed["clca intent views beyond the mixture"] += (
        len(families["clca_dialogue"]) + len(families["clca_intent"]) - len(clca)
    )
    sets: dict[str, list[Row]] = {
        "clca": clca,
        "culturespa_joint": families["culturespa"],
        "dpo": families["dpo"],
    }
    if section.targets == "soft":
        sets["culturespa_soft"] = families["culturespa_soft"]
    for code in sorted({r.culture for r in families["culturespa"]}):  # argmax, per culture
        sets[f"culturespa_{code}"] = [r for r in families["culturespa"] if r.culture == code]
    out = ctx.layout.corpus
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "sets": {},
        "removed": dict(removed),
        "filters": filters,
        "kept_out": _overlap_sources(section, ctx),
    }
    for name, rows in sets.items():
        counts = write_set(name, split_by_culture(rows, section.validation, ctx.seed), out)
        summary["sets"][name] = {
            **counts,
            "by_culture": dict(Counter(r.culture for r in rows)),
            "by_source": dict(Counter(r.source for r in rows)),
        }
    summary_path = write_json_atomic(out / "corpus_summary.json", summary)
    card_path = write_text_atomic(out / "README.md", dataset_card(section, runs, summary))
    return StageResult(
        counts={
            name: {"train": s["train"], "validation": s["validation"]}
            for name, s in summary["sets"].items()
        }
        | {"removed": {k: v for k, v in removed.items() if v}},
        written=(summary_path, card_path),
    )


def dataset_card(section: CorpusSection, runs: list[Path], summary: dict[str, Any]) -> str:
    """The corpus's README: sets, sizes per culture and source, filters and what was removed."""
    rows = [
        f"| {name} | {s['train']} | {s['validation']} | "
        + ", ".join(f"{c} {n}" for c, n in sorted(s["by_culture"].items()))
        + " | "
        + ", ".join(f"{k} {n}" for k, n in sorted(s["by_source"].items()))
        + " |"
        for name, s in summary["sets"].items()
    ]
    card = [
        "# culturesim corpus",
        "",
        "Built by `culturesim corpus` from: " + ", ".join(str(r) for r in runs) + ".",
        "Format: TRL chat format (`messages`; DPO: `prompt`, `chosen`, `rejected`), each row with",
        "`culture`, `source` and `lineage` (the record ids it came from). `culturespa_soft` rows",
        "end with the answer prefill and carry `target`: the option codes and the answering",
        "model's culture-aware probabilities (for `train.method: distill`).",
        "",
        "| set | train | validation | rows per culture | rows per source |",
        "| --- | ---: | ---: | --- | --- |",
        *rows,
        "",
        "## Filters applied",
        "",
        *(f"- {f}" for f in summary["filters"]),
        f"- CLCA mixture dialogue:intent = {section.mixture}; goals "
        f"{'in' if section.goals else 'out'}, secrets {'in' if section.secrets else 'out'}, "
        f"cultural cues {'in' if section.cues else 'out'} of the system prompts",
        "- near-duplicates removed within each kind of set across the corpus (exact, then cosine "
        f">= {section.dedup_threshold} on all-MiniLM-L6-v2"
        f"{'' if section.embeddings else ', embeddings off'})",
        f"- evaluation overlap removed: {summary['kept_out']}",
        f"- validation: {section.validation:.0%} per culture",
        f"- CultureSPA targets: {section.targets}"
        + (" (argmax sets, plus culturespa_soft)" if section.targets == "soft" else ""),
        "",
        "## Removed",
        "",
        *(f"- {k}: {v}" for k, v in sorted(summary["removed"].items()) if v),
        "",
    ]
    return "\n".join(card)


def plan(section: CorpusSection, loop: LoopPlan) -> str:
    return f"kept records → CLCA views ({section.mixture}), CultureSPA sets, DPO"


STAGE = Stage("corpus", CorpusSection, run, plan, input_paths=("eval_questions",))

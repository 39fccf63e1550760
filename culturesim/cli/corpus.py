"""`culturesim corpus RUN_DIR… --out DIR`: kept records -> training sets with a dataset card."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def _decisions(run: Path) -> dict[str, str] | None:
    path = run / "filter_decisions.jsonl"
    if not path.exists():
        return None
    return {
        row["target_id"]: row["status"]
        for row in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    }


def corpus(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (simulate, probe, judged).")],
    out: Annotated[Path, typer.Option(help="Folder for the corpus.")],
    mixture: Annotated[str, typer.Option(help="CLCA dialogue:intent views.")] = "2:1",
    goals: Annotated[bool, typer.Option("--goals/--no-goals")] = True,
    secrets: Annotated[bool, typer.Option("--secrets/--no-secrets")] = True,
    cues: Annotated[bool, typer.Option("--cues/--no-cues")] = True,
    validation: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.1,
    dedup_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.95,
    eval_questions: Annotated[
        Path | None, typer.Option(help="Evaluation questions (JSON list with 'question').")
    ] = None,
    unjudged: Annotated[
        bool, typer.Option(help="Use dialogues of runs never judged (not recommended).")
    ] = False,
    embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings")] = True,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Build CLCA views, CultureSPA sets (joint and per culture) and DPO pairs."""
    from culturesim.evaluation.administer import SurveyPrompter
    from culturesim.models.embeddings import Embedder
    from culturesim.prompt_library import PromptLibrary
    from culturesim.records import Answer, Dialogue, Episode, Instance, Question
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.store import RunStore
    from culturesim.training.corpus import (
        CorpusSettings,
        Row,
        decontaminate,
        dialogue_views,
        instance_rows,
        intent_view,
        mix,
        remove_near_duplicates,
        split_by_culture,
        write_set,
    )

    try:
        a, b = (int(x) for x in mixture.split(":"))
        settings = CorpusSettings(
            mixture=(a, b),
            include_goal=goals,
            include_secret=secrets,
            include_cues=cues,
            validation_fraction=validation,
            dedup_threshold=dedup_threshold,
            seed=seed,
        )
        evaluation = []
        if eval_questions is not None:
            evaluation = [
                str(q.get("question", "")) for q in json.loads(eval_questions.read_text())
            ]
    except (ValueError, OSError) as error:
        errors.print(f"[bold red]error:[/] --mixture A:B or --eval-questions: {error}")
        raise typer.Exit(code=1) from error
    library = PromptLibrary()
    cultures = load_cultures()
    prompter = SurveyPrompter(cultures)
    dialogue_rows: list[Row] = []
    intent_rows: list[Row] = []
    spa_rows: list[Row] = []
    dpo_rows: list[Row] = []
    filters: list[str] = []
    removed: Counter[str] = Counter()
    for run in runs:
        if not (run / "manifest.json").exists():
            errors.print(f"[bold red]error:[/] {run} is not a run directory (no manifest.json)")
            raise typer.Exit(code=1)
        store = RunStore(run)
        decisions = _decisions(run)
        dialogues = store.read(Dialogue)
        if dialogues and decisions is None and not unjudged:
            errors.print(
                f"[bold red]error:[/] {run} has dialogues but no judge decisions; run "
                f"`culturesim judge {run}` first, or pass --unjudged"
            )
            raise typer.Exit(code=1)
        episodes = {e.id: e for e in store.read(Episode)}
        for dialogue in dialogues:
            status = (decisions or {}).get(dialogue.id, "kept" if unjudged else "missing")
            if status != "kept":
                removed[f"dialogue {status}"] += 1
                continue
            episode = episodes[dialogue.episode_id]
            dialogue_rows += dialogue_views(dialogue, episode, cultures, settings, library)
            view = intent_view(dialogue, episode, cultures, library)
            if view is not None:
                intent_rows.append(view)
        instances = store.read(Instance)
        kept_instances = []
        for instance in instances:
            verdict = (decisions or {}).get(instance.id)
            if verdict is None:
                kept_instances.append(instance)  # never judged: passes, and the card says so
                removed["instance unjudged (kept)"] += 1
            elif verdict == "kept":
                kept_instances.append(instance)
            else:
                removed[f"instance {verdict}"] += 1
        questions = {q.id: q for q in store.read(Question)}
        answers = {x.id: x for x in store.read(Answer)}
        sft, dpo, skipped = instance_rows(kept_instances, questions, answers, prompter)
        spa_rows += sft
        dpo_rows += dpo
        removed.update(skipped)
        filters.append(
            f"{run}: dialogues by judge decisions"
            + (" (unjudged allowed)" if unjudged else "")
            + ("; instances by judge check" if decisions else "; instances unjudged")
        )

    embedder = Embedder() if embeddings else None
    families = {
        "clca_dialogue": dialogue_rows,
        "clca_intent": intent_rows,
        "culturespa": spa_rows,
        "dpo": dpo_rows,
    }
    for name, rows in families.items():
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
    families["clca"] = clca

    sets: dict[str, list[Row]] = {
        "clca": families["clca"],
        "culturespa_joint": families["culturespa"],
        "dpo": families["dpo"],
    }
    for code in sorted({r.culture for r in families["culturespa"]}):
        sets[f"culturespa_{code}"] = [r for r in families["culturespa"] if r.culture == code]
    out.mkdir(parents=True, exist_ok=True)
    table = Table("set", "train", "validation", "cultures", title="Corpus")
    card_rows = []
    summary: dict[str, object] = {"sets": {}, "removed": dict(removed), "filters": filters}
    for name, rows in sets.items():
        counts = write_set(name, split_by_culture(rows, validation, seed), out)
        per_culture = Counter(r.culture for r in rows)
        per_source = Counter(r.source for r in rows)
        summary["sets"][name] = {  # type: ignore[index]
            **counts,
            "by_culture": dict(per_culture),
            "by_source": dict(per_source),
        }
        table.add_row(name, str(counts["train"]), str(counts["validation"]), str(len(per_culture)))
        card_rows.append(
            f"| {name} | {counts['train']} | {counts['validation']} | "
            + ", ".join(f"{c} {n}" for c, n in sorted(per_culture.items()))
            + " | "
            + ", ".join(f"{s} {n}" for s, n in sorted(per_source.items()))
            + " |"
        )
    (out / "corpus_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    card = [
        "# culturesim corpus",
        "",
        "Built by `culturesim corpus` from: " + ", ".join(str(r) for r in runs) + ".",
        "Format: TRL chat format (`messages`; DPO: `prompt`, `chosen`, `rejected`), each row with",
        "`culture`, `source` and `lineage` (the record ids it came from).",
        "",
        "| set | train | validation | rows per culture | rows per source |",
        "| --- | ---: | ---: | --- | --- |",
        *card_rows,
        "",
        "## Filters applied",
        "",
        *(f"- {f}" for f in filters),
        f"- CLCA mixture dialogue:intent = {settings.mixture[0]}:{settings.mixture[1]}; goals "
        f"{'in' if goals else 'out'}, secrets {'in' if secrets else 'out'}, cultural cues "
        f"{'in' if cues else 'out'} of the system prompts",
        f"- near-duplicates removed within each kind of set across the corpus (exact, then cosine "
        f">= {dedup_threshold} on all-MiniLM-L6-v2{'' if embeddings else ', embeddings off'})",
        f"- evaluation overlap removed: {eval_questions or 'no evaluation set given'}",
        f"- validation: {validation:.0%} per culture",
        "",
        "## Removed",
        "",
        *(f"- {k}: {v}" for k, v in sorted(removed.items()) if v),
        "",
    ]
    (out / "README.md").write_text("\n".join(card))
    console.print(table)
    console.print(f"wrote {out} (dataset card: {out}/README.md)")

"""`culturesim probe`: generate culture-topic questions, answer them, keep culture-related instances."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.agents.prober.stage import ProbeSection
from culturesim.cli.common import (
    CultureDirOption,
    ModelHelp,
    PromptsDirOption,
    build_section,
    command_context,
    console,
    default,
)
from culturesim.models.base import DEFAULT_MODEL

P = ProbeSection


def probe(
    out: Annotated[Path, typer.Option(help="Run directory (resumable).")],
    cultures: Annotated[
        str | None, typer.Option(help=f"Comma-separated culture codes {default(P, 'cultures')}.")
    ] = None,
    topics: Annotated[
        str | None, typer.Option(help="'all', or topic ids/names, comma-separated.")
    ] = None,
    per_topic: Annotated[
        int | None,
        typer.Option(
            min=0, help=f"Generated questions to keep per topic {default(P, 'per_topic')}."
        ),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=ModelHelp)] = DEFAULT_MODEL,
    answer_model: Annotated[
        str | None, typer.Option(help="Answers the questions (default: the --model).")
    ] = None,
    topics_file: Annotated[
        Path | None, typer.Option(help="A YAML file of topics added to the built-in ones.")
    ] = None,
    seeds: Annotated[
        Path | None, typer.Option(help="JSON list of {id, question, options}; WVS file works.")
    ] = None,
    eval_questions: Annotated[
        Path | None, typer.Option(help="Evaluation questions to decontaminate against.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="logprob (default) or sample.")] = None,
    samples: Annotated[int | None, typer.Option(min=1)] = None,
    rules: Annotated[str | None, typer.Option(help="argmax, jsd, or both.")] = None,
    jsd_threshold: Annotated[float | None, typer.Option(help=default(P, "jsd_threshold"))] = None,
    min_confidence: Annotated[float | None, typer.Option(help=default(P, "min_confidence"))] = None,
    dedup_threshold: Annotated[
        float | None, typer.Option(help=default(P, "dedup_threshold"))
    ] = None,
    decontamination_threshold: Annotated[
        float | None, typer.Option(help=default(P, "decontamination_threshold"))
    ] = None,
    max_rounds: Annotated[int | None, typer.Option(min=1, help=default(P, "max_rounds"))] = None,
    structured: Annotated[
        bool | None,
        typer.Option(
            "--structured/--free",
            help="Write the JSON skeleton and let the model fill the question and options.",
        ),
    ] = None,
    scales: Annotated[
        str | None,
        typer.Option(
            help="Answer formats asked for in turn: 'free' or N for a 1..N rating scale, "
            "e.g. 'free,10' " + default(P, "scales")
        ),
    ] = None,
    anchors: Annotated[
        str | None,
        typer.Option(
            help="A rating scale's ends: 'write' (the model names them) or 'choose' (it picks "
            "the likeliest pair from --anchors-file) " + default(P, "anchors")
        ),
    ] = None,
    anchors_file: Annotated[
        Path | None,
        typer.Option(
            help="YAML of [low, high] scale ends for --anchors choose (default: built-in)."
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help=f"Generation temperature {default(P, 'temperature')}.")
    ] = None,
    prefill: Annotated[
        str | None, typer.Option(help="Assistant prefill for generation ('' for none).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    prompts_dir: PromptsDirOption = None,
    culture_dir: CultureDirOption = None,
) -> None:
    """Generate questions per topic, answer them culture-unaware and culture-aware, detect instances."""
    from culturesim.agents.prober.stage import run
    from culturesim.context import ModelRoles, RunLayout

    section = build_section(
        ProbeSection,
        {
            "cultures": cultures,
            "topics": topics,
            "per_topic": per_topic,
            "topics_file": str(topics_file) if topics_file else None,
            "seeds": str(seeds) if seeds else None,
            "eval_questions": str(eval_questions) if eval_questions else None,
            "mode": mode,
            "samples": samples,
            "rules": rules,
            "jsd_threshold": jsd_threshold,
            "min_confidence": min_confidence,
            "dedup_threshold": dedup_threshold,
            "decontamination_threshold": decontamination_threshold,
            "max_rounds": max_rounds,
            "structured": structured,
            "scales": scales,
            "anchors": anchors,
            "anchors_file": str(anchors_file) if anchors_file else None,
            "temperature": temperature,
            "prefill": prefill,
            "batch_size": batch_size,
        },
    )
    ctx = command_context(
        RunLayout.for_stage("probe", out),
        roles=ModelRoles(prober=model, answerer=answer_model),
        prompts_dir=prompts_dir,
        culture_dir=culture_dir,
        seed=seed,
    )
    result = run(section, ctx)
    c = result.counts
    table = Table("topic", "requested", "kept", "rejected (by reason)", title="Question generation")
    for name, s in c["topics"].items():
        table.add_row(
            name,
            str(s["requested"]),
            str(s["kept"]),
            ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items(), key=lambda kv: -kv[1])),
        )
    console.print(table)
    by_culture = c["instances_by_culture"]
    codes = sorted({code for counts in by_culture.values() for code in counts})
    result_table = Table(
        "rule", *codes, "total", "share of pairs", title="Culture-related instances"
    )
    pairs = max(1, c["questions"] * len(codes))
    for rule, counts in by_culture.items():
        values = [counts.get(code, 0) for code in codes]
        result_table.add_row(
            rule, *map(str, values), str(sum(values)), f"{sum(values) / pairs:.1%}"
        )
    console.print(result_table)
    console.print(
        f"kept {c['questions']} questions ({c['decontaminated']} dropped as too close to the "
        f"evaluation set); {c['answers']} answers; wrote {out}/probe_summary.json",
        markup=False,
    )

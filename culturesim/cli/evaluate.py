"""`culturesim evaluate …`: score answer files, evaluate models on a survey, run the guard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from culturesim.cli.common import (
    CultureDirOption,
    PromptsDirOption,
    build_section,
    command_context,
    console,
    default,
    door,
    fail,
    models,
    say,
)
from culturesim.evaluation.stage import EvaluateSection
from culturesim.models.base import DEFAULT_MODEL

evaluate_app = typer.Typer(help="Score models against survey data.", no_args_is_help=True)
E = EvaluateSection


# --------------------------------------------------------------------------- score


@evaluate_app.command("score")
def score_command(
    questions: Annotated[Path, typer.Option(help="Questions file (CultureSPA format).")],
    survey: Annotated[Path, typer.Option(help="Per-country shares file.")],
    answers: Annotated[
        Path, typer.Option(help="An answer file, or a folder of them (one per country).")
    ],
    country: Annotated[
        str | None, typer.Option(help="Country code (taken from file names when omitted).")
    ] = None,
    rule: Annotated[
        str,
        typer.Option(
            help="published (CultureSPA's script exactly: gold = the first code the shares file "
            "lists, so ties follow file order; every row counts) or argmax (lowest code on a "
            "tie, one answer per question, independent of the file's key order)."
        ),
    ] = "published",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-score existing answer files with the published CultureSPA metric."""
    from culturesim.evaluation.published import score_answer_files

    rows, average = score_answer_files(questions, survey, answers, country=country, rule=rule)
    chosen = rule
    if as_json:
        typer.echo(json.dumps({"rule": chosen, "rows": rows, "average": average}, indent=2))
        return
    from rich.table import Table

    table = Table("country", "file", "scored", "invalid", "CultureSPA", "95% CI")
    for r in rows:
        ci = r["ci95"]
        table.add_row(
            str(r["country"]),
            Path(str(r["file"])).name,
            str(r["scored"]),
            f"{r['invalid_rate']:.1%}",
            f"{r['culturespa']:.2f}",
            f"{ci[0]:.1f}–{ci[1]:.1f}",
        )
    console.print(table)
    console.print(f"average over {len(rows)} file(s), rule {chosen}: [bold]{average:.2f}[/]")


# --------------------------------------------------------------------------- wvs


@evaluate_app.command("wvs")
def wvs_command(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model spec; repeat to compare.")
    ],
    survey_dir: Annotated[Path, typer.Option(help="Folder with the survey files.")],
    out: Annotated[Path, typer.Option(help="Run directory for answers and results.")],
    adapter: Annotated[
        list[str] | None, typer.Option(help="Adapter per --model, in order ('none' for none).")
    ] = None,
    cultures: Annotated[
        str | None, typer.Option(help="Comma-separated codes, or 'all' in the survey.")
    ] = None,
    styles: Annotated[
        str | None, typer.Option(help=f"unaware, aware, cross_culture {default(E, 'styles')}.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="logprob (default) or sample.")] = None,
    samples: Annotated[
        int | None, typer.Option(min=1, help="Samples per prompt in sample mode.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    questions: Annotated[
        str | None,
        typer.Option(
            help="all, held_out or seen: a half of the split in --out (`evaluate split`)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    answer_prefix: Annotated[
        str | None,
        typer.Option(
            help=f"Assistant prefill before the label in logprob mode ('' for none) "
            f"{default(E, 'answer_prefix')!r}."
        ),
    ] = None,
    guard: Annotated[bool, typer.Option(help="Also run the general-ability sanity set.")] = False,
    prompts_dir: PromptsDirOption = None,
    culture_dir: CultureDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Evaluate one or more models (or adapters) on a survey, per culture, side by side."""
    from culturesim.context import RunLayout
    from culturesim.evaluation.scoring import CultureResult
    from culturesim.evaluation.stage import Variant, run
    from culturesim.evaluation.tables import print_table

    adapters = list(adapter or [])
    if adapters and len(adapters) != len(model):
        raise fail(
            f"got {len(adapters)} --adapter for {len(model)} --model; give one per model ('none' to skip)"
        )
    section = build_section(
        EvaluateSection,
        {
            "survey_dir": str(survey_dir),
            "cultures": cultures,
            "styles": styles,
            "mode": mode,
            "samples": samples,
            "limit": limit,
            "questions": questions,
            "batch_size": batch_size,
            "answer_prefix": answer_prefix,
            "guard": guard,
            "models": [
                Variant(
                    name=spec,
                    spec=spec,
                    adapter=Path(adapters[i]) if adapters and adapters[i] != "none" else None,
                )
                for i, spec in enumerate(model)
            ],
        },
    )
    ctx = command_context(
        RunLayout(out, {"evaluate": out, "survey": out}),
        prompts_dir=prompts_dir,
        culture_dir=culture_dir,
        seed=seed,
    )
    result = run(section, ctx)
    data = json.loads((out / "results.json").read_text())
    guard_rows = json.loads((out / "guard.json").read_text()) if guard else []
    if as_json:
        typer.echo(
            json.dumps(
                {"summary": data["summary"], "seconds": data["seconds"], "guard": guard_rows},
                indent=2,
            )
        )
        return
    print_table([CultureResult.from_dict(r) for r in data["rows"]], console)
    for g in guard_rows:
        console.print(
            f"guard (sanity set) {g['model']}: accuracy {g['accuracy']:.1%} on {g['items']} items",
            markup=False,
        )
    console.print(f"seconds per model: {data['seconds']}", markup=False)
    console.print("wrote " + ", ".join(str(f) for f in result.written), markup=False)


# --------------------------------------------------------------------------- split


@evaluate_app.command("split")
def split_command(
    survey_dir: Annotated[Path, typer.Option(help="Folder with the survey files.")],
    out: Annotated[Path, typer.Option(help="Run directory to write survey_split.json into.")],
    seed: Annotated[int, typer.Option(help="Which questions are held out follows from it.")] = 0,
    topics: Annotated[
        Path | None, typer.Option(help="Topics YAML (id ranges); the 13 WVS topics by default.")
    ] = None,
) -> None:
    """Hold out half of each topic's survey questions: train and decontaminate against them."""
    from culturesim.survey.questionnaire import load_survey_dir
    from culturesim.survey.split import SPLIT_FILE, ensure_split
    from culturesim.survey.topics import load_topics, topic_namer

    with door():
        survey = load_survey_dir(survey_dir)
        topic_of = topic_namer(load_topics(topics)) if topics else None
        split = ensure_split(out, list(survey.questions.values()), seed, topic_of)
        path = out / SPLIT_FILE
    for topic, counts in split["by_topic"].items():
        say(f"{topic}: {counts['seen']} seen, {counts['held_out']} held out")
    say(
        f"wrote {path}: {len(split['seen'])} seen, {len(split['held_out'])} held out. Pass it "
        "to `culturesim corpus --eval-questions` to keep the held-out half out of a corpus."
    )


# --------------------------------------------------------------------------- guard


@evaluate_app.command("guard")
def guard_command(
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    adapter: Annotated[str | None, typer.Option()] = None,
    benchmark: Annotated[
        Path | None, typer.Option(help="MMLU-style JSONL; the built-in sanity set by default.")
    ] = None,
    prompts_dir: PromptsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Multiple-choice accuracy (via log-probabilities), to check fine-tuning kept general ability."""
    from culturesim.evaluation.guard import (
        SANITY_SET,
        BenchmarkFileError,
        guard_accuracy,
        load_benchmark,
    )
    from culturesim.models.base import ModelError

    try:
        items = load_benchmark(benchmark or SANITY_SET)
        lm = models().get(model, adapter=adapter)
    except (BenchmarkFileError, ModelError) as error:
        raise fail(str(error)) from error
    from culturesim.prompt_library import PromptLibrary

    result = guard_accuracy(
        lm, items, benchmark=str(benchmark or "sanity"), library=PromptLibrary(prompts_dir or [])
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": result.model,
                    "benchmark": result.benchmark,
                    "items": result.items,
                    "correct": result.correct,
                    "accuracy": result.accuracy,
                }
            )
        )
    else:
        console.print(
            f"{result.model} on {result.benchmark}: {result.correct}/{result.items} = {result.accuracy:.1%}"
        )

"""`culturesim evaluate …`: score answer files, evaluate models on a survey, run the guard."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from culturesim.evaluation import metrics
from culturesim.evaluation.parsing import parse_published
from culturesim.evaluation.survey import (
    COUNTRY_IN_NAME,
    Survey,
    SurveyFileError,
    load_culturespa,
    load_survey_dir,
)

evaluate_app = typer.Typer(help="Score models against survey data.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


# --------------------------------------------------------------------------- score


def score_answer_file(path: Path, survey: Survey, country: str) -> dict[str, Any]:
    """Re-score a published answer file ([{"Q_id", "answer"}, ...]) the way CultureSPA did."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SurveyFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(rows, list):
        raise SurveyFileError(f"{path}: expected a list of {{'Q_id', 'answer'}} objects")
    answers: dict[str, int | None] = {}
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or "Q_id" not in row or "answer" not in row:
            raise SurveyFileError(f"{path}: item {number} needs 'Q_id' and 'answer'")
        if row["Q_id"] in survey.questions:
            answers[row["Q_id"]] = parse_published(str(row["answer"]))
    majority = {q: survey.majority_code(country, q) for q in answers}
    counts = {q: len(survey.questions[q].options) for q in answers}
    low, high = metrics.culturespa_bootstrap_ci(answers, majority, counts)
    return {
        "file": str(path),
        "country": country,
        "answers": len(answers),
        "scored": sum(1 for q, a in answers.items() if a is not None and majority[q] is not None),
        "invalid_rate": round(metrics.invalid_rate(list(answers.values())), 4),
        "culturespa": round(metrics.culturespa_score(answers, majority, counts), 2),
        "ci95": [round(low, 2), round(high, 2)],
    }


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-score existing answer files with the published CultureSPA metric."""
    try:
        data = load_culturespa(questions, survey)
        files = sorted(answers.glob("*.json")) if answers.is_dir() else [answers]
        if not files:
            raise SurveyFileError(f"{answers}: no .json answer files")
        rows = []
        for path in files:
            code = country or _country_from_name(path, data)
            if code is None:
                raise SurveyFileError(f"{path}: no country code in the file name; pass --country")
            if code not in data.shares:
                raise SurveyFileError(f"{code}: not in {survey} (has {', '.join(data.countries)})")
            rows.append(score_answer_file(path, data, code))
    except SurveyFileError as error:
        raise _fail(str(error)) from error
    average = round(float(np.mean([float(r["culturespa"]) for r in rows])), 2)
    if as_json:
        typer.echo(json.dumps({"rows": rows, "average": average}, indent=2))
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
    console.print(f"average over {len(rows)} file(s): [bold]{average:.2f}[/]")


def _country_from_name(path: Path, survey: Survey) -> str | None:
    found = [m for m in COUNTRY_IN_NAME.findall(path.stem) if m in survey.shares]
    return found[-1] if found else None


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
        str, typer.Option(help="Comma-separated codes, or 'all' in the survey.")
    ] = "all",
    styles: Annotated[str, typer.Option(help="unaware, aware, cross_culture.")] = "unaware,aware",
    mode: Annotated[str, typer.Option(help="logprob (default) or sample.")] = "logprob",
    samples: Annotated[int, typer.Option(min=1, help="Samples per prompt in sample mode.")] = 1,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    answer_prefix: Annotated[
        str, typer.Option(help="Assistant prefill before the label in logprob mode ('' for none).")
    ] = "The answer is ",
    guard: Annotated[bool, typer.Option(help="Also run the general-ability sanity set.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Evaluate one or more models (or adapters) on a survey, per culture, side by side."""
    from culturesim.evaluation.administer import SurveyPrompter
    from culturesim.evaluation.answering import run_items
    from culturesim.evaluation.guard import guard_accuracy, load_benchmark
    from culturesim.evaluation.scoring import answer_distribution, reference_rows, score_run
    from culturesim.evaluation.tables import (
        plot_culture_map,
        print_table,
        summary_rows,
        write_outputs,
    )
    from culturesim.models.base import ModelError
    from culturesim.models.registry import build_model
    from culturesim.scenarios.cultures import CultureFileError, load_cultures, resolve_cultures
    from culturesim.store import ManifestMismatch, RunStore

    adapters = list(adapter or [])
    if adapters and len(adapters) != len(model):
        raise _fail(
            f"got {len(adapters)} --adapter for {len(model)} --model; give one per model ('none' to skip)"
        )
    style_list = [s.strip() for s in styles.split(",") if s.strip()]
    bad = [s for s in style_list if s not in ("unaware", "aware", "cross_culture")]
    if bad:
        raise _fail(f"unknown style(s) {', '.join(bad)}; use unaware, aware, cross_culture")
    try:
        survey = load_survey_dir(survey_dir)
        known = load_cultures()
        codes = survey.countries if cultures == "all" else [c.strip() for c in cultures.split(",")]
        missing = [c for c in codes if c not in survey.shares]
        if missing:
            raise SurveyFileError(f"no survey data for {', '.join(missing)} in {survey_dir}")
        resolve_cultures(codes, known)
        questions = list(survey.questions.values())[:limit]
        survey = survey.subset(q.id for q in questions)
        store = RunStore.open(
            out,
            {
                "command": "evaluate wvs",
                "models": model,
                "adapters": adapters,
                "cultures": codes,
                "styles": style_list,
                "mode": mode,
                "answer_prefix": answer_prefix,
                "samples": samples,
                "limit": limit,
                "survey_dir": str(survey_dir),
            },
            seed=seed,
        )
    except (SurveyFileError, CultureFileError, ManifestMismatch) as error:
        raise _fail(str(error)) from error
    prompter = SurveyPrompter(known)
    items = prompter.items(questions, style_list, codes)
    all_answers = []
    timings: dict[str, float] = {}
    guard_results = []
    for index, spec in enumerate(model):
        chosen = adapters[index] if adapters and adapters[index] != "none" else None
        try:
            lm = build_model(spec, adapter=chosen)
        except ModelError as error:
            raise _fail(str(error)) from error
        start = time.perf_counter()
        all_answers += run_items(
            lm, items, store=store, mode=mode, samples=samples, seed=seed, batch_size=batch_size
        )
        timings[lm.model_id] = round(time.perf_counter() - start, 1)
        if guard:
            result = guard_accuracy(lm, load_benchmark())
            guard_results.append(
                {
                    "model": result.model,
                    "items": result.items,
                    "accuracy": round(result.accuracy, 4),
                }
            )
    rows = score_run(survey, all_answers, codes) + reference_rows(survey, codes)
    maps = []
    for model_id in {a.model for a in all_answers}:
        aware = [a for a in all_answers if a.model == model_id and a.prompt == "aware"]
        if len({a.culture for a in aware}) >= 3:
            dists = {
                (a.culture, a.question_id): answer_distribution(
                    a, survey.questions[a.question_id.removeprefix("survey:")]
                )
                for a in aware
            }
            similarity = {
                c1: {
                    c2: 1.0
                    - float(
                        np.mean(
                            [
                                metrics.js_distance(d, d2)
                                for (c, q), d in dists.items()
                                if c == c1
                                and d is not None
                                and (d2 := dists.get((c2, q))) is not None
                            ]
                            or [1.0]
                        )
                    )
                    for c2 in codes
                    if c2 != c1
                }
                for c1 in codes
            }
            name = (
                "culture_map_"
                + "".join(ch if ch.isalnum() else "_" for ch in model_id)[-60:]
                + ".png"
            )
            maps.append(plot_culture_map(similarity, out / name, title=f"Culture map: {model_id}"))
    files = write_outputs(
        rows, out, {"seconds": timings, "guard": guard_results, "questions": len(questions)}
    )
    if as_json:
        typer.echo(
            json.dumps(
                {"summary": summary_rows(rows), "seconds": timings, "guard": guard_results},
                indent=2,
            )
        )
    else:
        print_table(rows, console)
        for g in guard_results:
            console.print(
                f"guard (sanity set) {g['model']}: accuracy {g['accuracy']:.1%} on {g['items']} items"
            )
        console.print(f"seconds per model: {timings}")
        console.print("wrote " + ", ".join(str(f) for f in [*files, *maps]))


# --------------------------------------------------------------------------- guard


@evaluate_app.command("guard")
def guard_command(
    model: Annotated[str, typer.Option("--model", "-m")] = "smollm2",
    adapter: Annotated[str | None, typer.Option()] = None,
    benchmark: Annotated[
        Path | None, typer.Option(help="MMLU-style JSONL; the built-in sanity set by default.")
    ] = None,
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
    from culturesim.models.registry import build_model

    try:
        items = load_benchmark(benchmark or SANITY_SET)
        lm = build_model(model, adapter=adapter)
    except (BenchmarkFileError, ModelError) as error:
        raise _fail(str(error)) from error
    result = guard_accuracy(lm, items, benchmark=str(benchmark or "sanity"))
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

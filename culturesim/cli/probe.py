"""`culturesim probe`: generate culture-topic questions, answer them, keep culture-related instances."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def probe(
    out: Annotated[Path, typer.Option(help="Run directory (resumable).")],
    cultures: Annotated[
        str, typer.Option(help="Comma-separated culture codes.")
    ] = "USA,CHN,DEU,NGA",
    topics: Annotated[
        str, typer.Option(help="'all', or topic ids/names, comma-separated.")
    ] = "all",
    per_topic: Annotated[
        int, typer.Option(min=0, help="Generated questions to keep per topic.")
    ] = 50,
    model: Annotated[str, typer.Option("--model", "-m")] = "smollm2",
    topics_file: Annotated[
        Path | None, typer.Option(help="A YAML file of topics added to the built-in ones.")
    ] = None,
    seeds: Annotated[
        Path | None, typer.Option(help="JSON list of {id, question, options}; WVS file works.")
    ] = None,
    eval_questions: Annotated[
        Path | None, typer.Option(help="Evaluation questions to decontaminate against.")
    ] = None,
    mode: Annotated[str, typer.Option(help="logprob (default) or sample.")] = "logprob",
    samples: Annotated[int, typer.Option(min=1)] = 1,
    rules: Annotated[str, typer.Option(help="argmax, jsd, or both.")] = "argmax,jsd",
    jsd_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.4,
    dedup_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.9,
    decontamination_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.85,
    max_rounds: Annotated[int, typer.Option(min=1)] = 5,
    structured: Annotated[
        bool,
        typer.Option(
            "--structured/--free",
            help="Write the JSON skeleton and let the model fill the question and options.",
        ),
    ] = True,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Generation temperature (the paper: 0.9).")
    ] = 0.9,
    prefill: Annotated[
        str, typer.Option(help="Assistant prefill for generation ('' for none).")
    ] = '{"Question": "',
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
) -> None:
    """Generate questions per topic, answer them culture-unaware and culture-aware, detect instances."""
    from culturesim.evaluation.administer import SurveyPrompter
    from culturesim.evaluation.answering import run_items
    from culturesim.models.base import ModelError
    from culturesim.models.embeddings import Embedder
    from culturesim.models.registry import build_model
    from culturesim.prober.instances import InstanceRule, as_survey_question, detect_instances
    from culturesim.prober.question_gen import QuestionGenerator
    from culturesim.prober.topics import (
        BUILTIN_TOPICS,
        TopicFileError,
        load_topics,
        seeds_from_file,
        select_topics,
    )
    from culturesim.records import Instance, Question
    from culturesim.scenarios.cultures import CultureFileError, load_cultures, resolve_cultures
    from culturesim.store import ManifestMismatch, RunStore

    config = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in locals().items()
        if key
        in (
            "cultures",
            "topics",
            "per_topic",
            "model",
            "topics_file",
            "seeds",
            "eval_questions",
            "mode",
            "samples",
            "rules",
            "jsd_threshold",
            "min_confidence",
            "dedup_threshold",
            "decontamination_threshold",
            "prefill",
            "temperature",
            "structured",
        )
    }
    try:
        topic_list = select_topics(
            load_topics(topics_file or BUILTIN_TOPICS, extend=topics_file is not None), topics
        )
        codes = [c.strip() for c in cultures.split(",") if c.strip()]
        known = load_cultures()
        resolve_cultures(codes, known)
        rule_list = [
            InstanceRule(r.strip(), jsd_threshold, min_confidence)
            for r in rules.split(",")
            if r.strip()
        ]
        seed_map = {t.name: t.seed_records() for t in topic_list}
        if seeds is not None:
            for name, extra in seeds_from_file(seeds, topic_list).items():
                seed_map[name] = seed_map[name] + extra
        eval_texts = []
        if eval_questions is not None:
            eval_texts = [
                str(item.get("question", "")) for item in json.loads(eval_questions.read_text())
            ]
        store = RunStore.open(out, {"command": "probe", **config}, seed=seed)
        lm = build_model(model)
    except (
        TopicFileError,
        CultureFileError,
        ManifestMismatch,
        ModelError,
        ValueError,
        OSError,
    ) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from error

    started = time.perf_counter()
    generator = QuestionGenerator(
        lm,
        store,
        embedder=Embedder(),
        prefill=prefill,
        dedup_threshold=dedup_threshold,
        decontaminate_against=eval_texts,
        decontamination_threshold=decontamination_threshold,
        temperature=temperature,
        structured=structured,
        seed=seed,
    )
    stats = generator.run(topic_list, seed_map, per_topic, max_rounds=max_rounds)
    generation_seconds = time.perf_counter() - started
    names = {t.name for t in topic_list}
    questions = [q for q in store.read(Question) if q.source == "generated" and q.topic in names]
    items = SurveyPrompter(known).items(
        [as_survey_question(q) for q in questions], ["unaware", "aware"], codes
    )
    answers = run_items(
        lm,
        items,
        store=store,
        mode=mode,
        samples=samples,
        seed=seed,
        batch_size=batch_size,
        label="probing",
    )
    instances = detect_instances(questions, answers, rule_list)
    done = store.done_ids(Instance)
    store.append_many([i for i in instances if i.id not in done])
    total_seconds = time.perf_counter() - started

    table = Table("topic", "requested", "kept", "rejected (by reason)", title="Question generation")
    for name, s in stats.items():
        table.add_row(
            name,
            str(s.requested),
            str(s.kept),
            ", ".join(f"{k} {v}" for k, v in s.rejected.most_common()),
        )
    console.print(table)
    per_rule = Counter((i.rule, i.culture) for i in instances)
    result = Table("rule", *codes, "total", "share of pairs", title="Culture-related instances")
    pairs = max(1, len(questions) * len(codes))
    for rule in rule_list:
        counts = [per_rule[(rule.name, c)] for c in codes]
        result.add_row(rule.name, *map(str, counts), str(sum(counts)), f"{sum(counts) / pairs:.1%}")
    console.print(result)
    rejected = Counter[str]()
    for s in stats.values():
        rejected.update(s.rejected)
    summary = {
        "questions_requested": sum(s.requested for s in stats.values()),
        "questions_kept": len(questions),
        "rejected": dict(rejected),
        "decontaminated": rejected.get("decontaminated", 0),
        "answers": len(answers),
        "instances": {r.name: sum(per_rule[(r.name, c)] for c in codes) for r in rule_list},
        "generation_seconds": round(generation_seconds, 1),
        "total_seconds": round(total_seconds, 1),
    }
    (out / "probe_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"kept {len(questions)} questions ({summary['decontaminated']} dropped as too close to the "
        f"evaluation set); {len(answers)} answers; wrote {out}/probe_summary.json"
    )

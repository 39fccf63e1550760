"""`culturesim corpus RUN_DIR… --out DIR`: kept records -> training sets with a dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from culturesim.cli.common import (
    CultureDirOption,
    PromptsDirOption,
    build_section,
    command_context,
    console,
    default,
)
from culturesim.training.corpus_stage import CorpusSection

C = CorpusSection


def corpus(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (simulate, probe, judged).")],
    out: Annotated[Path, typer.Option(help="Folder for the corpus.")],
    mixture: Annotated[
        str | None, typer.Option(help=f"CLCA dialogue:intent views {default(C, 'mixture')}.")
    ] = None,
    goals: Annotated[bool | None, typer.Option("--goals/--no-goals")] = None,
    secrets: Annotated[bool | None, typer.Option("--secrets/--no-secrets")] = None,
    cues: Annotated[bool | None, typer.Option("--cues/--no-cues")] = None,
    validation: Annotated[
        float | None, typer.Option(min=0.0, max=0.5, help=default(C, "validation"))
    ] = None,
    dedup_threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help=default(C, "dedup_threshold"))
    ] = None,
    eval_questions: Annotated[
        Path | None, typer.Option(help="Evaluation questions (JSON list with 'question').")
    ] = None,
    unjudged: Annotated[
        bool | None, typer.Option(help="Use dialogues of runs never judged (not recommended).")
    ] = None,
    embeddings: Annotated[bool | None, typer.Option("--embeddings/--no-embeddings")] = None,
    targets: Annotated[
        str | None,
        typer.Option(help="argmax, or soft: also culturespa_soft for `train --method distill`."),
    ] = None,
    answer_prefix: Annotated[
        str | None, typer.Option(help="Text before the option number in CultureSPA targets.")
    ] = None,
    prompts_dir: PromptsDirOption = None,
    culture_dir: CultureDirOption = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Build CLCA views, CultureSPA sets (joint and per culture) and DPO pairs."""
    from culturesim.context import RunLayout
    from culturesim.training.corpus_stage import run

    section = build_section(
        CorpusSection,
        {
            "mixture": mixture,
            "goals": goals,
            "secrets": secrets,
            "cues": cues,
            "validation": validation,
            "dedup_threshold": dedup_threshold,
            "eval_questions": str(eval_questions) if eval_questions else None,
            "unjudged": unjudged,
            "embeddings": embeddings,
            "targets": targets,
            "answer_prefix": answer_prefix,
        },
    )
    ctx = command_context(
        RunLayout.for_stage("corpus", out, inputs=runs),
        prompts_dir=prompts_dir,
        culture_dir=culture_dir,
        seed=seed,
    )
    result = run(section, ctx)
    table = Table("set", "train", "validation", title="Corpus")
    for name, counts in result.counts.items():
        if name != "removed":
            table.add_row(name, str(counts["train"]), str(counts["validation"]))
    console.print(table)
    console.print(f"wrote {out} (dataset card: {out}/README.md)", markup=False)

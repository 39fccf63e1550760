"""The `culturesim` command line."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from culturesim import __version__
from culturesim.cli.common import CliState, DoorGroup, console, errors, fail, models
from culturesim.cli.corpus import corpus
from culturesim.cli.cultures import cultures_app
from culturesim.cli.evaluate import evaluate_app
from culturesim.cli.judge import judge
from culturesim.cli.probe import probe
from culturesim.cli.report import report
from culturesim.cli.run import run
from culturesim.cli.runs import runs_app
from culturesim.cli.scenarios import scenarios_app
from culturesim.cli.simulate import simulate
from culturesim.cli.train import train
from culturesim.models.base import DEFAULT_MODEL, GenerationParams

app = typer.Typer(
    name="culturesim",
    cls=DoorGroup,
    help="Simulate cultural interactions, build training corpora, fine-tune and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Language model backends.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(cultures_app, name="cultures")
app.add_typer(runs_app, name="runs")
app.command("probe")(probe)
app.command("simulate")(simulate)
app.command("judge")(judge)
app.command("corpus")(corpus)
app.command("train")(train)
app.command("run")(run)
app.command("report")(report)

ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="smollm2 | PATH | hf:ID | openai:MODEL@URL")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"culturesim {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks instead of error messages.")
    ] = False,
) -> None:
    """culturesim command line."""
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    ctx.obj.debug = debug  # per invocation: a shared state (tests) does not keep it
    # Our own progress bars speak for long work. Set through the environment, so a command that
    # never loads a model does not pay for importing transformers and datasets.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the model backends and whether each can run here."""
    from culturesim.models.registry import list_backends

    backends = list_backends()
    if as_json:
        typer.echo(json.dumps([asdict(b) for b in backends], indent=2))
        return
    table = Table("backend", "spec", "description", "ready", "detail")
    for b in backends:
        table.add_row(b.name, b.spec, b.description, "yes" if b.available else "no", b.detail)
    console.print(table)


@app.command()
def chat(
    message: Annotated[str, typer.Argument(help="What to say to the model.")],
    model: ModelOption = DEFAULT_MODEL,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 160,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int | None, typer.Option()] = None,
    adapter: Annotated[str | None, typer.Option(help="A LoRA adapter directory.")] = None,
) -> None:
    """Send one message and print the model's reply."""
    from culturesim.cli.common import door

    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": message}
    ]
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    with door():
        lm = models().get(model, adapter=adapter)
        (reply,) = lm.generate([messages], params)  # type: ignore[list-item]
    typer.echo(reply.text.strip())


@app.command()
def serve(
    model: ModelOption = DEFAULT_MODEL,
    host: Annotated[
        str, typer.Option(help="Bind address; keep 127.0.0.1 unless you add auth.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 32,
    faults: Annotated[
        str | None,
        typer.Option(help="Inject faults for testing, e.g. error=0.1,hang=0.05,garbage=0.05."),
    ] = None,
    fault_seed: Annotated[int, typer.Option()] = 0,
    hang_seconds: Annotated[float, typer.Option(help="How long an injected hang lasts.")] = 30.0,
) -> None:
    """Serve a local model over an OpenAI-compatible API (chat and text completions)."""
    import uvicorn

    from culturesim.models.faults import FaultInjector, FaultPlan
    from culturesim.models.registry import build_model
    from culturesim.models.server import create_app
    from culturesim.models.transformers_backend import TransformersModel

    try:
        plan = FaultPlan.parse(faults, hang_s=hang_seconds, seed=fault_seed) if faults else None
    except ValueError as error:
        raise fail(str(error)) from error
    lm = build_model(model)
    if not isinstance(lm, TransformersModel):
        raise fail("serve runs in-process models only (smollm2 or a local model directory)")
    server: Any = create_app(lm, max_batch_size=max_batch_size)
    if plan is not None:
        server = FaultInjector(server, plan)
        errors.print(f"[yellow]injecting faults:[/] {plan.rates} (seed {plan.seed})")
    uvicorn.run(server, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    app()

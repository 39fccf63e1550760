"""What every command shares: the error door, section building from options, and output.

A command parses its options into the stage's section and calls the stage function inside
`door()`, which turns every known failure into one line that names the file, field or value and
says what to do, with a non-zero exit. Nothing else in the package prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from culturesim.context import (
    ModelFactory,
    ModelRoles,
    RunContext,
    RunLayout,
    StageFailed,
    StageSection,
)
from culturesim.models.base import ModelError
from culturesim.yamlfiles import validation_problems

console = Console(emoji=False)  # user text like ray:x:smollm2 must not become emoji
errors = Console(stderr=True, emoji=False)

S = TypeVar("S", bound=StageSection)

ModelHelp = "smollm2 | PATH | hf:ID | openai:MODEL@URL | ray:N:SPEC"

# Folder options, named one way on every command (the run config's keys: prompts_dir,
# culture_dirs, scenario_dirs).
PromptsDirOption = Annotated[
    list[Path] | None,
    typer.Option("--prompts-dir", help="Your prompt templates, searched first (repeatable)."),
]
CultureDirOption = Annotated[
    list[Path] | None,
    typer.Option("--culture-dir", help="A folder of your culture files (repeatable)."),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error (escaped: file names and specs are not markup) and return the exit."""
    errors.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=code)


@dataclass
class CliState:
    """What one invocation of the command line hands its commands: one model factory (each
    model is loaded once, however many stages use it) and whether to show tracebacks. A caller
    that runs many commands in one process (a test session) passes its own as `obj`."""

    models: ModelFactory = field(default_factory=ModelFactory)
    debug: bool = False


_invocation: ContextVar[CliState | None] = ContextVar("culturesim_invocation", default=None)


def state() -> CliState:
    """The running invocation's state (a fresh one outside any command)."""
    return _invocation.get() or CliState()


def models() -> ModelFactory:
    """The invocation's model factory: commands build their run contexts on it."""
    return state().models


def debug_enabled() -> bool:
    return state().debug


class DoorGroup(TyperGroup):
    """Every command runs behind the one error door, whether or not it opens one itself."""

    def invoke(self, ctx: Any) -> Any:
        if not isinstance(ctx.obj, CliState):
            ctx.obj = CliState()
        token = _invocation.set(ctx.obj)
        try:
            with door():
                return super().invoke(ctx)
        finally:
            _invocation.reset(token)


@contextmanager
def door() -> Iterator[None]:
    """Known failures become messages; Ctrl-C says what was kept. `--debug` shows tracebacks."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted:[/] what was written is kept; rerun to resume.")
        raise typer.Exit(code=130) from None
    except ValidationError as error:
        if debug_enabled():
            raise
        raise fail(validation_problems(error)) from error
    except (StageFailed, ModelError, ValueError, OSError, LookupError) as error:
        if debug_enabled():
            raise
        raise fail(_message(error)) from error


def _message(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, KeyError):
        text = f"unknown {text}"
    return text or type(error).__name__


def build_section(
    cls: type[S], given: Mapping[str, Any], config: Path | None = None, key: str = ""
) -> S:
    """The section from a YAML file's settings (its `key:` section, or flat) overlaid with the
    options the user gave (None means not given), validated once, by the section itself."""
    base: dict[str, Any] = {}
    if config is not None:
        from culturesim.yamlfiles import read_yaml_mapping

        data = read_yaml_mapping(config, ValueError, f"{key or 'stage'} settings")
        base = data.get(key, data) if key else data
    values = {**base, **{k: v for k, v in given.items() if v is not None}}
    try:
        return cls.model_validate(values)
    except ValidationError as error:
        where = f"{config}: " if config is not None else ""
        raise fail(where + validation_problems(error)) from error


def default(cls: type[StageSection], name: str) -> str:
    """'(default: X)' for a help text, read from the section so it is written once."""
    return f"(default: {cls.default_of(name)})"


def command_context(
    layout: RunLayout,
    *,
    roles: ModelRoles | None = None,
    prompts_dir: Sequence[Path] | None = None,
    culture_dir: Sequence[Path] | None = None,
    seed: int = 0,
    retry_failed: bool = False,
) -> RunContext:
    """The run context of one command: its folders, the invocation's models, the user's prompt
    and culture folders; what `culturesim run` builds from a config, built from options."""
    return RunContext(
        layout=layout,
        models=models(),
        roles=roles or ModelRoles(),
        prompt_dirs=tuple(prompts_dir or ()),
        culture_dirs=tuple(culture_dir or ()),
        seed=seed,
        retry_failed=retry_failed,
        console=console,
    )


def say(text: str) -> None:
    """Print plain text: user and model text is escaped, never read as markup."""
    console.print(escape(text))

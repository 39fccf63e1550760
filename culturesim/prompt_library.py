"""Prompt templates: Jinja2 files shipped with the package, overridable by the user's folders.

Every prompt culturesim sends is a template under `culturesim/prompts/`. A user folder given
first in the search path overrides a shipped template of the same relative name. Rendering runs
in a sandbox with undefined variables as errors, so a typo in a template fails loudly with the
file, line and the missing name instead of sending a half-empty prompt to a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from culturesim.paths import package_data
from culturesim.records import Dialogue, Episode, Turn

# A prompt shows the answer's form with placeholders in angle brackets ("REASON: <one
# sentence>"). A reply that gives one back has answered nothing; it must never become content.
_PLACEHOLDER = re.compile(r"<\s*[a-z][a-z ,/'-]{2,60}>", re.I)


def echoes_placeholder(text: str) -> bool:
    """Whether a reply repeats a template placeholder such as `<one sentence>`."""
    return bool(_PLACEHOLDER.search(text))


class TemplateProblem(ValueError):
    """A template could not be found or rendered; the message names the file and line."""


class PromptLibrary:
    """Renders named templates from user folders first, then the shipped prompts."""

    def __init__(self, user_dirs: Sequence[str | Path] = ()) -> None:
        self.search_path = [str(Path(d)) for d in user_dirs] + [str(package_data("prompts"))]
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(self.search_path),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )

    def render(self, name: str, **variables: Any) -> str:
        try:
            template = self.env.get_template(name)
            return template.render(**variables)
        except TemplateSyntaxError as error:
            raise TemplateProblem(
                f"{error.filename or name}:{error.lineno}: {error.message}"
            ) from error
        except TemplateError as error:
            where = _template_location(error, name)
            raise TemplateProblem(
                f"{where}: {error}. Pass the variable, or guard it with "
                "`{% if x is defined %}` in the template."
            ) from error


def render_turn(library: PromptLibrary, speaker_name: str, turn: Turn) -> str:
    """One turn through the one transcript template (`transcript/turn.jinja2`)."""
    return library.render(
        "transcript/turn.jinja2",
        speaker_name=speaker_name,
        action=turn.action,
        utterance=turn.utterance,
        malformed=turn.malformed,
    )


def transcript_lines(library: PromptLibrary, dialogue: Dialogue, episode: Episode) -> list[str]:
    """The whole dialogue, a line per turn, with each speaker's persona name."""
    roles = episode.scenario.roles
    names = {r.name: p.name for r, p in zip(roles, episode.personas, strict=True)}
    return [render_turn(library, names.get(t.speaker, t.speaker), t) for t in dialogue.turns]


def _template_location(error: BaseException, fallback: str) -> str:
    """file:line of the innermost template frame (jinja2 rewrites tracebacks to template lines)."""
    tb = error.__traceback__
    location = fallback
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".jinja2") or filename.endswith(".j2"):
            location = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return location

"""`scenarios check`: every template file loads, and renders for every culture it claims.

An empty selection is an error that says why (a folder with no `*.scenario.jinja2` files, or
files with another suffix), so a check never passes by having checked nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes
from culturesim.scenarios.templates import (
    SUFFIX,
    ScenarioError,
    ScenarioLibrary,
    builtin_scenario_dir,
    load_template_file,
)


@dataclass(frozen=True)
class CheckResult:
    path: Path
    template_id: str = ""
    rendered: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def template_files(paths: Sequence[Path]) -> list[Path]:
    """The template files named or found under the paths; refuses to find none."""
    files: list[Path] = []
    for path in paths or [builtin_scenario_dir()]:
        if not path.exists():
            raise ScenarioError(f"{path}: no such file or folder")
        if path.is_dir():
            found = sorted(path.rglob(f"*{SUFFIX}"))
            if not found:
                near = sorted(p.name for p in path.rglob("*.jinja2"))[:5]
                hint = f"; found {', '.join(near)}: rename them to NAME{SUFFIX}" if near else ""
                raise ScenarioError(f"{path}: no scenario templates (*{SUFFIX}){hint}")
            files += found
        elif not path.name.endswith(SUFFIX):
            raise ScenarioError(f"{path}: a scenario template's name ends in {SUFFIX}")
        else:
            files.append(path)
    return files


def check_templates(
    paths: Sequence[Path], culture_dirs: Iterable[str | Path] = ()
) -> list[CheckResult]:
    """Load and render each template for each culture it claims; one result per file."""
    files = template_files(paths)
    cultures = load_cultures(culture_dirs)
    user_folders = sorted({f.parent for f in files} - {builtin_scenario_dir()})
    results = []
    for file in files:
        try:
            template = load_template_file(file)
            library = ScenarioLibrary(user_folders)
            codes = sorted(cultures) if template.cultures == "all" else list(template.cultures)
            missing = [c for c in codes if c not in cultures]
            if missing:
                raise ScenarioError(f"{file}: claims unknown culture(s) {', '.join(missing)}")
            build_episodes(library, [template], [[cultures[c]] for c in codes])
            results.append(CheckResult(file, template.id, len(codes)))
        except (ValueError, KeyError) as error:
            results.append(CheckResult(file, problem=str(error)))
    return results

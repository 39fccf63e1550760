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
    ScenarioTemplate,
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
    """Load and render each template for each culture it claims; one result per file.

    Every template file (the built-in library and all of the checked files' folders) is parsed
    once, and one library over them renders every check: building a library per checked file
    parsed every file again for each one, which made checking an imported folder of 90 templates
    take 20 seconds. A file that fails to load is reported for itself and left out of the
    library, so it does not fail the others.
    """
    files = template_files(paths)
    cultures = load_cultures(culture_dirs)
    user_folders = sorted({f.parent for f in files} - {builtin_scenario_dir()})
    loaded: dict[Path, ScenarioTemplate | ScenarioError] = {}
    for folder in [builtin_scenario_dir(), *user_folders]:
        for path in sorted(folder.rglob(f"*{SUFFIX}")):
            loaded[path] = _load(path)
    for file in files:
        loaded.setdefault(file, _load(file))
    by_id = {t.id: t for t in loaded.values() if isinstance(t, ScenarioTemplate)}
    library = ScenarioLibrary(user_folders, templates=by_id)
    results = []
    for file in files:
        template = loaded[file]
        try:
            if isinstance(template, ScenarioError):
                raise template
            codes = sorted(cultures) if template.cultures == "all" else list(template.cultures)
            missing = [c for c in codes if c not in cultures]
            if missing:
                raise ScenarioError(f"{file}: claims unknown culture(s) {', '.join(missing)}")
            # A file whose id another file overrides renders from a library that holds it.
            own = (
                library
                if library.templates.get(template.id) is template
                else ScenarioLibrary(user_folders, templates={**by_id, template.id: template})
            )
            build_episodes(own, [template], [[cultures[c]] for c in codes])
            results.append(CheckResult(file, template.id, len(codes)))
        except (ValueError, KeyError) as error:
            results.append(CheckResult(file, problem=str(error)))
    return results


def _load(path: Path) -> ScenarioTemplate | ScenarioError:
    try:
        return load_template_file(path)
    except ScenarioError as error:
        return error
    except ValueError as error:  # not UTF-8, for one
        return ScenarioError(f"{path}: {error}")

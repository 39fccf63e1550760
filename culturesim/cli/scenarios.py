"""`culturesim scenarios …`: list, check, render and culture-adapt scenario templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from culturesim.cli.common import model_factory

console = Console()
errors = Console(stderr=True)
scenarios_app = typer.Typer(help="Author, check, render and adapt scenario templates.")

DirsOption = Annotated[
    list[Path] | None,
    typer.Option("--dir", "-d", help="A folder of your templates (repeatable); overrides by id."),
]
CultureDirsOption = Annotated[
    list[Path] | None, typer.Option("--culture-dir", help="A folder of extra culture files.")
]


def _fail(error: Exception) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=1)


def _parse_vars(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--var {pair!r}: write NAME=VALUE")
        values[name.strip()] = yaml.safe_load(raw)
    return values


@scenarios_app.command("list")
def list_scenarios(dirs: DirsOption = None) -> None:
    """The templates found in the built-in library and your folders."""
    from culturesim.scenarios.templates import ScenarioError, ScenarioLibrary

    try:
        library = ScenarioLibrary(dirs or [])
    except ScenarioError as error:
        raise _fail(error) from error
    table = Table()
    width = max((len(i) for i in library.templates), default=2)
    table.add_column("id", min_width=width, no_wrap=True)
    for column in ("title", "roles", "situation", "cultures", "tags", "file"):
        table.add_column(column)
    for template_id in sorted(library.templates):
        t = library.templates[template_id]
        table.add_row(
            t.id,
            t.title,
            ", ".join(t.roles),
            t.situation,
            "all" if t.cultures == "all" else ",".join(t.cultures),
            ", ".join(t.tags),
            Path(t.path).name,
        )
    console.print(table)


@scenarios_app.command("check")
def check(paths: Annotated[list[Path], typer.Argument(help="Template files or folders.")]) -> None:
    """Validate template files: front matter, sections, variables, graph; render each once."""
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.scenarios.episodes import build_episodes
    from culturesim.scenarios.templates import (
        SUFFIX,
        ScenarioError,
        ScenarioLibrary,
        load_template_file,
    )

    files = [
        p for path in paths for p in (sorted(path.rglob(f"*{SUFFIX}")) if path.is_dir() else [path])
    ]
    folders = sorted({f.parent for f in files})
    cultures = load_cultures()
    problems = 0
    for file in files:
        try:
            template = load_template_file(file)
            library = ScenarioLibrary(folders)
            code = "USA" if template.suits("USA") else str(template.cultures[0])
            build_episodes(library, [template], [[cultures[code]]])
            console.print(f"[green]ok[/]   {file}  ({template.id}, rendered for {code})")
        except (ScenarioError, KeyError) as error:
            problems += 1
            console.print(f"[red]bad[/]  {error}")
    if problems:
        raise typer.Exit(code=1)


@scenarios_app.command("render")
def render(
    template_id: Annotated[str, typer.Argument(help="Scenario id.")],
    culture: Annotated[
        str, typer.Option(help="Culture code, or a cross-cultural mix JPN+MEX.")
    ] = "USA",
    seed: Annotated[int, typer.Option()] = 0,
    var: Annotated[list[str] | None, typer.Option(help="NAME=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    dirs: DirsOption = None,
    culture_dirs: CultureDirsOption = None,
) -> None:
    """Render one scenario for a culture with a sampled cast, as the engine would see it."""
    from culturesim.scenarios.cultures import CultureFileError, load_cultures
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioError, ScenarioLibrary

    try:
        library = ScenarioLibrary(dirs or [])
        groups = culture_groups(culture, load_cultures(culture_dirs or []))
        template = library.get(template_id)
        episodes = build_episodes(
            library, [template], groups, seed=seed, variables={template.id: _parse_vars(var or [])}
        )
    except (ScenarioError, CultureFileError, ValueError) as error:
        raise _fail(error) from error
    if not episodes:
        raise _fail(ValueError(f"scenario {template_id!r} does not suit culture {culture}"))
    episode = episodes[0]
    if as_json:
        console.print_json(episode.model_dump_json())
        return
    scenario = episode.scenario
    console.print(f"[bold]{scenario.title}[/] ({scenario.template_id}, {scenario.culture})")
    console.print(scenario.setting)
    for role, person in zip(scenario.roles, episode.personas, strict=True):
        console.print(
            f"\n[bold]{role.name}[/]: {person.name}, {person.age}, {person.gender}, "
            f"{person.occupation} ({person.culture})\n  background: {person.background}\n"
            f"  goal: {role.goal}\n  secret: {role.secret or '-'}"
        )
    if scenario.edges:
        console.print(
            "\nsocial graph: "
            + "; ".join(
                f"{e.source} -> {e.target} ({e.relationship or '-'})" for e in scenario.edges
            )
        )


@scenarios_app.command("adapt")
def adapt(
    template_ids: Annotated[str, typer.Argument(help="Scenario ids, comma-separated, or 'all'.")],
    cultures: Annotated[str, typer.Option(help="Target culture codes, comma-separated.")],
    out: Annotated[Path, typer.Option(help="Folder for the adapted template files.")],
    model: Annotated[str, typer.Option("--model", "-m")] = "smollm2",
    source_culture: Annotated[str, typer.Option(help="Culture the source is rendered in.")] = "USA",
    attempts: Annotated[int, typer.Option(min=1, help="Tries per scenario, with corrections.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(min=16)] = 700,
    seed: Annotated[int, typer.Option()] = 0,
    dirs: DirsOption = None,
) -> None:
    """CLCA adaptation: the model rewrites each scenario for each culture; saved as templates."""
    from culturesim.models.base import ModelError
    from culturesim.scenarios.adapt import CultureAdapter, save_adapted
    from culturesim.scenarios.cultures import CultureFileError, load_cultures, resolve_cultures
    from culturesim.scenarios.episodes import build_episodes
    from culturesim.scenarios.templates import ScenarioError, ScenarioLibrary

    try:
        library = ScenarioLibrary(dirs or [])
        known = load_cultures()
        targets = resolve_cultures([c.strip() for c in cultures.split(",") if c.strip()], known)
        source = resolve_cultures([source_culture], known)[0]
        templates = library.select(template_ids)
        episodes = build_episodes(library, templates, [[source]], seed=seed)
        lm = model_factory().get(model)
    except (ScenarioError, CultureFileError, ModelError, ValueError) as error:
        raise _fail(error) from error
    by_id = {t.id: t for t in templates}
    requests = [
        (by_id[e.scenario.template_id], e.scenario, e.personas, target)
        for e in episodes
        for target in targets
    ]
    adapter = CultureAdapter(lm, max_attempts=attempts, max_new_tokens=max_new_tokens, seed=seed)
    with console.status(f"adapting {len(requests)} scenario(s) with {lm.model_id}"):
        outcomes = adapter.adapt(requests)
    table = Table("scenario", "culture", "result", "attempts", "last problem")
    saved = 0
    log = []
    for (template, _, _, target), outcome in zip(requests, outcomes, strict=True):
        if outcome.result is not None:
            path = save_adapted(template, target, outcome.result, out)
            saved += 1
            status = f"saved {path.name}"
        else:
            status = "[red]failed[/]"
        table.add_row(
            template.id,
            target.code,
            status,
            str(len(outcome.replies)),
            outcome.problems[-1] if outcome.problems and not outcome.ok else "",
        )
        log.append(
            {
                "template_id": template.id,
                "culture": target.code,
                "ok": outcome.ok,
                "problems": outcome.problems,
                "replies": outcome.replies,
            }
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adaptation_log.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in log)
    )
    console.print(
        f"{saved}/{len(requests)} adapted; replies and problems in {out}/adaptation_log.jsonl"
    )
    if saved == 0 and requests:
        raise typer.Exit(code=2)


@scenarios_app.command("personas")
def personas(
    culture: Annotated[str, typer.Option(help="Culture code.")],
    count: Annotated[int, typer.Option("-n", min=1)] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    write_backgrounds: Annotated[
        bool, typer.Option(help="Let the model write each background from the sampled fields.")
    ] = False,
    model: Annotated[str, typer.Option("--model", "-m")] = "smollm2",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    culture_dirs: CultureDirsOption = None,
) -> None:
    """Sample personas for a culture (reproducible from the seed)."""
    from culturesim.models.base import ModelError
    from culturesim.scenarios.cultures import CultureFileError, load_cultures, resolve_cultures
    from culturesim.scenarios.personas import PersonaSampler
    from culturesim.scenarios.personas import write_backgrounds as write

    try:
        known = load_cultures(culture_dirs or [])
        target = resolve_cultures([culture], known)[0]
        people = [PersonaSampler().sample(target, seed + i) for i in range(count)]
        if write_backgrounds:
            people = write(model_factory().get(model), people, known)
    except (CultureFileError, ModelError, ValueError) as error:
        raise _fail(error) from error
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in people], ensure_ascii=False, indent=1))
        return
    table = Table("name", "age", "gender", "occupation", "values", "decision style", "background")
    for p in people:
        table.add_row(
            p.name,
            str(p.age),
            p.gender,
            p.occupation,
            ", ".join(p.values),
            p.decision_style,
            p.background,
        )
    console.print(table)

"""`culturesim scenarios …`: list, check, render and culture-adapt scenario templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from culturesim.cli.common import (
    CultureDirOption,
    PromptsDirOption,
    console,
    door,
    models,
)
from culturesim.models.base import DEFAULT_MODEL
from culturesim.prompt_library import PromptLibrary
from culturesim.textlists import comma_list

scenarios_app = typer.Typer(
    help="Author, check, list, render, adapt, generate, import and export scenario templates.",
    no_args_is_help=True,
)
import_app = typer.Typer(help="Read scenarios written for other tools.", no_args_is_help=True)
export_app = typer.Typer(help="Write scenarios for other tools.", no_args_is_help=True)
scenarios_app.add_typer(import_app, name="import")
scenarios_app.add_typer(export_app, name="export")

DirsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--scenario-dir",
        "--dir",
        "-d",
        help="A folder of your templates (repeatable); a template overrides a built-in by id.",
    ),
]


def _parse_vars(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--var {pair!r}: write NAME=VALUE")
        values[name.strip()] = yaml.safe_load(raw)
    return values


@scenarios_app.command("list")
def list_scenarios(
    dirs: DirsOption = None,
    select: Annotated[
        str, typer.Option("--scenarios", help="ids, tag:NAME, situation:NAME, or 'all'.")
    ] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The templates in the built-in library and your folders (id, title, situation, ...)."""
    from culturesim.scenarios.templates import ScenarioLibrary

    with door():
        templates = ScenarioLibrary(dirs or []).select(select)
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "title": t.title,
            "situation": t.situation,
            "participants": len(t.participants),
            "roles": t.roles,
            "cultures": "all" if t.cultures == "all" else list(t.cultures),
            "tags": list(t.tags),
            "file": t.path,
        }
        for t in templates
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table = Table(title=f"{len(rows)} scenarios")
    width = max((len(r["id"]) for r in rows), default=2)
    table.add_column("id", min_width=width, no_wrap=True)
    for column in ("title", "situation", "roles", "cultures", "tags", "file"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["id"],
            r["title"],
            r["situation"],
            ", ".join(r["roles"]),
            "all" if r["cultures"] == "all" else ",".join(r["cultures"]),
            ", ".join(r["tags"]),
            Path(str(r["file"])).name,
            style=None,
        )
    console.print(table)


@scenarios_app.command("check")
def check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Template files or folders (default: the built-in library)."),
    ] = None,
    culture_dirs: CultureDirOption = None,
) -> None:
    """Validate template files: front matter, sections, variables, graph; render each for every
    culture it claims."""
    from culturesim.scenarios.checks import check_templates

    with door():
        results = check_templates(paths or [], culture_dirs or [])
    bad = 0
    for result in results:
        if result.ok:
            console.print(
                f"[green]ok[/]   {escape(str(result.path))}  ({result.template_id}, rendered "
                f"for {result.rendered} culture(s))"
            )
        else:
            bad += 1
            console.print(f"[red]bad[/]  {escape(result.problem)}")
    console.print(f"{len(results) - bad} of {len(results)} template(s) ok")
    if bad:
        raise typer.Exit(code=1)


@scenarios_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The new scenario's id, e.g. favour_at_work.")],
    folder: Annotated[
        Path, typer.Option("--scenario-dir", "--dir", "-d", help="Where to write it.")
    ] = Path("scenarios"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter template that passes `check` as written."""
    from culturesim.scenarios.starters import starter_template

    path = folder / f"{name}.scenario.jinja2"
    with door():
        text = starter_template(name, str(folder))
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pick another name, or pass --force")
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    console.print(f"wrote {path}", markup=False)
    console.print(
        f"next: edit it, then `culturesim scenarios check {path}` and "
        f"`culturesim scenarios render {name} --scenario-dir {folder} --culture JPN`",
        markup=False,
    )


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
    culture_dirs: CultureDirOption = None,
) -> None:
    """Render one scenario for a culture with a sampled cast, as the engine would see it."""
    from culturesim.scenarios.cultures import load_cultures
    from culturesim.scenarios.episodes import build_episodes, culture_groups
    from culturesim.scenarios.templates import ScenarioLibrary

    library = ScenarioLibrary(dirs or [])
    groups = culture_groups(culture, load_cultures(culture_dirs or []))
    template = library.get(template_id)
    episodes = build_episodes(
        library, [template], groups, seed=seed, variables={template.id: _parse_vars(var or [])}
    )
    if not episodes:
        raise ValueError(f"scenario {template_id!r} does not suit culture {culture}")
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
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    source_culture: Annotated[str, typer.Option(help="Culture the source is rendered in.")] = "USA",
    attempts: Annotated[int, typer.Option(min=1, help="Tries per scenario, with corrections.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(min=16)] = 700,
    seed: Annotated[int, typer.Option()] = 0,
    dirs: DirsOption = None,
    prompts_dir: PromptsDirOption = None,
) -> None:
    """CLCA adaptation: the model rewrites each scenario for each culture; saved as templates."""
    from culturesim.scenarios.adapt import adapt_scenarios
    from culturesim.scenarios.cultures import load_cultures, resolve_cultures
    from culturesim.scenarios.episodes import build_episodes
    from culturesim.scenarios.templates import ScenarioLibrary

    library = ScenarioLibrary(dirs or [])
    known = load_cultures()
    targets = resolve_cultures(comma_list(cultures), known)
    source = resolve_cultures([source_culture], known)[0]
    templates = library.select(template_ids)
    episodes = build_episodes(library, templates, [[source]], seed=seed)
    lm = models().get(model)
    by_id = {t.id: t for t in templates}
    requests = [
        (by_id[e.scenario.template_id], e.scenario, e.personas, target)
        for e in episodes
        for target in targets
    ]
    with console.status(f"adapting {len(requests)} scenario(s) with {lm.model_id}"):
        rows = adapt_scenarios(
            lm,
            requests,
            out,
            library=PromptLibrary(prompts_dir or []),
            max_attempts=attempts,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
    table = Table("scenario", "culture", "result", "attempts", "last problem")
    for row in rows:
        problems = list(row["problems"])  # type: ignore[call-overload]
        table.add_row(
            str(row["template_id"]),
            str(row["culture"]),
            f"saved {Path(str(row['file'])).name}" if row["file"] else "[red]failed[/]",
            str(len(row["replies"])),  # type: ignore[arg-type]
            problems[-1] if problems and not row["ok"] else "",
        )
    console.print(table)
    saved = sum(bool(row["file"]) for row in rows)
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
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    culture_dirs: CultureDirOption = None,
    prompts_dir: PromptsDirOption = None,
) -> None:
    """Sample personas for a culture (reproducible from the seed)."""
    from culturesim.scenarios.cultures import load_cultures, resolve_cultures
    from culturesim.scenarios.personas import PersonaSampler
    from culturesim.scenarios.personas import write_backgrounds as write

    known = load_cultures(culture_dirs or [])
    target = resolve_cultures([culture], known)[0]
    people = [PersonaSampler().sample(target, seed + i) for i in range(count)]
    if write_backgrounds:
        people = write(models().get(model), people, known, library=PromptLibrary(prompts_dir or []))
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


@scenarios_app.command("generate")
def generate(
    norms: Annotated[Path, typer.Option(help="YAML {CODE: [norm, ...]} or JSONL {culture, norm}.")],
    culture: Annotated[str, typer.Option(help="The culture code whose norms are used.")],
    out: Annotated[Path, typer.Option(help="Folder for the written templates and the log.")],
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    count: Annotated[int, typer.Option("-n", min=1, help="Scenarios to ask for.")] = 5,
    participants: Annotated[int, typer.Option(min=2, max=6)] = 2,
    attempts: Annotated[int, typer.Option(min=1, help="Tries per scenario, with corrections.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(min=16)] = 700,
    seed: Annotated[int, typer.Option()] = 0,
    culture_dirs: CultureDirOption = None,
    prompts_dir: PromptsDirOption = None,
) -> None:
    """Write new scenarios from social norms with a model (CLCA's norm-grounded scenarios)."""
    from culturesim.scenarios.cultures import load_cultures, resolve_cultures
    from culturesim.scenarios.norms import generate_scenarios, read_norms

    (target,) = resolve_cultures([culture], load_cultures(culture_dirs or []))
    listed = read_norms(norms).get(culture, [])
    if not listed:
        raise ValueError(f"{norms}: no norms for {culture}; add a '{culture}:' list")
    lm = models().get(model)
    with console.status(f"writing {count} scenario(s) with {lm.model_id}"):
        rows = generate_scenarios(
            lm,
            target,
            listed,
            count,
            out,
            library=PromptLibrary(prompts_dir or []),
            participants=participants,
            max_attempts=attempts,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
    saved = [str(row["file"]) for row in rows if row["file"]]
    tried = sum(int(row["attempts"]) for row in rows)  # type: ignore[call-overload]
    console.print(
        f"{len(saved)} of {count} scenario(s) written ({tried} attempts in all); every attempt "
        f"is in {out}/generation_log.jsonl",
        markup=False,
    )
    for path in saved:
        console.print(f"  {path}", markup=False)
    if not saved:
        raise typer.Exit(code=2)


@import_app.command("sotopia")
def import_sotopia_command(
    environments: Annotated[
        Path,
        typer.Argument(
            help="Sotopia EnvironmentProfiles: a JSON/JSONL file (its export or a database "
            "dump) or a folder of them (its local storage, one file per record)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the culturesim templates.")],
    agents: Annotated[
        Path | None,
        typer.Option(
            help="Sotopia AgentProfiles (file or folder); dealt in order without --combos."
        ),
    ] = None,
    combos: Annotated[
        Path | None,
        typer.Option(
            help="Sotopia environment-agent pairings (EnvAgentComboStorage: env_id, agent_ids); "
            "one template per pairing."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing template files.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Refuse the whole import at the first invalid record.")
    ] = False,
) -> None:
    """Read Sotopia EnvironmentProfiles (with AgentProfiles and pairings) as culturesim
    templates; invalid records are skipped and counted (--strict refuses them)."""
    from culturesim.scenarios.sotopia import import_sotopia

    with door():
        report = import_sotopia(
            environments,
            agents,
            out_dir=out,
            combos_path=combos,
            overwrite=overwrite,
            strict=strict,
        )
    _print_report(report.summary(), bool(report.written), out)


@import_app.command("clca")
def import_clca_command(
    scenarios: Annotated[
        Path, typer.Argument(help="CLCA role-play scenarios, one JSON object a line.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the culturesim templates.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing template files.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Refuse the whole import at the first invalid record.")
    ] = False,
    culture_dirs: CultureDirOption = None,
) -> None:
    """Read CLCA's scenarios (culture, setting, persona, person1/person2 with background,
    occupation, goal, secrets) as culturesim templates pinned to their culture."""
    from culturesim.scenarios.sotopia import import_clca

    with door():
        report = import_clca(
            scenarios,
            out_dir=out,
            culture_dirs=culture_dirs or [],
            overwrite=overwrite,
            strict=strict,
        )
    _print_report(report.summary(), bool(report.written), out)


def _print_report(lines: list[str], imported: bool, out: Path) -> None:
    """An import's summary; exits non-zero only when nothing was imported."""
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not imported:
        console.print("nothing imported", markup=False)
        raise typer.Exit(code=1)
    console.print(f"check them with `culturesim scenarios check {out}`", markup=False)


@export_app.command("sotopia")
def export_sotopia_command(
    out: Annotated[Path, typer.Option(help="JSONL file of Sotopia EnvironmentProfiles.")],
    select: Annotated[
        str, typer.Option("--scenarios", help="ids, tag:NAME, situation:NAME, or 'all'.")
    ] = "all",
    agents: Annotated[
        Path | None, typer.Option(help="Also write the casts as Sotopia AgentProfiles (JSONL).")
    ] = None,
    culture: Annotated[str, typer.Option(help="Culture the scenarios are rendered for.")] = "USA",
    seed: Annotated[int, typer.Option()] = 0,
    shape: Annotated[
        str,
        typer.Option(
            help="export: what Sotopia's JSONL loaders read (env_id, agent_id); db: its "
            "database shape (pk)."
        ),
    ] = "export",
    dirs: DirsOption = None,
) -> None:
    """Write scenarios as Sotopia EnvironmentProfiles, so one scenario runs in both tools."""
    from culturesim.scenarios.sotopia import SHAPES, export_sotopia
    from culturesim.scenarios.templates import ScenarioLibrary

    with door():
        if shape not in SHAPES:
            raise ValueError(f"--shape {shape!r}: use {' or '.join(SHAPES)}")
        library = ScenarioLibrary(dirs or [])
        templates = library.select(select)
        rows = export_sotopia(
            templates,
            out,
            agents_path=agents,
            library=library,
            culture=culture,
            seed=seed,
            shape=shape,
        )
    console.print(
        f"wrote {len(rows)} environment profile(s) to {out} ({shape} shape)", markup=False
    )

"""`culturesim cultures …`: list, show, write and check culture profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from culturesim.cli.common import CultureDirOption, console, door

cultures_app = typer.Typer(
    help="List, show, write and check culture profiles.", no_args_is_help=True
)


@cultures_app.command("list")
def list_cultures(
    culture_dirs: CultureDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every culture: code, name, region, and where its profile comes from."""
    from culturesim.scenarios.cultures import load_cultures

    with door():
        known = load_cultures(culture_dirs or [])
    rows: list[dict[str, Any]] = [
        {
            "code": c.code,
            "name": c.name,
            "demonym": c.demonym,
            "region": c.region,
            "languages": list(c.languages),
            "hofstede": len(c.hofstede),
            "names": sum(len(v) for v in c.given_names.values()),
        }
        for c in sorted(known.values(), key=lambda c: c.code)
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table = Table("code", "name", "region", "languages", title=f"{len(rows)} cultures")
    for r in rows:
        table.add_row(r["code"], r["name"], r["region"], ", ".join(r["languages"]))
    console.print(table)


@cultures_app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="Culture code, e.g. JPN.")],
    culture_dirs: CultureDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One culture: its scores, the cues agents are given in words, and its name pools."""
    from culturesim.scenarios.cues import culture_cues
    from culturesim.scenarios.cultures import load_cultures, resolve_cultures

    with door():
        (culture,) = resolve_cultures([code], load_cultures(culture_dirs or []))
        cues = culture_cues(culture)
    derived = {
        "hofstede": list(cues.hofstede),
        "inglehart_welzel": list(cues.inglehart_welzel),
        "text": cues.text,
    }
    if as_json:
        typer.echo(
            json.dumps(
                {**culture.model_dump(mode="json"), "cues": derived}, ensure_ascii=False, indent=1
            )
        )
        return
    console.print(f"[bold]{escape(culture.name)}[/] ({culture.code}), {escape(culture.region)}")
    scores = Table("dimension", "score", title="Scores")
    for name, value in {**culture.hofstede, **culture.inglehart_welzel}.items():
        scores.add_row(name, f"{value:g}")
    console.print(scores)
    console.print("[bold]Cues given to agents[/]")
    console.print(escape(cues.text))
    for gender, names in culture.given_names.items():
        console.print(f"given names ({gender}): " + escape(", ".join(names)))
    console.print("family names: " + escape(", ".join(culture.family_names)))
    console.print("occupations: " + escape(", ".join(culture.occupations)))
    console.print("places: " + escape(", ".join(culture.places)))


@cultures_app.command("new")
def new(
    code: Annotated[str, typer.Argument(help="An ISO 3166-1 alpha-3 code, e.g. PRT.")],
    folder: Annotated[
        Path, typer.Option("--culture-dir", "--dir", "-d", help="Where to write it.")
    ] = Path("cultures"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter culture file that `cultures check` validates."""
    from culturesim.scenarios.starters import starter_culture

    path = folder / f"{code}.yaml"
    with door():
        text = starter_culture(code, str(folder))
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass --force to overwrite it")
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    console.print(f"wrote {path}; check it with `culturesim cultures check {path}`", markup=False)


@cultures_app.command("check")
def check(
    paths: Annotated[list[Path], typer.Argument(help="Culture files or folders.")],
) -> None:
    """Validate culture files; errors name the file, line and field."""
    from culturesim.scenarios.cultures import CultureFileError, load_culture_file

    files: list[Path] = []
    with door():
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
            found = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
            if not found:
                raise CultureFileError(f"{path}: no culture files (*.yaml)")
            files += found
    bad = 0
    for file in files:
        try:
            culture = load_culture_file(file)
            console.print(
                f"[green]ok[/]   {escape(str(file))}  ({culture.code}, {escape(culture.name)})"
            )
        except CultureFileError as error:
            bad += 1
            console.print(f"[red]bad[/]  {escape(str(error))}")
    if bad:
        raise typer.Exit(code=1)

"""`build_report(run_dir)`: render the run into RUN_DIR/report/index.html with Jinja2.

The site is one HTML file plus PNG figures, with its CSS and the small filter script inline, so
it opens from disk with no server and no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from culturesim.report.collect import RUN_MARKERS, collect
from culturesim.report.plots import training_curve


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("culturesim.report", "templates"),
        autoescape=select_autoescape(["html", "jinja2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = lambda value: f"{value:.0%}"
    environment.filters["num"] = lambda value, digits=3: (
        "–" if value is None else f"{value:.{digits}f}"
    )
    return environment


def build_report(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory: give a run directory")
    if not any((run_dir / marker).exists() for marker in RUN_MARKERS):
        raise FileNotFoundError(
            f"{run_dir} has none of {', '.join(RUN_MARKERS)}: give a directory made by "
            "`culturesim run` or a stage command"
        )
    data = collect(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    curve = training_curve(data.training, out / "training_curve.png")
    images = []
    for image in data.evaluation_images:
        shutil.copyfile(image, out / image.name)
        images.append(image.name)
    html = (
        _environment()
        .get_template("index.html.jinja2")
        .render(
            data=data,
            config_text=yaml.safe_dump(data.config, sort_keys=False, allow_unicode=True),
            training_curve=curve.name if curve else None,
            evaluation_images=images,
            last_losses=[r for r in data.training if "loss" in r][-1:],
        )
    )
    index = out / "index.html"
    staging = out / "index.html.tmp"
    staging.write_text(html, encoding="utf-8")
    staging.replace(index)
    return index

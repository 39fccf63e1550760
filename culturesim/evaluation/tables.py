"""Evaluation output: terminal tables, JSON, CSV, and plots (per-culture bars, a culture map)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from culturesim.evaluation.scoring import CultureResult
from culturesim.store import write_json_atomic

METRICS = ("culturespa", "js_distance", "emd", "kl", "invalid_rate", "label_mass", "discrimination")
COLUMNS = ("model", "style", "culture", "questions", *METRICS)


def summary_rows(rows: Sequence[CultureResult]) -> list[dict[str, object]]:
    """Per (model, style): the mean over cultures of each metric."""
    groups: dict[tuple[str, str], list[CultureResult]] = {}
    for row in rows:
        groups.setdefault((row.model, row.style), []).append(row)
    summary = []
    for (model, style), group in groups.items():
        entry: dict[str, object] = {"model": model, "style": style, "cultures": len(group)}
        for name in METRICS:
            values = [getattr(r, name) for r in group if np.isfinite(getattr(r, name))]
            entry[name] = round(float(np.mean(values)), 4) if values else None
        summary.append(entry)
    return summary


def print_table(rows: Sequence[CultureResult], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(
        "model",
        "style",
        "culture",
        "n",
        "CultureSPA [95% CI]",
        "JSD ↓",
        "EMD ↓",
        "KL ↓",
        "invalid",
        "discrim. ↑",
        title="Survey alignment per culture",
    )
    for r in rows:
        table.add_row(
            _short(r.model),
            r.style,
            r.culture,
            str(r.questions),
            f"{r.culturespa:.2f} [{r.culturespa_low:.1f}, {r.culturespa_high:.1f}]",
            f"{r.js_distance:.3f}",
            f"{r.emd:.3f}",
            f"{r.kl:.3f}",
            f"{r.invalid_rate:.1%}",
            "" if not np.isfinite(r.discrimination) else f"{r.discrimination:+.3f}",
        )
    console.print(table)
    means = Table(
        "model",
        "style",
        "cultures",
        "CultureSPA",
        "JSD",
        "EMD",
        "KL",
        "invalid",
        "discrim.",
        title="Mean over cultures",
    )
    for s in summary_rows(rows):
        means.add_row(
            _short(str(s["model"])),
            str(s["style"]),
            str(s["cultures"]),
            *(
                _fmt(s[k])
                for k in (
                    "culturespa",
                    "js_distance",
                    "emd",
                    "kl",
                    "invalid_rate",
                    "discrimination",
                )
            ),
        )
    console.print(means)


def _fmt(value: object) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _short(model: str) -> str:
    return model if len(model) <= 40 else "…" + model[-39:]


def write_outputs(
    rows: Sequence[CultureResult], folder: Path, extra: dict[str, object] | None = None
) -> list[Path]:
    """results.json (rows + means + extra), results.csv, and the plots; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"rows": [r.as_dict() for r in rows], "summary": summary_rows(rows), **(extra or {})}
    json_path = write_json_atomic(folder / "results.json", data)
    csv_path = folder / "results.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(rows[0].as_dict()) if rows else list(COLUMNS)
        )
        writer.writeheader()
        writer.writerows(r.as_dict() for r in rows)
    return [json_path, csv_path, *plot_bars(rows, folder / "culturespa_by_culture.png")]


def plot_bars(rows: Sequence[CultureResult], path: Path) -> list[Path]:
    """Grouped bars: CultureSPA score per culture, one bar per (model, style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = sorted({(r.model, r.style) for r in rows})
    cultures = sorted({r.culture for r in rows})
    if not series or not cultures:
        return []
    lookup = {(r.model, r.style, r.culture): r.culturespa for r in rows}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, len(cultures) * 0.6), 4))
    for i, (model, style) in enumerate(series):
        values = [lookup.get((model, style, c), np.nan) for c in cultures]
        ax.bar(
            np.arange(len(cultures)) + i * width, values, width, label=f"{_short(model)} · {style}"
        )
    ax.set_xticks(np.arange(len(cultures)) + 0.4 - width / 2, cultures, rotation=45)
    ax.set_ylabel("CultureSPA score")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def plot_culture_map(similarity: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """Cultures as a networkx graph: edges weighted by how alike the model's answers for them are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = nx.Graph()
    for a, row in similarity.items():
        for b, weight in row.items():
            if a < b:
                graph.add_edge(a, b, weight=max(weight, 1e-6))
    layout = nx.spring_layout(graph, weight="weight", seed=0)
    weights = np.array([d["weight"] for _, _, d in graph.edges(data=True)])
    span = np.ptp(weights) if len(weights) else 1.0
    widths = 0.2 + 3.0 * (weights - weights.min()) / (span or 1.0) if len(weights) else []
    fig, ax = plt.subplots(figsize=(6, 6))
    nx.draw_networkx(
        graph, layout, ax=ax, width=widths, node_color="#9ecae1", edge_color="#888888", font_size=8
    )
    ax.set_title(title or "Culture map (edge width = answer similarity)")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

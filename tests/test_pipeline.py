"""`culturesim run`: the config, the plan, the whole loop on a tiny real model, resuming, and
the HTML report (also opened in headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturesim.cli import app
from culturesim.pipeline.config import RunConfigError, apply_overrides, load_run_config
from culturesim.records import Answer, Dialogue, Episode, FilterDecision
from culturesim.store import RunStore
from tests.conftest import DEMO_CONFIG as DEMO
from tests.conftest import SHARED_WVS, tiny_overrides

STAGES = ["simulate", "probe", "judge", "corpus", "train", "evaluate", "report"]


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


# ------------------------------------------------------------------ config


def test_demo_config_is_valid_and_runs_every_stage() -> None:
    config = load_run_config(DEMO)
    assert config.enabled_stages() == STAGES
    assert config.models.actor == "smollm2"


def test_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: runs/x\nsimulate:\n  per_episode: 0\n  colours: red\n")
    with pytest.raises(RunConfigError) as error:
        load_run_config(bad)
    message = str(error.value)
    assert str(bad) in message
    assert "simulate.per_episode" in message and "simulate.colours" in message
    broken = tmp_path / "broken.yaml"
    broken.write_text("out: runs/x\nsimulate: [\n")
    with pytest.raises(RunConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_run_config(broken)
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 1 and "simulate.per_episode" in result.output


def test_overrides_are_read_as_yaml_and_refuse_bad_paths() -> None:
    data = apply_overrides({"train": {"max_steps": 5}}, ["train.max_steps=9", "evaluate.limit=3"])
    assert data == {"train": {"max_steps": 9}, "evaluate": {"limit": 3}}
    assert apply_overrides({}, ["judge.thresholds=[quality=good]"])["judge"]["thresholds"] == [
        "quality=good"
    ]
    with pytest.raises(RunConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(RunConfigError, match="not a section"):
        apply_overrides({"out": "x"}, ["out.deeper=1"])


def test_dry_run_prints_counts_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "dry"
    survey = [] if SHARED_WVS.is_dir() else ["--set", "evaluate.survey_dir=null"]
    output = run_cli("run", str(DEMO), "--dry-run", "--set", f"out={out}", *survey)
    assert "6 episodes × 1 = 6 dialogues" in output  # 2 scenarios × 3 cultures
    assert "≤4 questions" in output  # 2 topics × 2
    assert not out.exists()


def test_gpu_config_validates_and_plans_the_paper_scale_run() -> None:
    """The plan prints; the dry run then names what this machine lacks (the GPU's model
    folder) and exits 1, since the real run would stop there."""
    result = CliRunner().invoke(app, ["run", str(DEMO.parent / "gpu-llama3-8b.yaml"), "--dry-run"])
    output = " ".join(result.output.split())
    assert "1080 episodes × 2 = 2160 dialogues" in output  # 45 scenarios × 24 casts
    assert "13 topics × 1000" in output
    assert result.exit_code == 1
    assert "models.base: '/models/Llama-3.1-8B-Instruct'" in output


def test_unknown_or_unconfigured_stage_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "only_sim.yaml"
    config.write_text(f"out: {tmp_path / 'r'}\nsimulate: {{}}\n")
    result = CliRunner().invoke(app, ["run", str(config), "--stages", "train"])
    assert result.exit_code == 1 and "not configured" in result.output
    result = CliRunner().invoke(app, ["run", str(config), "--stages", "simulat"])
    assert result.exit_code == 1 and "unknown stage" in result.output


# ------------------------------------------------------------------ the loop


def test_loop_runs_every_stage_and_logs_cost(tiny_run: Path) -> None:
    rows = [json.loads(line) for line in (tiny_run / "stages.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == STAGES
    assert all(r["status"] == "done" and r["seconds"] >= 0 for r in rows)
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["simulate"]["requests"] > 0 and by_stage["simulate"]["completion_tokens"] > 0
    assert by_stage["corpus"]["requests"] == 0  # no model call in corpus building
    simulate = by_stage["simulate"]  # turns extend earlier turns: their prefixes are reused
    assert 0 < simulate["prefix_tokens_reused"] < simulate["prefix_tokens_read"]
    assert simulate["prefix_hit_rate"] == round(
        simulate["prefix_tokens_reused"] / simulate["prefix_tokens_read"], 4
    )
    assert "prefix_hit_rate" not in by_stage["corpus"]
    store = RunStore(tiny_run / "simulate")
    dialogues = store.read(Dialogue)
    assert len(dialogues) == by_stage["simulate"]["counts"]["dialogues"] == 6
    cultures = {e.scenario.culture for e in store.read(Episode)}
    assert cultures == {"USA", "CHN", "DEU"}
    decisions = store.read(FilterDecision)
    assert {d.target_id for d in decisions} == {d.id for d in dialogues}
    assert (tiny_run / "corpus" / "clca" / "train.jsonl").exists()
    lineage = json.loads((tiny_run / "train" / "adapter" / "culturesim_adapter.json").read_text())
    assert str(tiny_run / "corpus" / "clca") in json.dumps(lineage)
    guard = json.loads((tiny_run / "evaluate" / "guard.json").read_text())
    assert [g["variant"] for g in guard] == ["before", "after"]
    assert "+adapter:" in guard[1]["model"] and "+adapter:" not in guard[0]["model"]
    if SHARED_WVS.is_dir():
        results = json.loads((tiny_run / "evaluate" / "survey" / "results.json").read_text())
        models = {row["model"] for row in results["summary"]} - {"reference"}
        assert len(models) == 2  # before and after
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert manifest["config"]["command"] == "run"


def test_rerun_skips_done_stages_and_changed_config_is_refused(
    tiny_run: Path, tiny_model_dir: Path
) -> None:
    lines = (tiny_run / "stages.jsonl").read_text().splitlines()
    args = ["run", str(DEMO)]
    for value in tiny_overrides(tiny_run, tiny_model_dir):
        args += ["--set", value]
    output = run_cli(*args)
    assert output.count("done earlier, skipped") == len(STAGES)
    assert (tiny_run / "stages.jsonl").read_text().splitlines() == lines
    result = CliRunner().invoke(app, [*args, "--set", "seed=7"])
    assert result.exit_code == 1 and "another config" in result.output


# ------------------------------------------------------------------ report


def test_report_holds_every_dialogue_turn_and_section(tiny_run: Path) -> None:
    output = run_cli("report", str(tiny_run))
    index = tiny_run / "report" / "index.html"
    assert str(index) in output.replace("\n", "")
    html = index.read_text()
    dialogues = RunStore(tiny_run / "simulate").read(Dialogue)
    for dialogue in dialogues:
        assert f'id="{dialogue.id}"' in html
    assert html.count('class="turn') == sum(len(d.turns) for d in dialogues)
    for section in ("summary", "dialogues", "probe", "training", "evaluation"):
        assert f'<section id="{section}">' in html
    assert 'id="stage-table"' in html and 'id="guard-table"' in html
    assert (tiny_run / "report" / "training_curve.png").stat().st_size > 1000
    assert "http://" not in html and "https://" not in html  # works offline


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json" in result.output
    assert "corpus_summary.json" in result.output, "the message names what a run folder holds"


def _chromedriver() -> str | None:
    return shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )


def test_report_in_headless_chromium(tiny_run: Path) -> None:
    """The dialogue filter works in a real browser, with no console errors; a screenshot is kept."""
    driver_path = _chromedriver()
    if driver_path is None:
        if os.environ.get("CULTURESIM_REQUIRE_BROWSER"):
            pytest.fail("chromium-driver is missing; `make test` installs it (apt)")
        pytest.skip(
            "chromium-driver is not installed (Debian: apt install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run_cli("report", str(tiny_run))
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get((tiny_run / "report" / "index.html").resolve().as_uri())
        articles = browser.find_elements(By.CSS_SELECTOR, "article.dialogue")
        assert len(articles) == 6
        counts: dict[str, int] = {}
        for article in articles:
            culture = article.get_attribute("data-culture") or ""
            counts[culture] = counts.get(culture, 0) + 1
        culture_filter = Select(browser.find_element(By.ID, "filter-culture"))
        for culture, expected in counts.items():
            culture_filter.select_by_value(culture)
            visible = [a for a in articles if a.is_displayed()]
            assert len(visible) == expected
            assert {a.get_attribute("data-culture") for a in visible} == {culture}
            assert browser.find_element(By.ID, "dialogue-count").text.startswith(f"{expected} of 6")
        answers = RunStore(tiny_run / "probe").read(Answer)
        if any(a.prompt == "aware" for a in answers):
            rows = browser.find_elements(By.CSS_SELECTOR, "#probe-table tr")[1:]  # less the header
            assert rows, "the run has probe answers, so the probe table has rows"
            assert len(rows) == sum(a.prompt == "aware" for a in answers)
        scenario_filter = Select(browser.find_element(By.ID, "filter-scenario"))
        scenario_filter.select_by_value("borrow_money")
        culture = next(iter(counts))
        culture_filter.select_by_value(culture)
        both = [a for a in articles if a.is_displayed()]
        assert len(both) == 1  # one episode per scenario and culture
        culture_filter.select_by_value("")
        scenario_filter.select_by_value("")
        assert all(a.is_displayed() for a in articles)
        problems = [
            entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")
        ]
        assert not problems, problems
        shot = tiny_run / "report" / "screenshot.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_the_report_shows_what_each_commands_directory_holds(
    tiny_run: Path, tmp_path: Path
) -> None:
    """`simulate`, `corpus --out` and `train --out` directories each get their own section;
    corpus and train folders hold no manifest, and once had no report at all."""
    from culturesim.report.build import build_report
    from tests.helpers import make_run

    simulated = make_run(tmp_path / "simulate")
    html = build_report(simulated).read_text()
    assert "borrow_money" in html and "No dialogues" not in html

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_run / "corpus", corpus)
    html = build_report(corpus).read_text()
    sets = json.loads((corpus / "corpus_summary.json").read_text())["sets"]
    assert "No corpus in this run" not in html
    assert f"<td>clca</td><td>{sets['clca']['train']}</td>" in html

    train = tmp_path / "train"
    shutil.copytree(tiny_run / "train", train)
    html = build_report(train).read_text()
    assert "No training in this run" not in html
    assert (train / "report" / "training_curve.png").stat().st_size > 1000

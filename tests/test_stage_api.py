"""Every stage is a library function taking its section and a run context: driven here from
Python with no command line, plus regressions the old command-as-API design had."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from culturesim.context import ModelFactory, ModelRoles, RunContext, RunLayout
from culturesim.models.base import Prompt
from culturesim.records import Culture, Dialogue, FilterDecision
from culturesim.store import RunStore, json_safe, write_json_atomic
from tests.conftest import ScriptedModel
from tests.evaluation_fixtures import write_survey
from tests.helpers import actor_reply, judge_reply

BUILTIN_CULTURES = Path(__file__).resolve().parents[1] / "culturesim" / "data" / "cultures"


class RecordingModel(ScriptedModel):
    """A scripted model that keeps every prompt it was asked to score."""

    def __init__(self, reply: object = None, model_id: str = "scripted") -> None:
        super().__init__(reply, model_id)
        self.scored: list[Prompt] = []

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        self.scored += list(prompts)
        return super().score(prompts, candidates)


def _factory(**models: ScriptedModel) -> ModelFactory:
    factory = ModelFactory(builder=lambda spec, adapter=None: pytest.fail(f"built {spec}"))
    for spec, model in models.items():
        factory.provide(spec, model)
    return factory


def test_a_user_culture_travels_with_the_run_to_judge_and_corpus(tmp_path: Path) -> None:
    """Fixed: a --culture-dir culture was lost after simulate (KeyError in the corpus)."""
    from culturesim.agents.judge import stage as judge_stage
    from culturesim.agents.roleplay import stage as simulate_stage
    from culturesim.training import corpus_stage

    mine = tmp_path / "my-cultures"
    mine.mkdir()
    text = (BUILTIN_CULTURES / "JPN.yaml").read_text().replace("code: JPN", "code: ZZZ")
    (mine / "ZZZ.yaml").write_text(text.replace("name: Japan", "name: Zedland"))
    factory = _factory(actor=ScriptedModel(actor_reply), judge=ScriptedModel(judge_reply))
    simulate_ctx = RunContext(
        layout=RunLayout(tmp_path / "run"),
        models=factory,
        roles=ModelRoles(actor="actor", judge="judge"),
        show_progress=False,
    )
    section = simulate_stage.SimulateSection(
        scenarios="borrow_money",
        cultures="ZZZ",
        per_episode=1,
        max_turns=2,
        intents=False,
        action_mode="free",
        culture_dirs=[str(mine)],
    )
    result = simulate_stage.run(section, simulate_ctx)
    assert result.counts["dialogues"] == 1
    stored = RunStore(tmp_path / "run" / "simulate").read(Culture)
    assert [c.code for c in stored] == ["ZZZ"]
    # A later context knows nothing of the user's folder: the run itself carries the culture.
    later = RunContext(
        layout=RunLayout(tmp_path / "run"),
        models=factory,
        roles=ModelRoles(judge="judge"),
        show_progress=False,
    )
    judge_stage.run(judge_stage.JudgeSection(rule="none"), later)
    corpus = corpus_stage.run(corpus_stage.CorpusSection(embeddings=False), later)
    assert corpus.counts["clca"]["train"] + corpus.counts["clca"]["validation"] > 0
    rows = (tmp_path / "run" / "corpus" / "clca" / "train.jsonl").read_text()
    assert "Zedland" in rows or "ZZZ" in rows


def test_the_answer_prefix_reaches_the_model(tmp_path: Path) -> None:
    """Fixed: `evaluate wvs --answer-prefix ""` was recorded in the manifest but never used."""
    from culturesim.evaluation.stage import EvaluateSection, Variant, run

    write_survey(tmp_path / "survey")
    (tmp_path / "survey" / "proportions_group_by_country.json").write_text(
        json.dumps({"JPN": {"Q1": {"1": 0.7, "2": 0.3}, "Q2": {"2": 1.0}}})
    )
    seen = {}
    for prefix in ("", "The answer is "):
        model = RecordingModel()
        ctx = RunContext(
            layout=RunLayout(
                tmp_path / f"out{len(prefix)}", {"survey": tmp_path / f"s{len(prefix)}"}
            ),
            models=_factory(m=model),
            show_progress=False,
        )
        section = EvaluateSection(
            survey_dir=str(tmp_path / "survey"),
            cultures="JPN",
            styles="aware",
            answer_prefix=prefix,
            guard=False,
            models=[Variant(name="m", spec="m")],
        )
        run(section, ctx)
        seen[prefix] = model.scored
    assert seen[""] and seen["The answer is "]
    assert all(p[-1]["role"] != "assistant" for p in seen[""])  # type: ignore[index]
    assert all(p[-1]["content"] == "The answer is " for p in seen["The answer is "])  # type: ignore[index]


def test_derived_json_is_written_whole_and_nan_becomes_null(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "results.json", {"a": math.nan, "b": [1.0, math.inf]})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None]}
    assert not list(tmp_path.glob("*.tmp"))
    assert json_safe((1, {"x": float("-inf")})) == [1, {"x": None}]


def test_the_report_probe_table_matches_answers_to_their_questions(tmp_path: Path) -> None:
    """Fixed: answers carry `survey:<id>` and the report looked them up by the bare id."""
    from culturesim.report.collect import collect
    from tests.helpers import make_probe_run

    run = make_probe_run(tmp_path / "probe")
    data = collect(run)
    assert data.probe_rows, "a probe run with answers has probe rows"
    assert {row["culture"] for row in data.probe_rows} == {"JPN", "DEU"}
    assert all(row["unaware"] for row in data.probe_rows)


def test_the_whole_demo_loop_runs_from_python(tiny_run: Path) -> None:
    """The `tiny_run` fixture drives every stage through `run_stages` with no command line."""
    rows = [json.loads(line) for line in (tiny_run / "stages.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["done"] * 7
    dialogues = RunStore(tiny_run / "simulate").read(Dialogue)
    decisions = RunStore(tiny_run / "simulate").read(FilterDecision)
    assert {d.target_id for d in decisions} == {d.id for d in dialogues}


def test_pipeline_never_imports_typer() -> None:
    pipeline = Path(__file__).resolve().parents[1] / "culturesim" / "pipeline"
    for source in pipeline.glob("*.py"):
        assert "typer" not in source.read_text(), source


def test_a_section_default_is_written_once() -> None:
    from culturesim.agents.roleplay.stage import SimulateSection
    from culturesim.pipeline.config import parse_run_config

    config = parse_run_config({"out": "x", "simulate": {}})
    assert config.section("simulate") == SimulateSection()
    assert SimulateSection.default_of("per_episode") == 2


def test_a_users_prompt_folder_reaches_the_corpus_views(tmp_path: Path) -> None:
    """`prompts_dir` puts the user's templates first: here the one transcript template."""
    from culturesim.training import corpus_stage
    from tests.helpers import make_run

    run = make_run(tmp_path)
    mine = tmp_path / "prompts" / "transcript"
    mine.mkdir(parents=True)
    (mine / "turn.jinja2").write_text("{{ speaker_name }} >> {{ utterance }}")
    ctx = RunContext(
        layout=RunLayout.for_stage("corpus", tmp_path / "corpus", inputs=[run]),
        prompt_dirs=(tmp_path / "prompts",),
        show_progress=False,
    )
    corpus_stage.run(corpus_stage.CorpusSection(embeddings=False), ctx)
    rows = [json.loads(line) for line in (tmp_path / "corpus" / "clca" / "train.jsonl").open()]
    views = [r for r in rows if r["source"] == "clca_dialogue"]
    turns = [m["content"] for r in views for m in r["messages"] if m["role"] == "assistant"]
    assert turns and all(" >> " in t for t in turns), turns[:3]


def test_the_report_shows_a_standalone_evaluation_run(tmp_path: Path) -> None:
    """Fixed: for an `evaluate wvs --out DIR` run every report section was empty."""
    from culturesim.evaluation.stage import EvaluateSection, Variant, run
    from culturesim.report.build import build_report
    from culturesim.report.collect import collect

    write_survey(tmp_path / "survey")
    (tmp_path / "survey" / "proportions_group_by_country.json").write_text(
        json.dumps({"JPN": {"Q1": {"1": 0.7, "2": 0.3}, "Q2": {"2": 1.0}}})
    )
    out = tmp_path / "eval"
    ctx = RunContext(
        layout=RunLayout(out, {"evaluate": out, "survey": out}),
        models=_factory(m=RecordingModel()),
        show_progress=False,
    )
    section = EvaluateSection(
        survey_dir=str(tmp_path / "survey"),
        cultures="JPN",
        guard=False,
        models=[Variant(name="m", spec="m")],
    )
    run(section, ctx)
    data = collect(out)
    assert {row["model"] for row in data.survey_summary} >= {"scripted"}
    html = build_report(out).read_text()
    assert "scripted" in html and "No evaluation" not in html

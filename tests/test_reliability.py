"""Reliability: faults injected into a real local server during a simulation, client-side load
balancing, keys kept out of run files, Ctrl-C, concurrent writers, `runs verify`, and a
kill-and-resume of the whole loop at random points."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.agents.roleplay.simulation import Simulator
from culturesim.cli import app
from culturesim.models.base import GenerationParams, ModelError
from culturesim.models.faults import FaultInjector, FaultPlan
from culturesim.models.openai_backend import OpenAIModel
from culturesim.models.registry import build_model
from culturesim.models.retry import RetryingModel
from culturesim.models.server import create_app
from culturesim.models.transformers_backend import TransformersModel
from culturesim.records import Dialogue, Episode, Persona
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes, culture_groups
from culturesim.scenarios.templates import ScenarioLibrary
from culturesim.store import RunStore, StoreWarning
from tests.conftest import DEMO_CONFIG
from tests.helpers import free_port, running

pytestmark = pytest.mark.slow  # kills, faults, servers and Ray: the slowest tests

CULTURES = load_cultures()
CLI = [sys.executable, "-m", "culturesim.cli"]


def episodes_for(scenarios: str, cultures: str) -> list[Episode]:
    library = ScenarioLibrary()
    return build_episodes(
        library, library.select(scenarios), culture_groups(cultures, CULTURES), seed=0
    )


# ------------------------------------------------------------------ fault injection


def test_simulation_survives_failing_hanging_and_garbage_server(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Every dialogue ends up written or listed as failed; none lost, none written twice."""
    plan = FaultPlan(
        {"error": 0.12, "hang": 0.04, "garbage": 0.08, "truncate": 0.08}, hang_s=12.0, seed=3
    )
    injector = FaultInjector(create_app(TransformersModel.from_pretrained(tiny_model_dir)), plan)
    episodes = episodes_for("borrow_money,decline_invitation", "USA,CHN")
    settings = SimulateSection(per_episode=2, max_turns=3, max_new_tokens=16)
    with running(injector) as url:  # type: ignore[arg-type]
        remote = RetryingModel(
            # A hang outlasts the timeout; a healthy answer stays far inside it on a busy CPU.
            OpenAIModel("tiny", url, timeout_s=8.0, tokenizer_path=str(tiny_model_dir)),
            max_retries=2,
            backoff_s=0.01,
        )
        store = RunStore.open(tmp_path / "run", {"test": "faults"})
        simulator = Simulator(remote, store, settings)
        first = simulator.run(episodes, show_progress=False)
        expected = {simulator.dialogue_id(e, k) for e in episodes for k in range(2)}
        written = [d.id for d in store.read(Dialogue)]
        failed = {row["dialogue_id"] for row in store.read_json("failed")}
        assert len(written) == len(set(written)), "a dialogue was written twice"
        assert set(written) | failed == expected and not set(written) & failed
        assert first.done + len(first.failed) == len(expected)
        injected = sum(v for k, v in injector.counts.items() if k != "ok")
        assert injected > 0 and remote.log.retries > 0
        assert set(remote.log.errors) <= {
            "InternalServerError",
            "APITimeoutError",
            "JSONDecodeError",
            "MalformedResponse",
            "APIResponseValidationError",
        }
        figures = {
            "requests": remote.log.requests,
            "attempts": sum(injector.counts.values()),
            "faults_injected": dict(injector.counts),
            "retries": remote.log.retries,
            "requests_failed_after_retries": remote.log.failures,
            "dialogues_done": first.done,
            "dialogues_failed": len(first.failed),
        }
        print("fault injection:", json.dumps(figures))

        # A plain rerun leaves the failed ones alone; --retry-failed with a healthy server
        # finishes them, and still nothing is duplicated.
        again = simulator.run(episodes, show_progress=False)
        assert again.left_failed == len(failed) and again.done == 0
        plan.rates.clear()
        retried = simulator.run(episodes, show_progress=False, retry_failed=True)
        assert retried.done == len(failed) and not retried.failed
        final = [d.id for d in store.read(Dialogue)]
        assert sorted(final) == sorted(expected)
        remote.close()


def test_fault_plan_parsing_names_the_problem() -> None:
    assert FaultPlan.parse("error=0.1,hang=0.05").rates == {"error": 0.1, "hang": 0.05}
    with pytest.raises(ValueError, match="KIND=RATE"):
        FaultPlan.parse("explode=0.1")
    with pytest.raises(ValueError, match="more than 1"):
        FaultPlan.parse("error=0.7,garbage=0.7")


# ------------------------------------------------------------------ replicas


def counting(app: FastAPI, tally: dict[str, int]) -> FastAPI:
    """Count requests and the most in flight at once on one server."""

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        tally["served"] += 1
        tally["now"] += 1
        tally["peak"] = max(tally["peak"], tally["now"])
        try:
            return await call_next(request)
        finally:
            tally["now"] -= 1

    return app


def test_replicas_share_the_load_under_one_concurrency_limit(tiny_model_dir: Path) -> None:
    model = TransformersModel.from_pretrained(tiny_model_dir)
    tallies = [{"served": 0, "now": 0, "peak": 0} for _ in range(2)]
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    with (
        running(counting(create_app(model), tallies[0])) as first,
        running(counting(create_app(model), tallies[1])) as second,
    ):
        remote = RetryingModel(
            OpenAIModel("tiny", [first, second, dead], max_concurrency=3, rest_s=60),
            backoff_s=0.01,
        )
        replies = remote.generate(
            [f"Hello {i}" for i in range(24)], GenerationParams(max_new_tokens=2)
        )
        assert len(replies) == 24 and all(r.completion_tokens for r in replies)
        assert tallies[0]["served"] >= 6 and tallies[1]["served"] >= 6
        assert tallies[0]["peak"] + tallies[1]["peak"] <= 3 + 1  # global limit (+ one handover)
        assert remote.log.errors["APIConnectionError"] >= 1
        assert remote.log.failures == 0  # the dead replica's share went to the live ones
        remote.close()


def test_openai_spec_options_and_no_keys_in_specs() -> None:
    from culturesim.models.registry import parse_openai_spec

    name, urls, options = parse_openai_spec(
        "openai:m@http://a/v1,http://b/v1?concurrency=64&timeout=30&retries=2"
    )
    assert (name, urls) == ("m", ["http://a/v1", "http://b/v1"])
    assert options == {"max_concurrency": 64, "timeout_s": 30.0, "max_retries": 2}
    with pytest.raises(ModelError, match="never part of a model spec"):
        parse_openai_spec("openai:m@http://a/v1?api_key=sk-123")
    with pytest.raises(ModelError, match="unknown option"):
        parse_openai_spec("openai:m@http://a/v1?colour=red")


# ------------------------------------------------------------------ security


def test_api_key_is_used_but_never_written(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-never-write-me-8f3a"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    seen: list[str] = []
    server = create_app(TransformersModel.from_pretrained(tiny_model_dir))

    @server.middleware("http")
    async def record_auth(request: Request, call_next):  # type: ignore[no-untyped-def]
        seen.append(request.headers.get("authorization", ""))
        return await call_next(request)

    out = tmp_path / "run"
    with running(server) as url:
        spec = f"openai:tiny@{url}?tokenizer={tiny_model_dir}&timeout=20"
        result = CliRunner().invoke(
            app,
            [
                "simulate",
                "--model",
                spec,
                "--scenarios",
                "borrow_money",
                "--cultures",
                "USA",
                "--per-episode",
                "1",
                "--max-turns",
                "2",
                "--out",
                str(out),
            ],
        )
    assert result.exit_code == 0, result.output
    assert seen and all(header == f"Bearer {secret}" for header in seen)
    assert secret not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the key leaked into {path}"
    store = RunStore.open(tmp_path / "other", {"api_key": secret, "nested": {"token": secret}})
    assert secret not in store.manifest_path.read_text()


def test_serve_binds_to_loopback_by_default() -> None:
    import inspect

    from culturesim.cli import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


# ------------------------------------------------------------------ run store


def _append_many(root: str, writer: int) -> None:
    store = RunStore(root)
    for index in range(150):
        persona = Persona(
            culture="USA",
            seed=writer * 1000 + index,
            name="x" * 3000,
            age=30,
            gender="f",
            occupation="writer " * 50,
        )
        store.append(persona)


def test_concurrent_writer_processes_never_interleave_lines(tmp_path: Path) -> None:
    RunStore.open(tmp_path / "run", {"test": "writers"})
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_many, args=(str(tmp_path / "run"), w)) for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # any unreadable line would raise here
        personas = RunStore(tmp_path / "run").read(Persona)
    assert len(personas) == 600


def test_runs_verify_finds_corruption_duplicates_conflicts_and_broken_lineage(
    tmp_path: Path,
) -> None:
    from tests.helpers import make_run

    run = make_run(tmp_path)
    result = CliRunner().invoke(app, ["runs", "verify", str(run)])
    assert result.exit_code == 0 and "ok" in result.output
    dialogues = (run / "dialogue.jsonl").read_text().splitlines()
    episode = json.loads((run / "episode.jsonl").read_text().splitlines()[0])
    tampered = json.loads(dialogues[0])
    tampered["stop_reason"] = "edited by hand"  # same id, different content: a conflict
    orphan = Dialogue(episode_id="epi-missing", sample_index=0, model="m").to_json()
    bad_id = dict(episode, seed=episode["seed"] + 1)  # content no longer matches the id
    with open(run / "dialogue.jsonl", "a") as handle:
        handle.write(dialogues[1] + "\n")  # an exact duplicate
        # Written through the record API (a fresh digest): a valid record that conflicts.
        handle.write(Dialogue.model_validate({**tampered, "digest": ""}).to_json() + "\n")
        handle.write('{"id": "dlg-broken", "episode_id": \n')  # corrupt line
        handle.write(orphan + "\n")
    with open(run / "episode.jsonl", "a") as handle:
        handle.write(json.dumps(bad_id) + "\n")
    result = CliRunner().invoke(app, ["runs", "verify", str(run)])
    assert result.exit_code == 1
    from culturesim.verify import verify_run

    problems = {(p.file, p.kind): p for p in verify_run(run).problems}
    assert set(problems) == {
        ("dialogue.jsonl", "duplicate"),
        ("dialogue.jsonl", "conflict"),
        ("dialogue.jsonl", "corrupt"),
        ("dialogue.jsonl", "lineage"),
        ("episode.jsonl", "corrupt"),
    }
    assert problems[("dialogue.jsonl", "duplicate")].line == len(dialogues) + 1
    assert problems[("dialogue.jsonl", "corrupt")].line == len(dialogues) + 3
    assert "does not match its content" in problems[("episode.jsonl", "corrupt")].message
    result = CliRunner().invoke(app, ["runs", "verify", str(run), "--quarantine"])
    assert "quarantined" in result.output
    aside = (run / "quarantine.jsonl").read_text()
    assert "dlg-broken" in aside
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        RunStore(run).read(Dialogue)  # the corrupt line is gone from the record file


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_stops_cleanly_and_the_rerun_completes(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        *CLI,
        "simulate",
        "--model",
        str(tiny_model_dir),
        "--scenarios",
        "borrow_money,decline_invitation",
        "--cultures",
        "USA,CHN",
        "--per-episode",
        "4",  # 16 dialogues, two at a time: the interrupt always lands mid-way
        "--max-turns",
        "3",
        "--max-new-tokens",
        "16",
        "--concurrency",
        "2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # A job started in the background of a non-interactive shell inherits SIGINT as ignored,
    # and Python then installs no KeyboardInterrupt handler: restore the default, as a terminal has.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    dialogue_file = out / "dialogue.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if dialogue_file.exists() and dialogue_file.read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "Rerun the same command to resume" in stderr.decode()
    lines = dialogue_file.read_text().splitlines()
    assert all(json.loads(line)["id"] for line in lines) and 1 <= len(lines) < 16
    rerun = subprocess.run(command, capture_output=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    ids = [json.loads(line)["id"] for line in dialogue_file.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 16


# ------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray")
    from culturesim.models.ray_cluster import ensure_ray

    ensure_ray(2)
    yield ray
    ray.shutdown()


def test_ray_simulation_over_two_actors_matches_one_process(
    ray_cluster: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    common = [
        "simulate",
        "--model",
        str(tiny_model_dir),
        "--scenarios",
        "borrow_money,decline_invitation",
        "--cultures",
        "USA,CHN",
        "--per-episode",
        "2",
        "--max-turns",
        "3",
    ]
    single = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    sharded = CliRunner().invoke(
        app, [*common, "--out", str(tmp_path / "two"), "--ray-actors", "2"]
    )
    assert sharded.exit_code == 0, sharded.output
    one = (tmp_path / "one" / "dialogue.jsonl").read_text().splitlines()
    two = (tmp_path / "two" / "dialogue.jsonl").read_text().splitlines()
    one_ids = [json.loads(line)["id"] for line in one]
    two_ids = [json.loads(line)["id"] for line in two]
    assert len(two_ids) == len(set(two_ids)) == 8
    assert sorted(one_ids) == sorted(two_ids)
    verified = CliRunner().invoke(app, ["runs", "verify", str(tmp_path / "two")])
    assert verified.exit_code == 0, verified.output


def test_ray_model_pool_answers_like_the_model_in_process(
    ray_cluster: Any, tiny_model_dir: Path
) -> None:
    local = build_model(str(tiny_model_dir))
    pool = build_model(f"ray:2:{tiny_model_dir}")
    assert pool.model_id == local.model_id  # records written through either share ids
    prompts = [f"Question {i}: how do people greet?" for i in range(5)]
    params = GenerationParams(max_new_tokens=6)
    assert [c.text for c in pool.generate(prompts, params)] == [
        c.text for c in local.generate(prompts, params)
    ]
    candidates = [[" yes", " no"]] * 5
    for a, b in zip(pool.score(prompts, candidates), local.score(prompts, candidates), strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    with pytest.raises(ModelError, match="ray:N:SPEC"):
        build_model("ray:two:smollm2")


# ------------------------------------------------------------------ kill and resume


def record_ids(run: Path) -> dict[str, set[str]]:
    """Every record id in every run store of a loop run, and every corpus row's lineage."""
    from culturesim.records import RECORD_TYPES

    found: dict[str, set[str]] = {}
    for path in sorted(run.rglob("*.jsonl")):
        relative = str(path.relative_to(run))
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if relative.startswith("corpus"):
            found[relative] = {json.dumps(sorted(r["lineage"])) + r["culture"] for r in rows}
        elif path.stem in RECORD_TYPES:
            ids = [r["id"] for r in rows]
            assert len(ids) == len(set(ids)), f"duplicates in {relative}"
            # An adapter's model id holds its path, which differs between the two runs; the
            # identifying fields are compared with the run directory taken out.
            fields = RECORD_TYPES[path.stem].id_fields
            found[relative] = {
                json.dumps({f: r.get(f) for f in fields}, sort_keys=True).replace(str(run), "RUN")
                for r in rows
            }
    return found


def stages_done(run: Path) -> list[str]:
    log = run / "stages.jsonl"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [row["stage"] for row in rows if row["status"] == "done"]


def test_kill_and_resume_across_stages_gives_the_uninterrupted_record_set(
    tiny_run: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tests.conftest import tiny_overrides

    out = tmp_path / "killed"
    command = [*CLI, "run", str(DEMO_CONFIG)]
    for value in tiny_overrides(out, tiny_model_dir):
        command += ["--set", value]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # Five kills at random points spread over the loop: each waits until a randomly chosen
    # number of stages is done, then a random extra delay, then SIGKILL.
    chooser = random.Random(20261123)
    targets = sorted(chooser.sample(range(6), 5))
    kills = []
    for target in targets:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        while process.poll() is None and len(set(stages_done(out))) < target:
            time.sleep(0.2)
        try:
            process.wait(timeout=chooser.uniform(0.3, 2.5))
            kills.append((target, "finished before the kill"))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append((target, f"killed with {sorted(set(stages_done(out)))} done"))
    finished = subprocess.run(command, capture_output=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    print("SIGKILL points (stages done before, outcome):", kills)
    assert sum("killed" in outcome for _, outcome in kills) >= 4
    assert record_ids(out) == record_ids(tiny_run)
    stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
    assert {s["stage"] for s in stages if s["status"] == "done"} >= {
        "simulate",
        "probe",
        "judge",
        "corpus",
        "train",
        "evaluate",
        "report",
    }
    verified = CliRunner().invoke(app, ["runs", "verify", str(out)])
    assert verified.exit_code == 0, verified.output

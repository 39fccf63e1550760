"""The `vllm:` spec without a vLLM: parsing, the flags chosen per build, the log's cause, the
guard that keeps a server from outliving culturesim. The real engine is in test_vllm.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from culturesim.models import vllm_launch
from culturesim.models.base import ModelError
from culturesim.models.registry import parse_openai_spec
from culturesim.models.vllm_launch import launch_plan, parse_vllm_spec, vllm_python
from culturesim.models.vllm_server import cause_from_log, exit_status
from tests.processes import descendants


def test_spec_options_split_into_server_flags_launch_settings_and_client_settings(
    tmp_path: Path,
) -> None:
    parsed = parse_vllm_spec(
        f"vllm:{tmp_path}?max_model_len=4096&tensor_parallel=2&gpu_memory=0.8"
        "&prefix_caching=off&python=/opt/v/bin/python&startup_timeout=60&concurrency=8&retries=2"
    )
    assert parsed.model == str(tmp_path.resolve())
    assert parsed.served_name == tmp_path.name
    assert parsed.model_id == f"vllm:{tmp_path.name}", "no port in the id: resumable records"
    assert parsed.server == {
        "max_model_len": 4096,
        "tensor_parallel": 2,
        "gpu_memory": 0.8,
        "prefix_caching": False,
    }
    assert parsed.launch == {"python": "/opt/v/bin/python", "startup_timeout": 60.0}
    assert parsed.client == {"max_concurrency": 8, "max_retries": 2}
    hub = parse_vllm_spec("vllm:meta-llama/Llama-3.1-8B-Instruct")
    assert hub.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert hub.served_name == "Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("vllm:", "names no model"),
        ("vllm:x?tp=2", "unknown option 'tp=2'"),
        ("vllm:x?max_model_len=long", "max_model_len='long' is not a int"),
        ("vllm:x?prefix_caching=maybe", "prefix_caching='maybe' is not a bool"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ModelError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_vllm_spec(spec)


def test_openai_specs_take_seeds_false() -> None:
    _, _, options = parse_openai_spec("openai:m@http://h/v1?seeds=false&concurrency=4")
    assert options == {"send_seeds": False, "max_concurrency": 4}


def _plan_on(build: str, monkeypatch: pytest.MonkeyPatch, spec: str) -> vllm_launch.LaunchPlan:
    monkeypatch.setattr(vllm_launch, "vllm_python", lambda explicit=None: "/v/bin/python")
    monkeypatch.setattr(vllm_launch, "vllm_build", lambda python: build)
    return launch_plan(parse_vllm_spec(spec), 8123)


def test_cpu_build_turns_chunked_prefill_off_so_seeds_cannot_crash_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan = _plan_on("cpu", monkeypatch, f"vllm:{tmp_path}")
    arguments = list(plan.arguments)
    assert "--no-enable-chunked-prefill" in arguments
    assert arguments[arguments.index("--dtype") + 1] == "float32"
    assert arguments[arguments.index("--kv-cache-memory-bytes") + 1] == str(2 << 30)
    assert arguments[arguments.index("--port") + 1] == "8123"
    assert arguments[arguments.index("--block-size") + 1] == "32"
    assert plan.send_seeds and plan.reproducibility.startswith("seeded")

    chunked = _plan_on("cpu", monkeypatch, f"vllm:{tmp_path}?chunked_prefill=true")
    assert "--enable-chunked-prefill" in chunked.arguments
    assert not chunked.send_seeds and chunked.reproducibility.startswith("unseeded")
    with pytest.raises(ModelError, match="CPU Generator does not use offset"):
        _plan_on("cpu", monkeypatch, f"vllm:{tmp_path}?chunked_prefill=true&seeds=true")


def test_gpu_build_keeps_vllm_defaults_and_sends_seeds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan = _plan_on("gpu", monkeypatch, f"vllm:{tmp_path}?tensor_parallel=2&gpu_memory=0.85")
    arguments = list(plan.arguments)
    assert not any("chunked" in a or a in ("--dtype", "--kv-cache-memory-bytes") for a in arguments)
    assert arguments[arguments.index("--tensor-parallel-size") + 1] == "2"
    assert arguments[arguments.index("--gpu-memory-utilization") + 1] == "0.85"
    assert plan.send_seeds


def test_a_missing_vllm_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CULTURESIM_VLLM_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(ModelError, match="make vllm") as caught:
        vllm_python()
    assert "CULTURESIM_VLLM_PYTHON" in str(caught.value)
    assert str(tmp_path / "nowhere" / "python") in str(caught.value)


LOG = textwrap.dedent(
    """\
    (APIServer pid=3064) INFO 12-05 12:10:52 [api_utils.py:286] non-default args: {'port': 8123}
    (Worker pid=3462) ERROR 12-05 12:15:14 [multiproc_executor.py:1063]     gen.set_offset(gen.get_offset() - 4)
    (Worker pid=3462) ERROR 12-05 12:15:14 [multiproc_executor.py:1063] RuntimeError: CPU Generator does not use offset
    (EngineCore pid=3448) ERROR 12-05 12:15:14 [core.py:1512] RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': 1}
    """
)


def test_the_log_gives_the_root_cause_not_the_generic_wrapper() -> None:
    assert cause_from_log(LOG) == "RuntimeError: CPU Generator does not use offset"
    generic_only = LOG.splitlines()[-1]
    assert cause_from_log(generic_only).startswith("RuntimeError: Engine core initialization")
    assert cause_from_log("INFO all is well\n") is None


def test_exit_statuses_read_as_words() -> None:
    assert exit_status(137) == "killed by SIGKILL"
    assert exit_status(-15) == "killed by SIGTERM"
    assert exit_status(1) == "exit status 1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_guard_stops_the_server_and_its_children_when_culturesim_is_killed(
    tmp_path: Path,
) -> None:
    """A parent killed with SIGKILL runs no cleanup: the guard sees its pipe close and stops
    the whole process group it started (a server and the engine process it forked)."""
    pids = tmp_path / "pids"
    server = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(300)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-m', 'culturesim.models.vllm_guard', '--',"
        f" sys.executable, '-c', {server!r}], stdin=subprocess.PIPE)\n"
        "time.sleep(300)\n"
    )
    culturesim = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 60
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = [int(p) for p in pids.read_text().split()]
    guard = [p for p in descendants(culturesim.pid) if p not in started]
    assert all(_alive(p) for p in started) and guard
    culturesim.send_signal(signal.SIGKILL)
    culturesim.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in [*started, *guard]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in [*started, *guard]), "no orphan outlives culturesim"


def test_the_guard_passes_on_how_the_server_ended() -> None:
    guard = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "culturesim.models.vllm_guard",
            "--",
            sys.executable,
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        ],
        stdin=subprocess.PIPE,  # held open: the guard is not told to stop
    )
    try:
        assert exit_status(guard.wait(timeout=60)) == "killed by SIGKILL"
    finally:
        assert guard.stdin is not None
        guard.stdin.close()


def test_the_manifest_says_what_reproducibility_each_model_gives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from culturesim.models.registry import reproducibility
    from culturesim.store import RunStore

    monkeypatch.setattr(vllm_launch, "vllm_python", lambda explicit=None: "/v/bin/python")
    monkeypatch.setattr(vllm_launch, "vllm_build", lambda python: "cpu")
    assert reproducibility(f"vllm:{tmp_path}").startswith("vLLM, seeded")
    assert "unseeded" in reproducibility(f"vllm:{tmp_path}?chunked_prefill=true")
    assert "sent no seeds" in reproducibility("openai:m@http://h/v1?seeds=false")
    assert reproducibility("smollm2").startswith("in-process")
    notes = {"reproducibility": {"actor": "vllm:x: seeded"}}
    RunStore.open(tmp_path / "run", {"a": 1}, notes=notes)
    assert RunStore(tmp_path / "run").manifest()["reproducibility"] == notes["reproducibility"]
    RunStore.open(tmp_path / "run", {"a": 1}, notes={"reproducibility": {}})  # not compared

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


# ------------------------------------------- the server's lifetime, with a stand-in for vLLM

FAKE_API_SERVER = textwrap.dedent(
    """\
    '''A stand-in for vLLM's API server: the same module path and flags, no engine.'''
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = int(sys.argv[sys.argv.index("--port") + 1])
    open(os.environ["FAKE_VLLM_PIDFILE"], "w").write(str(os.getpid()))
    if os.environ["FAKE_VLLM_MODE"] == "silent":  # starts, never answers /health
        time.sleep(600)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200 if self.path == "/health" else 404, {})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/chat/completions":
                return self._send(404, {"detail": "Not Found"})
            open(os.environ["FAKE_VLLM_PIDFILE"] + ".asked", "w").write("asked")
            if os.environ["FAKE_VLLM_MODE"] == "hang":  # a request still in flight at Ctrl-C
                time.sleep(600)
            message = {"role": "assistant", "content": "Paris"}
            self._send(200, {
                "id": "x", "object": "chat.completion", "created": 0, "model": "tiny",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            })

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


CHAT = [sys.executable, "-m", "culturesim.cli", "chat", "--model", "vllm:tiny", "Capital?"]


def _fake_vllm(tmp_path: Path, mode: str) -> tuple[dict[str, str], Path]:
    """An environment in which `python -m vllm.entrypoints.openai.api_server` is the stand-in."""
    root = tmp_path / "fake"
    package = root / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (root / "vllm", root / "vllm" / "entrypoints", package):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_API_SERVER)
    pidfile = tmp_path / "server.pid"
    env = {
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        "FAKE_VLLM_MODE": mode,
        "FAKE_VLLM_PIDFILE": str(pidfile),
        "CULTURESIM_CACHE": str(tmp_path / "cache"),
        "CULTURESIM_VLLM_PYTHON": sys.executable,
    }
    return env, pidfile


def _wait_for(path: Path, seconds: float = 120) -> None:
    """Wait for a file a child writes; the limit only ends a hung test, it times nothing."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists() and path.read_text(), f"{path.name} was never written"


def _gone(pid: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_a_server_that_never_answers_health_is_stopped_and_the_timeout_says_what_to_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from culturesim.models.vllm_server import VLLMServer

    env, pidfile = _fake_vllm(tmp_path, "silent")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(vllm_launch, "_IMPORTABLE", {})
    # The first health check waits until the stand-in runs, so the timeout always finds a
    # running server to stop, however slowly a busy machine starts it.
    real_healthy = VLLMServer.healthy

    def healthy_once_running(self: VLLMServer) -> bool:
        _wait_for(pidfile)
        return real_healthy(self)

    monkeypatch.setattr(VLLMServer, "healthy", healthy_once_running)
    server = VLLMServer(parse_vllm_spec("vllm:tiny?startup_timeout=2"), log_dir=tmp_path / "logs")
    with pytest.raises(ModelError) as caught:
        server.start()
    message = str(caught.value)
    assert f"did not answer {server.url}/health within 2 s" in message
    assert "startup_timeout=SECONDS" in message and str(server.log_path) in message
    assert _gone(int(pidfile.read_text())), "a server that timed out is not left running"
    assert server.log_path.read_text().startswith(f"$ {sys.executable} -m {vllm_launch.API_MODULE}")


def test_the_server_is_stopped_when_the_command_ends(tmp_path: Path) -> None:
    env, pidfile = _fake_vllm(tmp_path, "serve")
    done = subprocess.run(
        CHAT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("Paris")
    assert "vLLM serves tiny at http://127.0.0.1:" in done.stderr
    assert _gone(int(pidfile.read_text())), "the server outlived the command"


def test_ctrl_c_stops_the_server_with_a_request_in_flight(tmp_path: Path) -> None:
    env, pidfile = _fake_vllm(tmp_path, "hang")
    process = subprocess.Popen(
        CHAT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a background job inherits SIGINT as ignored; a terminal's Ctrl-C finds the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(Path(f"{pidfile}.asked"))
    server_pid = int(pidfile.read_text())
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert _gone(server_pid), f"the server outlived Ctrl-C: {stderr}"

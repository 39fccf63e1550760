"""`vllm:MODEL[?options]`: a vLLM server that culturesim starts, watches and stops itself.

vLLM is the engine users run culturesim on, but it pins its own torch and transformers, so it
lives in a virtual environment of its own (`make vllm` builds `.venv-vllm`). This module starts
its OpenAI-compatible server from that environment (the command line `vllm_launch` plans) as a
child process on a free port, waits for it to report healthy, keeps its log in the run
directory, and stops it (with the engine processes it forks) when the model is closed, when
culturesim exits, on Ctrl-C, and, through `vllm_guard`, when culturesim is killed outright.
Requests then go through the ordinary OpenAI-compatible backend, which scores exactly with the
server's own tokenizer.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from culturesim.models.base import (
    GREEDY,
    Completion,
    EngineDied,
    LanguageModel,
    ModelError,
    Params,
    Prompt,
)
from culturesim.models.vllm_launch import (
    API_MODULE,
    DEFAULT_CONCURRENCY,
    STARTUP_TIMEOUT_S,
    VLLMSpec,
    launch_plan,
)
from culturesim.paths import cache_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$")
_LOG_PREFIX = re.compile(
    r"^\([^)]*\)\s+(?:ERROR|WARNING|INFO|DEBUG|CRITICAL)\s+\S+\s+\S+\s+\[[^]]*\]\s*"
)
_GENERIC = ("See root cause above", "See stack trace", "Engine core initialization failed")


def cause_from_log(text: str) -> str | None:
    """The first specific error a vLLM log reports: its root cause, not the generic wrappers."""
    generic = None
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        found = _ERROR_LINE.match(line)
        if not found:
            continue
        if any(marker in line for marker in _GENERIC):
            generic = generic or line
            continue
        return line
    return generic


def exit_status(code: int | None) -> str:
    """A process's exit status in words (the guard reports a kill by signal N as 128 + N)."""
    if code is None:
        return "still running but not answering /health"
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        return f"killed by {signal.Signals(code - 128).name}"
    if code < 0 and -code in signal.Signals._value2member_map_:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


@dataclass
class EngineCounters:
    """vLLM's own token counters (its /metrics), in the shape the run's stage log reads."""

    tokens_read: int = 0
    tokens_reused: int = 0
    generated: int = 0


class VLLMServer:
    """One vLLM OpenAI-compatible server process, from start to stop."""

    def __init__(self, parsed: VLLMSpec, log_dir: Path | None = None) -> None:
        self.parsed = parsed
        self.port = int(parsed.launch.get("port") or free_port())
        self.plan = launch_plan(parsed, self.port)
        folder = log_dir or cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = folder / f"vllm-{parsed.served_name}-{stamp}-{os.getpid()}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._died: EngineDied | None = None
        self._last_counters = EngineCounters()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The guard's process id (vLLM's API server is its child, in its own group)."""
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        return [self.plan.python, "-m", API_MODULE, *self.plan.arguments]

    def start(self, timeout_s: float | None = None) -> None:
        """Start the server and wait until it answers /health; a failure says why, from its log."""
        timeout_s = timeout_s or float(self.parsed.launch.get("startup_timeout", STARTUP_TIMEOUT_S))
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "VLLM_NO_USAGE_STATS": "1"}
        environment.setdefault("HF_HUB_OFFLINE", "1")
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(self.command()) + "\n").encode())
            log.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "culturesim.models.vllm_guard", "--", *self.command()],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        _RUNNING.add(self)
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise ModelError(
                    f"vLLM exited while starting ({exit_status(code)}): {self.cause()}. "
                    f"Its log: {self.log_path}"
                )
            if self.healthy():
                return
            time.sleep(1.0)
        raise ModelError(
            f"vLLM did not answer {self.url}/health within {timeout_s:.0f} s "
            f"(last error in its log: {self.cause()}). Its log: {self.log_path}. A large model "
            "on a slow disk may need more: add startup_timeout=SECONDS to the spec."
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def cause(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "its log could not be read"
        return cause_from_log(text) or "no error line in its log"

    def check_alive(self) -> None:
        """Raise EngineDied, with the log's cause, when the server has stopped for good.

        Called when a request fails in a way that could be transient: a server that is only
        slow or busy answers /health, a dead one does not (vLLM's API server exits when its
        engine dies; a shutdown in progress is waited out for a few seconds).
        """
        with self._lock:
            if self._died is not None:
                raise self._died
            process = self._process
            gone = process is None or process.poll() is not None
            if not gone and not self.healthy():
                for _ in range(20):
                    if process is None or process.poll() is not None or self.healthy():
                        break
                    time.sleep(0.5)
                gone = process is None or process.poll() is not None or not self.healthy()
            if gone:
                status = process.returncode if process is not None else None
                self._died = EngineDied(
                    f"the vLLM engine serving {self.parsed.served_name} has stopped "
                    f"({exit_status(status)}): {self.cause()}. Its log: {self.log_path}. "
                    "Records written so far are kept; run the same command again to resume."
                )
                raise self._died

    def counters(self) -> EngineCounters:
        """Prompt tokens read and reused from the prefix cache, and tokens generated."""
        if self._died is not None or self._process is None:
            return self._last_counters
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        except httpx.HTTPError:
            return self._last_counters
        totals: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            metric = name.split("{", 1)[0]
            if metric in (
                "vllm:prompt_tokens_total",
                "vllm:prefix_cache_hits_total",
                "vllm:generation_tokens_total",
            ):
                totals[metric] = totals.get(metric, 0.0) + float(value)
        self._last_counters = EngineCounters(
            int(totals.get("vllm:prompt_tokens_total", 0)),
            int(totals.get("vllm:prefix_cache_hits_total", 0)),
            int(totals.get("vllm:generation_tokens_total", 0)),
        )
        return self._last_counters

    def stop(self) -> None:
        """Stop the server and its engine processes; safe to call more than once."""
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the guard stops vLLM's process group
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


_RUNNING: set[VLLMServer] = set()


@atexit.register
def _stop_all() -> None:
    """Servers still running when culturesim exits (normally, or after Ctrl-C) are stopped."""
    for server in list(_RUNNING):
        server.stop()


class PrefixStats:
    """The run's stage log reads `prefix_cache.stats.tokens_read / tokens_reused` from a model;
    a started vLLM answers with its engine's own counters."""

    def __init__(self, server: VLLMServer) -> None:
        self._server = server

    @property
    def stats(self) -> EngineCounters:
        return self._server.counters()


class VLLMModel:
    """A model served by a vLLM server that this object started and owns.

    `.inner` is the OpenAI-compatible client (behind its retry wrapper); this layer adds the
    server's lifetime, a model id that does not depend on the port, and the engine's counters.
    """

    def __init__(self, parsed: VLLMSpec, *, log_dir: Path | None = None) -> None:
        from rich.console import Console

        from culturesim.models.openai_backend import OpenAIModel
        from culturesim.models.retry import RetryingModel

        self.server = VLLMServer(parsed, log_dir)
        console = Console(stderr=True)
        with console.status(
            f"starting vLLM for {parsed.served_name} on port {self.server.port} "
            f"(log: {self.server.log_path})"
        ):
            self.server.start()
        console.print(
            f"vLLM serves {parsed.served_name} at {self.server.url} ({self.server.plan.build} "
            f"build; {self.server.plan.reproducibility.split(':')[0]}); log: {self.server.log_path}"
        )
        # vLLM batches whatever is in flight, so the client keeps many requests open.
        options = {"max_concurrency": DEFAULT_CONCURRENCY, **parsed.client}
        retrying = {k: options.pop(k) for k in ("max_retries", "backoff_s") if k in options}
        client = OpenAIModel(
            parsed.served_name,
            f"{self.server.url}/v1",
            model_id=parsed.model_id,
            send_seeds=self.server.plan.send_seeds,
            liveness=self.server.check_alive,
            **options,
        )
        self.inner: LanguageModel = RetryingModel(client, where=self.server.url, **retrying)
        self.prefix_cache = PrefixStats(self.server)
        self._model_id = parsed.model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def reproducibility(self) -> str:
        return self.server.plan.reproducibility

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        return self.inner.generate(prompts, params)

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        return self.inner.score(prompts, candidates)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        try:
            if callable(close):
                close()
        finally:
            self.server.stop()

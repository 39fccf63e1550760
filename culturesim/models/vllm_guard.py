"""Keeps a vLLM server from outliving the culturesim process that started it.

vLLM runs in its own virtual environment (it pins its own torch and transformers), so culturesim
starts it as a child process. A child outlives a parent that is killed outright (SIGKILL, an
out-of-memory kill), and a vLLM server left behind holds its memory and port. This small guard
sits between the two: culturesim holds the write end of the guard's stdin, and whenever that
pipe closes (a clean stop, or the parent's death by any means) the guard stops vLLM's whole
process group (the API server and the engine processes it forked). When vLLM exits by itself,
the guard exits with its status, so the parent sees the engine's death as the guard's.

Run as `python -m culturesim.models.vllm_guard -- COMMAND...`; it imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 15.0


def stop_group(child: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if child.poll() is not None and not _group_alive(child.pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python -m culturesim.models.vllm_guard -- COMMAND...", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv[1:], start_new_session=True, stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if not stopping.is_set():
            stopping.set()
            stop_group(child)

    def watch_parent() -> None:
        # Raw reads of fd 0 until EOF (the parent closed the pipe or died). Not sys.stdin: a
        # daemon thread blocked in a buffered read aborts the interpreter at exit.
        while os.read(0, 4096):
            pass
        stop()

    threading.Thread(target=watch_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = child.wait()
    stop()  # the API server is gone; its engine processes go with it
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells say


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # the watcher thread may still be blocked in its read

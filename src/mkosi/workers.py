"""Forked worker processes for CPU- or copy-bound work inside mkosi (hashing, copying): not external
commands, so not :func:`mkosi.run.run`.

fork() copies only the calling thread; locks other threads hold stay locked in the child. Callers check
:func:`can_fork` and do the work in-process when it is false.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable


def can_fork() -> bool:
    """Whether forking is safe: this process has no other thread."""
    return threading.active_count() == 1


def start(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child and return its pid; the child exits 0 when ``work`` returned."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves with os._exit, skipping atexit and buffers
        status = 1
        try:
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


def wait(pid: int) -> int:
    """Wait for a worker; its wait status (0: success)."""
    return os.waitpid(pid, 0)[1]


def stop(pid: int) -> None:
    """Kill and reap a worker that may still run (after an error or an interruption)."""
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

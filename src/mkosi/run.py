"""The one door to the outside: every external program runs through :func:`run`."""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from mkosi import log
from mkosi.errors import MkosiError

CompletedProcess = subprocess.CompletedProcess
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL

Arg = str | Path


def _tee(stream: IO[bytes], keep: collections.deque[str], echo: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        keep.append(line)
        if echo:
            sys.stderr.write(line + "\n")


def run(
    cmd: Sequence[Arg],
    *,
    check: bool = True,
    input: bytes | str | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    sandbox: Sequence[Arg] = (),
    echo_stderr: bool | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` (inside ``sandbox``, a command prefix from :mod:`mkosi.sandbox`).

    stderr is kept (last lines) for the error message; it is echoed live with --debug or ``echo_stderr``.
    On failure a :class:`MkosiError` names the command and shows its last stderr lines.
    """
    argv = [os.fspath(a) for a in (*sandbox, *cmd)]
    if env is None:
        environ = dict(os.environ)
    else:
        environ = dict(env)
    if extra_env:
        environ.update(extra_env)
    log.debug("+ " + shlex.join(argv))

    echo = log.debug_enabled() if echo_stderr is None else echo_stderr
    keep: collections.deque[str] = collections.deque(maxlen=15)
    data = input.encode() if isinstance(input, str) else input
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if data is not None else stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=environ,
            cwd=cwd,
        )
    except FileNotFoundError as e:
        raise MkosiError(f"{what or argv[0]}: command not found: {e.filename or argv[0]}") from e
    except PermissionError as e:
        raise MkosiError(f"{what or argv[0]}: cannot execute {argv[0]}: {e.strerror}") from e

    assert proc.stderr is not None
    # Our thread owns stderr; hide it from communicate(), which would otherwise read it too.
    errpipe, proc.stderr = proc.stderr, None
    reader = threading.Thread(target=_tee, args=(errpipe, keep, echo), daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(data)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    errpipe.close()
    result: subprocess.CompletedProcess[bytes] = subprocess.CompletedProcess(
        argv, proc.returncode, out, "\n".join(keep).encode()
    )
    if check and proc.returncode != 0:
        tail = "; ".join(line.strip() for line in list(keep)[-3:] if line.strip())
        name = what or shlex.join(argv[len(sandbox) :][:3])
        msg = f"{name} failed with exit code {proc.returncode}"
        if tail:
            msg += f": {tail}"
        raise MkosiError(msg)
    return result


def capture(cmd: Sequence[Arg], **kwargs: Any) -> str:
    """Run and return stdout as text."""
    return run(cmd, stdout=subprocess.PIPE, **kwargs).stdout.decode()


def which(name: str) -> Path | None:
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None

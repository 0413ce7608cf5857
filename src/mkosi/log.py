"""Logging: one-line messages, step headers with durations, progress for long work."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator

LOG = logging.getLogger("mkosi")

_state = {"debug": False, "timing": False}
_timings: list[tuple[str, float]] = []


def _color(code: str, text: str) -> str:
    if os.environ.get("NO_COLOR") or not sys.stderr.isatty():
        return text
    return f"\033[{code}m{text}\033[0m"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return _color("31;1", f"‣ {msg}")
        if record.levelno >= logging.WARNING:
            return _color("33;1", f"‣ {msg}")
        if record.levelno <= logging.DEBUG:
            return _color("2", f"‣ {msg}")
        return f"‣ {msg}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests and pagers replace it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup(debug: bool = False, timing: bool = False) -> None:
    _state["debug"] = debug
    _state["timing"] = timing
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(logging.DEBUG if debug else logging.INFO)
    LOG.propagate = False


def debug_enabled() -> bool:
    return _state["debug"]


def warn(msg: str) -> None:
    LOG.warning(msg)


def info(msg: str) -> None:
    LOG.info(msg)


def debug(msg: str) -> None:
    LOG.debug(msg)


def error(msg: str) -> None:
    LOG.error(msg)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """A step header; its duration is recorded for the end-of-build summary."""
    LOG.info(_color("1", f"{name}"))
    start = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        _timings.append((name, elapsed))
        if _state["timing"]:
            LOG.info(_color("2", f"  {name} took {elapsed:.2f}s"))


def timings() -> list[tuple[str, float]]:
    return list(_timings)


def progress(text: str) -> None:
    """A progress line that overwrites itself on a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K  {text}")
        sys.stderr.flush()
    else:
        LOG.debug(text)


def progress_done() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

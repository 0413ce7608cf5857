"""The syntax of one configuration file: sections, assignments, continuation lines and comments.

The result is a list of :class:`Entry` items that remember the file and line they came from. An entry
with an empty key marks the end of a section (``[Match]`` blocks are evaluated section by section).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterator
from pathlib import Path

from mkosi.errors import MkosiError


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a value came from: a file and line, or the command line."""

    path: Path | None
    line: int = 0
    what: str = ""

    def __str__(self) -> str:
        if self.path is None:
            return self.what or "command line"
        return f"{self.path}:{self.line}" if self.line else str(self.path)


@dataclasses.dataclass(frozen=True)
class Entry:
    section: str
    key: str
    value: str
    origin: Origin

    @property
    def is_section_end(self) -> bool:
        return not self.key and not self.value


class SyntaxProblem(MkosiError):
    pass


def read_entries(path: Path, text: str | None = None) -> list[Entry]:
    """Parse a file into entries. Raises :class:`SyntaxProblem` naming the file and line."""
    if text is None:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise SyntaxProblem(f"{path}: not a text file") from None
        except OSError as e:
            raise SyntaxProblem(f"{path}: cannot read: {e.strerror}") from None
    return list(_entries(path, text))


def _entries(path: Path, text: str) -> Iterator[Entry]:
    section: str | None = None
    key: str | None = None
    value: str | None = None
    key_line = 0
    section_line = 0

    def problem(line_no: int, message: str) -> SyntaxProblem:
        return SyntaxProblem(f"{path}:{line_no}: {message}")

    for number, raw in enumerate(textwrap.dedent(text).splitlines(), start=1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue

        # An indented line continues the value of the assignment before it.
        if section and key and value is not None and line[0].isspace():
            value = f"{value}\n{line.strip()}"
            continue

        if section and key and value is not None:
            yield Entry(section, key, value, Origin(path, key_line))
            key = value = None

        line = line.strip()
        if line.startswith("["):
            if not line.endswith("]"):
                raise problem(number, f"{line} is not a valid section header")
            if section:
                yield Entry(section, "", "", Origin(path, section_line))
            section = line[1:-1].strip()
            section_line = number
            if not section:
                raise problem(number, "section name cannot be empty")
            continue

        if not section:
            raise problem(number, f"setting {line} is outside of any section")

        name, eq, rest = line.partition("=")
        if not eq:
            raise problem(number, f"{name} must be followed by '='")
        if not name.strip():
            raise problem(number, f"missing setting name before '=' in {line}")
        key, value, key_line = name.strip(), rest.strip(), number

    if section and key and value is not None:
        yield Entry(section, key, value, Origin(path, key_line))
    if section:
        yield Entry(section, "", "", Origin(path, section_line))

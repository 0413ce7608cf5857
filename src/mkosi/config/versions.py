"""Version ordering of the UAPI Version Format Specification (systemd's ``strverscmp_improved``)."""

from __future__ import annotations

import functools
import string

_VALID = frozenset(string.ascii_letters + string.digits + "~-^.")


def _strip_invalid(s: str, i: int) -> int:
    while i < len(s) and s[i] not in _VALID:
        i += 1
    return i


def _run(s: str, i: int, chars: str) -> int:
    j = i
    while j < len(s) and s[j] in chars:
        j += 1
    return j


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b``."""
    i = j = 0
    while True:
        i, j = _strip_invalid(a, i), _strip_invalid(b, j)
        ca = a[i] if i < len(a) else ""
        cb = b[j] if j < len(b) else ""
        # '~' sorts before everything, even the end of the string.
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            ca = a[i] if i < len(a) else ""
            cb = b[j] if j < len(b) else ""
        # When one string has ended, the longer one is newer.
        if not ca or not cb:
            return (ca > cb) - (ca < cb)
        # '-', '^' and '.' sort before anything else that is left.
        for sep in "-^.":
            if ca == sep or cb == sep:
                if ca != sep:
                    return 1
                if cb != sep:
                    return -1
                break
        else:
            sep = ""
        if sep:
            i, j = i + 1, j + 1
            continue
        if ca in string.digits or cb in string.digits:
            # Numeric components: an empty one (a letter here) sorts before any number.
            i0 = _run(a, i, "0")
            j0 = _run(b, j, "0")
            ie = _run(a, i0, string.digits)
            je = _run(b, j0, string.digits)
            na, nb = a[i0:ie], b[j0:je]
            if len(na) != len(nb):
                return -1 if len(na) < len(nb) else 1
            if na != nb:
                return -1 if na < nb else 1
            i, j = ie, je
            continue
        ie = _run(a, i, string.ascii_letters)
        je = _run(b, j, string.ascii_letters)
        wa, wb = a[i:ie], b[j:je]
        n = min(len(wa), len(wb))
        if wa[:n] != wb[:n]:
            return -1 if wa[:n] < wb[:n] else 1
        if len(wa) != len(wb):
            return -1 if len(wa) < len(wb) else 1
        i, j = ie, je


def _tokens(s: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c in string.digits:
            j = _run(s, i, string.digits)
            out.append(str(int(s[i:j])))
        elif c in string.ascii_letters:
            j = _run(s, i, string.ascii_letters)
            out.append(s[i:j])
        else:
            j = i + 1
            if c in _VALID:
                out.append(c)
        i = j
    return out


@functools.total_ordering
class GenericVersion:
    """A version string that compares as the specification says."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GenericVersion({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, GenericVersion)):
            return compare_versions(self.text, str(other)) == 0
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, (str, GenericVersion)):
            return compare_versions(self.text, str(other)) < 0
        return NotImplemented

    def __hash__(self) -> int:
        # Versions that compare equal may be spelled differently ("1.01" and "1.1"): hash their tokens.
        return hash(tuple(_tokens(self.text)))

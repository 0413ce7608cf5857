"""The one error type users see. Only ``__main__`` prints it."""

from __future__ import annotations


class MkosiError(Exception):
    """A problem the user can act on: printed as one line, never with a traceback (unless --debug)."""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigErrors(MkosiError):
    """Several configuration errors found in one run, reported together."""

    def __init__(self, errors: list[MkosiError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.message for e in errors))


def die(message: str, hint: str | None = None) -> MkosiError:
    """Build an error to raise: ``raise die("...")`` keeps call sites short and typed."""
    return MkosiError(message, hint)

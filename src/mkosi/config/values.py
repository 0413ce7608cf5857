"""Value kinds: how the text of one assignment becomes a typed value, and how that value is shown.

Every setting in the table names one kind. A kind answers four questions:

* ``unset()``: the value when nothing was assigned and the setting has no default of its own;
* ``parse(text, old)``: the new value after ``Name=text`` given the value so far (``""`` resets);
* ``matches(pattern, value)``: whether a ``[Match]`` condition on this setting holds;
* ``to_json(value)`` / ``to_text(value)``: the JSON encoding (as mkosi's ``--json summary``) and the
  human summary;
* ``python_type()``: the Python type of a parsed value (``str``, ``list[Path]``, an enum, …), from which the
  typed ``Config`` is generated (see :mod:`mkosi.config.generate`).

Errors are raised as :class:`ValueProblem` with a message that says what is accepted; the loader adds the
file, line and setting name.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import functools
import math
import operator
import os
import shlex
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mkosi.config.versions import GenericVersion


class ValueProblem(Exception):
    """A value that does not parse. The message says what is accepted."""


# ---------------------------------------------------------------------------------------------------------
# Small parsing helpers shared by several kinds.

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t", "on", "always"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f", "off", "never"})


def try_boolean(text: str) -> bool | None:
    low = text.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    return None


def parse_boolean(text: str) -> bool:
    value = try_boolean(text)
    if value is None:
        raise ValueProblem(f"{text!r} is not a boolean (use yes/no, true/false, on/off, 1/0)")
    return value


def parse_size(text: str) -> int:
    """Sizes with an optional K, M or G suffix (powers of 1024), rounded up to 4 KiB."""
    factor = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    try:
        result = math.ceil(float(number) * factor)
    except ValueError:
        raise ValueProblem(f"{text!r} is not a size (a number with an optional K, M or G suffix)") from None
    if result <= 0:
        raise ValueProblem(f"size {text!r} must be positive")
    return result + (-result % 4096)


def is_filename(text: str) -> bool:
    text = text.strip()
    return text not in (".", "..") and "/" not in text


def split_words(text: str, delimiter: str | None, unescape: bool) -> list[str]:
    """Split a list assignment into items, the way every list setting does."""
    if unescape:
        lex = shlex.shlex(text, posix=True)
        lex.whitespace_split = True
        lex.whitespace = "\n" + (delimiter or "")
        lex.commenters = ""
        try:
            return list(lex)
        except ValueError as e:
            raise ValueProblem(f"cannot split {text!r}: {e}") from None
    if delimiter is None:
        return text.replace(",", " ").split()
    return text.replace(delimiter, "\n").split("\n")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PathRules:
    """How a path-valued item is checked and normalised."""

    required: bool = True
    resolve: bool = True
    expanduser: bool = True
    expandvars: bool = True
    secret: bool = False
    absolute: bool = False
    directory: bool = False
    constants: tuple[str, ...] = ()

    def parse(self, text: str) -> Path:
        try:
            return self._parse(text)
        except (OSError, ValueError) as e:
            if isinstance(e, ValueProblem):
                raise
            reason = getattr(e, "strerror", None) or e
            raise ValueProblem(f"{text[:80]!r} is not a usable path: {reason}") from None

    def _parse(self, text: str) -> Path:
        if text in self.constants:
            return Path(text)
        if self.expandvars:
            text = os.path.expandvars(text)
        path = Path(text)
        if self.expanduser:
            path = path.expanduser()
        if self.required:
            if not path.exists():
                raise ValueProblem(f"{text} does not exist")
            if self.directory and not path.is_dir():
                raise ValueProblem(f"{text} is not a directory")
        if self.absolute and not path.is_absolute():
            raise ValueProblem(f"{text} must be an absolute path")
        if self.resolve:
            path = path.resolve()
        if self.secret and path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o007:
                raise ValueProblem(
                    f"permissions {mode:04o} of {path} are too open: a secret must not be readable by others"
                )
        return path


# ---------------------------------------------------------------------------------------------------------
# Structured values that appear inside settings.


@dataclasses.dataclass(frozen=True)
class ConfigTree:
    """``SOURCE[:TARGET]`` as used by the tree settings."""

    source: Path
    target: Path | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" if self.target else str(self.source)


@dataclasses.dataclass(frozen=True)
class KeySource:
    type: str = "file"
    source: str = ""

    def __str__(self) -> str:
        return f"{self.type}:{self.source}" if self.source else self.type


@dataclasses.dataclass(frozen=True)
class Credential:
    name: str
    value: str | None = None
    path: Path | None = None


@dataclasses.dataclass(frozen=True)
class Drive:
    id: str
    size: int
    directory: Path | None
    options: str | None
    file_id: str
    flags: list[str]


@dataclasses.dataclass(frozen=True)
class UKIProfile:
    profile: dict[str, str]
    cmdline: list[str]
    sign_expected_pcr: bool


def capitalise(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


def json_value(value: Any) -> Any:
    """Encode a value the way mkosi's ``--json summary`` does."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, (Path, uuid.UUID, GenericVersion)):
        return str(value)
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {capitalise(f.name): json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# Types of values, as type forms (``str``, ``list[Path]``, ``str | None``) that the generator renders.

NoneType = type(None)


def returned_type(function: Callable[..., Any]) -> object:
    """The return annotation of a parser function, evaluated (``typing.Any`` when there is none)."""
    hints = typing.get_type_hints(function)
    return hints.get("return", Any)


def union_members(form: object) -> tuple[object, ...]:
    """``A | B | None`` → ``(A, B, NoneType)``; anything else → ``(form,)``."""
    if isinstance(form, types.UnionType) or typing.get_origin(form) is typing.Union:
        return typing.get_args(form)
    return (form,)


def without_none(form: object) -> object:
    """The type form without ``None`` (``str | None`` → ``str``)."""
    members = [m for m in union_members(form) if m is not NoneType and m is not None]
    if not members:
        raise TypeError(f"{form!r} has no type besides None")
    return functools.reduce(operator.or_, members)


def _parsed_type(function: Callable[..., Any], what: str) -> object:
    form = without_none(returned_type(function))
    if form is Any:
        raise TypeError(f"{what} {getattr(function, '__qualname__', function)!r} has no return annotation")
    return form


# ---------------------------------------------------------------------------------------------------------
# The kinds.


class Kind:
    """Base of all value kinds. Subclasses override what differs."""

    #: An explicit empty assignment leaves "nothing" rather than falling back to the default.
    nullable: bool = True
    #: Lists and dicts: CLI values are appended to file values.
    collection: bool = False
    #: Shown after the setting in ``--help``.
    metavar: str = "VALUE"

    def unset(self) -> Any:
        return None

    def parse(self, text: str, old: Any) -> Any:
        raise NotImplementedError

    def matchable(self) -> bool:
        return False

    def matches(self, pattern: str, value: Any) -> bool:
        raise ValueProblem("cannot be used in [Match]")

    def to_json(self, value: Any) -> Any:
        return json_value(value)

    def to_text(self, value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, enum.Enum):
            return str(value.value)
        return str(value)

    def python_type(self) -> object:
        """The type of a parsed value; never None (whether a setting may end up None depends on its default,
        see ``Setting.value_type``)."""
        raise NotImplementedError(f"{type(self).__name__} does not state the type of its values")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class String(Kind):
    nullable: bool = True
    globs: bool | None = None  # None: not matchable; False: exact match; True: fnmatch
    version_match: bool = False
    metavar: str = "STRING"
    validate: Callable[[str], None] | None = None

    def python_type(self) -> object:
        return str

    def parse(self, text: str, old: Any) -> Any:
        if text and self.validate:
            self.validate(text)
        return text or None

    def matchable(self) -> bool:
        return self.globs is not None or self.version_match

    def matches(self, pattern: str, value: Any) -> bool:
        if self.version_match:
            return match_version(pattern, str(value))
        if self.globs:
            return fnmatch.fnmatchcase(str(value), pattern)
        return bool(pattern == value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Filename(Kind):
    nullable: bool = True
    hint: str = "a file name without slashes"
    metavar: str = "NAME"

    def python_type(self) -> object:
        return str

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        if not is_filename(text):
            raise ValueProblem(f"{text!r} is not a valid file name ({self.hint})")
        return text


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Boolean(Kind):
    nullable: bool = False
    metavar: str = "BOOL"
    match_enabled: bool = False

    def unset(self) -> Any:
        return False

    def python_type(self) -> object:
        return bool

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        return parse_boolean(text)

    def matchable(self) -> bool:
        return self.match_enabled

    def matches(self, pattern: str, value: Any) -> bool:
        return bool(parse_boolean(pattern) == value)

    def to_text(self, value: Any) -> str:
        return "yes" if value else "no"


class Feature(enum.Enum):
    enabled = "enabled"
    disabled = "disabled"
    auto = "auto"


def parse_feature(text: str) -> Feature:
    try:
        return Feature(text)
    except ValueError:
        return Feature.enabled if parse_boolean(text) else Feature.disabled


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class FeatureKind(Kind):
    nullable: bool = False
    metavar: str = "FEATURE"
    match_enabled: bool = False

    def unset(self) -> Any:
        return Feature.auto

    def python_type(self) -> object:
        return Feature

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        try:
            return parse_feature(text)
        except ValueProblem:
            raise ValueProblem(f"{text!r} is not one of enabled, disabled, auto or a boolean") from None

    def matchable(self) -> bool:
        return self.match_enabled

    def matches(self, pattern: str, value: Any) -> bool:
        return bool(parse_feature(pattern) == value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Choice(Kind):
    """One member of an enum, by its value. Optionally also a boolean for ``yes``/``no`` members."""

    enum_type: type[enum.Enum] = Feature
    nullable: bool = False
    match_enabled: bool = False
    yes: Any = None
    no: Any = None
    aliases: tuple[tuple[str, str], ...] = ()
    metavar: str = "CHOICE"

    def choices(self) -> list[str]:
        return [str(m.value) for m in self.enum_type]

    def lookup(self, text: str) -> Any:
        for alias, target in self.aliases:
            if text == alias:
                text = target
        try:
            return self.enum_type(text)
        except ValueError:
            pass
        if self.yes is not None:
            b = try_boolean(text)
            if b is not None:
                return self.yes if b else self.no
        raise ValueProblem(f"{text!r} is not one of {', '.join(self.choices())}")

    def python_type(self) -> object:
        return self.enum_type

    def parse(self, text: str, old: Any) -> Any:
        return self.lookup(text) if text else None

    def matchable(self) -> bool:
        return self.match_enabled

    def matches(self, pattern: str, value: Any) -> bool:
        return bool(self.lookup(pattern) == value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Integer(Kind):
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    base: int = 10
    what: str = "an integer"
    metavar: str = "NUMBER"
    #: Text constants accepted besides numbers (e.g. VSockCID's ``auto``).
    constants: tuple[tuple[str, int], ...] = ()
    #: An empty text means "unset" (None) rather than "reset to default".
    empty_is_none: bool = True

    def python_type(self) -> object:
        return int

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        for name, number in self.constants:
            if text == name:
                return number
        try:
            value = int(text, self.base)
        except ValueError:
            raise ValueProblem(f"{text!r} is not {self.what}") from None
        if self.minimum is not None and value < self.minimum:
            raise ValueProblem(f"{text!r} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueProblem(f"{text!r} is above the maximum {self.maximum}")
        return value


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Size(Kind):
    nullable: bool = True
    metavar: str = "SIZE"

    def python_type(self) -> object:
        return int

    def parse(self, text: str, old: Any) -> Any:
        return parse_size(text) if text else None


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class UUIDKind(Kind):
    nullable: bool = False
    metavar: str = "UUID"

    def python_type(self) -> object:
        return uuid.UUID

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        if text == "random":
            return uuid.uuid4()
        try:
            return uuid.UUID(text)
        except ValueError:
            raise ValueProblem(f"{text!r} is not a UUID (or 'random')") from None


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PathKind(Kind):
    rules: PathRules = PathRules()
    metavar: str = "PATH"
    #: If the path does not exist it is kept as given (key files that may be created later, URIs, …).
    keep_missing: bool = False

    def python_type(self) -> object:
        return Path

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        try:
            missing = self.keep_missing and not Path(text).exists()
        except (OSError, ValueError):
            missing = False  # let the rules report it
        if missing:
            return Path(text)
        return self.rules.parse(text)

    def matchable(self) -> bool:
        return False


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SourceKind(Kind):
    """``file``, ``engine:NAME`` or ``provider:NAME`` for keys and certificates."""

    types: tuple[str, ...] = ("file", "engine", "provider")
    nullable: bool = False
    metavar: str = "SOURCE"

    def unset(self) -> Any:
        return KeySource()

    def python_type(self) -> object:
        return KeySource

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return KeySource()
        kind, _, source = text.partition(":")
        if kind not in self.types:
            raise ValueProblem(f"{text!r} is not a valid source (one of {', '.join(self.types)}[:NAME])")
        return KeySource(kind, source)


def _identity(text: str) -> str:
    return text


def _key_only(text: str) -> tuple[str, str]:
    return text, ""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ListKind(Kind):
    """A list: items split on whitespace/commas (or ``delimiter``), appended to earlier assignments.

    An empty assignment resets the list. ``item`` parses one item (raising :class:`ValueProblem`).
    """

    item: Callable[[str], Any] = _identity
    delimiter: str | None = None
    unescape: bool = False
    reset: bool = True
    sort_key: Callable[[Any], Any] | None = None
    globs: bool = False
    collection: bool = True
    metavar: str = "LIST"
    #: [Match] on a list: true when the parsed pattern is in the list (or both are empty).
    match_enabled: bool = False

    def unset(self) -> Any:
        return []

    def python_type(self) -> object:
        return types.GenericAlias(list, (_parsed_type(self.item, "list item parser"),))

    def parse(self, text: str, old: Any) -> Any:
        new = list(old) if old else []
        words = split_words(text, self.delimiter, self.unescape)
        if self.reset and words in ([], [""]):
            return None
        if self.globs:
            import glob as _glob

            words = [w for pattern in words for w in sorted(_glob.glob(pattern))]
        new += [self.item(w) for w in words if w]
        if self.sort_key:
            new.sort(key=self.sort_key)
        return new

    def matchable(self) -> bool:
        return self.match_enabled

    def matches(self, pattern: str, value: Any) -> bool:
        if not pattern:
            return len(value) == 0
        return self.item(pattern) in value

    def to_text(self, value: Any) -> str:
        return "\n".join(str(v) for v in value) if value else "none"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DictKind(Kind):
    """``KEY=VALUE`` items; later keys override earlier ones; an empty assignment resets."""

    item: Callable[[str], tuple[str, str]] = _key_only
    delimiter: str | None = None
    unescape: bool = False
    collection: bool = True
    metavar: str = "KEY=VALUE"
    match_enabled: bool = False

    def unset(self) -> Any:
        return {}

    def python_type(self) -> object:
        key, value = typing.get_args(_parsed_type(self.item, "dictionary item parser"))
        return types.GenericAlias(dict, (key, value))

    def parse(self, text: str, old: Any) -> Any:
        new = dict(old) if old else {}
        if self.unescape:
            words = split_words(text, self.delimiter, True)
            if not words:
                return None
        else:
            if self.delimiter:
                text = text.replace(self.delimiter, "\n")
            words = text.split("\n")
            if words == [""]:
                return None
        new.update(self.item(w) for w in words if w)
        return new

    def matchable(self) -> bool:
        return self.match_enabled

    def matches(self, pattern: str, value: Any) -> bool:
        key, sep, val = pattern.partition("=")
        if not sep:
            return key in value
        return bool(value.get(key) == val)

    def to_text(self, value: Any) -> str:
        return "\n".join(f"{k}={v}" for k, v in value.items()) if value else "none"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Custom(Kind):
    """A kind defined by plain functions, for the few settings with their own rules."""

    parse_fn: Callable[[str, Any], Any] = lambda text, old: text or None
    unset_fn: Callable[[], Any] = lambda: None
    nullable: bool = True
    collection: bool = False
    metavar: str = "VALUE"
    text_fn: Callable[[Any], str] | None = None

    def unset(self) -> Any:
        return self.unset_fn()

    def python_type(self) -> object:
        return _parsed_type(self.parse_fn, "parser")

    def parse(self, text: str, old: Any) -> Any:
        return self.parse_fn(text, old)

    def to_text(self, value: Any) -> str:
        if self.text_fn:
            return self.text_fn(value)
        return super().to_text(value)


# ---------------------------------------------------------------------------------------------------------
# Item parsers for lists.


def key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.strip(), value.strip()


def environment_item(text: str) -> tuple[str, str]:
    """``NAME=VALUE``, or ``NAME`` alone to take the value from mkosi's own environment."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    return key, (value if sep else os.environ.get(key, ""))


def path_item(rules: PathRules = PathRules()) -> Callable[[str], Path]:
    return rules.parse


def tree_item(required: bool = True, directory: bool = False, absolute: bool = True) -> Callable[[str], Any]:
    source_rules = PathRules(required=required, directory=directory)
    target_rules = PathRules(required=False, resolve=False, expanduser=False, absolute=absolute)

    def parse(text: str) -> ConfigTree:
        src, sep, tgt = text.partition(":")
        return ConfigTree(source_rules.parse(src), target_rules.parse(tgt) if sep else None)

    return parse


E = TypeVar("E", bound=enum.Enum)


def enum_item(enum_type: type[E]) -> Callable[[str], E]:
    def parse(text: str) -> E:
        try:
            return enum_type(text)
        except ValueError:
            choices = ", ".join(str(m.value) for m in enum_type)
            raise ValueProblem(f"{text!r} is not one of {choices}") from None

    # The concrete enum as the return annotation: Kind.python_type() reads it for the generated Config.
    parse.__annotations__["return"] = enum_type
    return parse


def filename_item(hint: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not is_filename(text):
            raise ValueProblem(f"{text!r} is not a valid name ({hint})")
        return text

    return parse


# ---------------------------------------------------------------------------------------------------------
# Version comparisons in [Match] (``>=13``, ``<=v255``, ``!=3``, plain equality).

_OPERATORS: Sequence[tuple[str, Callable[[Any, Any], bool]]] = (
    ("==", operator.eq),
    ("!=", operator.ne),
    ("<=", operator.le),
    (">=", operator.ge),
    (">", operator.gt),
    ("<", operator.lt),
)


def match_version(pattern: str, value: str) -> bool:
    for sigil, op in _OPERATORS:
        if pattern.startswith(sigil):
            return op(GenericVersion(value), GenericVersion(pattern[len(sigil) :]))
    return GenericVersion(value) == GenericVersion(pattern)

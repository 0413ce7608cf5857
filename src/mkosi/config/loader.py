"""Directory semantics: which files are read, in which order, and how their assignments combine.

One :class:`ParseState` collects the assignments of one image. Values given on the command line live in a
namespace of their own (``cli``) and always win; values from files live in ``config``; defaults are computed
lazily (``finalize``) because they may depend on other settings. This mirrors how mkosi resolves precedence:

* ``mkosi.local.conf`` / ``mkosi.local/`` are read first and then moved to the command-line namespace;
* default paths (``mkosi.extra/``, ``mkosi.key``, …) next to a ``mkosi.conf`` count as assignments made
  before that file;
* ``mkosi.conf``, then ``mkosi.conf.d/*`` (files ending in ``.conf`` and directories, sorted), then the
  enabled profiles from ``mkosi.profiles/``;
* ``Include=`` reads another file or directory at the point of the assignment, each path only once; a
  bare name like ``mkosi-initrd`` is one of the configurations that come with mkosi (``builtin.py``).

Every assignment remembers its file and line (``origins``), and every ``[Match]`` that did not apply is
recorded with the condition that failed (``match_notes``): ``summary --origins`` shows both.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkosi import log
from mkosi.config import specifiers
from mkosi.config.settings import BY_DEST, BY_NAME, BY_SPECIFIER, SECTIONS, SETTINGS, Scope, Setting
from mkosi.config.syntax import Entry, Origin, SyntaxProblem, read_entries
from mkosi.config.values import ValueProblem
from mkosi.errors import MkosiError
from mkosi.hostinfo import host_systemd_version

MATCH_SECTIONS = ("Match", "TriggerMatch")
ASSERT_SECTIONS = ("Assert", "TriggerAssert")
#: [Match] keys that are not settings.
SPECIAL_MATCHES = ("PathExists", "SystemdVersion", "HostArchitecture", "Image")


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@dataclasses.dataclass
class ParseState:
    """Everything known while reading the configuration of one image."""

    image: str
    directory: Path | None
    cli: dict[str, Any] = dataclasses.field(default_factory=dict)
    cli_reset: set[str] = dataclasses.field(default_factory=set)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    includes: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    files: list[Path] = dataclasses.field(default_factory=list)
    origins: dict[str, list[Origin]] = dataclasses.field(default_factory=dict)
    match_notes: list[str] = dataclasses.field(default_factory=list)
    errors: list[MkosiError] = dataclasses.field(default_factory=list)

    # -- values ---------------------------------------------------------------------------------------

    def prohibited(self, s: Setting) -> bool:
        if self.image == "tools" and not s.tools:
            return True
        if s.scope.main_only() and self.image != "main":
            return True
        return s.scope == Scope.universal and self.image not in ("main", "tools")

    def value(self, s: Setting) -> Any:
        """The value of ``s`` as things stand: command line first, then files, then the default."""
        dest = s.dest
        cli_value = self.cli.get(dest)
        if cli_value is not None:
            file_value = self.config.get(dest)
            if file_value is None or dest in self.cli_reset:
                return cli_value
            if isinstance(cli_value, list):
                return file_value + cli_value
            if isinstance(cli_value, dict):
                return file_value | cli_value
            return cli_value

        if dest not in self.cli and self.config.get(dest) is not None:
            return self.config[dest]

        if (dest in self.cli or dest in self.config) and s.kind.nullable:
            return s.kind.unset()

        if dest in self.defaults:
            return self.defaults[dest]

        if s.default_factory is not None:
            ns: dict[str, Any] = {"image": self.image, "directory": self.directory}
            for d in s.depends:
                ns[d] = self.value(BY_DEST[d])
            default = s.default_factory(ns)
        elif s.default is not None:
            default = copy.deepcopy(s.default)
        else:
            default = s.kind.unset()
        self.defaults[dest] = default
        return default

    def finalize(self) -> dict[str, Any]:
        ns = copy.deepcopy(self.config)
        for s in SETTINGS:
            ns[s.dest] = copy.deepcopy(self.value(s))
        return ns

    def assign(self, s: Setting, text: str, origin: Origin) -> None:
        try:
            self.config[s.dest] = s.kind.parse(text, self.config.get(s.dest))
        except ValueProblem as e:
            self.error(f"{origin}: {s.name}={_short(text)}: {e}")
            return
        self.origins.setdefault(s.dest, []).append(origin)

    def error(self, message: str) -> None:
        self.errors.append(MkosiError(message))

    # -- specifiers -------------------------------------------------------------------------------------

    def expand(self, text: str, path: Path) -> str:
        if "%" not in text:
            return text

        def setting_value(letter: str) -> tuple[str, Any] | None:
            s = BY_SPECIFIER.get(letter)
            if s is None:
                return None
            return s.name, self.value(s)

        def computed(depends: tuple[str, ...]) -> dict[str, Any] | str:
            ns: dict[str, Any] = {"image": self.image, "directory": self.directory or Path.cwd()}
            for d in depends:
                v = self.value(BY_DEST[d])
                if v is None:
                    return BY_DEST[d].name
                ns[d] = v
            return ns

        return specifiers.expand(text, path, setting_value, computed, log.warn)

    # -- [Match] and [Assert] ---------------------------------------------------------------------------

    def evaluate(self, entries: list[Entry], path: Path, asserts: bool) -> bool:
        """Whether the file's [Match] sections hold (or, with ``asserts``, check its [Assert] sections)."""
        sections = ASSERT_SECTIONS if asserts else MATCH_SECTIONS
        triggered: bool | None = None  # within a section: has a `|` condition held?
        any_trigger_section: bool | None = None  # across Trigger* sections: has one held?
        skip = False

        for entry in entries:
            if entry.section not in sections:
                continue
            if entry.is_section_end:
                if triggered is False:
                    if entry.section == "Assert":
                        self.error(f"{path}: no condition marked with '|' in [Assert] was satisfied")
                        return False
                    if entry.section == "Match":
                        self.match_notes.append(f"{path}: no '|' condition of [Match] held")
                        return False
                if entry.section in ("TriggerAssert", "TriggerMatch"):
                    any_trigger_section = bool(any_trigger_section) or triggered is not False
                triggered = None
                skip = False
                continue
            if skip:
                continue

            raw = entry.value
            trigger = raw.startswith("|")
            pattern = raw.removeprefix("|")
            negate = pattern.startswith("!")
            pattern = pattern.removeprefix("!")
            pattern = self.expand(pattern, path)

            try:
                result, actual = self.condition(entry.key, pattern, entry)
            except ValueProblem as e:
                self.error(f"{entry.origin}: {entry.key}={raw}: {e}")
                return False
            if negate:
                result = not result

            if not trigger and not result:
                if entry.section.startswith("Trigger"):
                    skip = True
                    triggered = False
                    continue
                if asserts:
                    self.error(
                        f"{entry.origin}: [Assert] {entry.key}={raw} is not satisfied (value: {actual})"
                    )
                    return False
                self.match_notes.append(
                    f"{entry.origin}: [{entry.section}] {entry.key}={raw} did not match (value: {actual})"
                )
                return False
            if trigger:
                triggered = bool(triggered) or result

        if any_trigger_section is False:
            if asserts:
                self.error(f"{path}: none of the [TriggerAssert] sections was satisfied")
                return False
            self.match_notes.append(f"{path}: none of the [TriggerMatch] sections matched")
        return any_trigger_section is not False

    def condition(self, key: str, pattern: str, entry: Entry) -> tuple[bool, str]:
        s = BY_NAME.get(key)
        if s is not None:
            if not s.matchable:
                raise ValueProblem(f"{key} cannot be used in [{entry.section}]")
            if s.scope == Scope.main and self.image != "main":
                raise ValueProblem(f"{key} can only be matched on in the main image")
            value = self.value(s)
            if value is None:
                return False, "unset"
            return s.kind.matches(pattern, value), s.kind.to_text(value).replace("\n", " ")
        if key == "PathExists":
            return bool(pattern) and Path(pattern).exists(), "missing"
        if key == "SystemdVersion":
            version = host_systemd_version()
            if not pattern or version is None:
                return False, str(version)
            from mkosi.config.values import match_version

            return match_version(pattern, version), version
        if key == "HostArchitecture":
            from mkosi.config.model import Architecture

            try:
                return Architecture(pattern) == Architecture.native(), Architecture.native().value
            except ValueError:
                raise ValueProblem(f"{pattern!r} is not an architecture") from None
        if key == "Image":
            return pattern == self.image, self.image
        raise ValueProblem(f"{key} cannot be used in [{entry.section}]")

    # -- files and directories --------------------------------------------------------------------------

    def read(self, path: Path) -> list[Entry] | None:
        try:
            return read_entries(path)
        except SyntaxProblem as e:
            self.errors.append(e)
            return None

    def parse_one(self, path: Path, *, profiles: bool = False, local: bool = False) -> bool:
        """Read a config file, or a directory (its mkosi.conf, default paths, mkosi.conf.d/, profiles)."""
        assert path.is_absolute()
        directory = path.is_dir()
        if directory:
            path = path / "mkosi.conf"

        entries: list[Entry] = []
        if path.exists():
            read = self.read(path)
            if read is None:
                return False
            entries = read
            if not self.evaluate(entries, path, asserts=False):
                return False
            self.evaluate(entries, path, asserts=True)

        if directory:
            if local:
                self.parse_local(path.parent)
            self.parse_default_paths()

        if path.exists():
            log.debug(f"Loading configuration file {path}")
            self.files.append(path)
            self.apply(entries, path)

        if directory and (dropins := path.parent / "mkosi.conf.d").exists():
            for p in sorted(dropins.iterdir()):
                p = p.absolute()
                if p.is_dir() or p.suffix == ".conf":
                    self.parse_path(p)

        if profiles:
            for profile in self.value(BY_DEST["profiles"]) or []:
                for p in (Path(profile), Path(f"{profile}.conf")):
                    p = Path.cwd() / "mkosi.profiles" / p
                    if p.exists():
                        self.parse_path(p)
        return True

    def parse_path(self, p: Path, *, profiles: bool = False, local: bool = False) -> bool:
        """Parse a file (relative paths resolve against the cwd) or a directory (entered)."""
        if p.is_dir():
            with chdir(p):
                return self.parse_one(Path.cwd(), profiles=profiles, local=local)
        return self.parse_one(p, profiles=profiles, local=local)

    def parse_local(self, directory: Path) -> None:
        candidates = [directory / "mkosi.local", directory / "mkosi.local.conf"]
        for local in [p for p in candidates if (p.is_dir() if p.name == "mkosi.local" else p.is_file())]:
            self.parse_path(local)
            # Local configuration overrides the other files but not the command line.
            for s in SETTINGS:
                if s.dest in self.config:
                    self.cli[s.dest] = self.value(s)
                    del self.config[s.dest]

    def parse_default_paths(self) -> None:
        for s in SETTINGS:
            if self.prohibited(s):
                continue
            for suffix in s.paths:
                candidate = Path(f"mkosi.{suffix}")
                if not (candidate.exists() or candidate.is_symlink()):
                    continue
                origin = Origin(candidate.absolute(), 0, "default path")
                if s.path_read_text:
                    text = self.read_default_text(candidate, s)
                    if text is None:
                        continue
                else:
                    text = os.fspath(candidate)
                self.assign(s, text, origin)
            for pattern in s.path_globs:
                base = Path(f"mkosi.{os.path.dirname(pattern)}")
                if not base.exists():
                    continue
                if not base.is_dir():
                    self.error(f"{base.absolute()}: should be a directory")
                    continue
                for p in sorted(base.glob(os.path.basename(pattern))):
                    self.assign(s, os.fspath(p.absolute()), Origin(p.absolute(), 0, "default path"))

    def read_default_text(self, path: Path, s: Setting) -> str | None:
        if s.path_secret:
            mode = path.stat().st_mode & 0o777
            if mode & 0o007:
                self.error(f"{path.absolute()}: permissions {mode:04o} are too open for a secret")
                return None
        if os.access(path, os.X_OK) and stat.S_ISREG(path.stat().st_mode):
            from mkosi.run import capture

            try:
                return capture([path.absolute()]).rstrip("\n")
            except MkosiError as e:
                self.error(f"{path.absolute()}: {e}")
                return None
        text = path.read_text()
        if text.startswith("#!/"):
            self.error(f"{path.absolute()}: starts with a shebang but is not executable")
            return None
        return text.rstrip("\n")

    def apply(self, entries: list[Entry], path: Path) -> None:
        for entry in entries:
            if entry.is_section_end or entry.section not in SECTIONS:
                continue
            name = entry.key.removeprefix("@")
            if name != entry.key:
                log.warn(f"{entry.origin}: the '@' prefix is deprecated, use {name} instead of {entry.key}")
            s = BY_NAME.get(name)
            if s is None:
                log.warn(f"{entry.origin}: unknown setting {name}")
                continue
            if self.prohibited(s):
                self.error(f"{entry.origin}: {name} cannot be configured in the {self.image} image")
                continue
            if entry.section != s.section:
                log.warn(
                    f"{entry.origin}: {name} should be configured in [{s.section}], not [{entry.section}]"
                )
            if name != s.name:
                log.warn(f"{entry.origin}: {name} is deprecated, use {s.name} instead")
            self.assign(s, self.expand(entry.value, path), entry.origin)
            if s.name == "Include":
                self.parse_new_includes()

    def parse_new_includes(self) -> None:
        from mkosi.config.builtin import resolve_include

        for p in [*(self.cli.get("include") or []), *(self.config.get("include") or [])]:
            # Built-in configurations (Include=mkosi-vm, ...) are directories shipped with this package.
            try:
                p = resolve_include(p)
            except MkosiError as e:
                self.error(f"Include={p}: {e}")
                continue
            try:
                st = p.stat()
            except OSError:
                self.error(f"Include={p}: does not exist")
                continue
            if (st.st_dev, st.st_ino) in self.includes:
                continue
            self.includes.add((st.st_dev, st.st_ino))
            if p.is_dir():
                self.parse_path(p, profiles=True)
            else:
                self.parse_one(p)


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."

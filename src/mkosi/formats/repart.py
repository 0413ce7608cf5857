"""Partition definitions in systemd-repart's ``repart.d`` format: reading, checking, and the default layouts.

:func:`read_definitions` collects ``*.conf`` files from directories (sorted by file name; when two
directories hold a file of the same name, the one listed first wins, as for systemd's drop-in directories)
and parses the ``[Partition]`` keys an image builder needs: ``Type``, ``Label``, ``UUID``, ``Format``,
``CopyFiles``, ``ExcludeFiles``, ``MakeDirectories``, ``SizeMinBytes``, ``SizeMaxBytes``,
``PaddingMinBytes``, ``Minimize``, ``Verity``, ``VerityMatchKey`` and ``SplitName``. Anything else is an
error naming the file, the line and the key. :func:`check_definitions` checks them as a set (verity groups,
types that belong together).

:func:`default_definitions` holds the layouts used when no definitions are configured, written here as
data: ``disk`` (one growable root partition with the distribution's file system), ``sysext`` (``/usr`` and
``/opt``), ``confext`` (``/etc``) and ``portable`` (the whole tree), the last three as a read-only erofs
data partition with a verity hash partition and a signature partition. :func:`apply_verity_mode` adapts
any set of definitions to ``Verity=``.

:func:`source_tree` makes the directory a partition's file system is made from out of a root, by the
definition's ``CopyFiles=``, ``ExcludeFiles=`` and ``MakeDirectories=``: with renames where a copy is not
needed, undone afterwards (directory times included). The image itself is written by
:mod:`mkosi.outputs.disk`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkosi import log
from mkosi.config.syntax import Entry, SyntaxProblem, read_entries
from mkosi.errors import MkosiError
from mkosi.formats import filesystems, gpt
from mkosi.run import run

KiB = 1024
MiB = 1024 * KiB
ALIGNMENT = 4 * KiB
#: What systemd-repart gives a partition without content or size.
DEFAULT_EMPTY_SIZE = 10 * MiB

SECTION = "Partition"
KEYS = (
    "Type",
    "Label",
    "UUID",
    "Format",
    "CopyFiles",
    "ExcludeFiles",
    "MakeDirectories",
    "SizeMinBytes",
    "SizeMaxBytes",
    "PaddingMinBytes",
    "Minimize",
    "Verity",
    "VerityMatchKey",
    "SplitName",
)
READ_ONLY_FILESYSTEMS = frozenset({"erofs", "squashfs"})
GROWABLE_FILESYSTEMS = frozenset({"ext4", "btrfs", "xfs"})
_SPLIT_SPECIFIERS = frozenset("tTUn%")


class Minimize(enum.StrEnum):
    off = "off"
    best = "best"
    guess = "guess"


class VerityRole(enum.StrEnum):
    off = "off"
    data = "data"
    hash = "hash"
    signature = "signature"


class VerityMode(enum.StrEnum):
    """How an image's verity partitions are made (the resolved form of ``Verity=``)."""

    #: hash and signature partitions, the signature made with the given key
    signed = "signed"
    #: hash partitions only; signature partitions are left out
    hash = "hash"
    #: hash partitions, and signature partitions full of zeros to be filled in later
    defer = "defer"
    #: no verity at all: hash and signature partitions are left out
    disabled = "disabled"


@dataclass(frozen=True)
class Definition:
    """One partition definition. ``source`` names where it came from, for messages."""

    type: str
    label: str | None = None
    uuid: uuid.UUID | None = None
    format: str | None = None
    #: (source in the root, target in the file system), both absolute
    copy_files: tuple[tuple[str, str], ...] = ()
    exclude_files: tuple[str, ...] = ()
    make_directories: tuple[str, ...] = ()
    size_min: int | None = None
    size_max: int | None = None
    padding_min: int | None = None
    minimize: Minimize = Minimize.off
    verity: VerityRole = VerityRole.off
    verity_match_key: str | None = None
    split_name: str = "%t"
    source: str = "built-in"


# ---------------------------------------------------------------------------------------------------------
# The default layouts (used when an image has no partition definitions).


def _extension_layout(kind: str, copy: tuple[tuple[str, str], ...]) -> list[Definition]:
    origin = f"built-in {kind} layout"
    return [
        Definition(
            type="root",
            format="erofs",
            copy_files=copy,
            minimize=Minimize.best,
            verity=VerityRole.data,
            verity_match_key="root",
            source=origin,
        ),
        Definition(
            type="root-verity",
            minimize=Minimize.best,
            verity=VerityRole.hash,
            verity_match_key="root",
            source=origin,
        ),
        Definition(
            type="root-verity-sig",
            verity=VerityRole.signature,
            verity_match_key="root",
            source=origin,
        ),
    ]


#: What each kind of image copies into its data partition.
EXTENSION_TREES: dict[str, tuple[tuple[str, str], ...]] = {
    "sysext": (("/usr", "/usr"), ("/opt", "/opt")),
    "confext": (("/etc", "/etc"),),
    "portable": (("/", "/"),),
}


def default_definitions(kind: str, *, filesystem: str = "ext4") -> list[Definition]:
    """The layout for ``kind`` (``disk``, ``sysext``, ``confext``, ``portable``) without definitions.

    ``filesystem`` is the root file system of a ``disk`` (the distribution's default).
    """
    if kind == "disk":
        return [
            Definition(
                type="root",
                format=filesystem,
                copy_files=(("/", "/"),),
                minimize=Minimize.guess,
                source="built-in disk layout",
            )
        ]
    if kind in EXTENSION_TREES:
        return _extension_layout(kind, EXTENSION_TREES[kind])
    raise MkosiError(f"No default partition layout for {kind} images")


# ---------------------------------------------------------------------------------------------------------
# Reading definitions.


def parse_size(text: str) -> int:
    """A size as systemd writes them: a number (decimals allowed) with an optional B, K, M, G, T, P or E
    suffix (powers of 1024); several may be added up (``1G 512M``)."""
    factors = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": 1024 * MiB, "T": 1024**4, "P": 1024**5, "E": 1024**6}
    parts = re.findall(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([BKMGTPE]?)", text)
    rebuilt = "".join(number + suffix for number, suffix in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text):
        raise ValueError(f"{text!r} is not a size (a number with an optional K, M, G, T suffix)")
    total = 0.0
    for number, suffix in parts:
        total += float(number) * factors[suffix]
    return int(total)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "yes", "y", "true", "t", "on"):
        return True
    if low in ("0", "no", "n", "false", "f", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _absolute(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} is not an absolute path")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"{what} {path!r} must not contain '..'")
    return "/" + "/".join(parts) + ("/" if path.endswith("/") and parts else "")


def check_type(value: str) -> str:
    """Check a ``Type=`` value (a designator such as ``root``/``esp``, a name with an architecture such as
    ``root-arm64``, or a type UUID) without resolving it."""
    try:
        gpt.partition_type(value, "x86-64")
    except MkosiError:
        raise ValueError(f"{value!r} is not a known partition type") from None
    return value


def _check_split_name(value: str) -> str:
    if value == "-":
        return value
    for m in re.finditer(r"%(.?)", value):
        if m.group(1) not in _SPLIT_SPECIFIERS:
            raise ValueError(f"unsupported specifier %{m.group(1)} in {value!r} (supported: %t %T %U %n %%)")
    return value


def _apply(fields: dict[str, object], key: str, value: str) -> None:
    """Set one key's value in ``fields`` (the keyword arguments of a Definition being built)."""
    lists = {
        "CopyFiles": "copy_files",
        "ExcludeFiles": "exclude_files",
        "MakeDirectories": "make_directories",
    }
    scalars = {
        "Type": "type",
        "Label": "label",
        "UUID": "uuid",
        "Format": "format",
        "SizeMinBytes": "size_min",
        "SizeMaxBytes": "size_max",
        "PaddingMinBytes": "padding_min",
        "Minimize": "minimize",
        "Verity": "verity",
        "VerityMatchKey": "verity_match_key",
        "SplitName": "split_name",
    }
    if key in lists:
        name = lists[key]
        old = fields.get(name, ())
        assert isinstance(old, tuple)
        if not value:
            fields[name] = ()
        elif key == "CopyFiles":
            source, _, target = value.partition(":")
            if ":" in target:
                raise ValueError(f"{value!r}: copy options after a second ':' are not supported")
            item = (_absolute(source, "source"), _absolute(target or source, "target"))
            fields[name] = (*old, tuple(p.rstrip("/") or "/" for p in item))
        else:
            fields[name] = (*old, *(_absolute(p, "path") for p in value.split()))
        return
    name = scalars[key]
    if not value:
        fields.pop(name, None)
        return
    parsed: object
    if key == "Type":
        parsed = check_type(value)
    elif key == "UUID":
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
    elif key == "Format":
        if value.lower() not in filesystems.FILESYSTEMS and value.lower() not in ("fat", "fat32"):
            raise ValueError(
                f"file system {value!r} is not supported (use {', '.join(filesystems.FILESYSTEMS)})"
            )
        parsed = "vfat" if value.lower() in ("fat", "fat32") else value.lower()
    elif key in ("SizeMinBytes", "SizeMaxBytes", "PaddingMinBytes"):
        parsed = parse_size(value)
    elif key == "Minimize":
        try:
            parsed = Minimize(value)
        except ValueError:
            parsed = Minimize.best if _parse_bool(value) else Minimize.off
    elif key == "Verity":
        try:
            parsed = VerityRole(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of off, data, hash, signature") from None
    elif key == "SplitName":
        parsed = _check_split_name(value)
    else:
        parsed = value
    fields[name] = parsed


def parse_definition(path: Path, text: str | None = None) -> Definition:
    """Parse one ``repart.d`` file. Problems raise :class:`MkosiError` naming file, line and key."""
    try:
        entries = read_entries(path, text)
    except SyntaxProblem as e:
        raise MkosiError(e.message) from None
    fields: dict[str, object] = {}
    first_line = 0
    for entry in entries:
        if entry.is_section_end:
            continue
        _check_entry(entry)
        first_line = first_line or entry.origin.line
        try:
            _apply(fields, entry.key, entry.value)
        except ValueError as e:
            raise MkosiError(f"{entry.origin}: {entry.key}={entry.value}: {e}") from None
    if "type" not in fields:
        raise MkosiError(f"{path}: Type= is not set", hint="every [Partition] needs a Type=, e.g. Type=root")
    definition = Definition(**fields, source=str(path))  # type: ignore[arg-type]
    _check_definition(definition)
    return definition


def _check_entry(entry: Entry) -> None:
    if entry.section != SECTION:
        raise MkosiError(f"{entry.origin}: section [{entry.section}] is not supported (only [{SECTION}])")
    if entry.key not in KEYS:
        raise MkosiError(
            f"{entry.origin}: {entry.key}= is not a supported partition setting",
            hint=f"supported: {', '.join(k + '=' for k in KEYS)}",
        )


def _check_definition(d: Definition) -> None:
    def problem(message: str) -> MkosiError:
        return MkosiError(f"{d.source}: {message}")

    if d.copy_files and not d.format:
        raise problem("CopyFiles= needs Format= (copying raw data into a partition is not supported)")
    if (d.make_directories or d.exclude_files) and not d.format:
        raise problem("MakeDirectories= and ExcludeFiles= need Format=")
    if d.size_min is not None and d.size_max is not None and d.size_min > d.size_max:
        raise problem(f"SizeMinBytes={d.size_min} is larger than SizeMaxBytes={d.size_max}")
    role = verity_role_of_type(d.type)
    if d.verity == VerityRole.data and role != "data":
        raise problem(f"Verity=data needs a root or usr partition, not Type={d.type}")
    if d.verity == VerityRole.hash and role != "hash":
        raise problem(f"Verity=hash needs a root-verity or usr-verity partition, not Type={d.type}")
    if d.verity == VerityRole.signature and role != "signature":
        raise problem(
            f"Verity=signature needs a root-verity-sig or usr-verity-sig partition, not Type={d.type}"
        )
    if d.verity in (VerityRole.hash, VerityRole.signature) and (d.format or d.copy_files):
        raise problem(f"Verity={d.verity.value} partitions are computed; Format= and CopyFiles= do not apply")
    if d.verity == VerityRole.data and not d.format:
        raise problem("Verity=data needs Format= (the file system the hash tree covers)")
    if d.verity == VerityRole.off and role in ("hash", "signature"):
        raise problem(f"Type={d.type} needs Verity={'hash' if role == 'hash' else 'signature'}")


def verity_role_of_type(type_: str) -> str:
    """``data`` for root/usr types, ``hash`` for their -verity types, ``signature`` for -verity-sig,
    ``other`` for the rest (by name, or by the name of a type UUID)."""
    name = type_
    try:
        name = gpt.partition_type_name(uuid.UUID(type_)) or type_
    except ValueError:
        pass
    if name.endswith("-verity-sig"):
        return "signature"
    if name.endswith("-verity"):
        return "hash"
    if name == "root" or name == "usr" or name.startswith(("root-", "usr-")):
        return "data"
    return "other"


def definition_files(directories: Sequence[Path]) -> list[Path]:
    """``*.conf`` files of ``directories``, sorted by name; the first directory wins a name."""
    chosen: dict[str, Path] = {}
    for d in directories:
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            raise MkosiError(f"Partition definition directory {d} does not exist") from None
        except OSError as e:
            raise MkosiError(f"Cannot read partition definition directory {d}: {e.strerror}") from None
        for name in names:
            p = d / name
            if (
                name.endswith(".conf")
                and name not in chosen
                and (p.is_file() or os.path.realpath(p) == "/dev/null")
            ):
                chosen[name] = p
    return [chosen[n] for n in sorted(chosen)]


def read_definitions(directories: Sequence[Path]) -> list[Definition]:
    """All definitions of ``directories`` (files linked to /dev/null mask a name), checked as a set."""
    definitions = []
    for path in definition_files(directories):
        if os.path.realpath(path) == "/dev/null":
            continue
        definitions.append(parse_definition(path))
    if not definitions:
        raise MkosiError(f"No partition definitions (*.conf) in {', '.join(map(str, directories))}")
    check_definitions(definitions)
    return definitions


def check_definitions(definitions: Sequence[Definition], architecture: str | None = None) -> None:
    """Cross-partition rules: every verity group has one data and one hash partition, at most one
    signature partition, and types that belong together (root with root-verity, usr with usr-verity)."""
    groups: dict[str, dict[VerityRole, Definition]] = {}
    for d in definitions:
        if architecture is not None:
            resolve_type(d, architecture)
        if d.verity == VerityRole.off:
            continue
        key = d.verity_match_key or ""
        group = groups.setdefault(key, {})
        if d.verity in group:
            raise MkosiError(
                f"{d.source}: a second Verity={d.verity.value} partition for VerityMatchKey={key}"
                f" (the first is in {group[d.verity].source})"
            )
        group[d.verity] = d
    for key, group in groups.items():
        name = f"VerityMatchKey={key}" if key else "the verity partitions without VerityMatchKey="
        data, hashp = group.get(VerityRole.data), group.get(VerityRole.hash)
        some = next(iter(group.values()))
        if data is None or hashp is None:
            raise MkosiError(f"{some.source}: {name} needs a Verity=data and a Verity=hash partition")
        if _type_stem(data.type) != _type_stem(hashp.type):
            raise MkosiError(f"{hashp.source}: Type={hashp.type} does not protect Type={data.type}")
        sig = group.get(VerityRole.signature)
        if sig is not None and _type_stem(sig.type) != _type_stem(data.type):
            raise MkosiError(f"{sig.source}: Type={sig.type} does not sign Type={data.type}")


def _type_stem(type_: str) -> str:
    name = type_
    try:
        name = gpt.partition_type_name(uuid.UUID(type_)) or type_
    except ValueError:
        pass
    return name.removesuffix("-sig").removesuffix("-verity")


def apply_verity_mode(definitions: Sequence[Definition], mode: VerityMode) -> list[Definition]:
    """Definitions for ``mode``: ``disabled`` drops hash and signature partitions (and the data role),
    ``hash`` drops signature partitions, ``signed`` and ``defer`` keep everything."""
    out = []
    for d in definitions:
        if mode == VerityMode.disabled and d.verity in (VerityRole.hash, VerityRole.signature):
            continue
        if mode == VerityMode.hash and d.verity == VerityRole.signature:
            continue
        if mode == VerityMode.disabled and d.verity == VerityRole.data:
            d = dataclasses.replace(d, verity=VerityRole.off)
        out.append(d)
    return out


def has_verity(definitions: Sequence[Definition]) -> bool:
    return any(d.verity == VerityRole.hash for d in definitions)


def has_signature(definitions: Sequence[Definition]) -> bool:
    return any(d.verity == VerityRole.signature for d in definitions)


@dataclass(frozen=True)
class ResolvedType:
    uuid: uuid.UUID
    #: the name systemd gives the type (``root-x86-64``), or the UUID as text for unknown types
    name: str


def resolve_type(d: Definition, architecture: str) -> ResolvedType:
    try:
        type_uuid = gpt.partition_type(d.type, architecture)
    except MkosiError as e:
        raise MkosiError(f"{d.source}: Type={d.type}: {e.message}") from None
    return ResolvedType(type_uuid, gpt.partition_type_name(type_uuid) or str(type_uuid))


# ---------------------------------------------------------------------------------------------------------
# Source trees: what CopyFiles=, ExcludeFiles= and MakeDirectories= make of the root, without copying
# where a rename will do. Everything moved is moved back, and directory times are restored.


def _inside(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent.rstrip("/") + "/")


class _TreeView:
    """Builds the directory a partition's file system is made from, and undoes it on close."""

    def __init__(self, root: Path, workdir: Path, epoch: int | None) -> None:
        self.root = root
        self.workdir = workdir
        self.epoch = epoch
        self.moves: list[tuple[Path, Path]] = []  # (from, to), undone in reverse
        self.created: list[Path] = []  # directories made in the root, removed in reverse
        # Directories whose entries change, by inode (they may move), with their times before the change
        # and the path where they were last changed.
        self.times: dict[tuple[int, int], tuple[int, int]] = {}
        self.paths: dict[tuple[int, int], Path] = {}
        self.scratch: list[Path] = []

    def _remember_times(self, directory: Path) -> None:
        st = os.lstat(directory)
        key = (st.st_dev, st.st_ino)
        self.times.setdefault(key, (st.st_atime_ns, st.st_mtime_ns))
        self.paths[key] = directory

    def _fix_times(self, directory: Path) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(directory)
            times = self.times.get((st.st_dev, st.st_ino))
            if times is not None:
                os.utime(directory, ns=times)

    def _move(self, src: Path, dst: Path) -> None:
        self._remember_times(src.parent)
        self._remember_times(dst.parent)
        os.rename(src, dst)
        self.moves.append((src, dst))

    def _makedirs(self, top: Path, rel: str, template_root: Path | None) -> Path:
        """Create ``rel`` below ``top`` with parents; each new directory takes the mode, owner and times
        of the same path below ``template_root`` when that exists, else 0755 root-owned."""
        path = top
        for part in [p for p in rel.split("/") if p]:
            path = path / part
            if path.is_dir():
                continue
            self._remember_times(path.parent)
            os.mkdir(path)
            self.created.append(path)
            template = template_root / path.relative_to(top) if template_root else None
            if template is not None and template.is_dir():
                self._clone_metadata(template, path)
            else:
                os.chmod(path, 0o755)
                with contextlib.suppress(PermissionError):  # building as an unprivileged user
                    os.chown(path, 0, 0)
                if self.epoch is not None:
                    os.utime(path, (self.epoch, self.epoch))
        return path

    @staticmethod
    def _clone_metadata(template: Path, path: Path) -> None:
        st = os.lstat(template)
        with contextlib.suppress(PermissionError):
            os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def build(self, d: Definition, index: int) -> Path:
        """The directory to make ``d``'s file system from."""
        whole = d.copy_files == (("/", "/"),)
        template = self.root
        if whole:
            top = self.root
        else:
            top = self.workdir / f"tree-{index}"
            shutil.rmtree(top, ignore_errors=True)
            top.mkdir()
            self.scratch.append(top)
            template = self._populate(d, top)
        self._exclude(d, top, whole)
        for made in d.make_directories:
            self._makedirs(top, made, None)
        for directory in self.paths.values():
            if directory == top or directory.is_relative_to(top):
                self._fix_times(directory)
        if not whole:
            self._clone_metadata(template, top)
        return top

    def _populate(self, d: Definition, top: Path) -> Path:
        """Fill ``top``; returns the directory whose mode, owner and times the top takes."""
        template = self.root
        sources = [src for src, _ in d.copy_files]
        for src, target in d.copy_files:
            where = self.root / src.lstrip("/")
            if not where.exists() and not where.is_symlink():
                log.debug(f"{d.source}: CopyFiles={src}: not in the tree, skipped")
                continue
            overlapping = any(o != src and (_inside(o, src) or _inside(src, o)) for o in sources)
            if target == "/":
                # The source's contents become the top of the file system (e.g. /usr of a usr partition).
                if not where.is_dir():
                    raise MkosiError(f"{d.source}: CopyFiles={src}:/ needs a directory")
                template = where
                for name in sorted(os.listdir(where)):
                    self._place(where / name, top / name, overlapping)
                continue
            parent = self._makedirs(top, os.path.dirname(target), self.root)
            self._place(where, parent / os.path.basename(target), overlapping)
        return template

    def _place(self, src: Path, dst: Path, copy: bool) -> None:
        if dst.exists() or dst.is_symlink():
            if not (dst.is_dir() and src.is_dir()):
                raise MkosiError(f"CopyFiles=: {dst.name} is copied into the same place twice")
            copy = True
        if not copy and src.stat(follow_symlinks=False).st_dev == os.lstat(dst.parent).st_dev:
            self._move(src, dst)
            return
        self._remember_times(dst.parent)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():
            dst.mkdir(exist_ok=True)
            run(["cp", "-a", "--reflink=auto", "--no-target-directory", src, dst], what="cp")
        else:
            run(["cp", "-a", "--reflink=auto", src, dst], what="cp")

    def _exclude(self, d: Definition, top: Path, whole: bool) -> None:
        hold = self.workdir / "excluded"
        for pattern in d.exclude_files:
            contents_only = pattern.endswith("/")
            path = pattern.rstrip("/") or "/"
            if whole:
                here: Path | None = top / path.lstrip("/")
            else:
                here = None
                for src, target in d.copy_files:
                    if _inside(path, src):
                        rel = os.path.relpath(path, src)
                        here = top / target.lstrip("/") / ("" if rel == "." else rel)
                        break
            if here is None or (not here.exists() and not here.is_symlink()):
                continue
            victims = sorted(here.iterdir()) if contents_only and here.is_dir() else [here]
            for victim in victims:
                if victim == top:
                    raise MkosiError(f"{d.source}: ExcludeFiles={pattern} would exclude everything")
                hold.mkdir(exist_ok=True)
                slot = hold / str(len(self.moves))
                self._move(victim, slot)

    def close(self) -> None:
        # Undone in reverse, so that every path is valid again when its step is undone; the parents
        # involved get their times back right away (a rename leaves the moved directory's mtime alone).
        problems = []
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(path)
                self._fix_times(path.parent)
        for src, dst in reversed(self.moves):
            try:
                os.rename(dst, src)
            except OSError as e:
                problems.append(f"{dst} → {src}: {e.strerror}")
            self._fix_times(src.parent)
            self._fix_times(dst.parent)
        for scratch in self.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(self.workdir / "excluded", ignore_errors=True)
        self.moves.clear()
        self.created.clear()
        self.times.clear()
        self.paths.clear()
        self.scratch.clear()
        if problems:
            raise MkosiError(f"Cannot put the tree back together: {'; '.join(problems)}")


@contextlib.contextmanager
def source_tree(root: Path, d: Definition, workdir: Path, index: int, epoch: int | None) -> Iterator[Path]:
    """The directory ``d``'s file system is made from, valid inside the ``with`` block."""
    view = _TreeView(root, workdir, epoch)
    try:
        yield view.build(d, index)
    finally:
        view.close()

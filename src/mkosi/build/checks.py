"""Checks no other step makes.

* :func:`preflight` runs before anything is built: for every image that becomes a disk or extension image
  it reads the partition definitions (``RepartDirectories=``/``mkosi.repart/``) and works out what
  ``Verity=`` needs, loading the signing key and certificate when they will be used. An unsupported
  partition setting, ``Verity=signed`` without a key, an unreadable key or certificate, or a key that does
  not belong to its certificate stops the build with one line, before any package is downloaded.
* :func:`check_extension` runs while a system or configuration extension is built on a base tree: it warns
  when the extension would not merge onto that base — its extension-release does not match the base's
  os-release (``ID``, ``VERSION_ID``, ``SYSEXT_LEVEL``/``CONFEXT_LEVEL``), it ships an os-release of its
  own, or it carries files outside the directories the format merges (``/usr`` and ``/opt`` for a sysext,
  ``/etc`` for a confext).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mkosi import log
from mkosi.build.context import Context
from mkosi.build.finalize import extension_release_path
from mkosi.config.model import OutputFormat
from mkosi.config.typed import Config
from mkosi.errors import ConfigErrors, MkosiError
from mkosi.hostinfo import read_os_release
from mkosi.outputs import disk

# ---------------------------------------------------------------------------------------------------------
# Before the build.


def preflight(images: Sequence[Config]) -> None:
    """Check the definitions and verity keys of every image that writes a disk or extension image."""
    errors: list[MkosiError] = []
    for config in images:
        if config.output_format not in disk.IMAGE_FORMATS:
            continue
        try:
            disk.verity_plan(config, disk.definitions_for(config))
        except MkosiError as e:
            errors.append(MkosiError(f"image {config.name}: {e.message}"))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


# ---------------------------------------------------------------------------------------------------------
# While building an extension.

#: The directories systemd-sysext and systemd-confext merge, by format.
MERGED = {
    OutputFormat.sysext: ("usr", "opt"),
    OutputFormat.confext: ("etc",),
}

#: What installing packages on top of a base tree leaves behind outside the merged directories; it is not
#: part of the extension image and not worth a warning.
BYPRODUCTS = ("var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/", "etc/ld.so.cache")

_EXAMPLES = 3


def wants_extension_check(ctx: Context) -> bool:
    return ctx.config.output_format in MERGED and bool(ctx.config.base_trees)


def _base_os_release(ctx: Context) -> tuple[Path, dict[str, str]] | None:
    """The os-release of the base trees (the last one that has one wins, as they are layered)."""
    found = None
    for tree in ctx.base_trees():
        if tree.is_dir():
            values = read_os_release(tree)
            if values:
                found = (tree, values)
    return found


def _read_release(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def release_mismatches(extension: dict[str, str], base: dict[str, str], prefix: str) -> list[str]:
    """Why systemd would refuse to merge an extension with ``extension`` as its extension-release onto a
    system with ``base`` as its os-release (empty when it would merge). ``prefix`` is SYSEXT or CONFEXT."""
    ext_id = extension.get("ID")
    if not ext_id:
        return ["it has no ID="]
    if ext_id == "_any":
        return []
    if ext_id != base.get("ID"):
        return [f"ID={ext_id} but the base has ID={base.get('ID', '(none)')}"]
    level = f"{prefix}_LEVEL"
    if extension.get(level):
        if extension[level] != base.get(level):
            return [f"{level}={extension[level]} but the base has {level}={base.get(level, '(none)')}"]
        return []
    version = extension.get("VERSION_ID")
    if version and version != base.get("VERSION_ID"):
        return [f"VERSION_ID={version} but the base has VERSION_ID={base.get('VERSION_ID', '(none)')}"]
    return []


def outside_merged(root: Path, merged: Sequence[str]) -> list[str]:
    """Files (anything but directories) below ``root`` outside the ``merged`` top-level directories,
    leaving out package manager byproducts; sorted, relative to ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in merged]
            rel = ""
        for name in dirnames + filenames:
            path = os.path.join(rel, name) if rel else name
            if name in dirnames and not os.path.islink(os.path.join(dirpath, name)):
                continue
            if path.startswith(BYPRODUCTS) or path in BYPRODUCTS:
                continue
            found.append(path)
    return sorted(found)


def check_extension(ctx: Context) -> None:
    fmt = ctx.config.output_format
    prefix = "SYSEXT" if fmt == OutputFormat.sysext else "CONFEXT"
    name = ctx.config.name
    base = _base_os_release(ctx)
    release = extension_release_path(ctx)
    if base is not None:
        tree, base_values = base
        extension = _read_release(release)
        if not extension:
            log.warn(f"{name}: no /{release.relative_to(ctx.root)}, systemd will not merge the extension")
        for problem in release_mismatches(extension, base_values, prefix):
            log.warn(
                f"{name}: /{release.relative_to(ctx.root)} does not match the base tree {tree}: {problem};"
                f" systemd-{fmt.value} will refuse to merge it"
            )

    for candidate in ("usr/lib/os-release", "etc/os-release"):
        path = ctx.root / candidate
        in_image = candidate.split("/", 1)[0] in MERGED[fmt]
        if in_image and (path.exists() or path.is_symlink()):
            log.warn(
                f"{name}: the extension ships /{candidate}; extensions carry an extension-release file"
                " instead, and an os-release in one would shadow the base's"
            )

    stray = outside_merged(ctx.root, MERGED[fmt])
    if stray:
        shown = ", ".join(f"/{p}" for p in stray[:_EXAMPLES])
        more = f" and {len(stray) - _EXAMPLES} more" if len(stray) > _EXAMPLES else ""
        dirs = ", ".join(f"/{d}" for d in MERGED[fmt])
        log.warn(
            f"{name}: {len(stray)} file(s) outside {dirs} are not part of the {fmt.value}"
            f" (systemd-{fmt.value} merges only {dirs}): {shown}{more}"
        )

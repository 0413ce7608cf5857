"""Specifiers: ``%x`` in configuration values.

Letters that belong to a setting (``%d`` Distribution, ``%r`` Release, ``%a`` Architecture, ``%t`` Format,
``%o`` Output, ``%O`` OutputDirectory, ``%i`` ImageId, ``%v`` ImageVersion, …) are declared on the setting in
the table. The others are computed here: ``%C`` the directory of the file being parsed, ``%P`` the current
working directory, ``%D`` the directory mkosi was invoked in, ``%F`` the distribution's default file
system, ``%I`` the image name, ``%%`` a literal percent sign.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkosi.config.model import Distribution
from mkosi.config.typed import Config

#: Default file system per distribution (``%F``).
DEFAULT_FILESYSTEMS = {
    Distribution.fedora: "btrfs",
    Distribution.opensuse: "btrfs",
    Distribution.centos: "xfs",
    Distribution.rhel: "xfs",
    Distribution.rhel_ubi: "xfs",
    Distribution.rocky: "xfs",
    Distribution.alma: "xfs",
}


def default_filesystem(distribution: Distribution) -> str:
    return DEFAULT_FILESYSTEMS.get(distribution, "ext4")


#: char → (function(context, file being parsed), names of settings it needs)
COMPUTED: dict[str, tuple[Callable[[dict[str, Any], Path], str], tuple[str, ...]]] = {
    "C": (lambda ns, path: os.fspath(path.resolve().parent), ()),
    "P": (lambda ns, path: os.fspath(Path.cwd()), ()),
    "D": (lambda ns, path: os.fspath(Path(ns["directory"]).resolve()), ()),
    "F": (lambda ns, path: default_filesystem(ns["distribution"]), ("distribution",)),
    "I": (lambda ns, path: str(ns["image"]), ()),
}


def expand(
    text: str,
    path: Path,
    setting_value: Callable[[str], tuple[str, Any] | None],
    computed_context: Callable[[tuple[str, ...]], dict[str, Any] | str],
    warn: Callable[[str], None],
) -> str:
    """Expand ``%x`` in ``text``.

    ``setting_value(char)`` returns ``(setting name, value)`` for a setting's letter, or None for an unknown
    letter. ``computed_context(depends)`` returns the values a computed specifier needs, or the name of the
    setting that is not set yet.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        if c != "%":
            out.append(c)
            continue
        if i >= len(text):
            out.append("%")
            break
        letter = text[i]
        i += 1
        if letter == "%":
            out.append("%")
            continue
        found = setting_value(letter)
        if found is not None:
            name, value = found
            if value is None:
                warn(f"{path.absolute()}: {name} (specifier %{letter} in {text}) is not set yet, ignoring")
                continue
            out.append(str(value.value if hasattr(value, "value") else value))
            continue
        if letter in COMPUTED:
            fn, depends = COMPUTED[letter]
            ns = computed_context(depends)
            if isinstance(ns, str):
                warn(f"{path.absolute()}: {ns}, needed by %{letter} in {text}, is not set yet, ignoring")
                continue
            out.append(fn(ns, path))
            continue
        warn(f"{path.absolute()}: unknown specifier %{letter} in {text}, ignoring")
    return "".join(out)


def build_subdir(config: Config) -> Path | None:
    """``BuildDirectory=`` plus ``BuildKey=`` (with its delayed ``&`` specifiers expanded)."""
    if not config.build_directory:
        return None
    base = Path(config.build_directory)
    key = config.build_key
    if key in ("", "-"):
        return base
    letters = {
        "d": config.distribution.value,
        "r": str(config.release or ""),
        "a": config.architecture.value,
        "i": str(config.image_id or ""),
        "v": str(config.image_version or ""),
        "I": config.name,
        "&": "&",
    }
    out, i = [], 0
    while i < len(key):
        if key[i] == "&" and i + 1 < len(key) and key[i + 1] in letters:
            out.append(letters[key[i + 1]])
            i += 2
        else:
            out.append(key[i])
            i += 1
    return base / "".join(out)

"""Debian: releases, mirrors, repositories, keyrings and the apt setup for a root.

Every distribution module offers the same module-level names so a registry keyed by the Distribution enum
can call them: ``NAME``, ``PACKAGE_MANAGER``, ``SNAPSHOTS``, ``default_release()``, ``default_mirror()``,
``default_components()``, ``architecture()``, ``has_updates()``, ``archives()``, ``repositories()``,
``keyrings()``, ``essential_packages()``, ``merged_usr()``, ``default_filesystem()``, ``kernel_packages()``
and ``apt_setup()``. ``repositories()`` and ``apt_setup()`` are :mod:`mkosi.distributions.apt_based`'s,
bound to the module.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from mkosi.distributions import apt_based
from mkosi.errors import MkosiError

NAME = "debian"
PACKAGE_MANAGER = "apt"
# Snapshot= is snapshot.debian.org's.
SNAPSHOTS = True

# When the host is not Debian. bookworm (12) became oldstable when trixie (13) was released.
STABLE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SNAPSHOT_MIRROR = "https://snapshot.debian.org/archive"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# Releases without -updates and -security suites.
ROLLING = frozenset({"sid", "unstable", "experimental", "rc-buggy"})
# Releases older than bookworm: no usr-is-merged package.
OLD = frozenset({"jessie", "stretch", "buster", "bullseye"})
# Releases whose bootstrap was not merged-/usr by default.
SPLIT_USR = frozenset({"jessie", "stretch", "buster"})

# mkosi architecture names → dpkg architecture names.
ARCHITECTURES = {
    "x86-64": "amd64",
    "x86": "i386",
    "arm64": "arm64",
    "arm": "armhf",
    "ppc64-le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64-le": "mips64el",
    "mips-le": "mipsel",
    "alpha": "alpha",
    "ia64": "ia64",
    "parisc": "hppa",
    "ppc64": "ppc64",
    "ppc": "powerpc",
}

KERNEL_FLAVOURS = {
    "amd64": "amd64",
    "i386": "686-pae",
    "arm64": "arm64",
    "armhf": "armmp",
    "ppc64el": "powerpc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loong64": "loong64",
    "mips64el": "mips64r2el",
}


def os_release_fields(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        try:
            text = Path("/usr/lib/os-release").read_text()
        except OSError:
            return fields
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields[key] = value.strip().strip("\"'")
    return fields


def default_release(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's release when the host is Debian, the current stable release otherwise."""
    fields = os_release_fields(os_release)
    if fields.get("ID") == "debian":
        codename = fields.get("VERSION_CODENAME")
        if codename:
            return codename
        # testing and unstable hosts have no codename of their own in older base-files.
        pretty = fields.get("PRETTY_NAME", "")
        if "sid" in pretty:
            return "sid"
    return STABLE


def default_mirror(architecture: str = "x86-64") -> str:
    return MIRROR


def default_components() -> tuple[str, ...]:
    return ("main",)


def default_filesystem() -> str:
    return "ext4"


def architecture(arch: str) -> str:
    """The dpkg architecture for a mkosi architecture name (dpkg names pass through)."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if arch in ARCHITECTURES.values():
        return arch
    raise MkosiError(f"Architecture {arch} is not supported by {NAME}")


def keyrings(release: str) -> tuple[Path, ...]:
    return (KEYRING,)


def essential_packages(release: str) -> tuple[str, ...]:
    """What a bootstrap installs first: the archive's Essential: yes set (and the merged-/usr marker)."""
    if release in OLD:
        return ("?essential",)
    return ("?essential", "usr-is-merged")


def merged_usr(release: str) -> bool:
    return release not in SPLIT_USR


def kernel_packages(arch: str) -> tuple[str, ...]:
    flavour = KERNEL_FLAVOURS.get(architecture(arch))
    return (f"linux-image-{flavour}",) if flavour else ()


def has_updates(release: str) -> bool:
    return release not in ROLLING


def archives(*, mirror: str | None, snapshot: str | None, arch: str) -> tuple[str, str]:
    """The main archive and debian-security; ``snapshot`` (a snapshot.debian.org timestamp such as
    20240101T000000Z) points both at that snapshot."""
    if snapshot:
        return f"{SNAPSHOT_MIRROR}/debian/{snapshot}", f"{SNAPSHOT_MIRROR}/debian-security/{snapshot}"
    # Most mirrors do not carry debian-security: it always comes from Debian's own address.
    return mirror or default_mirror(arch), SECURITY_MIRROR


#: The repositories for a release: release, release-updates and release-security (not for sid), or only
#: ``local_mirror``: ``repositories(release, *, mirror=None, components=(), local_mirror=None, snapshot=None,
#: keyring=None, trusted=False, arch="x86-64")``.
repositories = functools.partial(apt_based.repositories, sys.modules[__name__])

#: An :class:`AptSetup` for a Debian root built from explicit values: ``apt_setup(root, *, release,
#: cache_dir, state_dir, arch="x86-64", mirror=None, components=(), local_mirror=None, snapshot=None,
#: extra_sources=(), with_recommends=False, with_docs=True, repository_key_check=True)``.
apt_setup = functools.partial(apt_based.apt_setup, sys.modules[__name__])

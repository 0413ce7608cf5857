"""Kali: a rolling Debian derivative (same interface as :mod:`mkosi.distributions.debian`)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from mkosi.distributions import apt_based, debian

NAME = "kali"
PACKAGE_MANAGER = "apt"
# Snapshot= is ignored: Kali has no snapshot archive.
SNAPSHOTS = False

RELEASE = "kali-rolling"
MIRROR = "http://http.kali.org/kali"
KEYRING = Path("/usr/share/keyrings/kali-archive-keyring.gpg")


def default_release(os_release: Path = Path("/etc/os-release")) -> str:
    return RELEASE


def default_mirror(architecture: str = "x86-64") -> str:
    return MIRROR


# As Debian's.
default_components = debian.default_components
default_filesystem = debian.default_filesystem
architecture = debian.architecture
kernel_packages = debian.kernel_packages


def keyrings(release: str) -> tuple[Path, ...]:
    return (KEYRING,)


def essential_packages(release: str) -> tuple[str, ...]:
    return ("?essential", "usr-is-merged")


def merged_usr(release: str) -> bool:
    return True


def has_updates(release: str) -> bool:
    """Kali has no separate updates or security suites."""
    return False


def archives(*, mirror: str | None, snapshot: str | None, arch: str) -> tuple[str, str]:
    url = mirror or default_mirror(arch)
    return url, url


#: One repository (see :func:`mkosi.distributions.debian.repositories`).
repositories = functools.partial(apt_based.repositories, sys.modules[__name__])

#: An :class:`AptSetup` for a Kali root (see :func:`mkosi.distributions.debian.apt_setup`).
apt_setup = functools.partial(apt_based.apt_setup, sys.modules[__name__])

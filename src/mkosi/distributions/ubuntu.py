"""Ubuntu: releases, mirrors, repositories, keyrings (the interface of :mod:`mkosi.distributions.debian`)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from mkosi.distributions import apt_based, debian

NAME = "ubuntu"
PACKAGE_MANAGER = "apt"
# Snapshot= is snapshot.ubuntu.com's.
SNAPSHOTS = True

LTS = "noble"
MIRROR = "http://archive.ubuntu.com/ubuntu"
SECURITY_MIRROR = "http://security.ubuntu.com/ubuntu"
PORTS_MIRROR = "http://ports.ubuntu.com/ubuntu-ports"
KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
# Releases without the usr-is-merged package.
OLD = frozenset({"xenial", "bionic", "focal", "jammy"})
ROLLING = frozenset({"devel"})


def default_release(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's release when the host is Ubuntu, the current LTS otherwise."""
    fields = debian.os_release_fields(os_release)
    if fields.get("ID") == "ubuntu" and fields.get("VERSION_CODENAME"):
        return fields["VERSION_CODENAME"]
    return LTS


def default_mirror(architecture: str = "x86-64") -> str:
    return MIRROR if architecture in ("x86-64", "x86", "amd64", "i386") else PORTS_MIRROR


# As Debian's.
default_components = debian.default_components
default_filesystem = debian.default_filesystem
architecture = debian.architecture


def keyrings(release: str) -> tuple[Path, ...]:
    return (KEYRING,)


def essential_packages(release: str) -> tuple[str, ...]:
    return ("?essential",) if release in OLD else ("?essential", "usr-is-merged")


def merged_usr(release: str) -> bool:
    return release not in {"xenial", "bionic", "focal"}


def kernel_packages(arch: str) -> tuple[str, ...]:
    return ("linux-image-generic",)


def has_updates(release: str) -> bool:
    return release not in ROLLING


def archives(*, mirror: str | None, snapshot: str | None, arch: str) -> tuple[str, str]:
    """The mirror, and Ubuntu's security archive unless a mirror (or ports) is used for both."""
    if snapshot:
        main = f"https://snapshot.ubuntu.com/ubuntu/{snapshot}"
        return main, main
    main = mirror or default_mirror(arch)
    return main, mirror or (SECURITY_MIRROR if main == MIRROR else main)


#: release and release-updates from the mirror, release-security from Ubuntu's security archive (see
#: :func:`mkosi.distributions.debian.repositories`).
repositories = functools.partial(apt_based.repositories, sys.modules[__name__])

#: An :class:`AptSetup` for an Ubuntu root (see :func:`mkosi.distributions.debian.apt_setup`).
apt_setup = functools.partial(apt_based.apt_setup, sys.modules[__name__])

"""Ubuntu: releases, mirrors, repositories, keyrings (the interface of :mod:`mkosi.distributions.debian`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mkosi.distributions import debian
from mkosi.installers.apt import AptSetup, Repository

NAME = "ubuntu"
PACKAGE_MANAGER = "apt"

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


def default_components() -> tuple[str, ...]:
    return ("main",)


def default_filesystem() -> str:
    return "ext4"


def architecture(arch: str) -> str:
    return debian.architecture(arch)


def keyrings(release: str) -> tuple[Path, ...]:
    return (KEYRING,)


def essential_packages(release: str) -> tuple[str, ...]:
    return ("?essential",) if release in OLD else ("?essential", "usr-is-merged")


def merged_usr(release: str) -> bool:
    return release not in {"xenial", "bionic", "focal"}


def kernel_packages(arch: str) -> tuple[str, ...]:
    return ("linux-image-generic",)


def repositories(
    release: str,
    *,
    mirror: str | None = None,
    components: Sequence[str] = (),
    local_mirror: str | None = None,
    snapshot: str | None = None,
    keyring: Sequence[Path] | None = None,
    trusted: bool = False,
    arch: str = "x86-64",
) -> tuple[Repository, ...]:
    """release and release-updates from the mirror, release-security from Ubuntu's security archive."""
    comps = tuple(components) or default_components()
    keys = tuple(keyring) if keyring is not None else keyrings(release)
    if local_mirror:
        return (Repository(local_mirror, (release,), comps, keys, trusted),)
    if snapshot:
        main = f"https://snapshot.ubuntu.com/ubuntu/{snapshot}"
        security = main
    else:
        main = mirror or default_mirror(arch)
        security = mirror or (SECURITY_MIRROR if main == MIRROR else main)
    if release in ROLLING:
        return (Repository(main, (release,), comps, keys, trusted),)
    return (
        Repository(main, (release, f"{release}-updates"), comps, keys, trusted),
        Repository(security, (f"{release}-security",), comps, keys, trusted),
    )


def apt_setup(
    root: Path,
    *,
    release: str,
    cache_dir: Path,
    state_dir: Path,
    arch: str = "x86-64",
    mirror: str | None = None,
    components: Sequence[str] = (),
    local_mirror: str | None = None,
    snapshot: str | None = None,
    extra_sources: Sequence[str] = (),
    with_recommends: bool = False,
    with_docs: bool = True,
    repository_key_check: bool = True,
) -> AptSetup:
    return AptSetup(
        root=root,
        repositories=repositories(
            release,
            mirror=mirror,
            components=components,
            local_mirror=local_mirror,
            snapshot=snapshot,
            trusted=not repository_key_check,
            arch=arch,
        ),
        cache_dir=cache_dir,
        state_dir=state_dir,
        architecture=architecture(arch),
        with_recommends=with_recommends,
        with_docs=with_docs,
        repository_key_check=repository_key_check,
        snapshot=snapshot is not None,
        essential=essential_packages(release),
        merged_usr=merged_usr(release),
        extra_sources=tuple(extra_sources),
    )

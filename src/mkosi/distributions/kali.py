"""Kali: a rolling Debian derivative (same interface as :mod:`mkosi.distributions.debian`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mkosi.distributions import debian
from mkosi.installers.apt import AptSetup, Repository

NAME = "kali"
PACKAGE_MANAGER = "apt"

RELEASE = "kali-rolling"
MIRROR = "http://http.kali.org/kali"
KEYRING = Path("/usr/share/keyrings/kali-archive-keyring.gpg")


def default_release(os_release: Path = Path("/etc/os-release")) -> str:
    return RELEASE


def default_mirror(architecture: str = "x86-64") -> str:
    return MIRROR


def default_components() -> tuple[str, ...]:
    return ("main",)


def default_filesystem() -> str:
    return "ext4"


def architecture(arch: str) -> str:
    return debian.architecture(arch)


def keyrings(release: str) -> tuple[Path, ...]:
    return (KEYRING,)


def essential_packages(release: str) -> tuple[str, ...]:
    return ("?essential", "usr-is-merged")


def merged_usr(release: str) -> bool:
    return True


def kernel_packages(arch: str) -> tuple[str, ...]:
    return debian.kernel_packages(arch)


def repositories(
    release: str,
    *,
    mirror: str | None = None,
    components: Sequence[str] = (),
    local_mirror: str | None = None,
    snapshot: str | None = None,
    keyring: Sequence[Path] | None = None,
    trusted: bool = False,
) -> tuple[Repository, ...]:
    """One repository: Kali has no separate updates or security suites."""
    comps = tuple(components) or default_components()
    keys = tuple(keyring) if keyring is not None else keyrings(release)
    url = local_mirror or mirror or default_mirror()
    return (Repository(url, (release,), comps, keys, trusted),)


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
            trusted=not repository_key_check,
        ),
        cache_dir=cache_dir,
        state_dir=state_dir,
        architecture=architecture(arch),
        with_recommends=with_recommends,
        with_docs=with_docs,
        repository_key_check=repository_key_check,
        snapshot=False,
        essential=essential_packages(release),
        merged_usr=merged_usr(release),
        extra_sources=tuple(extra_sources),
    )

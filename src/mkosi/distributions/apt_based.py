"""What the apt-based distributions (Debian, Ubuntu, Kali) share: the layout of their repositories and the
apt set-up of a root.

Each distribution module keeps the module-level interface described in :mod:`mkosi.distributions.debian`;
its ``repositories()`` and ``apt_setup()`` are these functions bound to the module itself, and call back its
own constants and functions (the :class:`AptDistribution` protocol)::

    repositories = functools.partial(apt_based.repositories, sys.modules[__name__])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mkosi.installers.apt import AptSetup, Repository


class AptDistribution(Protocol):
    """The parts of a distribution module used here."""

    #: Whether Snapshot= points the repositories at an archive snapshot (whose metadata apt lets expire).
    SNAPSHOTS: bool

    def default_components(self) -> tuple[str, ...]: ...

    def architecture(self, arch: str) -> str: ...

    def keyrings(self, release: str) -> tuple[Path, ...]: ...

    def essential_packages(self, release: str) -> tuple[str, ...]: ...

    def merged_usr(self, release: str) -> bool: ...

    def has_updates(self, release: str) -> bool:
        """Whether the release has -updates and -security suites."""
        ...

    def archives(self, *, mirror: str | None, snapshot: str | None, arch: str) -> tuple[str, str]:
        """The URLs of the main archive and of the one with the -security suite."""
        ...


def repositories(
    distribution: AptDistribution,
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
    """``release`` and ``release-updates`` from the main archive, ``release-security`` from the security one;
    only ``release`` where the release has no updates.

    ``local_mirror`` replaces everything with that one repository. Components default to the distribution's,
    signing keys to its keyrings for the release.
    """
    comps = tuple(components) or distribution.default_components()
    keys = tuple(keyring) if keyring is not None else distribution.keyrings(release)
    if local_mirror:
        return (Repository(local_mirror, (release,), comps, keys, trusted),)
    main, security = distribution.archives(mirror=mirror, snapshot=snapshot, arch=arch)
    if not distribution.has_updates(release):
        return (Repository(main, (release,), comps, keys, trusted),)
    return (
        Repository(main, (release, f"{release}-updates"), comps, keys, trusted),
        Repository(security, (f"{release}-security",), comps, keys, trusted),
    )


def apt_setup(
    distribution: AptDistribution,
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
    """An :class:`AptSetup` for a root of ``distribution`` built from explicit values."""
    return AptSetup(
        root=root,
        repositories=repositories(
            distribution,
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
        architecture=distribution.architecture(arch),
        with_recommends=with_recommends,
        with_docs=with_docs,
        repository_key_check=repository_key_check,
        snapshot=snapshot is not None and distribution.SNAPSHOTS,
        essential=distribution.essential_packages(release),
        merged_usr=distribution.merged_usr(release),
        extra_sources=tuple(extra_sources),
    )

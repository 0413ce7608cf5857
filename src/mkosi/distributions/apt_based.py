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
from urllib.parse import unquote, urlsplit

from mkosi.errors import MkosiError
from mkosi.installers.apt import AptSetup, Repository


class AptDistribution(Protocol):
    """The parts of a distribution module used here."""

    NAME: str

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


def fetchable(url: str) -> str:
    """``url`` as apt should fetch it: a ``file:`` repository through apt's ``copy:`` method.

    apt's ``file:`` method leaves the ``.deb`` files where they are instead of putting them into the package
    cache, where the bootstrap unpacks them from; ``copy:`` reads the same paths and copies them there.
    """
    return "copy:" + url[len("file:") :] if url.startswith("file:") else url


def _local_path(url: str) -> Path | None:
    """The directory a ``file:`` (or ``copy:``) URL names; None for anything fetched over the network."""
    parts = urlsplit(url)
    if parts.scheme not in ("file", "copy") or parts.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parts.path))


def _release_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace() and " " not in key:
            fields[key] = value.strip()
    return fields


def check_local_mirror(
    distribution: AptDistribution, url: str, release: str, components: Sequence[str]
) -> None:
    """A local ``LocalMirror=`` must carry ``dists/<release>`` with a Release file and every component the
    image uses; otherwise apt would only warn, and the bootstrap would fail later with a confusing error."""
    path = _local_path(url)
    if path is None:
        return
    if not path.is_dir():
        raise MkosiError(f"LocalMirror={url}: {path} is not a directory")
    dists = path / "dists"
    suite = dists / release
    release_file = next((f for f in (suite / "InRelease", suite / "Release") if f.is_file()), None)
    if release_file is None:
        have = sorted(
            d.name for d in dists.iterdir() if (d / "Release").is_file() or (d / "InRelease").is_file()
        )
        known = ", ".join(have) if have else "none"
        raise MkosiError(
            f"LocalMirror={url}: no {distribution.NAME} release {release!r} "
            f"(dists/{release}/Release is missing; releases there: {known})"
        )
    fields = _release_fields(release_file.read_text(errors="replace"))
    if "Components" in fields:
        have = fields["Components"].split()
    else:
        have = sorted(d.name for d in suite.iterdir() if d.is_dir())
    missing = [c for c in components if c not in have]
    if missing:
        raise MkosiError(
            f"LocalMirror={url}: release {release!r} lacks the component{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} that {distribution.NAME} uses (it has: {', '.join(have) or 'none'})"
        )


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
        return (Repository(fetchable(local_mirror), (release,), comps, keys, trusted),)
    main, security = map(fetchable, distribution.archives(mirror=mirror, snapshot=snapshot, arch=arch))
    if not distribution.has_updates(release):
        return (Repository(main, (release,), comps, keys, trusted),)
    return (
        Repository(main, (release, f"{release}-updates"), comps, keys, trusted),
        Repository(security, (f"{release}-security",), comps, keys, trusted),
    )


def keyrings(
    distribution: AptDistribution, release: str, sandbox_tree: Path | None = None
) -> tuple[Path, ...]:
    """The distribution's keyrings for ``release``; one that ``SandboxTrees=`` carries (at the same path)
    is taken from there."""
    keys = distribution.keyrings(release)
    if sandbox_tree is None:
        return keys
    return tuple(
        sandbox_tree / key.relative_to("/") if (sandbox_tree / key.relative_to("/")).is_file() else key
        for key in keys
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
    sandbox_tree: Path | None = None,
    cache_only: bool = False,
) -> AptSetup:
    """An :class:`AptSetup` for a root of ``distribution`` built from explicit values.

    ``sandbox_tree`` is the merged ``SandboxTrees=``: apt honours its ``etc/apt``, and a keyring it carries at
    the distribution's keyring path is used instead of the host's. ``cache_only`` (``CacheOnly=always``):
    apt never contacts the network; packages come from the package cache.
    """
    if local_mirror:
        check_local_mirror(
            distribution, local_mirror, release, tuple(components) or distribution.default_components()
        )
    return AptSetup(
        root=root,
        repositories=repositories(
            distribution,
            release,
            mirror=mirror,
            components=components,
            local_mirror=local_mirror,
            snapshot=snapshot,
            keyring=keyrings(distribution, release, sandbox_tree),
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
        sandbox_tree=sandbox_tree,
        cache_only=cache_only,
    )

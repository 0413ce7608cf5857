"""Debian: releases, mirrors, repositories, keyrings and the apt setup for a root.

Every distribution module offers the same module-level names so a registry keyed by the Distribution enum
can call them: ``NAME``, ``PACKAGE_MANAGER``, ``default_release()``, ``default_mirror()``,
``default_components()``, ``architecture()``, ``repositories()``, ``keyrings()``, ``essential_packages()``,
``merged_usr()``, ``default_filesystem()``, ``kernel_packages()`` and ``apt_setup()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mkosi.errors import MkosiError
from mkosi.installers.apt import AptSetup, Repository

NAME = "debian"
PACKAGE_MANAGER = "apt"

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
    """The repositories for ``release``: release, release-updates and release-security (not for sid).

    ``local_mirror`` replaces everything with that one repository. ``snapshot`` (a snapshot.debian.org
    timestamp such as 20240101T000000Z) points both archives at that snapshot.
    """
    comps = tuple(components) or default_components()
    keys = tuple(keyring) if keyring is not None else keyrings(release)
    if local_mirror:
        return (Repository(local_mirror, (release,), comps, keys, trusted),)
    if snapshot:
        main = f"{SNAPSHOT_MIRROR}/debian/{snapshot}"
        security = f"{SNAPSHOT_MIRROR}/debian-security/{snapshot}"
    else:
        main = mirror or default_mirror()
        security = SECURITY_MIRROR
    if not has_updates(release):
        return (Repository(main, (release,), comps, keys, trusted),)
    repos = [Repository(main, (release, f"{release}-updates"), comps, keys, trusted)]
    # Most mirrors do not carry debian-security: it always comes from Debian's own address.
    repos.append(Repository(security, (f"{release}-security",), comps, keys, trusted))
    return tuple(repos)


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
    """An :class:`AptSetup` for a Debian root built from explicit values."""
    return AptSetup(
        root=root,
        repositories=repositories(
            release,
            mirror=mirror,
            components=components,
            local_mirror=local_mirror,
            snapshot=snapshot,
            trusted=not repository_key_check,
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

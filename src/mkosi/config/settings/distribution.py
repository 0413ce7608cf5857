"""Settings of the [Distribution] section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mkosi.config.model import Architecture, Distribution
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import Boolean, Choice, ListKind, String, ValueProblem
from mkosi.hostinfo import host_distribution

#: The release a distribution defaults to when it is not the host's distribution.
DEFAULT_RELEASES = {
    Distribution.fedora: "rawhide",
    Distribution.debian: "testing",
    Distribution.kali: "kali-rolling",
    Distribution.ubuntu: "devel",
    Distribution.postmarketos: "edge",
    Distribution.arch: "rolling",
    Distribution.opensuse: "tumbleweed",
    Distribution.mageia: "cauldron",
    Distribution.centos: "10",
    Distribution.rhel: "10",
    Distribution.rhel_ubi: "10",
    Distribution.openmandriva: "cooker",
    Distribution.rocky: "10",
    Distribution.alma: "10",
    Distribution.azure: "3.0",
    Distribution.custom: "",
}

#: Distributions that bring their tools tree from another distribution.
TOOLS_TREE_DISTRIBUTIONS = {
    Distribution.kali: Distribution.kali,
    Distribution.ubuntu: Distribution.debian,
    Distribution.postmarketos: Distribution.postmarketos,
    Distribution.centos: Distribution.fedora,
    Distribution.rhel: Distribution.fedora,
    Distribution.rhel_ubi: Distribution.fedora,
    Distribution.rocky: Distribution.fedora,
    Distribution.alma: Distribution.fedora,
}

RPM_DISTRIBUTIONS = frozenset(
    {
        Distribution.fedora,
        Distribution.centos,
        Distribution.rhel,
        Distribution.rhel_ubi,
        Distribution.rocky,
        Distribution.alma,
        Distribution.opensuse,
        Distribution.mageia,
        Distribution.openmandriva,
        Distribution.azure,
    }
)


def default_architecture(ns: Mapping[str, Any]) -> Architecture:
    return Architecture.native()


def default_distribution(ns: Mapping[str, Any]) -> Distribution:
    return host_distribution()[0] or Distribution.custom


def default_release(ns: Mapping[str, Any]) -> str:
    distribution, release = host_distribution()
    if ns["distribution"] == distribution and release:
        return release
    return DEFAULT_RELEASES[ns["distribution"]]


def default_tools_tree_distribution(ns: Mapping[str, Any]) -> Distribution:
    host = host_distribution()[0] or Distribution.custom
    return TOOLS_TREE_DISTRIBUTIONS.get(host, host)


def default_repository_key_fetch(ns: Mapping[str, Any]) -> bool:
    target = ns["distribution"]
    wants_fetch = target in (Distribution.arch, Distribution.postmarketos) or target in RPM_DISTRIBUTIONS
    tools_tree = ns["tools_tree"]
    if tools_tree is not None and str(tools_tree) in ("default", "yes"):
        return bool(ns["tools_tree_distribution"] == Distribution.ubuntu and wants_fetch)
    return bool(host_distribution()[0] == Distribution.ubuntu and wants_fetch)


class ArchitectureKind(Choice):
    """An architecture; ``uefi`` in [Match] means any architecture UEFI exists for."""

    def matches(self, pattern: str, value: Any) -> bool:
        if pattern == "uefi":
            return bool(value.is_uefi())
        return super().matches(pattern, value)


def _check_release(text: str) -> None:
    if "/" in text:
        raise ValueProblem(f"{text!r} is not a release name")


SETTINGS = [
    Setting(
        "Distribution",
        "Distribution",
        Choice(enum_type=Distribution, match_enabled=True, metavar="DISTRIBUTION"),
        "Distribution to install",
        default_factory=default_distribution,
        scope=Scope.universal,
        short="-d",
        specifier="d",
        match=True,
    ),
    Setting(
        "Release",
        "Distribution",
        String(globs=False, metavar="RELEASE", nullable=False),
        "Distribution release to install",
        default_factory=default_release,
        depends=("distribution",),
        scope=Scope.universal,
        short="-r",
        specifier="r",
        match=True,
    ),
    Setting(
        "Architecture",
        "Distribution",
        ArchitectureKind(enum_type=Architecture, match_enabled=True, metavar="ARCH"),
        "Architecture of the image",
        default_factory=default_architecture,
        scope=Scope.universal,
        specifier="a",
        match=True,
    ),
    Setting(
        "Mirror",
        "Distribution",
        String(metavar="MIRROR"),
        "Mirror to download packages from",
        scope=Scope.universal,
        short="-m",
    ),
    Setting(
        "Snapshot",
        "Distribution",
        String(metavar="SNAPSHOT"),
        "Install packages from this snapshot of the distribution's repositories",
        scope=Scope.universal,
        paths=("snapshot",),
        path_read_text=True,
        tools=True,
    ),
    Setting(
        "LocalMirror",
        "Distribution",
        String(metavar="MIRROR"),
        "Use this mirror as the only repository (no updates or security repositories)",
        scope=Scope.universal,
        tools=True,
    ),
    Setting(
        "RepositoryKeyCheck",
        "Distribution",
        Boolean(),
        "Check the signatures of repository metadata",
        default=True,
        scope=Scope.multiversal,
    ),
    Setting(
        "RepositoryKeyFetch",
        "Distribution",
        Boolean(),
        "Fetch repository keys from the network when they are not available locally",
        default_factory=default_repository_key_fetch,
        depends=("distribution", "tools_tree", "tools_tree_distribution"),
        scope=Scope.universal,
        tools=True,
    ),
    Setting(
        "Repositories",
        "Distribution",
        ListKind(match_enabled=True, metavar="REPOS"),
        "Enable these additional repositories of the distribution",
        scope=Scope.universal,
        match=True,
        tools=True,
    ),
]

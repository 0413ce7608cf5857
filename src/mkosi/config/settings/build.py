"""Settings of the [Build] section: tools tree, caches, build sources, scripting environment, proxies."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mkosi.config.model import BuildSourcesEphemeral, CacheOnly, Distribution, Incremental
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.settings.distribution import DEFAULT_RELEASES, default_tools_tree_distribution
from mkosi.config.values import (
    Boolean,
    Choice,
    ConfigTree,
    DictKind,
    FeatureKind,
    Integer,
    ListKind,
    PathKind,
    PathRules,
    String,
    ValueProblem,
    environment_item,
    tree_item,
)

# ---------------------------------------------------------------------------------------------------------
# Local kinds and item parsers.


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StrictInteger(Integer):
    """An integer for which an empty assignment is an error rather than a reset."""

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            raise ValueProblem("an empty value is not allowed here (expected an integer)")
        return super().parse(text, old)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class BuildSourcesKind(ListKind):
    """Build source trees; ``[Match]`` checks whether some tree is mounted at the given target."""

    def matches(self, pattern: str, value: Any) -> bool:
        wanted = Path(pattern.lstrip("/"))
        return any(tree.target == wanted for tree in value if tree.target)


#: Paths below these directories cannot be extra search paths (they would shadow the tools tree's /usr).
SEARCH_PATH_EXCLUDES = (Path("/usr"),)


def search_path_item(text: str) -> Path:
    path = PathRules().parse(text)
    given = Path(os.path.expandvars(text)).expanduser()
    for excluded in SEARCH_PATH_EXCLUDES:
        if given.is_relative_to(excluded):
            raise ValueProblem(f"{given} cannot be an extra search path: it lies below {excluded}")
    return path


# ---------------------------------------------------------------------------------------------------------
# Default factories.

PROXY_URL_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
PROXY_EXCLUDE_VARIABLES = ("no_proxy", "NO_PROXY")
CA_BUNDLES = (Path("/etc/pki/tls/certs/ca-bundle.crt"), Path("/etc/ssl/certs/ca-certificates.crt"))


def _from_environment(environment: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set in Environment=, else the first of them in mkosi's own environment."""
    for name, value in environment.items():
        if name in names:
            return value
    for name, value in os.environ.items():
        if name in names:
            return value
    return None


def default_proxy_url(ns: Mapping[str, Any]) -> str | None:
    return _from_environment(ns["environment"] or {}, PROXY_URL_VARIABLES)


def default_proxy_exclude(ns: Mapping[str, Any]) -> list[str] | None:
    value = _from_environment(ns["environment"] or {}, PROXY_EXCLUDE_VARIABLES)
    return value.split(",") if value is not None else None


def default_proxy_peer_certificate(ns: Mapping[str, Any]) -> Path | None:
    return next((p for p in CA_BUNDLES if p.exists()), None)


def default_tools_tree_release(ns: Mapping[str, Any]) -> str | None:
    distribution = ns["tools_tree_distribution"]
    return DEFAULT_RELEASES[Distribution(distribution)] if distribution else None


def _same_distribution_value(key: str) -> Callable[[Mapping[str, Any]], str | None]:
    """The image's ``key`` (Mirror/Snapshot) is reused for the tools tree if it is the same distribution."""

    def factory(ns: Mapping[str, Any]) -> str | None:
        if ns[key] and ns["distribution"] == ns["tools_tree_distribution"]:
            return str(ns[key])
        return None

    return factory


def default_proxy_client_key(ns: Mapping[str, Any]) -> Path | None:
    key: Path | None = ns["proxy_client_certificate"]
    return key


def default_build_sources(ns: Mapping[str, Any]) -> list[ConfigTree]:
    directory = ns["directory"]
    return [ConfigTree(Path(directory), None)] if directory else []


def default_delegate_ranges(ns: Mapping[str, Any]) -> int:
    return 0 if os.getuid() == 0 and os.getgid() == 0 else 3


# ---------------------------------------------------------------------------------------------------------
# The settings.

_OPTIONAL_DIR = PathRules(required=False)

TOOLS_TREE_SETTINGS = [
    Setting(
        "ToolsTree",
        "Build",
        PathKind(rules=PathRules(constants=("default", "yes", "no"))),
        "Run build and boot tools from this tree (or 'yes'/'default' for a generated one, 'no' for the host)",
        scope=Scope.universal,
        paths=("tools",),
        metavar="PATH",
    ),
    Setting(
        "ToolsTreeDistribution",
        "Build",
        Choice(enum_type=Distribution, match_enabled=True, metavar="DISTRIBUTION"),
        "Distribution of the default tools tree",
        default_factory=default_tools_tree_distribution,
        scope=Scope.tools,
        match=True,
        in_json=False,
    ),
    Setting(
        "ToolsTreeRelease",
        "Build",
        String(nullable=False, globs=False, metavar="RELEASE"),
        "Distribution release of the default tools tree",
        default_factory=default_tools_tree_release,
        depends=("tools_tree_distribution",),
        scope=Scope.tools,
        match=True,
        metavar="RELEASE",
        in_json=False,
    ),
    Setting(
        "ToolsTreeProfiles",
        "Build",
        ListKind(metavar="PROFILE"),
        "Profiles (devel, misc, package-manager, runtime) to enable in the default tools tree",
        default=["misc", "package-manager", "runtime"],
        scope=Scope.tools,
        long="--tools-tree-profile",
        metavar="PROFILE",
        in_json=False,
    ),
    Setting(
        "ToolsTreeMirror",
        "Build",
        String(metavar="MIRROR"),
        "Mirror for the default tools tree",
        default_factory=_same_distribution_value("mirror"),
        depends=("distribution", "mirror", "tools_tree_distribution"),
        scope=Scope.tools,
        metavar="MIRROR",
        in_json=False,
    ),
    Setting(
        "ToolsTreeSnapshot",
        "Build",
        String(metavar="SNAPSHOT"),
        "Repository snapshot for the default tools tree",
        default_factory=_same_distribution_value("snapshot"),
        depends=("distribution", "snapshot", "tools_tree_distribution"),
        scope=Scope.tools,
        metavar="SNAPSHOT",
        in_json=False,
    ),
    Setting(
        "ToolsTreeRepositories",
        "Build",
        ListKind(metavar="REPOS"),
        "Additional repositories to enable for the default tools tree",
        scope=Scope.tools,
        long="--tools-tree-repository",
        metavar="REPOS",
        in_json=False,
    ),
    Setting(
        "ToolsTreeSandboxTrees",
        "Build",
        ListKind(item=tree_item(required=True), metavar="PATH"),
        "Sandbox trees (SOURCE[:TARGET]) for building the default tools tree",
        scope=Scope.tools,
        long="--tools-tree-sandbox-tree",
        long_aliases=("--tools-tree-package-manager-tree",),
        old_names=("ToolsTreePackageManagerTrees",),
        metavar="PATH",
        in_json=False,
    ),
    Setting(
        "ToolsTreePackages",
        "Build",
        ListKind(metavar="PACKAGE"),
        "Extra packages to install into the default tools tree",
        scope=Scope.tools,
        long="--tools-tree-package",
        metavar="PACKAGE",
        in_json=False,
    ),
    Setting(
        "ToolsTreePackageDirectories",
        "Build",
        ListKind(item=PathRules().parse, metavar="PATH"),
        "Directories with extra packages available to the default tools tree",
        scope=Scope.tools,
        long="--tools-tree-package-directory",
        metavar="PATH",
        in_json=False,
    ),
    Setting(
        "ToolsTreeCertificates",
        "Build",
        Boolean(),
        "Take CA certificates and keys from the tools tree rather than from the host",
        default=True,
        scope=Scope.universal,
        metavar="BOOL",
    ),
]

CACHE_SETTINGS = [
    Setting(
        "ExtraSearchPaths",
        "Build",
        ListKind(item=search_path_item, metavar="PATH"),
        "Look for programs in these directories before $PATH",
        scope=Scope.universal,
        long="--extra-search-path",
        metavar="PATH",
    ),
    Setting(
        "Incremental",
        "Build",
        Choice(enum_type=Incremental, yes=Incremental.yes, no=Incremental.no, metavar="INCREMENTAL"),
        "Cache the image after package installation and reuse it ('strict': fail if there is no cache)",
        default=Incremental.no,
        scope=Scope.universal,
        short="-i",
        short_const=Incremental.yes,
    ),
    Setting(
        "CacheOnly",
        "Build",
        Choice(enum_type=CacheOnly, yes=CacheOnly.always, no=CacheOnly.auto, metavar="CACHEONLY"),
        "When to use only the package cache: always, metadata (no metadata sync), auto or never",
        default=CacheOnly.auto,
        scope=Scope.inherit,
    ),
    Setting(
        "SandboxTrees",
        "Build",
        ListKind(item=tree_item(required=True), metavar="PATH"),
        "Trees (SOURCE[:TARGET]) copied into the sandbox in which tools run",
        scope=Scope.universal,
        long="--sandbox-tree",
        long_aliases=("--package-manager-tree",),
        old_names=("PackageManagerTrees",),
        paths=("sandbox", "sandbox.tar", "pkgmngr", "pkgmngr.tar"),
        tools=True,
        metavar="PATH",
    ),
    Setting(
        "WorkspaceDirectory",
        "Build",
        PathKind(rules=_OPTIONAL_DIR, metavar="DIR"),
        "Directory for temporary files while building",
        scope=Scope.multiversal,
        long_aliases=("--workspace-dir",),
        metavar="DIR",
    ),
    Setting(
        "CacheDirectory",
        "Build",
        PathKind(rules=_OPTIONAL_DIR),
        "Directory for incremental build caches",
        scope=Scope.universal,
        long_aliases=("--cache-dir",),
        paths=("cache",),
        metavar="PATH",
    ),
    Setting(
        "CacheKey",
        "Build",
        String(nullable=False, metavar="KEY"),
        "Subdirectory of the cache directory for this image (&-specifiers are expanded later)",
        default="&d~&r~&a~&I",
        scope=Scope.inherit,
        metavar="KEY",
    ),
    Setting(
        "PackageCacheDirectory",
        "Build",
        PathKind(rules=_OPTIONAL_DIR),
        "Directory for the package manager's cache",
        scope=Scope.multiversal,
        long_aliases=("--package-cache-dir",),
        paths=("pkgcache",),
        metavar="PATH",
    ),
    Setting(
        "BuildDirectory",
        "Build",
        PathKind(rules=_OPTIONAL_DIR),
        "Persistent directory for out-of-tree builds of build scripts",
        scope=Scope.universal,
        long_aliases=("--build-dir",),
        paths=("builddir",),
        metavar="PATH",
    ),
    Setting(
        "BuildKey",
        "Build",
        String(nullable=False, metavar="KEY"),
        "Subdirectory of the build directory for this image ('-' for none; &-specifiers expanded later)",
        default="&d~&r~&a",
        scope=Scope.inherit,
        metavar="KEY",
    ),
    Setting(
        "UseSubvolumes",
        "Build",
        FeatureKind(),
        "Use btrfs subvolumes and snapshots for directory trees where possible",
        scope=Scope.universal,
        metavar="FEATURE",
    ),
    Setting(
        "RepartOffline",
        "Build",
        Boolean(),
        "Build disk images without loop devices",
        default=True,
        scope=Scope.universal,
    ),
    Setting(
        "History",
        "Build",
        Boolean(),
        "Remember the command line of the last build for later verbs",
        scope=Scope.main,
        metavar="BOOL",
    ),
]

SCRIPT_SETTINGS = [
    Setting(
        "BuildSources",
        "Build",
        BuildSourcesKind(
            item=tree_item(required=True, directory=True, absolute=False),
            match_enabled=True,
            metavar="PATH",
        ),
        "Source directories (SOURCE[:TARGET]) mounted below /work/src for scripts",
        default_factory=default_build_sources,
        scope=Scope.multiversal,
        match=True,
        metavar="PATH",
    ),
    Setting(
        "BuildSourcesEphemeral",
        "Build",
        Choice(
            enum_type=BuildSourcesEphemeral,
            yes=BuildSourcesEphemeral.yes,
            no=BuildSourcesEphemeral.no,
            metavar="EPHEMERAL",
        ),
        "Discard changes scripts make to the build sources ('buildcache': keep them for build scripts)",
        default=BuildSourcesEphemeral.no,
        scope=Scope.multiversal,
    ),
    Setting(
        "Environment",
        "Build",
        DictKind(
            item=environment_item, delimiter=" ", unescape=True, match_enabled=True, metavar="NAME[=VALUE]"
        ),
        "Variables for scripts and package managers (NAME alone passes on mkosi's own value)",
        short="-E",
        match=True,
        tools=True,
        metavar="NAME[=VALUE]",
    ),
    Setting(
        "EnvironmentFiles",
        "Build",
        ListKind(item=PathRules().parse, metavar="PATH"),
        "Files with variable assignments for scripts",
        long="--env-file",
        paths=("env",),
        tools=True,
        metavar="PATH",
    ),
    Setting(
        "WithTests",
        "Build",
        Boolean(),
        "Let build scripts run their tests ($WITH_TESTS)",
        default=True,
        scope=Scope.universal,
        short="-T",
        short_const=False,
    ),
    Setting(
        "WithNetwork",
        "Build",
        Boolean(),
        "Give build scripts network access",
        scope=Scope.universal,
        metavar="BOOL",
    ),
    Setting(
        "ProxyUrl",
        "Build",
        String(metavar="URL"),
        "Proxy for outgoing network connections (default: $http_proxy and friends)",
        default_factory=default_proxy_url,
        depends=("environment",),
        scope=Scope.multiversal,
        metavar="URL",
    ),
    Setting(
        "ProxyExclude",
        "Build",
        ListKind(metavar="HOST"),
        "Hosts to reach without the proxy (default: $no_proxy)",
        default_factory=default_proxy_exclude,
        depends=("environment",),
        scope=Scope.multiversal,
        metavar="HOST",
    ),
    Setting(
        "ProxyPeerCertificate",
        "Build",
        PathKind(),
        "Certificates to verify the proxy with (default: the host's CA bundle)",
        default_factory=default_proxy_peer_certificate,
        scope=Scope.multiversal,
    ),
    Setting(
        "ProxyClientCertificate",
        "Build",
        PathKind(rules=PathRules(secret=True)),
        "Certificate to authenticate to the proxy with",
        scope=Scope.multiversal,
    ),
    Setting(
        "ProxyClientKey",
        "Build",
        PathKind(rules=PathRules(secret=True)),
        "Private key to authenticate to the proxy with (default: the client certificate file)",
        default_factory=default_proxy_client_key,
        depends=("proxy_client_certificate",),
        scope=Scope.multiversal,
    ),
    Setting(
        "MakeScriptsExecutable",
        "Build",
        Boolean(),
        "Make scripts that are not executable executable instead of failing",
        default=False,
        scope=Scope.multiversal,
        metavar="BOOL",
    ),
    Setting(
        "ForeignUIDRange",
        "Build",
        Boolean(),
        "Own directory images by the foreign UID range",
        scope=Scope.main,
    ),
    Setting(
        "DelegateRanges",
        "Build",
        StrictInteger(),
        "Number of ranges of the foreign UID range to delegate (default: 0 as root, else 3)",
        default_factory=default_delegate_ranges,
        scope=Scope.main,
    ),
]

SETTINGS: list[Setting] = [*TOOLS_TREE_SETTINGS, *CACHE_SETTINGS, *SCRIPT_SETTINGS]

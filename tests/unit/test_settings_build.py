"""The [Build] settings: the table against the reference's facts, and parsing against the reference itself.

The differential part runs the reference implementation (Debian's mkosi, unpacked by
tools/reference-mkosi.sh) in a subprocess, so its ``mkosi`` package never meets ours: every input below is
parsed by both, and the JSON encodings must agree; where the reference dies, ours raises ValueProblem.
The machinery is in refdiff.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import refdiff

from mkosi.config.model import Incremental
from mkosi.config.settings import BY_NAME, build
from mkosi.config.values import ConfigTree

# ---------------------------------------------------------------------------------------------------------
# The table against the facts checked into tests/data: what the facts do not show.


def test_tools_tree_settings_are_not_image_configuration() -> None:
    for s in build.SETTINGS:
        assert s.in_json == (s.scope.value != "tools"), s.name


def test_short_options_store_constants() -> None:
    assert BY_NAME["Incremental"].short_const == Incremental.yes
    assert BY_NAME["WithTests"].short_const is False


# ---------------------------------------------------------------------------------------------------------
# Differential parsing against the reference.

PASSTHROUGH = ("MKOSI_TEST_PASSTHROUGH", "passed through")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
PROXY_ENV = {"https_proxy": "http://env-proxy:3128", "no_proxy": "localhost,.example.org"}

#: (setting, successive assignments). Relative paths name the files made by ``make_tree``.
CASES: list[tuple[str, list[str]]] = [
    ("ToolsTree", ["default"]),
    ("ToolsTree", ["yes"]),
    ("ToolsTree", ["no"]),
    ("ToolsTree", ["dir"]),
    ("ToolsTree", ["missing"]),
    ("ToolsTree", ["dir", ""]),
    ("ToolsTreeDistribution", ["debian"]),
    ("ToolsTreeDistribution", ["rhel-ubi"]),
    ("ToolsTreeDistribution", ["bogus"]),
    ("ToolsTreeDistribution", [""]),
    ("ToolsTreeRelease", ["trixie"]),
    ("ToolsTreeRelease", [""]),
    ("ToolsTreeProfiles", ["misc,devel"]),
    ("ToolsTreeProfiles", ["misc", "runtime package-manager"]),
    ("ToolsTreeProfiles", ["misc", ""]),
    ("ToolsTreeMirror", ["http://mirror.example/debian"]),
    ("ToolsTreeMirror", [""]),
    ("ToolsTreeSnapshot", ["20250101T000000Z"]),
    ("ToolsTreeSnapshot", [""]),
    ("ToolsTreeRepositories", ["a b,c"]),
    ("ToolsTreeRepositories", [""]),
    ("ToolsTreeSandboxTrees", ["dir"]),
    ("ToolsTreeSandboxTrees", ["dir:/etc", "file.txt:/etc/x"]),
    ("ToolsTreeSandboxTrees", ["dir:etc"]),
    ("ToolsTreeSandboxTrees", ["missing"]),
    ("ToolsTreeSandboxTrees", [""]),
    ("ToolsTreePackages", ["vim,git", "curl"]),
    ("ToolsTreePackages", [""]),
    ("ToolsTreePackageDirectories", ["dir"]),
    ("ToolsTreePackageDirectories", ["missing"]),
    ("ToolsTreeCertificates", ["no"]),
    ("ToolsTreeCertificates", ["yes"]),
    ("ToolsTreeCertificates", ["maybe"]),
    ("ToolsTreeCertificates", [""]),
    ("ExtraSearchPaths", ["dir"]),
    ("ExtraSearchPaths", ["/usr/bin"]),
    ("ExtraSearchPaths", ["missing"]),
    ("ExtraSearchPaths", ["dir", ""]),
    ("Incremental", ["yes"]),
    ("Incremental", ["strict"]),
    ("Incremental", ["true"]),
    ("Incremental", ["0"]),
    ("Incremental", ["bogus"]),
    ("Incremental", [""]),
    ("CacheOnly", ["always"]),
    ("CacheOnly", ["metadata"]),
    ("CacheOnly", ["never"]),
    ("CacheOnly", ["yes"]),
    ("CacheOnly", ["no"]),
    ("CacheOnly", ["bogus"]),
    ("CacheOnly", [""]),
    ("SandboxTrees", ["dir"]),
    ("SandboxTrees", ["dir:/usr/share/x"]),
    ("SandboxTrees", ["dir:relative"]),
    ("SandboxTrees", ["missing"]),
    ("SandboxTrees", [""]),
    ("WorkspaceDirectory", ["dir"]),
    ("WorkspaceDirectory", ["missing"]),
    ("WorkspaceDirectory", ["~/work"]),
    ("WorkspaceDirectory", [""]),
    ("CacheDirectory", ["cache"]),
    ("CacheDirectory", [""]),
    ("CacheKey", ["&d~&r~&I"]),
    ("CacheKey", [""]),
    ("PackageCacheDirectory", ["pkgcache"]),
    ("PackageCacheDirectory", [""]),
    ("BuildDirectory", ["builddir"]),
    ("BuildDirectory", [""]),
    ("BuildKey", ["-"]),
    ("BuildKey", [""]),
    ("UseSubvolumes", ["auto"]),
    ("UseSubvolumes", ["yes"]),
    ("UseSubvolumes", ["disabled"]),
    ("UseSubvolumes", ["bogus"]),
    ("UseSubvolumes", [""]),
    ("RepartOffline", ["no"]),
    ("RepartOffline", [""]),
    ("History", ["yes"]),
    ("History", ["bogus"]),
    ("BuildSources", ["dir"]),
    ("BuildSources", ["dir:src"]),
    ("BuildSources", ["dir:/src", "dir/sub:sub"]),
    ("BuildSources", ["file.txt"]),
    ("BuildSources", ["missing"]),
    ("BuildSources", ["dir", ""]),
    ("BuildSourcesEphemeral", ["yes"]),
    ("BuildSourcesEphemeral", ["buildcache"]),
    ("BuildSourcesEphemeral", ["off"]),
    ("BuildSourcesEphemeral", ["bogus"]),
    ("BuildSourcesEphemeral", [""]),
    ("Environment", ["A=1 B=2"]),
    ("Environment", ["'A=hello world' B="]),
    ("Environment", [PASSTHROUGH[0]]),
    ("Environment", ["MKOSI_TEST_NOT_SET_ANYWHERE"]),
    ("Environment", ["A=1", "A=2 C=3"]),
    ("Environment", ["A=1", ""]),
    ("Environment", ['"unbalanced']),
    ("EnvironmentFiles", ["file.txt"]),
    ("EnvironmentFiles", ["missing"]),
    ("EnvironmentFiles", ["file.txt", ""]),
    ("WithTests", ["no"]),
    ("WithTests", [""]),
    ("WithNetwork", ["yes"]),
    ("ProxyUrl", ["http://proxy.example:3128"]),
    ("ProxyUrl", [""]),
    ("ProxyExclude", ["a.example,b.example"]),
    ("ProxyExclude", [""]),
    ("ProxyPeerCertificate", ["file.txt"]),
    ("ProxyPeerCertificate", ["missing"]),
    ("ProxyPeerCertificate", [""]),
    ("ProxyClientCertificate", ["secret.key"]),
    ("ProxyClientCertificate", ["open.key"]),
    ("ProxyClientCertificate", ["missing"]),
    ("ProxyClientKey", ["secret.key"]),
    ("ProxyClientKey", ["open.key"]),
    ("ProxyClientKey", [""]),
    ("MakeScriptsExecutable", ["yes"]),
    ("ForeignUIDRange", ["yes"]),
    ("ForeignUIDRange", ["bogus"]),
    ("DelegateRanges", ["2"]),
    ("DelegateRanges", ["-1"]),
    ("DelegateRanges", ["bogus"]),
    ("DelegateRanges", [""]),
]

#: (setting, namespace of its default factory). Enum values by value, paths as strings.
FACTORY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("ToolsTreeDistribution", {}),
    ("ToolsTreeRelease", {"tools_tree_distribution": "debian"}),
    ("ToolsTreeRelease", {"tools_tree_distribution": "ubuntu"}),
    ("ToolsTreeRelease", {"tools_tree_distribution": "fedora"}),
    ("ToolsTreeRelease", {"tools_tree_distribution": "custom"}),
    *[
        (name, {"distribution": d, key: value, "tools_tree_distribution": t})
        for name, key, value in (
            ("ToolsTreeMirror", "mirror", "http://mirror.example"),
            ("ToolsTreeSnapshot", "snapshot", "20250101T000000Z"),
        )
        for d, t in (("debian", "debian"), ("ubuntu", "debian"))
    ],
    ("ToolsTreeMirror", {"distribution": "debian", "mirror": None, "tools_tree_distribution": "debian"}),
    ("BuildSources", {"directory": "/srv/project"}),
    ("BuildSources", {"directory": None}),
    ("ProxyUrl", {"environment": {}}),
    ("ProxyExclude", {"environment": {}}),
    ("ProxyPeerCertificate", {}),
    ("ProxyClientKey", {"proxy_client_certificate": "/etc/proxy.crt"}),
    ("ProxyClientKey", {"proxy_client_certificate": None}),
]


def make_tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    for name in ("cache", "pkgcache", "builddir"):
        (root / name).mkdir()
    (root / "file.txt").write_text("A=1\n")
    (root / "secret.key").write_text("secret")
    (root / "secret.key").chmod(0o600)
    (root / "open.key").write_text("not so secret")
    (root / "open.key").chmod(0o644)


class TestBuild(refdiff.ParsedValueChecks):
    SECTION = "Build"
    CASES = CASES
    FACTORY_CASES = FACTORY_CASES
    make_tree = staticmethod(make_tree)
    UNSET_ENV = (*PROXY_VARIABLES, "MKOSI_HOST_DISTRIBUTION")
    SET_ENV = PROXY_ENV | dict([PASSTHROUGH])
    #: DelegateRanges' factory needs nothing from the namespace: compared with the reference's default.
    FACTORY_DEFAULTS = frozenset({"DelegateRanges"})


# ---------------------------------------------------------------------------------------------------------
# Behaviour the reference cannot show directly.


def test_proxy_defaults_prefer_environment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Deliberately unlike the reference (which iterates the keys of Environment= and so yields ""): a
    # proxy configured in Environment= is the default, before mkosi's own environment.
    monkeypatch.setenv("http_proxy", "http://from-process:1")
    environment = {"HTTPS_PROXY": "http://from-config:2", "no_proxy": "a,b"}
    assert build.default_proxy_url({"environment": environment}) == "http://from-config:2"
    assert build.default_proxy_exclude({"environment": environment}) == ["a", "b"]
    assert build.default_proxy_url({"environment": {}}) == "http://from-process:1"


def test_build_sources_match_targets() -> None:
    kind = BY_NAME["BuildSources"].kind
    value = [ConfigTree(Path("/src"), Path("sub")), ConfigTree(Path("/other"), None)]
    assert kind.matches("sub", value)
    assert kind.matches("/sub", value)
    assert not kind.matches("other", value)


def test_environment_match() -> None:
    kind = BY_NAME["Environment"].kind
    assert kind.matches("A", {"A": "1"})
    assert kind.matches("A=1", {"A": "1"})
    assert not kind.matches("A=2", {"A": "1"})
    assert not kind.matches("B", {"A": "1"})


def test_delegate_ranges_default_depends_on_user() -> None:
    factory = BY_NAME["DelegateRanges"].default_factory
    assert factory is not None
    expected = 0 if os.getuid() == 0 and os.getgid() == 0 else 3
    assert factory({}) == expected

"""The [Build] settings: the table against the reference's facts, and parsing against the reference itself.

The differential part runs the reference implementation (Debian's mkosi, unpacked by
tools/reference-mkosi.sh) in a subprocess, so its ``mkosi`` package never meets ours: every input below is
parsed by both, and the JSON encodings must agree; where the reference dies, ours raises ValueProblem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mkosi.config.model import Incremental
from mkosi.config.settings import build
from mkosi.config.settings.base import Setting
from mkosi.config.values import ConfigTree, ValueProblem

SECTION = "Build"
FIXTURE = Path(__file__).parent.parent / "data" / "settings-build.json"
BY_NAME: dict[str, Setting] = {s.name: s for s in build.SETTINGS}

# ---------------------------------------------------------------------------------------------------------
# The table against the facts checked into tests/data (generated once from the reference's facts.json).


def test_every_reference_setting_is_in_the_table() -> None:
    facts = json.loads(FIXTURE.read_text())["settings"]
    assert [f["name"] for f in facts] == [s.name for s in build.SETTINGS]
    for f in facts:
        s = BY_NAME[f["name"]]
        assert s.section == f["section"] == SECTION
        assert s.scope.value == f["scope"], s.name
        assert s.short == f["short"], s.name
        assert s.long_option == f["long"], s.name
        assert list(s.long_aliases) == f["long_aliases"], s.name
        assert list(s.old_names) == f["old_names"], s.name
        assert s.specifier == f["specifier"], s.name
        assert list(s.paths) == f["paths"], s.name
        assert list(s.path_globs) == f["path_globs"], s.name
        assert s.path_read_text == f["path_read_text"], s.name
        assert s.path_secret == f["path_secret"], s.name
        assert s.tools == f["tools"], s.name
        assert s.matchable == f["match"], s.name
        assert s.kind.nullable == f["nullable"], s.name
        if f["metavar"] is not None:
            assert s.metavar == f["metavar"], s.name
        assert s.help and "\n" not in s.help, s.name


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

#: Run by the reference's Python: reads {"cases", "factories", "names"} on stdin, prints results as JSON.
REFERENCE_HELPER = r"""
import dataclasses, enum, json, sys, uuid
from pathlib import Path
from mkosi.config import SETTINGS_LOOKUP_BY_NAME as SETTINGS
from mkosi.distribution import Distribution

def enc(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"".join(p.capitalize() for p in f.name.split("_")): enc(getattr(v, f.name))
                for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (Path, uuid.UUID)):
        return str(v)
    return v

def attempt(fn):
    try:
        return {"ok": True, "value": enc(fn())}
    except BaseException as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}

def run_case(name, texts):
    value = None
    for text in texts:
        value = SETTINGS[name].parse(text, value)
    return value

def namespace(ns):
    out = {}
    for k, v in ns.items():
        if k in ("distribution", "tools_tree_distribution") and v is not None:
            v = Distribution(v)
        elif k in ("directory", "proxy_client_certificate") and v is not None:
            v = Path(v)
        out[k] = v
    return out

def default(s):
    return s.default if s.default is not None else s.parse(None, None)

request = json.load(sys.stdin)
json.dump({
    "cases": [attempt(lambda: run_case(n, t)) for n, t in request["cases"]],
    "factories": [
        attempt(lambda: SETTINGS[n].default_factory(namespace(x))) for n, x in request["factories"]
    ],
    "defaults": {n: attempt(lambda: default(SETTINGS[n])) for n in request["names"]},
}, sys.stdout)
"""

REFERENCE_PATHS = (
    os.environ.get("MKOSI_REFERENCE_PYTHONPATH", ""),
    "/opt/ref/root/usr/lib/python3/dist-packages",
    "/var/tmp/mkosi-reference/usr/lib/python3/dist-packages",
)


def reference_pythonpath() -> str:
    for candidate in REFERENCE_PATHS:
        if candidate and (Path(candidate) / "mkosi" / "config.py").exists():
            return candidate
    pytest.fail(
        "the reference mkosi is needed for this test: run tools/reference-mkosi.sh "
        "(or point MKOSI_REFERENCE_PYTHONPATH at its dist-packages directory)"
    )


def make_tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    for name in ("cache", "pkgcache", "builddir"):
        (root / name).mkdir()
    (root / "file.txt").write_text("A=1\n")
    (root / "secret.key").write_text("secret")
    (root / "secret.key").chmod(0o600)
    (root / "open.key").write_text("not so secret")
    (root / "open.key").chmod(0o644)


def reference_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and k != "MKOSI_HOST_DISTRIBUTION"}
    return env | PROXY_ENV | {PASSTHROUGH[0]: PASSTHROUGH[1]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build-settings")
    make_tree(root)
    return root


@pytest.fixture(scope="module")
def reference(tree: Path) -> dict[str, Any]:
    request = {"cases": CASES, "factories": FACTORY_CASES, "names": [s.name for s in build.SETTINGS]}
    result = subprocess.run(
        [sys.executable, "-c", REFERENCE_HELPER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=tree,
        env=reference_environment() | {"PYTHONPATH": reference_pythonpath()},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def ours(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our side runs in the same directory and environment as the reference's."""
    monkeypatch.chdir(tree)
    for name in (*PROXY_VARIABLES, "MKOSI_HOST_DISTRIBUTION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (*PROXY_ENV.items(), PASSTHROUGH):
        monkeypatch.setenv(name, value)


def test_every_setting_has_cases() -> None:
    assert {name for name, _ in CASES} == set(BY_NAME)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{n}={'|'.join(t)}" for n, t in CASES])
@pytest.mark.usefixtures("ours")
def test_parse_like_the_reference(index: int, reference: dict[str, Any]) -> None:
    name, texts = CASES[index]
    expected = reference["cases"][index]
    kind = BY_NAME[name].kind
    if not expected["ok"]:
        with pytest.raises(ValueProblem):
            value = None
            for text in texts:
                value = kind.parse(text, value)
        return
    value = None
    for text in texts:
        value = kind.parse(text, value)
    assert kind.to_json(value) == expected["value"]


@pytest.mark.parametrize("name", list(BY_NAME))
@pytest.mark.usefixtures("ours")
def test_default_like_the_reference(name: str, reference: dict[str, Any]) -> None:
    setting = BY_NAME[name]
    expected = reference["defaults"][name]
    assert expected["ok"], expected
    if setting.default_factory is not None and name != "DelegateRanges":
        return  # compared in test_default_factory_like_the_reference
    if setting.default_factory is not None:
        value = setting.default_factory({"image": "main", "directory": Path.cwd()})
    elif setting.default is not None:
        value = setting.default
    else:
        value = setting.kind.unset()
    assert setting.kind.to_json(value) == expected["value"]


@pytest.mark.parametrize(
    "index", range(len(FACTORY_CASES)), ids=[f"{n}-{i}" for i, (n, _) in enumerate(FACTORY_CASES)]
)
@pytest.mark.usefixtures("ours")
def test_default_factory_like_the_reference(index: int, reference: dict[str, Any]) -> None:
    name, ns = FACTORY_CASES[index]
    expected = reference["factories"][index]
    assert expected["ok"], expected
    setting = BY_NAME[name]
    assert setting.default_factory is not None
    assert set(setting.depends) <= set(ns), "the case must provide every dependency"
    value = setting.default_factory({"image": "main", "directory": None} | ns)
    assert setting.kind.to_json(value) == expected["value"]


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

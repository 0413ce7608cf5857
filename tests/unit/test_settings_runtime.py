"""The [Runtime] settings: the table against the reference's facts, and parsing against the reference itself.

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

from mkosi.config.settings import runtime
from mkosi.config.settings.base import Setting
from mkosi.config.values import ValueProblem

SECTION = "Runtime"
FIXTURE = Path(__file__).parent.parent / "data" / "settings-runtime.json"
BY_NAME: dict[str, Setting] = {s.name: s for s in runtime.SETTINGS}

# ---------------------------------------------------------------------------------------------------------
# The table against the facts checked into tests/data (generated once from the reference's facts.json).


def test_every_reference_setting_is_in_the_table() -> None:
    facts = json.loads(FIXTURE.read_text())["settings"]
    assert [f["name"] for f in facts] == [s.name for s in runtime.SETTINGS]
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
        assert s.in_json, s.name


def test_attribute_names_read_well() -> None:
    dests = {s.name: s.dest for s in runtime.SETTINGS}
    assert dests["CPUs"] == "cpus"
    assert dests["RAM"] == "ram"
    assert dests["KVM"] == "kvm"
    assert dests["VSock"] == "vsock"
    assert dests["VSockCID"] == "vsock_cid"
    assert dests["NSpawnSettings"] == "nspawn_settings"
    assert dests["MaxMem"] == "max_mem"


# ---------------------------------------------------------------------------------------------------------
# Differential parsing against the reference.

#: (setting, successive assignments). Relative paths name the files made by ``make_tree``.
CASES: list[tuple[str, list[str]]] = [
    ("NSpawnSettings", ["file.txt"]),
    ("NSpawnSettings", ["missing"]),
    ("NSpawnSettings", [""]),
    ("Ephemeral", ["yes"]),
    ("Ephemeral", ["bogus"]),
    ("Ephemeral", [""]),
    ("Credentials", ["a=1 b=2"]),
    ("Credentials", ["'a=hello world' b="]),
    ("Credentials", ["creds"]),
    ("Credentials", ["creds/one"]),
    ("Credentials", ["a=1", "creds"]),
    ("Credentials", ["missing"]),
    ("Credentials", ["a=1", ""]),
    ("Credentials", ['"a=unbalanced']),
    ("KernelCommandLineExtra", ["quiet loglevel=3"]),
    ("KernelCommandLineExtra", ["a", "b c"]),
    ("KernelCommandLineExtra", ["a", ""]),
    ("RuntimeTrees", ["dir"]),
    ("RuntimeTrees", ["missing:/mnt"]),
    ("RuntimeTrees", ["dir:relative", "file.txt:/x"]),
    ("RuntimeTrees", ["dir", ""]),
    ("RuntimeSize", ["10G"]),
    ("RuntimeSize", ["1.5M"]),
    ("RuntimeSize", ["1000"]),
    ("RuntimeSize", ["bogus"]),
    ("RuntimeSize", ["0"]),
    ("RuntimeSize", [""]),
    ("RuntimeNetwork", ["interface"]),
    ("RuntimeNetwork", ["none"]),
    ("RuntimeNetwork", ["bogus"]),
    ("RuntimeNetwork", [""]),
    ("RuntimeBuildSources", ["yes"]),
    ("RuntimeBuildSources", [""]),
    ("BindUser", ["yes"]),
    ("BindUser", ["bogus"]),
    ("SshKey", ["secret.key"]),
    ("SshKey", ["open.key"]),
    ("SshKey", ["missing"]),
    ("SshKey", [""]),
    ("SshCertificate", ["file.txt"]),
    ("SshCertificate", ["missing"]),
    ("VirtualMachineMonitor", ["vmspawn"]),
    ("VirtualMachineMonitor", ["bogus"]),
    ("VirtualMachineMonitor", [""]),
    ("Machine", ["foo"]),
    ("Machine", [""]),
    ("ForwardJournal", ["out.journal"]),
    ("ForwardJournal", [""]),
    ("SysupdateDirectory", ["dir"]),
    ("SysupdateDirectory", ["missing"]),
    ("SysupdateDirectory", [""]),
    ("Console", ["gui"]),
    ("Console", ["read-only"]),
    ("Console", ["bogus"]),
    ("Console", [""]),
    ("CPUs", ["4"]),
    ("CPUs", ["0"]),
    ("CPUs", ["bogus"]),
    ("CPUs", [""]),
    ("RAM", ["4G"]),
    ("RAM", ["1000"]),
    ("RAM", ["bogus"]),
    ("RAM", [""]),
    ("MaxMem", ["8G"]),
    ("MaxMem", [""]),
    ("KVM", ["yes"]),
    ("KVM", ["auto"]),
    ("KVM", ["disabled"]),
    ("KVM", ["bogus"]),
    ("KVM", [""]),
    ("CXL", ["yes"]),
    ("CXL", [""]),
    ("VSock", ["no"]),
    ("VSock", [""]),
    ("VSockCID", ["auto"]),
    ("VSockCID", ["hash"]),
    ("VSockCID", ["3"]),
    ("VSockCID", ["4294967294"]),
    ("VSockCID", ["4294967295"]),
    ("VSockCID", ["2"]),
    ("VSockCID", ["bogus"]),
    ("VSockCID", [""]),
    ("TPM", ["enabled"]),
    ("TPM", ["bogus"]),
    ("Removable", ["yes"]),
    ("DiskType", ["nvme"]),
    ("DiskType", ["scsi-cd"]),
    ("DiskType", ["bogus"]),
    ("DiskType", [""]),
    ("Firmware", ["uefi-secure-boot"]),
    ("Firmware", ["linux-noinitrd"]),
    ("Firmware", ["bogus"]),
    ("Firmware", [""]),
    ("FirmwareVariables", ["microsoft"]),
    ("FirmwareVariables", ["microsoft-mok"]),
    ("FirmwareVariables", ["custom"]),
    ("FirmwareVariables", ["missing.fd"]),
    ("FirmwareVariables", [""]),
    ("Linux", ["/boot/vmlinuz-&b"]),
    ("Linux", [""]),
    ("Drives", ["d1:1G"]),
    ("Drives", ["d1:1G:dir:cache.direct=on:f1:persist"]),
    ("Drives", ["d1:1G::::persist"]),
    ("Drives", ["d1:512 d2:1M", "d3:2G"]),
    ("Drives", ["d1"]),
    ("Drives", ["a/b:1G"]),
    ("Drives", ["a:1G:::::"]),
    ("Drives", ["a:1G:dir:o:f:persist:extra"]),
    ("Drives", ["d1:bogus"]),
    ("Drives", ["d1:1G:::::bogus"]),
    ("Drives", ["d1:1G:missing"]),
    ("Drives", ["d1:1G", ""]),
    ("QemuArgs", ["-device virtio-rng-pci"]),
    ("QemuArgs", ["-smbios 'type=11,value=a b'"]),
    ("QemuArgs", ["-a", "-b"]),
    ("QemuArgs", ["-a", ""]),
    ("Register", ["no"]),
    ("Register", ["auto"]),
    ("Register", ["bogus"]),
    ("StorageTargetMode", ["yes"]),
    ("StorageTargetMode", [""]),
]

#: (setting, namespace of its default factory). Paths as strings.
FACTORY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("Machine", {"directory": "/srv/my-image"}),
    ("Machine", {"directory": None}),
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
    (root / "dir").mkdir()
    (root / "creds" / "subdir").mkdir(parents=True)
    (root / "creds" / "one").write_text("1")
    (root / "creds" / "two").write_text("2")
    (root / "file.txt").write_text("[Exec]\n")
    (root / "secret.key").write_text("secret")
    (root / "secret.key").chmod(0o600)
    (root / "open.key").write_text("not so secret")
    (root / "open.key").chmod(0o644)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtime-settings")
    make_tree(root)
    return root


@pytest.fixture(scope="module")
def reference(tree: Path) -> dict[str, Any]:
    request = {"cases": CASES, "factories": FACTORY_CASES, "names": [s.name for s in runtime.SETTINGS]}
    result = subprocess.run(
        [sys.executable, "-c", REFERENCE_HELPER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=tree,
        env=os.environ | {"PYTHONPATH": reference_pythonpath()},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def ours(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our side runs in the same directory as the reference's."""
    monkeypatch.chdir(tree)


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
    if setting.default_factory is not None:
        return  # compared in test_default_factory_like_the_reference
    if setting.default is not None:
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


def test_vsock_cid_summary_names_constants() -> None:
    kind = BY_NAME["VSockCID"].kind
    assert kind.to_text(runtime.VSOCK_CID_AUTO) == "auto"
    assert kind.to_text(runtime.VSOCK_CID_HASH) == "hash"
    assert kind.to_text(42) == "42"


def test_credentials_keep_earlier_values(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("x")
    kind = BY_NAME["Credentials"].kind
    value = kind.parse("a=1", None)
    value = kind.parse(str(tmp_path / "token"), value)
    assert [c.name for c in value] == ["a", "token"]
    assert value[1].path == tmp_path / "token"
    assert kind.unset() == []

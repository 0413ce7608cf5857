"""The [Runtime] settings: the table against the reference's facts, and parsing against the reference itself.

The differential part runs the reference implementation (Debian's mkosi, unpacked by
tools/reference-mkosi.sh) in a subprocess, so its ``mkosi`` package never meets ours: every input below is
parsed by both, and the JSON encodings must agree; where the reference dies, ours raises ValueProblem.
The machinery is in refdiff.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import refdiff

from mkosi.config.settings import BY_NAME, runtime
from mkosi.config.settings.base import Setting

# ---------------------------------------------------------------------------------------------------------
# The table against the facts checked into tests/data: what the facts do not show.


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


class TestRuntime(refdiff.ParsedValueChecks):
    SECTION = "Runtime"
    CASES = CASES
    FACTORY_CASES = FACTORY_CASES
    make_tree = staticmethod(make_tree)

    def check_facts(self, setting: Setting, fact: dict[str, Any]) -> None:
        super().check_facts(setting, fact)
        assert setting.in_json, setting.name


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

"""Settings of the [Runtime] section (called [Host] in old configurations): booting and running images."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mkosi.config.model import ConsoleMode, DiskType, DriveFlag, Firmware, Network, Vmm
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import (
    Boolean,
    Choice,
    Credential,
    Custom,
    Drive,
    Feature,
    FeatureKind,
    Integer,
    ListKind,
    PathKind,
    PathRules,
    Size,
    String,
    ValueProblem,
    enum_item,
    is_filename,
    parse_size,
    split_words,
    tree_item,
)

# ---------------------------------------------------------------------------------------------------------
# Local kinds and item parsers.


#: VSockCID= constants, stored as negative numbers (never valid connection IDs).
VSOCK_CID_AUTO = -1
VSOCK_CID_HASH = -2


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class VsockCIDKind(Integer):
    """A vsock connection ID in [3, 0xFFFFFFFF), or ``auto`` / ``hash``."""

    constants: tuple[tuple[str, int], ...] = (("auto", VSOCK_CID_AUTO), ("hash", VSOCK_CID_HASH))
    minimum: int | None = 3
    maximum: int | None = 0xFFFFFFFE
    what: str = "a vsock connection ID (a number in [3, 0xFFFFFFFF), 'auto' or 'hash')"
    metavar: str = "NUMBER|auto|hash"

    def to_text(self, value: Any) -> str:
        names = {number: name for name, number in self.constants}
        return names.get(value, str(value))


DRIVE_FORMAT = "ID:SIZE[:DIRECTORY[:OPTIONS[:FILE-ID[:FLAGS]]]]"
_drive_flag = enum_item(DriveFlag)


def parse_drive(text: str) -> Drive:
    """``ID:SIZE[:DIRECTORY[:OPTIONS[:FILE-ID[:FLAGS]]]]``; empty fields take their defaults."""
    parts = text.split(":")
    if len(parts) > 6:
        raise ValueProblem(f"drive {text!r} has too many fields ({DRIVE_FORMAT})")
    if len(parts) < 2:
        raise ValueProblem(f"drive {text!r} has no size ({DRIVE_FORMAT})")
    drive_id = parts[0]
    if not is_filename(drive_id):
        raise ValueProblem(f"drive ID {drive_id!r} must not contain a slash or be '.' or '..'")

    def field(index: int) -> str:
        return parts[index] if len(parts) > index else ""

    return Drive(
        id=drive_id,
        size=parse_size(parts[1]),
        directory=PathRules().parse(field(2)) if field(2) else None,
        options=field(3) or None,
        file_id=field(4) or drive_id,
        flags=[_drive_flag(flag) for flag in field(5).split(",")] if field(5) else [],
    )


def parse_credentials(text: str, old: list[Credential] | None) -> list[Credential] | None:
    """``NAME=VALUE`` words, or one path: a file (named after it) or a directory of such files."""
    new = list(old) if old else []
    if text and "=" not in text:
        path = Path(text)
        if path.is_dir():
            new += [Credential(p.name, path=p.absolute()) for p in sorted(path.iterdir()) if not p.is_dir()]
        elif path.exists():
            new.append(Credential(path.name, path=path.absolute()))
        else:
            raise ValueProblem(f"{path.absolute()} does not exist (a credential is NAME=VALUE or a path)")
        return new
    words = split_words(text, " ", True)
    if not words:
        return None
    for word in words:
        if word:
            name, _, value = word.partition("=")
            new.append(Credential(name.strip(), value=value.strip()))
    return new


def _credentials_text(value: Any) -> str:
    if not value:
        return "none"
    return "\n".join(c.name for c in value)


def default_machine(ns: Mapping[str, Any]) -> str | None:
    directory = ns["directory"]
    return Path(directory).name if directory else None


# ---------------------------------------------------------------------------------------------------------
# The settings.

CONTAINER_SETTINGS = [
    Setting(
        "NSpawnSettings",
        "Runtime",
        PathKind(),
        "A .nspawn settings file for systemd-nspawn (also placed next to the image)",
        scope=Scope.main,
        long="--settings",
        paths=("nspawn",),
        metavar="PATH",
        attr="nspawn_settings",
    ),
    Setting(
        "Ephemeral",
        "Runtime",
        Boolean(),
        "Boot a temporary snapshot of the image that is removed afterwards",
        scope=Scope.main,
        metavar="BOOL",
    ),
    Setting(
        "Credentials",
        "Runtime",
        Custom(parse_fn=parse_credentials, unset_fn=list, collection=True, text_fn=_credentials_text),
        "systemd credentials for the container or VM (NAME=VALUE, a file or a directory of files)",
        scope=Scope.main,
        long="--credential",
        paths=("credentials",),
        metavar="NAME=VALUE",
    ),
    Setting(
        "KernelCommandLineExtra",
        "Runtime",
        ListKind(delimiter=" ", metavar="OPTIONS"),
        "Extra kernel command line arguments when booting the image",
        scope=Scope.main,
        metavar="OPTIONS",
    ),
    Setting(
        "RuntimeTrees",
        "Runtime",
        ListKind(item=tree_item(required=False, absolute=False), metavar="SOURCE:[TARGET]"),
        "Directories (SOURCE[:TARGET]) to mount into the container or VM",
        scope=Scope.main,
        long="--runtime-tree",
        metavar="SOURCE:[TARGET]",
    ),
    Setting(
        "RuntimeSize",
        "Runtime",
        Size(),
        "Grow disk images to this size before booting them",
        scope=Scope.main,
        metavar="SIZE",
    ),
    Setting(
        "RuntimeNetwork",
        "Runtime",
        Choice(enum_type=Network, metavar="NETWORK"),
        "Networking when booting the image: user, interface or none",
        default=Network.user,
        scope=Scope.main,
    ),
    Setting(
        "RuntimeBuildSources",
        "Runtime",
        Boolean(),
        "Mount the build sources and build directory into the booted image",
        scope=Scope.main,
        metavar="BOOL",
    ),
    Setting(
        "BindUser",
        "Runtime",
        Boolean(),
        "Bind the invoking user and their home directory into the container or VM",
        scope=Scope.main,
        metavar="BOOL",
    ),
    Setting(
        "SshKey",
        "Runtime",
        PathKind(rules=PathRules(secret=True)),
        "Private key (PEM) for mkosi ssh",
        scope=Scope.main,
        paths=("key",),
        metavar="PATH",
    ),
    Setting(
        "SshCertificate",
        "Runtime",
        PathKind(),
        "Certificate (X.509, PEM) provisioned as SSH key in VMs",
        scope=Scope.main,
        paths=("crt",),
        metavar="PATH",
    ),
    Setting(
        "VirtualMachineMonitor",
        "Runtime",
        Choice(enum_type=Vmm, metavar="VMM"),
        "Program that boots virtual machines: qemu or vmspawn",
        default=Vmm.qemu,
        scope=Scope.main,
        long="--vmm",
    ),
    Setting(
        "Machine",
        "Runtime",
        String(metavar="NAME"),
        "Machine name of the booted image (default: the name of the directory mkosi runs in)",
        default_factory=default_machine,
        scope=Scope.main,
        metavar="NAME",
    ),
    Setting(
        "ForwardJournal",
        "Runtime",
        PathKind(rules=PathRules(required=False)),
        "Forward the journal of the container or VM to this file (.journal) or directory",
        scope=Scope.main,
        metavar="PATH",
    ),
    Setting(
        "SysupdateDirectory",
        "Runtime",
        PathKind(),
        "Directory with systemd-sysupdate transfer definitions for mkosi sysupdate",
        scope=Scope.main,
        long_aliases=("--sysupdate-dir",),
        paths=("sysupdate",),
        metavar="PATH",
    ),
]

VM_SETTINGS = [
    Setting(
        "Console",
        "Runtime",
        Choice(enum_type=ConsoleMode, metavar="MODE"),
        "VM console: interactive, read-only, native, gui or headless",
        default=ConsoleMode.native,
        scope=Scope.main,
        metavar="MODE",
    ),
    Setting(
        "CPUs",
        "Runtime",
        Integer(),
        "Number of CPUs of the VM (0: as many as mkosi may use)",
        default=1,
        scope=Scope.main,
        long="--cpus",
        long_aliases=("--qemu-smp",),
        old_names=("QemuSmp",),
        metavar="CPUS",
        attr="cpus",
    ),
    Setting(
        "RAM",
        "Runtime",
        Size(nullable=False, metavar="BYTES"),
        "Memory of the VM",
        default=2 * 1024**3,
        scope=Scope.main,
        long_aliases=("--qemu-mem",),
        old_names=("QemuMem",),
        metavar="BYTES",
        attr="ram",
    ),
    Setting(
        "MaxMem",
        "Runtime",
        Size(nullable=False, metavar="BYTES"),
        "Maximum memory of the VM including hotplugged memory (default: RAM=)",
        scope=Scope.main,
        long="--maxmem",
        metavar="BYTES",
    ),
    Setting(
        "KVM",
        "Runtime",
        FeatureKind(),
        "Use KVM acceleration for VMs",
        scope=Scope.main,
        long_aliases=("--qemu-kvm",),
        old_names=("QemuKvm",),
        metavar="FEATURE",
        attr="kvm",
    ),
    Setting(
        "CXL",
        "Runtime",
        Boolean(),
        "Enable CXL devices in the VM",
        scope=Scope.main,
        metavar="BOOLEAN",
        attr="cxl",
    ),
    Setting(
        "VSock",
        "Runtime",
        FeatureKind(),
        "Give the VM a vsock device",
        scope=Scope.main,
        long="--vsock",
        long_aliases=("--qemu-vsock",),
        old_names=("QemuVsock",),
        metavar="FEATURE",
        attr="vsock",
    ),
    Setting(
        "VSockCID",
        "Runtime",
        VsockCIDKind(),
        "vsock connection ID of the VM: a number, 'auto' (find a free one) or 'hash' (from the image path)",
        default=VSOCK_CID_AUTO,
        scope=Scope.main,
        long="--vsock-cid",
        long_aliases=("--qemu-vsock-cid",),
        old_names=("QemuVsockConnectionId",),
        metavar="NUMBER|auto|hash",
        attr="vsock_cid",
    ),
    Setting(
        "TPM",
        "Runtime",
        FeatureKind(),
        "Give the VM a software TPM",
        scope=Scope.main,
        long_aliases=("--qemu-swtpm",),
        old_names=("QemuSwtpm",),
        metavar="FEATURE",
        attr="tpm",
    ),
    Setting(
        "Removable",
        "Runtime",
        Boolean(),
        "Attach the image to the VM as a removable drive",
        scope=Scope.main,
        long_aliases=("--qemu-removable",),
        old_names=("QemuRemovable",),
        metavar="BOOLEAN",
    ),
    Setting(
        "DiskType",
        "Runtime",
        Choice(enum_type=DiskType, metavar="TYPE"),
        "Device type of the VM's root disk: virtio-blk, virtio-scsi, nvme or scsi-cd",
        default=DiskType.virtio_blk,
        scope=Scope.main,
    ),
    Setting(
        "Firmware",
        "Runtime",
        Choice(enum_type=Firmware, metavar="FIRMWARE"),
        "VM firmware: auto, uefi, uefi-secure-boot, linux or linux-noinitrd",
        default=Firmware.auto,
        scope=Scope.main,
        long_aliases=("--qemu-firmware",),
        old_names=("QemuFirmware",),
    ),
    Setting(
        "FirmwareVariables",
        "Runtime",
        PathKind(rules=PathRules(required=False, constants=("custom", "microsoft", "microsoft-mok"))),
        "UEFI variables file for the VM, or custom, microsoft or microsoft-mok",
        scope=Scope.main,
        long_aliases=("--qemu-firmware-variables",),
        old_names=("QemuFirmwareVariables",),
        metavar="PATH",
    ),
    Setting(
        "Linux",
        "Runtime",
        String(metavar="PATH"),
        "Kernel image for direct kernel boot (&b expands to the build directory)",
        scope=Scope.main,
        long_aliases=("--qemu-kernel",),
        old_names=("QemuKernel",),
        metavar="PATH",
    ),
    Setting(
        "Drives",
        "Runtime",
        ListKind(item=parse_drive, delimiter=" ", metavar="DRIVE"),
        f"Extra drives for the VM ({DRIVE_FORMAT})",
        scope=Scope.main,
        long="--drive",
        long_aliases=("--qemu-drive",),
        old_names=("QemuDrives",),
        metavar="DRIVE",
    ),
    Setting(
        "QemuArgs",
        "Runtime",
        ListKind(delimiter=" ", unescape=True, metavar="ARGS"),
        "Extra arguments for qemu (shell-quoted)",
        scope=Scope.main,
        metavar="ARGS",
    ),
    Setting(
        "Register",
        "Runtime",
        FeatureKind(),
        "Register the container or VM with systemd-machined",
        default=Feature.auto,
        scope=Scope.main,
        metavar="BOOL",
    ),
    Setting(
        "StorageTargetMode",
        "Runtime",
        FeatureKind(),
        "Serve disk images over NVMe-TCP with systemd-storagetm in mkosi serve",
        default=Feature.auto,
        scope=Scope.main,
        metavar="FEATURE",
    ),
]

SETTINGS: list[Setting] = [*CONTAINER_SETTINGS, *VM_SETTINGS]

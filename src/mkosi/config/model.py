"""The enums used by settings. The typed :class:`Config` of one image is generated from the settings table
into ``typed.py`` (see :mod:`mkosi.config.generate`)."""

from __future__ import annotations

import enum
import platform

from mkosi.config.values import Feature

__all__ = ["Feature"]


class Distribution(enum.StrEnum):
    fedora = "fedora"
    debian = "debian"
    kali = "kali"
    ubuntu = "ubuntu"
    postmarketos = "postmarketos"
    arch = "arch"
    opensuse = "opensuse"
    mageia = "mageia"
    centos = "centos"
    rhel = "rhel"
    rhel_ubi = "rhel-ubi"
    openmandriva = "openmandriva"
    rocky = "rocky"
    alma = "alma"
    azure = "azure"
    custom = "custom"


class OutputFormat(enum.StrEnum):
    confext = "confext"
    cpio = "cpio"
    directory = "directory"
    disk = "disk"
    esp = "esp"
    none = "none"
    portable = "portable"
    sysext = "sysext"
    tar = "tar"
    uki = "uki"
    oci = "oci"
    addon = "addon"

    def is_extension(self) -> bool:
        return self in (OutputFormat.sysext, OutputFormat.confext, OutputFormat.addon)

    def is_extension_or_portable(self) -> bool:
        return self in (OutputFormat.sysext, OutputFormat.confext, OutputFormat.portable, OutputFormat.addon)

    def extension(self) -> str:
        return {
            OutputFormat.confext: ".raw",
            OutputFormat.disk: ".raw",
            OutputFormat.esp: ".raw",
            OutputFormat.portable: ".raw",
            OutputFormat.sysext: ".raw",
            OutputFormat.cpio: ".cpio",
            OutputFormat.tar: ".tar",
            OutputFormat.uki: ".efi",
            OutputFormat.addon: ".efi",
        }.get(self, "")


class Compression(enum.StrEnum):
    none = "none"
    zstd = "zstd"
    xz = "xz"
    bz2 = "bz2"
    gz = "gz"
    lz4 = "lz4"
    lzma = "lzma"

    def extension(self) -> str:
        return {Compression.zstd: ".zst", Compression.none: ""}.get(self, f".{self.value}")


class ManifestFormat(enum.StrEnum):
    json = "json"
    changelog = "changelog"


class ArtifactOutput(enum.StrEnum):
    uki = "uki"
    kernel = "kernel"
    initrd = "initrd"
    partitions = "partitions"
    tar = "tar"
    pcrs = "pcrs"
    roothash = "roothash"
    os_release = "os-release"
    kernel_modules_initrd = "kernel-modules-initrd"
    repart_definitions = "repart-definitions"


class Bootloader(enum.StrEnum):
    none = "none"
    uki = "uki"
    systemd_boot = "systemd-boot"
    grub = "grub"
    uki_signed = "uki-signed"
    systemd_boot_signed = "systemd-boot-signed"
    grub_signed = "grub-signed"


class BiosBootloader(enum.StrEnum):
    none = "none"
    grub = "grub"


class ShimBootloader(enum.StrEnum):
    none = "none"
    signed = "signed"
    unsigned = "unsigned"


class UnifiedKernelImage(enum.StrEnum):
    none = "none"
    auto = "auto"
    signed = "signed"
    unsigned = "unsigned"


class SecureBootSignTool(enum.StrEnum):
    auto = "auto"
    sbsign = "sbsign"
    systemd_sbsign = "systemd-sbsign"


class CacheOnly(enum.StrEnum):
    always = "always"
    auto = "auto"
    metadata = "metadata"
    never = "never"


class Firmware(enum.StrEnum):
    auto = "auto"
    linux = "linux"
    linux_noinitrd = "linux-noinitrd"
    uefi = "uefi"
    uefi_secure_boot = "uefi-secure-boot"


class ConsoleMode(enum.StrEnum):
    interactive = "interactive"
    read_only = "read-only"
    native = "native"
    gui = "gui"
    headless = "headless"


class Network(enum.StrEnum):
    interface = "interface"
    user = "user"
    none = "none"


class Vmm(enum.StrEnum):
    qemu = "qemu"
    vmspawn = "vmspawn"


class DiskType(enum.StrEnum):
    virtio_blk = "virtio-blk"
    virtio_scsi = "virtio-scsi"
    nvme = "nvme"
    scsi_cd = "scsi-cd"


class Ssh(enum.StrEnum):
    always = "always"
    auto = "auto"
    runtime = "runtime"
    never = "never"


class Incremental(enum.StrEnum):
    yes = "yes"
    no = "no"
    strict = "strict"


class BuildSourcesEphemeral(enum.StrEnum):
    yes = "yes"
    no = "no"
    buildcache = "buildcache"


class Verity(enum.StrEnum):
    disabled = "disabled"
    hash = "hash"
    signed = "signed"
    defer = "defer"
    auto = "auto"


class ToolsTreeProfile(enum.StrEnum):
    devel = "devel"
    misc = "misc"
    package_manager = "package-manager"
    runtime = "runtime"


class InitrdProfile(enum.StrEnum):
    lvm = "lvm"
    network = "network"
    nfs = "nfs"
    pkcs11 = "pkcs11"
    plymouth = "plymouth"
    raid = "raid"


class DriveFlag(enum.StrEnum):
    persist = "persist"


class Architecture(enum.StrEnum):
    alpha = "alpha"
    arc = "arc"
    arm = "arm"
    arm64 = "arm64"
    ia64 = "ia64"
    loongarch64 = "loongarch64"
    mips_le = "mips-le"
    mips64_le = "mips64-le"
    parisc = "parisc"
    ppc = "ppc"
    ppc64 = "ppc64"
    ppc64_le = "ppc64-le"
    riscv32 = "riscv32"
    riscv64 = "riscv64"
    s390 = "s390"
    s390x = "s390x"
    tilegx = "tilegx"
    x86 = "x86"
    x86_64 = "x86-64"

    @classmethod
    def native(cls) -> Architecture:
        return UNAME_TO_ARCHITECTURE.get(platform.machine(), cls.x86_64)

    def is_uefi(self) -> bool:
        return self in (
            Architecture.x86_64,
            Architecture.x86,
            Architecture.arm64,
            Architecture.arm,
            Architecture.riscv64,
            Architecture.riscv32,
            Architecture.loongarch64,
            Architecture.ia64,
        )

    def deb_arch(self) -> str:
        return {
            Architecture.x86_64: "amd64",
            Architecture.x86: "i386",
            Architecture.arm64: "arm64",
            Architecture.arm: "armhf",
            Architecture.ppc64_le: "ppc64el",
            Architecture.riscv64: "riscv64",
            Architecture.s390x: "s390x",
            Architecture.loongarch64: "loong64",
            Architecture.mips64_le: "mips64el",
            Architecture.mips_le: "mipsel",
        }.get(self, self.value)


UNAME_TO_ARCHITECTURE = {
    "x86_64": Architecture.x86_64,
    "i686": Architecture.x86,
    "i586": Architecture.x86,
    "i386": Architecture.x86,
    "aarch64": Architecture.arm64,
    "armv7l": Architecture.arm,
    "armv8l": Architecture.arm,
    "riscv64": Architecture.riscv64,
    "ppc64le": Architecture.ppc64_le,
    "ppc64": Architecture.ppc64,
    "ppc": Architecture.ppc,
    "s390x": Architecture.s390x,
    "s390": Architecture.s390,
    "loongarch64": Architecture.loongarch64,
    "alpha": Architecture.alpha,
    "ia64": Architecture.ia64,
    "parisc": Architecture.parisc,
}

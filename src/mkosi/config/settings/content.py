"""Settings of the [Content] section: what goes into the image and how it boots."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mkosi.config.model import (
    BiosBootloader,
    Bootloader,
    Distribution,
    OutputFormat,
    ShimBootloader,
    Ssh,
    UnifiedKernelImage,
)
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.syntax import read_entries
from mkosi.config.values import (
    Boolean,
    Choice,
    Custom,
    DictKind,
    Feature,
    FeatureKind,
    Filename,
    Integer,
    Kind,
    ListKind,
    PathKind,
    PathRules,
    String,
    UKIProfile,
    UUIDKind,
    ValueProblem,
    key_value,
    tree_item,
)
from mkosi.errors import MkosiError
from mkosi.log import debug, warn

# ---------------------------------------------------------------------------------------------------------
# Packages, trees and scripts.


@functools.lru_cache(maxsize=8192)
def package_sort_key(package: str) -> tuple[int, str]:
    """Order of package lists: plain names, then paths, then conditional ``(...)`` specifications.

    Package lists are re-sorted after every assignment; the cache makes that cheap for long lists."""
    if package.startswith("("):
        return 2, package
    if package.startswith("/"):
        return 1, package
    return 0, package


def _packages() -> ListKind:
    return ListKind(sort_key=package_sort_key, metavar="PACKAGE")


_SOURCE_DATE_EPOCH = Integer(
    nullable=True,
    minimum=0,
    what="a timestamp (non-negative seconds since the UNIX epoch)",
    metavar="TIMESTAMP",
)


def default_source_date_epoch(ns: Mapping[str, Any]) -> int | None:
    # mkosi's manual says SOURCE_DATE_EPOCH from Environment= is tried before the host's, but mkosi itself
    # (27.1) only ever looks at the host's environment; we do the same so both produce the same image.
    value: int | None = _SOURCE_DATE_EPOCH.parse(os.environ.get("SOURCE_DATE_EPOCH", ""), None)
    return value


def _root_password(text: str, old: Any) -> tuple[str, bool] | None:
    """``PASSWORD`` or ``hashed:HASH`` → (password or hash, whether it is hashed)."""
    if not text:
        return None
    text = text.strip()
    return text.removeprefix("hashed:"), text.startswith("hashed:")


def _root_password_text(value: Any) -> str:
    return "(set)" if value else "(default)"


_PATHS = PathRules()


def _scripts(name: str, stem: str, what: str, *, chroot: bool = True, **kw: Any) -> Setting:
    """A script list: paths (globs allowed), ``mkosi.STEM[.chroot]`` and ``mkosi.STEM.d/*`` by default."""
    return Setting(
        name,
        "Content",
        ListKind(item=_PATHS.parse, globs=True, metavar="PATH"),
        f"Scripts to run {what}",
        paths=(stem, f"{stem}.chroot") if chroot else (stem,),
        path_globs=(f"{stem}.d/*",),
        long=f"--{stem}-script",
        **kw,
    )


# ---------------------------------------------------------------------------------------------------------
# Kernel packages, for deciding whether an image wants the default initrd.

#: Exact names of kernel packages, for distributions that have a fixed set of them.
_KERNEL_PACKAGE_NAMES: dict[Distribution, frozenset[str]] = {
    Distribution.arch: frozenset(
        {"linux", "linux-lts", "linux-zen", "linux-hardened", "linux-rt", "linux-rt-lts"}
    ),
    Distribution.opensuse: frozenset({"kernel-default", "kernel-kvmsmall"}),
    **{
        d: frozenset({"kernel", "kernel-core"})
        for d in (
            Distribution.fedora,
            Distribution.mageia,
            Distribution.openmandriva,
            Distribution.azure,
            Distribution.centos,
            Distribution.rhel,
            Distribution.rhel_ubi,
            Distribution.rocky,
            Distribution.alma,
        )
    },
}

#: postmarketOS packages named ``linux-*`` that are not kernels.
_PMOS_NOT_KERNELS = frozenset({"linux-timemachine", "linux-headers", "linux-apfs-rw-src"})


def is_kernel_package(distribution: Distribution, package: str) -> bool:
    """Whether installing ``package`` installs a kernel on ``distribution``."""
    if distribution in (Distribution.debian, Distribution.kali):
        return package.startswith("linux-image-")
    if distribution == Distribution.ubuntu:
        return package.startswith("linux-") and not package.startswith("linux-tools-")
    if distribution == Distribution.postmarketos:
        return (
            package.startswith("linux-")
            and not package.endswith(("-doc", "-dev", "-manual"))
            and not package.startswith(("linux-tools-", "linux-firmware-"))
            and package not in _PMOS_NOT_KERNELS
        )
    return package in _KERNEL_PACKAGE_NAMES.get(distribution, frozenset())


def default_initrds(ns: Mapping[str, Any]) -> list[Path]:
    """Build the default initrd (``[Path("default")]``) only for images that look bootable."""
    image = ns.get("image", "?")
    fmt: OutputFormat = ns["output_format"]
    bootable: Feature = ns["bootable"]

    def skip(why: str) -> list[Path]:
        debug(f"Not building the default initrd for image '{image}': {why}")
        return []

    if fmt in (OutputFormat.uki, OutputFormat.esp):
        return skip(f"output format {fmt} has no use for an initrd")
    if bootable == Feature.disabled:
        return skip("Bootable=no")
    if bootable == Feature.auto:
        if (
            fmt in (OutputFormat.cpio, OutputFormat.directory)
            or fmt.is_extension_or_portable()
            or ns["overlay"]
        ):
            return skip(f"Bootable=auto and output format {fmt} is not bootable by default")
        packages = itertools.chain(ns["packages"], ns["volatile_packages"])
        if not any(is_kernel_package(ns["distribution"], p) for p in packages):
            return skip("Bootable=auto and no kernel package in Packages= or VolatilePackages=")
    debug(f"Building the default initrd for image '{image}'")
    return [Path("default")]


# ---------------------------------------------------------------------------------------------------------
# UKI profiles: each item is the path of a small config file with a [UKIProfile] section.


@dataclasses.dataclass(frozen=True)
class _ProfileKey:
    attr: str
    kind: Kind
    default: Any = None


_UKI_PROFILE_KEYS = {
    "Profile": _ProfileKey("profile", DictKind(item=key_value)),
    "Cmdline": _ProfileKey("cmdline", ListKind(delimiter=" ")),
    "SignExpectedPcr": _ProfileKey("sign_expected_pcr", Boolean(), default=True),
}


def parse_uki_profile(text: str) -> UKIProfile:
    path = PathRules().parse(text)
    try:
        entries = read_entries(path)
    except MkosiError as e:
        raise ValueProblem(str(e)) from None
    values: dict[str, Any] = {}
    for entry in entries:
        if entry.section != "UKIProfile" or entry.is_section_end:
            continue
        key = _UKI_PROFILE_KEYS.get(entry.key)
        if key is None:
            warn(f"{path}: unknown setting {entry.key} in a UKI profile")
            continue
        try:
            values[key.attr] = key.kind.parse(entry.value, values.get(key.attr))
        except ValueProblem as e:
            raise ValueProblem(f"{entry.origin}: {entry.key}=: {e}") from None
    for key in _UKI_PROFILE_KEYS.values():
        if key.attr not in values:
            values[key.attr] = key.default if key.default is not None else key.kind.unset()
    return UKIProfile(**values)


# ---------------------------------------------------------------------------------------------------------
# Small kinds and item parsers.


def kernel_module_regex(text: str) -> str:
    """A regular expression item of the kernel module and firmware filters: stored as ``re:...``, except
    for the special values ``default`` and ``host``."""
    return text if text in ("default", "host") else f"re:{text}"


def _regex_list() -> ListKind:
    return ListKind(item=kernel_module_regex, metavar="REGEX")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _UKIFormatKind(Filename):
    """A file name whose explicit reset falls back to the (computed at build time) default."""

    nullable: bool = False


# ---------------------------------------------------------------------------------------------------------
# The table, in the order of the manual.

_PACKAGES_AND_TREES = [
    Setting(
        "Packages",
        "Content",
        _packages(),
        "Packages to install in the image",
        short="-p",
        long="--package",
        tools=True,
    ),
    Setting(
        "BuildPackages",
        "Content",
        _packages(),
        "Packages to install only in the overlay the build scripts run in",
        long="--build-package",
    ),
    Setting(
        "VolatilePackages",
        "Content",
        _packages(),
        "Packages to install after the build scripts ran, left out of the incremental cache",
        long="--volatile-package",
    ),
    Setting(
        "PackageDirectories",
        "Content",
        ListKind(item=_PATHS.parse, metavar="PATH"),
        "Directories of extra packages to offer the package manager as a local repository",
        scope=Scope.universal,
        paths=("packages",),
        long="--package-directory",
        tools=True,
    ),
    Setting(
        "VolatilePackageDirectories",
        "Content",
        ListKind(item=_PATHS.parse, metavar="PATH"),
        "Like PackageDirectories=, but changes to them do not invalidate cached images",
        scope=Scope.universal,
        long="--volatile-package-directory",
    ),
    Setting(
        "WithRecommends",
        "Content",
        Boolean(),
        "Also install the packages' recommended (weak) dependencies",
    ),
    Setting(
        "WithDocs",
        "Content",
        Boolean(),
        "Install documentation",
        default=True,
    ),
    Setting(
        "BaseTrees",
        "Content",
        ListKind(item=PathRules(required=False).parse, metavar="PATH"),
        "Directories, tar files or disk images to start the image from instead of an empty tree",
        long="--base-tree",
    ),
    Setting(
        "SkeletonTrees",
        "Content",
        ListKind(item=tree_item(required=True), metavar="PATH"),
        "SOURCE[:TARGET] trees to copy into the image before installing packages",
        paths=("skeleton", "skeleton.tar"),
        long="--skeleton-tree",
    ),
    Setting(
        "ExtraTrees",
        "Content",
        ListKind(item=tree_item(required=False), metavar="PATH"),
        "SOURCE[:TARGET] trees to copy into the image after installing packages",
        paths=("extra", "extra.tar"),
        long="--extra-tree",
    ),
    Setting(
        "RemovePackages",
        "Content",
        ListKind(metavar="PACKAGE"),
        "Packages to remove from the image at the end of the build",
        long="--remove-package",
    ),
    Setting(
        "RemoveFiles",
        "Content",
        ListKind(metavar="GLOB"),
        "Globs of files to delete from the image at the end of the build",
    ),
    Setting(
        "CleanPackageMetadata",
        "Content",
        FeatureKind(),
        "Remove package manager databases and metadata (auto: if the package manager is not in the image)",
    ),
    Setting(
        "SourceDateEpoch",
        "Content",
        _SOURCE_DATE_EPOCH,
        "Clamp file times to this timestamp and pass it to tools and scripts (default: $SOURCE_DATE_EPOCH)",
        default_factory=default_source_date_epoch,
        depends=("environment",),
        scope=Scope.multiversal,
    ),
    _scripts("SyncScripts", "sync", "before building to update sources", chroot=False, tools=True),
    _scripts(
        "PrepareScripts",
        "prepare",
        "after installing packages and when setting up the build overlay",
        old_names=("PrepareScript",),
        tools=True,
    ),
    _scripts("BuildScripts", "build", "to build sources in the build overlay", old_names=("BuildScript",)),
    _scripts(
        "PostInstallationScripts",
        "postinst",
        "after the build scripts, before the extra trees are copied",
        old_names=("PostInstallationScript",),
        attr="postinst_scripts",
    ),
    _scripts(
        "FinalizeScripts",
        "finalize",
        "after the extra trees are copied, before the image is packed",
        old_names=("FinalizeScript",),
    ),
    _scripts(
        "PostOutputScripts",
        "postoutput",
        "after the output files have been written",
        chroot=False,
        attr="postoutput_scripts",
    ),
]


_BOOT = [
    Setting(
        "Bootable",
        "Content",
        FeatureKind(match_enabled=True),
        "Make the image bootable: install a bootloader and add an ESP (auto: if a kernel is found)",
        match=True,
    ),
    Setting(
        "Bootloader",
        "Content",
        Choice(enum_type=Bootloader, match_enabled=True, metavar="BOOTLOADER"),
        "EFI bootloader to install (systemd-boot, grub, uki, their -signed variants, or none)",
        default=Bootloader.systemd_boot,
        match=True,
    ),
    Setting(
        "BiosBootloader",
        "Content",
        Choice(enum_type=BiosBootloader, metavar="BOOTLOADER"),
        "BIOS bootloader to install (grub or none)",
        default=BiosBootloader.none,
    ),
    Setting(
        "ShimBootloader",
        "Content",
        Choice(enum_type=ShimBootloader, metavar="SHIM"),
        "Install shim and MokManager to the ESP (signed, unsigned or none)",
        default=ShimBootloader.none,
    ),
    Setting(
        "UnifiedKernelImages",
        "Content",
        Choice(
            enum_type=UnifiedKernelImage,
            yes=UnifiedKernelImage.signed,
            no=UnifiedKernelImage.none,
            metavar="FEATURE",
        ),
        "Boot via UKIs rather than Type 1 entries (auto, signed, unsigned, none or a boolean)",
        default=UnifiedKernelImage.auto,
    ),
    Setting(
        "UnifiedKernelImageFormat",
        "Content",
        _UKIFormatKind(hint="the UKI format is a file name without path components"),
        "File name pattern of installed UKIs (may use the &e, &k, &h and &c specifiers)",
        metavar="FORMAT",
    ),
    Setting(
        "UnifiedKernelImageProfiles",
        "Content",
        ListKind(item=parse_uki_profile, metavar="PATH"),
        "Config files, each describing an extra profile to add to every UKI",
        long="--uki-profile",
        path_globs=("uki-profiles/*.conf",),
    ),
    Setting(
        "Initrds",
        "Content",
        ListKind(item=PathRules(required=False, constants=("default",)).parse, metavar="PATH"),
        "Initrds to use instead of (or with 'default', besides) the default initrd",
        default_factory=default_initrds,
        depends=("bootable", "distribution", "output_format", "packages", "volatile_packages", "overlay"),
        long="--initrd",
    ),
    Setting(
        "MicrocodeHost",
        "Content",
        Boolean(),
        "Only include the microcode for the host's CPU",
        default=False,
    ),
    Setting(
        "InitrdProfiles",
        "Content",
        ListKind(metavar="PROFILE"),
        "Profiles to enable in the default initrd (lvm, network, nfs, pkcs11, plymouth, raid)",
        default=[],
        scope=Scope.initrd,
        long="--initrd-profile",
    ),
    Setting(
        "InitrdPackages",
        "Content",
        ListKind(metavar="PACKAGE"),
        "Extra packages to install in the default initrd",
        scope=Scope.initrd,
        long="--initrd-package",
    ),
    Setting(
        "InitrdVolatilePackages",
        "Content",
        ListKind(metavar="PACKAGE"),
        "Extra packages to install in the default initrd after the build scripts ran, without caching",
        scope=Scope.initrd,
        long="--initrd-volatile-package",
    ),
    Setting(
        "Devicetrees",
        "Content",
        ListKind(metavar="GLOB"),
        "Devicetree globs to add to the boot entries (several matches: automatic selection in UKIs)",
        old_names=("Devicetree",),
    ),
    Setting(
        "Splash",
        "Content",
        PathKind(rules=PathRules(required=False, absolute=True)),
        "Absolute path inside the image of the boot splash picture of UKIs",
    ),
    Setting(
        "KernelCommandLine",
        "Content",
        ListKind(delimiter=" ", metavar="OPTIONS"),
        "Kernel command line of the image's boot entries and UKIs",
    ),
    # KernelModules=, KernelInitrdModules= and FirmwareFiles= share their value with the *Include= settings
    # before them (one list; globs are stored as they are, regular expressions with a "re:" prefix). As in
    # mkosi, the shared list is shown in the JSON and the summary under the older glob setting's name.
    Setting(
        "KernelModulesInclude",
        "Content",
        _regex_list(),
        "Regular expressions of kernel modules to include in the image",
        in_json=False,
    ),
    Setting(
        "KernelModulesExclude",
        "Content",
        _regex_list(),
        "Regular expressions of kernel modules to leave out of the image",
    ),
    Setting(
        "KernelModules",
        "Content",
        ListKind(metavar="GLOB"),
        "Globs of kernel modules to include ('-GLOB' excludes; 'default', 'host' add sets)",
        attr="kernel_modules_include",
    ),
    Setting(
        "KernelModulesIncludeHost",
        "Content",
        Boolean(),
        "Include the kernel modules currently loaded on the host",
    ),
    Setting(
        "KernelModulesInitrd",
        "Content",
        Boolean(),
        "Append an initrd with the kernel's modules to each UKI",
        default=True,
    ),
    Setting(
        "KernelModulesInitrdInclude",
        "Content",
        _regex_list(),
        "Regular expressions of kernel modules to include in the modules initrd",
        in_json=False,
    ),
    Setting(
        "KernelModulesInitrdExclude",
        "Content",
        _regex_list(),
        "Regular expressions of kernel modules to leave out of the modules initrd",
    ),
    Setting(
        "KernelInitrdModules",
        "Content",
        ListKind(metavar="GLOB"),
        "Globs of kernel modules to include in the modules initrd",
        attr="kernel_modules_initrd_include",
    ),
    Setting(
        "KernelModulesInitrdIncludeHost",
        "Content",
        Boolean(),
        "Include the kernel modules currently loaded on the host in the modules initrd",
    ),
    Setting(
        "FirmwareInclude",
        "Content",
        _regex_list(),
        "Regular expressions of firmware files to include in the image",
        in_json=False,
    ),
    Setting(
        "FirmwareExclude",
        "Content",
        _regex_list(),
        "Regular expressions of firmware files to leave out of the image",
    ),
    Setting(
        "FirmwareFiles",
        "Content",
        ListKind(metavar="GLOB"),
        "Globs of firmware files (relative to /usr/lib/firmware) to include in the image",
        attr="firmware_include",
    ),
]


_SYSTEM = [
    Setting(
        "Locale",
        "Content",
        String(metavar="LOCALE"),
        "System locale of the image (as systemd-firstboot --locale)",
    ),
    Setting(
        "LocaleMessages",
        "Content",
        String(metavar="LOCALE"),
        "Locale for messages of the image (as systemd-firstboot --locale-messages)",
    ),
    Setting(
        "Keymap",
        "Content",
        String(metavar="KEYMAP"),
        "Console keymap of the image (as systemd-firstboot --keymap)",
        scope=Scope.initrd_inherit,
    ),
    Setting(
        "Timezone",
        "Content",
        String(metavar="TIMEZONE"),
        "Time zone of the image (as systemd-firstboot --timezone)",
        scope=Scope.initrd_inherit,
    ),
    Setting(
        "Hostname",
        "Content",
        String(metavar="HOSTNAME"),
        "Hostname of the image (as systemd-firstboot --hostname)",
        scope=Scope.initrd_inherit,
    ),
    Setting(
        "RootPassword",
        "Content",
        Custom(parse_fn=_root_password, metavar="PASSWORD", text_fn=_root_password_text),
        "Root password of the image ('hashed:HASH' for an already hashed one)",
        scope=Scope.initrd_inherit,
        paths=("rootpw",),
        path_read_text=True,
        path_secret=True,
    ),
    Setting(
        "RootShell",
        "Content",
        String(metavar="SHELL"),
        "Login shell of root in the image (as systemd-firstboot --root-shell)",
    ),
    Setting(
        "MachineId",
        "Content",
        UUIDKind(nullable=True, metavar="MACHINE_ID"),
        "Machine ID of the image: a UUID or 'random'",
        paths=("machine-id",),
        path_read_text=True,
    ),
    Setting(
        "Autologin",
        "Content",
        Boolean(),
        "Log in as root automatically on the console",
        short="-a",
        short_const=True,
    ),
    Setting(
        "MakeInitrd",
        "Content",
        Boolean(),
        "Add /etc/initrd-release and /init so the image can serve as an initrd",
    ),
    Setting(
        "Ssh",
        "Content",
        Choice(enum_type=Ssh, yes=Ssh.always, no=Ssh.never, metavar="SSH"),
        "Install sshd units that listen on VSock (always, never, auto, runtime or a boolean)",
        default=Ssh.auto,
    ),
    Setting(
        "SELinuxRelabel",
        "Content",
        FeatureKind(),
        "Relabel files for the image's SELinux policy (auto: if a policy and setfiles are available)",
        attr="selinux_relabel",
        long="--selinux-relabel",
    ),
]

SETTINGS: list[Setting] = [*_PACKAGES_AND_TREES, *_BOOT, *_SYSTEM]

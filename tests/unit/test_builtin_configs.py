"""The configurations that ship with mkosi (``Include=mkosi-initrd`` and friends) and the default tools tree
and default initrd images derived from them.

The package sets are facts about Debian (which packages a Debian initrd, tools tree or virtual machine
needs in which release); they were checked against the reference implementation (mkosi 27.1), which the
conformance suite also compares for other distributions. Every tree pins distribution, release and
architecture so that nothing depends on the host.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mkosi.__main__ import main
from mkosi.config.builtin import RESOURCES
from mkosi.config.settings.config import BUILTIN_CONFIGS


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def summary(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> dict[str, Any]:
    rc = main(["-C", str(root), *args, "--json", "summary"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def images(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["Image"]: image for image in document["Images"]}


def debian(release: str, *extra: str) -> str:
    lines = ["[Distribution]", "Distribution=debian", f"Release={release}", "Architecture=x86-64", *extra]
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def _no_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MKOSI_IN_BOX", raising=False)


def included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, release: str, *args: str
) -> dict[str, Any]:
    """The main image of a tree that only includes the built-in configuration ``name``."""
    write_tree(tmp_path, {"mkosi.conf": debian(release, "[Include]", f"Include={name}")})
    return images(summary(capsys, tmp_path, *args))["main"]


# -- where they live -----------------------------------------------------------------------------------------


def test_every_builtin_configuration_is_shipped() -> None:
    for name in BUILTIN_CONFIGS:
        assert (RESOURCES / name / "mkosi.conf").is_file(), name


def test_scripts_in_builtin_configurations_are_executable() -> None:
    scripts = [
        p
        for p in RESOURCES.rglob("mkosi.*")
        if p.is_file() and p.suffix in ("", ".build", ".prepare", ".postinst", ".postoutput")
    ]
    assert scripts
    for script in scripts:
        assert script.read_text().startswith("#!"), script
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_files_of_a_builtin_configuration_are_listed_with_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = included(tmp_path, capsys, "mkosi-vm", "trixie")
    vm = RESOURCES / "mkosi-vm"
    assert image["Files"][:3] == [
        str(tmp_path / "mkosi.conf"),
        str(vm / "mkosi.conf"),
        str(vm / "mkosi.conf.d/debian-kali-ubuntu/mkosi.conf"),
    ]


def test_a_builtin_configuration_is_read_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": debian("trixie", "[Include]", "Include=mkosi-vm mkosi-vm")})
    image = images(summary(capsys, tmp_path, "--include=mkosi-vm"))["main"]
    assert image["Packages"].count("dbus-broker") == 1


# -- package sets on Debian ----------------------------------------------------------------------------------

INITRD_DEBIAN = {
    # every distribution
    "bash", "gzip", "less", "systemd", "udev",
    # Debian and its derivatives
    "btrfs-progs", "dmsetup", "dosfstools", "e2fsprogs", "kmod", "libcryptsetup12", "libfido2-1",
    "libseccomp2", "mount", "procps", "util-linux",
    # Debian and Ubuntu
    "libfdisk1",
}  # fmt: skip
LIBTSS = {
    "^libtss2-esys-[0-9.]+-0(t64)?$",
    "^libtss2-mu[0-9.-]+(t64)?$",
    "^libtss2-rc0(t64)?$",
    "^libtss2-tcti-device0(t64)?$",
}


@pytest.mark.parametrize(
    ("release", "extra", "remove"),
    [
        ("bookworm", LIBTSS, []),
        ("trixie", LIBTSS | {"systemd-cryptsetup", "systemd-repart"}, ["dpkg"]),
        ("forky", {"systemd-cryptsetup", "systemd-repart", "systemd-tpm"}, ["dpkg"]),
    ],
)
def test_initrd_packages_on_debian(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], release: str, extra: set[str], remove: list[str]
) -> None:
    image = included(tmp_path, capsys, "mkosi-initrd", release)
    assert sorted(image["Packages"]) == sorted(INITRD_DEBIAN | extra)
    assert image["RemovePackages"] == remove
    assert image["RemoveFiles"][-1] == "/usr/share/locale/*"
    assert (image["Format"], image["Output"], image["Bootable"]) == ("cpio", "initrd", "disabled")
    assert (image["MakeInitrd"], image["WithDocs"], image["Locale"]) == (True, False, "C.UTF-8")
    assert {"dm-crypt", "virtio_blk", "/fs/nls/", "-/drivers/crypto/"} <= set(image["KernelModules"])
    assert image["ExtraTrees"] == [{"Source": str(RESOURCES / "mkosi-initrd/mkosi.extra"), "Target": None}]


def test_initrd_profiles_on_debian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profiles = "lvm,network,nfs,pkcs11,plymouth,raid"
    image = included(tmp_path, capsys, "mkosi-initrd", "trixie", "--profile", profiles)
    added = set(image["Packages"]) - INITRD_DEBIAN - LIBTSS - {"systemd-cryptsetup", "systemd-repart"}
    assert added == {
        "lvm2",
        "systemd-container", "systemd-resolved",
        "nfs-common",
        "p11-kit",
        "plymouth", "kbd", "plymouth-themes", "desktop-base",
        "mdadm",
    }  # fmt: skip
    assert image["KernelModules"][-3:] == ["fs/nfs/", "net/sunrpc/", "nfs_acl"]
    network = RESOURCES / "mkosi-initrd/mkosi.profiles/network/mkosi.postinst"
    assert image["PostInstallationScripts"] == [str(network)]


TOOLS_DEBIAN = {
    # every distribution
    "bash", "ca-certificates", "coreutils", "cpio", "curl", "dosfstools", "e2fsprogs", "keyutils", "kmod",
    "mtools", "opensc", "openssl", "systemd", "tar", "xfsprogs", "zstd",
    # Debian and its derivatives
    "apt", "apt-utils", "btrfs-progs", "erofs-utils", "grub-common", "libarchive-tools", "libcryptsetup12",
    "libfido2-1", "libseccomp2", "libtss2-dev", "mount", "policycoreutils", "python3", "python3-pefile",
    "squashfs-tools", "xz-utils", "debian-archive-keyring",
    # x86
    "grub-pc-bin",
}  # fmt: skip


@pytest.mark.parametrize(
    ("release", "extra"),
    [
        ("bookworm", {"sbsigntool", "systemd-boot"}),
        (
            "trixie",
            {"sbsigntool", "pkcs11-provider", "systemd-boot-tools", "systemd-repart", "systemd-ukify"},
        ),
    ],
)
def test_tools_packages_on_debian(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], release: str, extra: set[str]
) -> None:
    image = included(tmp_path, capsys, "mkosi-tools", release)
    assert sorted(image["Packages"]) == sorted(TOOLS_DEBIAN | extra)
    assert image["Output"] == "mkosi.tools"
    assert image["PrepareScripts"] == [str(RESOURCES / "mkosi-tools/mkosi.prepare")]


def test_tools_profiles_on_debian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profiles = "debug,devel,gui,misc,package-manager,runtime"
    image = included(tmp_path, capsys, "mkosi-tools", "trixie", "--profile", profiles)
    base = TOOLS_DEBIAN | {"sbsigntool", "pkcs11-provider", "systemd-boot-tools", "systemd-repart"}
    added = sorted(image["Packages"])
    for package in sorted(base | {"systemd-ukify"}):
        added.remove(package)
    assert added == sorted(
        [
            # debug
            "gdb", "linux-perf",
            # devel
            "autoconf", "automake", "binutils", "bison", "bzip2", "cmake", "flex", "gcc", "gettext", "groff",
            "libtool", "m4", "make", "meson", "patch", "pkgconf",
            # gui
            "pipewire-bin", "qemu-system-gui",
            # misc (bash a second time: it is also in the base set)
            "acl", "attr", "bash", "diffutils", "file", "findutils", "fish", "gawk", "grep", "jq", "less",
            "nano", "sed", "strace", "which", "git-core", "libnss-myhostname", "libnss-resolve", "man",
            "manpages", "systemd-coredump",
            # package-manager
            "?exact-name(distribution-gpg-keys)", "?exact-name(kali-archive-keyring)", "archlinux-keyring",
            "createrepo-c", "debian-archive-keyring", "makepkg", "pacman-package-manager", "zypper", "dnf",
            "ubuntu-keyring",
            # runtime
            "socat", "swtpm", "openssh-client", "ovmf", "qemu-efi-aarch64", "qemu-system", "swtpm-tools",
            "systemd-container", "systemd-journal-remote", "python3-virt-firmware", "virtiofsd",
        ]
    )  # fmt: skip


VM_DEBIAN = {
    # every distribution
    "bash", "dbus-broker", "diffutils", "gawk", "grep", "gzip", "kmod", "less", "nano", "sed", "strace",
    "systemd", "udev", "util-linux",
    # Debian and its derivatives
    "iproute2", "iputils-ping", "libseccomp2", "login", "mount", "polkitd", "systemd-coredump",
    "systemd-sysv", "tpm2-tools", "tzdata",
    # the kernel on x86-64
    "linux-image-generic",
}  # fmt: skip


@pytest.mark.parametrize(
    ("release", "extra"),
    [
        ("bookworm", {"systemd-boot", "systemd-boot-efi", "systemd-resolved"}),
        ("trixie", {"systemd-boot", "systemd-boot-efi", "systemd-boot-efi-signed", "systemd-resolved"}),
        (
            "forky",
            {
                "systemd-boot", "systemd-boot-efi", "systemd-boot-efi-signed", "systemd-resolved",
                "systemd-imds", "systemd-report", "systemd-tpm",
            },
        ),
    ],
)  # fmt: skip
def test_vm_packages_on_debian(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], release: str, extra: set[str]
) -> None:
    image = included(tmp_path, capsys, "mkosi-vm", release)
    assert sorted(image["Packages"]) == sorted(VM_DEBIAN | extra)
    assert image["Bootable"] == "enabled"
    assert image["Bootloader"] == "systemd-boot"


def test_vm_on_an_architecture_without_uefi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = included(tmp_path, capsys, "mkosi-vm", "trixie", "--architecture=s390x")
    assert (image["Bootloader"], image["BiosBootloader"]) == ("none", "none")
    assert "systemd-boot" not in image["Packages"]


def test_addon_on_debian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = included(tmp_path, capsys, "mkosi-addon", "trixie")
    assert image["Packages"] == []
    assert (image["Distribution"], image["Format"], image["Bootable"]) == ("custom", "addon", "disabled")
    assert image["ExtraTrees"] == [
        {"Source": "/usr/lib/systemd/boot/efi", "Target": "/usr/lib/systemd/boot/efi"}
    ]
    assert image["RemoveFiles"] == [
        "/usr/lib/systemd/boot/efi/",
        "/usr/lib/modules/*/vmlinuz*",
        "/usr/lib/modules/*/vmlinux*",
        "/usr/lib/modules/*/System.map",
        "/usr/lib/modules/*/modules.*",
        "/usr/lib/modules/*/pkgbase",
        "/usr/lib/firmware/intel-ucode",
        "/usr/lib/firmware/amd-ucode",
    ]
    assert image["SplitArtifacts"] == [] and image["ManifestFormat"] == []


def test_obs_in_a_subimage_on_debian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In a subimage only the settings for every image apply (the main image's need OBS's directories).
    write_tree(
        tmp_path,
        {"mkosi.conf": debian("trixie"), "mkosi.images/signed.conf": "[Include]\nInclude=mkosi-obs\n"},
    )
    image = images(summary(capsys, tmp_path))["signed"]
    assert image["Packages"] == []
    assert image["SplitArtifacts"] == ["pcrs", "roothash", "os-release", "repart-definitions"]
    assert (image["CompressOutput"], image["Verity"], image["Checksum"]) == ("zstd", "defer", True)
    assert (image["SecureBoot"], image["SignExpectedPcr"]) == (False, "disabled")
    assert image["BuildScripts"] == [str(RESOURCES / "mkosi-obs/mkosi.build")]
    assert image["PostOutputScripts"] == [str(RESOURCES / "mkosi-obs/mkosi.postoutput")]


# -- the default tools tree ----------------------------------------------------------------------------------


def test_default_tools_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": debian(
                "bookworm",
                "[Output]",
                "Format=directory",
                "[Config]",
                "PassEnvironment=PASSED",
                "[Build]",
                "ToolsTree=default",
                "ToolsTreeDistribution=debian",
                "ToolsTreeRelease=trixie",
                "ToolsTreeProfiles=misc",
                "ToolsTreePackages=extra-tool",
                "Environment=PASSED=1 KEPT=2",
            ),
            "mkosi.tools.conf": "[Content]\nPackages=from-tools-conf\n",
        },
    )
    document = summary(capsys, tmp_path)
    tools = document["Tools"]
    main_image = images(document)["main"]
    assert list(images(document)) == ["main"]
    assert main_image["ToolsTree"] == str(tmp_path / "mkosi.tools")
    assert (tools["Image"], tools["Format"], tools["Output"]) == ("tools", "directory", "mkosi.tools")
    assert (tools["Distribution"], tools["Release"], tools["Profiles"]) == ("debian", "trixie", ["misc"])
    assert tools["ToolsTree"] is None
    assert tools["Environment"] == {"PASSED": "1"}
    assert {"extra-tool", "from-tools-conf", "systemd-ukify", "jq"} <= set(tools["Packages"])
    assert tools["Files"][:2] == [
        str(tmp_path / "mkosi.tools.conf"),
        str(RESOURCES / "mkosi-tools/mkosi.conf"),
    ]


def test_tools_tree_packages_from_the_command_line_come_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = debian(
        "trixie", "[Build]", "ToolsTree=yes", "ToolsTreeDistribution=debian", "ToolsTreeRelease=trixie"
    )
    write_tree(tmp_path, {"mkosi.conf": conf})
    tools = summary(capsys, tmp_path, "--tools-tree-package=a-cli-tool")["Tools"]
    assert "a-cli-tool" in tools["Packages"]
    tools = summary(capsys, tmp_path, "--tools-tree-profile=devel")["Tools"]
    assert tools["Profiles"] == ["devel"] and "gcc" in tools["Packages"] and "jq" not in tools["Packages"]


def test_no_tools_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": debian("trixie", "[Build]", "ToolsTree=no")})
    document = summary(capsys, tmp_path)
    assert document["Tools"] is None
    assert images(document)["main"]["ToolsTree"] is None


# -- the default initrd --------------------------------------------------------------------------------------


def test_default_initrd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": debian(
                "trixie",
                "[Output]",
                "Format=disk",
                "OutputDirectory=out",
                "[Content]",
                "Packages=linux-image-amd64",
                "InitrdPackages=from-main",
                "InitrdProfiles=lvm",
                "Hostname=the-host",
                "KernelCommandLine=quiet",
            ),
            "out/.keep": "",
            "mkosi.initrd.conf": "[Content]\nPackages=from-initrd-conf\n",
            "mkosi.images/sub/mkosi.conf": "[Output]\nFormat=directory\n",
        },
    )
    document = summary(capsys, tmp_path)
    by_name = images(document)
    assert list(by_name) == ["sub", "default-initrd", "main"]
    main_image, initrd = by_name["main"], by_name["default-initrd"]
    assert main_image["Initrds"] == [str(tmp_path / "out/initrd")]
    assert main_image["Dependencies"] == ["sub", "default-initrd"]
    # A directory subimage is not bootable by default: it wants no initrd.
    assert by_name["sub"]["Initrds"] == [] and by_name["sub"]["Dependencies"] == []
    assert (initrd["Format"], initrd["Output"], initrd["Hostname"]) == ("cpio", "initrd", "the-host")
    assert (initrd["Profiles"], initrd["InitrdPackages"], initrd["KernelCommandLine"]) == (["lvm"], [], [])
    assert {"from-main", "from-initrd-conf", "lvm2", "systemd"} <= set(initrd["Packages"])
    assert "linux-image-amd64" not in initrd["Packages"]
    assert initrd["Files"][:2] == [
        str(tmp_path / "mkosi.initrd.conf"),
        str(RESOURCES / "mkosi-initrd/mkosi.conf"),
    ]


def test_explicit_initrds_keep_their_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": debian(
                "trixie", "[Content]", "Bootable=yes", "Initrds=/first.cpio default /last.cpio"
            )
        },
    )
    main_image = images(summary(capsys, tmp_path))["main"]
    assert main_image["Initrds"] == ["/first.cpio", str(tmp_path / "initrd"), "/last.cpio"]


def test_no_default_initrd_without_a_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": debian("trixie", "[Output]", "Format=disk")})
    assert list(images(summary(capsys, tmp_path))) == ["main"]

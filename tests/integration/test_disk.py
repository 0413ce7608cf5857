"""Disk images: the tutorial's image.raw, partition definitions in mkosi.repart/, reproducible builds, and
bad input that must stop a build before any work.

image.raw comes from the sysext tutorial built once per session by conftest.py's ``sysext_tutorial``.
Images are read back with gpt.py, ``sfdisk``, ``fsck`` and Debian trixie's ``systemd-dissect``.

Reproducibility: two builds of the tutorial with the same ``SOURCE_DATE_EPOCH`` and ``Seed=`` (set in each
image's mkosi.conf: a ``--seed`` on the command line reaches the main image only) give byte-identical
``btrfs.raw`` and ``image.raw``. The main image's package installation leaves three files whose content
depends on the time of the build (dpkg's and update-alternatives' logs and ldconfig's aux-cache); the test
removes them with ``RemoveFiles=`` so that it checks what the image writers make of identical trees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import Tutorial, check_mkosi, copy_example, mkosi_command, mkosi_env, run_mkosi, scratch, write
from test_extension import ARCH, dissect, partition_bytes, trixie_tools

from mkosi.formats import gpt, signing, verity

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

SEED = "0d7a9c1e-3f06-4d3b-8f9e-0a1b2c3d4e5f"
EPOCH = "1700000000"
# What the package manager writes with the time of the build in it (not the image writers' business).
TIMESTAMPED = "/var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache"


@pytest.fixture(scope="session")
def trixie() -> Path:
    tools = trixie_tools()
    if tools is None:
        pytest.skip("tools/trixie-systemd.sh could not unpack trixie's systemd")
    return tools


# ---------------------------------------------------------------------------------------------- image.raw


def test_image_raw_is_one_clean_root_partition(sysext_tutorial: Tutorial, tmp_path: Path) -> None:
    table = gpt.read_gpt(sysext_tutorial.image)
    (root,) = table.partitions
    assert root.name == f"root-{ARCH}" and root.type_name == f"root-{ARCH}"
    assert root.attributes == gpt.ATTR_GROWFS
    assert root.offset == 1 << 20
    fs = tmp_path / "root.ext4"
    fs.write_bytes(partition_bytes(sysext_tutorial.image, root))
    assert fs.read_bytes()[1024 + 56 : 1024 + 58] == b"\x53\xef"  # ext2/3/4 superblock magic
    res = subprocess.run(["fsck.ext4", "-fn", fs], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # There is room to write in it: Minimize=guess leaves headroom on writable file systems.
    info = subprocess.run(["dumpe2fs", "-h", fs], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert int(fields["Free blocks"]) > int(fields["Block count"]) // 10
    if shutil.which("sfdisk"):
        dump = subprocess.run(
            ["sfdisk", "-d", sysext_tutorial.image], capture_output=True, text=True, check=True
        )
        assert f'name="root-{ARCH}", attrs="GUID:59"' in dump.stdout


def test_image_raw_dissects_like_upstreams(sysext_tutorial: Tutorial, trixie: Path) -> None:
    info = json.loads(dissect(trixie, "--json=short", sysext_tutorial.image))
    assert "ID=debian" in info["osRelease"]
    (mount,) = info["mounts"]
    assert (mount["designator"], mount["fstype"], mount["rw"], mount["growfs"], mount["verity"]) == (
        "root",
        "ext4",
        "rw",
        True,
        "no",
    )


# ---------------------------------------------------------------------------------------------- mkosi.repart

DEFINITIONS = {
    "10-esp.conf": "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/usr/lib/os-release:/os-release\n"
    "SizeMinBytes=64M\n",
    "20-root.conf": "[Partition]\nType=root\nFormat=ext4\nCopyFiles=/\nExcludeFiles=/usr/\nMinimize=best\n",
    "30-usr.conf": "[Partition]\nType=usr\nFormat=erofs\nCopyFiles=/usr:/\nVerity=data\nVerityMatchKey=usr\n"
    "Minimize=best\nExcludeFiles=/usr/share/doc/\n",
    "40-usr-verity.conf": "[Partition]\nType=usr-verity\nVerity=hash\nVerityMatchKey=usr\nSplitName=-\n",
    "50-usr-verity-sig.conf": "[Partition]\nType=usr-verity-sig\nVerity=signature\nVerityMatchKey=usr\n"
    "SplitName=%t-%n\n",
}


def test_partition_definitions_and_split_artifacts(sysext_tutorial: Tutorial, trixie: Path) -> None:
    d = scratch("repart") / "project"
    write(
        d / "mkosi.conf",
        "[Output]\nFormat=disk\nOutputDirectory=out\nSplitArtifacts=roothash,partitions\n\n"
        f"[Content]\nBaseTrees={sysext_tutorial.base}\n",
    )
    for name, text in DEFINITIONS.items():
        write(d / "mkosi.repart" / name, text)
    check_mkosi("genkey", cwd=d)
    start = time.monotonic()
    check_mkosi("-f", cwd=d)
    print(f"\ndisk image from a base tree with 5 partition definitions: {time.monotonic() - start:.1f}s")
    out = d / "out"
    table = gpt.read_gpt(out / "image.raw")
    names = ["esp", f"root-{ARCH}", f"usr-{ARCH}", f"usr-{ARCH}-verity", f"usr-{ARCH}-verity-sig"]
    assert [e.name for e in table.partitions] == names
    esp, root, usr, usr_hash, usr_sig = table.partitions
    assert esp.size == 64 << 20
    assert root.attributes == gpt.ATTR_GROWFS
    assert usr.attributes == usr_hash.attributes == gpt.ATTR_READ_ONLY
    signed = signing.parse_verity_signature(partition_bytes(out / "image.raw", usr_sig))
    assert (out / "image.usrhash").read_text().strip() == signed.root_hash.hex()
    assert (usr.uuid, usr_hash.uuid) == verity.partition_uuids(signed.root_hash)
    splits = sorted(p.name for p in out.glob("image.*.raw"))
    assert splits == sorted(["image.esp.raw", f"image.root-{ARCH}.raw", f"image.usr-{ARCH}.raw",
                             f"image.usr-{ARCH}-verity-sig-5.raw"])  # fmt: skip
    assert (out / f"image.usr-{ARCH}.raw").read_bytes() == partition_bytes(out / "image.raw", usr)

    info = json.loads(dissect(trixie, "--json=short", out / "image.raw"))
    mounts = {m["designator"]: m for m in info["mounts"]}
    assert set(mounts) == {"esp", "root", "usr", "usr-verity", "usr-verity-sig"}
    assert mounts["usr"]["verity"] == "signed" and mounts["usr"]["fstype"] == "erofs"
    assert mounts["esp"]["fstype"] == "vfat" and mounts["root"]["fstype"] == "ext4"
    # The usr partition (its split artifact is a bare erofs image; the kernel here has no vfat to mount
    # the whole image) holds /usr without the documentation's contents.
    tree = dissect(trixie, "--mtree", out / f"image.usr-{ARCH}.raw")
    paths = {line.split(" ")[0] for line in tree.splitlines()}
    assert "./bin/bash" in paths and "./share/doc/" in paths
    assert not [p for p in paths if p.startswith("./share/doc/") and p != "./share/doc/"]
    esp_listing = subprocess.run(
        ["mdir", "-b", "-i", out / "image.esp.raw", "::/"],
        capture_output=True,
        text=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    assert esp_listing.stdout.split() == ["::/os-release"], esp_listing.stdout + esp_listing.stderr
    # The root partition holds an empty /usr to mount the usr partition on.
    listing = subprocess.run(
        ["debugfs", "-R", "ls -p /usr", out / f"image.root-{ARCH}.raw"], capture_output=True, text=True
    ).stdout
    names = sorted(line.strip().split("/")[5] for line in listing.splitlines() if line.strip())
    assert names == [".", ".."]


# ---------------------------------------------------------------------------------------------- reproducible


def reproducible_project(name: str, keys_from: Path | None) -> Path:
    d = copy_example("sysext", name)
    for conf in [d / "mkosi.conf", *d.glob("mkosi.images/*/mkosi.conf")]:
        with open(conf, "a") as f:
            f.write(f"\n[Output]\nSeed={SEED}\n")
    with open(d / "mkosi.conf", "a") as f:
        f.write(f"\n[Content]\nRemoveFiles={TIMESTAMPED}\n")
    if keys_from is None:
        check_mkosi("genkey", cwd=d)
    else:
        for key in ("mkosi.key", "mkosi.crt"):
            shutil.copy2(keys_from / key, d / key)
    return d


def build_with_epoch(d: Path) -> None:
    env = mkosi_env()
    env["SOURCE_DATE_EPOCH"] = EPOCH
    res = subprocess.run(mkosi_command("-f"), cwd=d, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr


def test_two_builds_are_byte_identical() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt and dpkg on the host")
    first = reproducible_project("repro-a", None)
    second = reproducible_project("repro-b", first)
    build_with_epoch(first)
    build_with_epoch(second)
    for artifact in ("btrfs.raw", "image.raw"):
        a, b = first / "mkosi.output" / artifact, second / "mkosi.output" / artifact
        assert a.stat().st_size == b.stat().st_size, artifact
        assert a.read_bytes() == b.read_bytes(), f"{artifact} differs between the two builds"
    assert gpt.read_gpt(first / "mkosi.output/btrfs.raw").disk_uuid == gpt.derive_disk_uuid(uuid.UUID(SEED))


# ---------------------------------------------------------------------------------------------- bad input


def one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode != 0, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if all(n in line for n in needles)]
    assert len(errors) == 1, res.stderr
    # Nothing was built: no image started, no workspace or output made.
    assert "Building image" not in res.stderr and "Installing" not in res.stderr, res.stderr
    return errors[0]


def bad_project(name: str) -> Path:
    d = scratch(f"bad-{name}") / "project"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples/sysext", d, symlinks=True)
    return d


def check_nothing_done(d: Path, seconds: float) -> None:
    assert not (d / "mkosi.output").exists() or not any((d / "mkosi.output").iterdir())
    assert not (d / "mkosi.cache").exists()
    assert seconds < 30


def timed(d: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    res = run_mkosi(*args, cwd=d, timeout=120)
    return res, time.monotonic() - start


def test_verity_signed_without_a_key_stops_before_any_work() -> None:
    d = bad_project("nokey")
    with open(d / "mkosi.images/btrfs/mkosi.conf", "a") as f:
        f.write("\n[Validation]\nVerity=signed\n")
    res, seconds = timed(d, "-f")
    line = one_line_error(res, "Verity=signed needs a signing key")
    assert "image btrfs:" in line and "mkosi.images/btrfs/mkosi.conf:" in line and "mkosi genkey" in line
    check_nothing_done(d, seconds)


def test_key_that_does_not_match_its_certificate() -> None:
    d = bad_project("mismatch")
    other = bad_project("mismatch-other")
    check_mkosi("genkey", cwd=d)
    check_mkosi("genkey", cwd=other)
    shutil.copy2(other / "mkosi.crt", d / "mkosi.crt")
    res, seconds = timed(d, "-f")
    line = one_line_error(res, "does not match")
    assert f"VerityKey={d}/mkosi.key" in line and f"VerityCertificate={d}/mkosi.crt" in line
    check_nothing_done(d, seconds)


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_unreadable_key(kind: str) -> None:
    d = bad_project(f"unreadable-{kind}")
    check_mkosi("genkey", cwd=d)
    key = d / "elsewhere.key"
    if kind == "garbage":
        key.write_text("this is no key\n")
        key.chmod(0o600)
    with open(d / "mkosi.conf", "a") as f:
        f.write(f"\n[Validation]\nVerityKey={key}\n")
    res, seconds = timed(d, "-f")
    needle = "No such file or directory" if kind == "missing" else "not a valid PEM or DER private key"
    line = one_line_error(res, "VerityKey=", needle)
    assert "mkosi.conf:" in line
    check_nothing_done(d, seconds)


def test_unsupported_partition_setting() -> None:
    d = bad_project("repart-key")
    write(d / "mkosi.images/btrfs/mkosi.repart/10-root.conf", "[Partition]\nType=root\n\nEncrypt=tpm2\n")
    res, seconds = timed(d, "-f")
    line = one_line_error(res, "Encrypt=")
    assert f"{d}/mkosi.images/btrfs/mkosi.repart/10-root.conf:4: Encrypt= is not a supported" in line
    check_nothing_done(d, seconds)

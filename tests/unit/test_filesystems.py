"""File system images from directories, checked with each file system's own fsck and reader tools."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from mkosi.errors import MkosiError
from mkosi.formats import filesystems
from mkosi.formats.filesystems import fat_clamp_times, filesystem_usage, make_filesystem, xfs_protofile

EPOCH = 1_500_000_000  # 2017-07-14 02:40:00 UTC
OLD = 1_000_000_000
FUTURE = 4_000_000_000
MiB = 1 << 20


def make_tree(root: Path, *, spaces: bool = True) -> Path:
    root.mkdir()
    os.chmod(root, 0o750)
    os.chown(root, 0, 5)
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("image\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    os.chmod(root / "home/user", 0o700)
    if spaces:
        (root / "home/user/a file with spaces").write_text("spaces")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool2")
    (root / "usr/lib").mkdir()
    (root / "usr/lib/big").write_bytes(os.urandom(2 * MiB))
    (root / "usr/lib/empty").touch()
    os.setxattr(root / "usr/lib/big", "user.mkosi", b"yes")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/etc/hostname", root / "usr/lib/abs")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(root / "dev/null", 0o666)  # mknod is subject to the umask
    os.mkfifo(root / "dev/fifo", 0o600)
    os.utime(root / "etc/hostname", (OLD, OLD))
    os.utime(root / "usr/lib/empty", (FUTURE, FUTURE))
    return root


def snapshot(
    root: Path, *, kinds: str = "dfl", owners: bool = True, suid: bool = True
) -> dict[str, tuple[object, ...]]:
    """Entries of the kinds asked for (d: dirs, f: files, l: symlinks, s: special) with what they carry.

    ``suid=False`` ignores set-uid/gid bits: extractors that chown after chmod lose them on the way out.
    """
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            kind = (
                "d" if stat.S_ISDIR(st.st_mode) else
                "f" if stat.S_ISREG(st.st_mode) else
                "l" if stat.S_ISLNK(st.st_mode) else "s"
            )  # fmt: skip
            if kind not in kinds:
                continue
            data: object = None
            if kind == "f":
                data = p.read_bytes()
            elif kind == "l":
                data = os.readlink(p)
            elif kind == "s":
                data = st.st_rdev
            mode = st.st_mode if kind != "l" else stat.S_IFLNK
            if not suid:
                mode &= ~(stat.S_ISUID | stat.S_ISGID)
            out[str(p.relative_to(root))] = (mode, st.st_uid, st.st_gid, data) if owners else (mode, data)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


@pytest.fixture
def tree_copy(tree: Path, tmp_path: Path) -> Path:
    """The same tree once more: other inode numbers, ctimes and atimes."""
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", tree, copy], check=True)
    os.utime(copy / "usr/bin/tool", ns=(123, os.lstat(tree / "usr/bin/tool").st_mtime_ns))
    return copy


def sh(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], capture_output=True, check=True, text=True).stdout


def test_usage(tree: Path) -> None:
    usage = filesystem_usage(tree)
    content = 2 * MiB + 3 * 4096
    assert content < usage < content + 32 * 4096  # hard link counted once, small files one block each
    assert usage % 256 == 0


# ---------------------------------------------------------------------------------------------- erofs


def test_erofs(tree: Path, tree_copy: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.erofs", tmp_path / "b.erofs"
    fs_uuid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    size = make_filesystem("erofs", tree, a, uuid=fs_uuid, source_date_epoch=EPOCH)
    assert size == a.stat().st_size and size % 4096 == 0
    make_filesystem("erofs", tree_copy, b, uuid=fs_uuid, source_date_epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()  # reproducible

    out = tmp_path / "out"
    sh("fsck.erofs", f"--extract={out}", "--preserve", a)
    assert snapshot(out, kinds="dfls", suid=False) == snapshot(tree, kinds="dfls", suid=False)
    assert stat.S_IMODE(os.lstat(out).st_mode) == 0o750 and os.lstat(out).st_gid == 5
    assert str(fs_uuid) in sh("dump.erofs", "-s", a)
    info = sh("dump.erofs", "--path=/etc/shadow", a)
    assert "Uid: 0   Gid: 42" in info and "0640" in info
    assert "2001-09-09 01:46:40" in sh("dump.erofs", "--path=/etc/hostname", a)  # old mtime kept
    assert "2017-07-14 02:40:00" in sh("dump.erofs", "--path=/usr/lib/empty", a)  # future clamped
    names = sh("dump.erofs", "--ls", "--path=/usr/bin", a)
    assert "tool2" in names


def test_erofs_padding_and_compression(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.erofs"
    assert make_filesystem("erofs", tree, out, size=64 * MiB, compression="lz4hc") == 64 * MiB
    sh("fsck.erofs", out)
    with pytest.raises(MkosiError, match="more than"):
        make_filesystem("erofs", tree, out, size=4096)


# ---------------------------------------------------------------------------------------------- squashfs


def test_squashfs(tree: Path, tree_copy: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqfs", tmp_path / "b.sqfs"
    make_filesystem("squashfs", tree, a, source_date_epoch=EPOCH, compression="zstd")
    make_filesystem("squashfs", tree_copy, b, source_date_epoch=EPOCH, compression="zstd")
    assert a.read_bytes() == b.read_bytes()
    assert "Compression zstd" in sh("unsquashfs", "-s", a)
    out = tmp_path / "out"
    sh("unsquashfs", "-no-progress", "-d", out, a)
    assert snapshot(out, kinds="dfls") == snapshot(tree, kinds="dfls")
    assert os.getxattr(out / "usr/lib/big", "user.mkosi") == b"yes"
    assert os.lstat(out / "usr/bin/tool").st_ino == os.lstat(out / "usr/bin/tool2").st_ino
    listing = sh("unsquashfs", "-lln", a)
    assert re.search(r"-rw-r----- 0/42 .* squashfs-root/etc/shadow", listing)
    assert os.lstat(out / "usr/lib/empty").st_mtime == EPOCH
    assert os.lstat(out / "etc/hostname").st_mtime == OLD


# ---------------------------------------------------------------------------------------------- ext4


def test_ext4(tree: Path, tree_copy: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.ext4", tmp_path / "b.ext4"
    size = make_filesystem("ext4", tree, a, seed="seed", label="root", source_date_epoch=EPOCH)
    make_filesystem("ext4", tree_copy, b, seed="seed", label="root", source_date_epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()  # reproducible, despite other ctimes/atimes
    assert size >= 16 * MiB
    sh("e2fsck", "-fn", a)
    header = sh("dumpe2fs", "-h", a)
    assert "Filesystem volume name:   root" in header
    assert str(filesystems._derive("seed", "ext4:root:uuid")) in header

    listing = sh("debugfs", "-R", "ls -l /etc", a)
    assert re.search(r"100640 \(1\)\s+0\s+42\s+\d+\s+\S+\s+\S+\s+shadow", listing)
    root = sh("debugfs", "-R", "stat /", a)
    assert "Mode:  0750" in root and "Group:     5" in root
    empty = sh("debugfs", "-R", "stat /usr/lib/empty", a)
    assert "mtime: 0x" + f"{EPOCH:08x}" in empty and "ctime: 0x" + f"{EPOCH:08x}" in empty
    assert "mtime: 0x" + f"{OLD:08x}" in sh("debugfs", "-R", "stat /etc/hostname", a)
    null = sh("debugfs", "-R", "stat /dev/null", a)
    assert "Type: character special" in null and "Device major/minor number: 01:03" in null
    out = tmp_path / "out"
    out.mkdir()
    sh("debugfs", "-R", f"rdump / {out}", a)
    dumped = out / "lost+found"
    assert dumped.is_dir()
    dumped.rmdir()
    assert snapshot(out, kinds="dfl", suid=False) == snapshot(tree, kinds="dfl", suid=False)
    assert "Mode:  04755" in sh("debugfs", "-R", "stat /usr/bin/tool", a)


def test_ext4_sizes(tree: Path, tmp_path: Path) -> None:
    exact = tmp_path / "exact.ext4"
    assert make_filesystem("ext4", tree, exact, size=40 * MiB) == 40 * MiB
    sh("e2fsck", "-fn", exact)
    small = tmp_path / "small.ext4"
    minimal = make_filesystem("ext4", tree, small, minimize=True)
    sh("e2fsck", "-fn", small)
    assert minimal < 12 * MiB
    assert "usr" in sh("debugfs", "-R", "ls /", small)
    padded = tmp_path / "padded.ext4"
    assert make_filesystem("ext4", tree, padded, minimize=True, size=64 * MiB) == 64 * MiB
    blocks = re.search(r"Block count:\s+(\d+)", sh("dumpe2fs", "-h", padded))
    assert blocks and int(blocks[1]) * 4096 == 64 * MiB
    with pytest.raises(MkosiError):
        make_filesystem("ext4", tree, tmp_path / "tiny.ext4", size=1 * MiB)


# ---------------------------------------------------------------------------------------------- btrfs


def test_btrfs(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "a.btrfs"
    fs_uuid = uuid.uuid4()
    size = make_filesystem("btrfs", tree, img, uuid=fs_uuid, label="data")
    assert size >= 114 * MiB
    check = subprocess.run(["btrfs", "check", img], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert str(fs_uuid) in check.stdout + check.stderr
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["btrfs", "restore", "-m", "-S", "-x", img, out], capture_output=True, check=True)
    assert snapshot(out, kinds="fl") == snapshot(tree, kinds="fl")
    assert os.getxattr(out / "usr/lib/big", "user.mkosi") == b"yes"

    small = tmp_path / "small.btrfs"
    assert make_filesystem("btrfs", tree, small, minimize=True) < size
    assert subprocess.run(["btrfs", "check", small], capture_output=True).returncode == 0
    sized = tmp_path / "sized.btrfs"
    assert make_filesystem("btrfs", tree, sized, size=256 * MiB) == 256 * MiB


def test_btrfs_exact_size_it_cannot_honour(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "blob").write_bytes(b"x" * (100 * MiB))
    with pytest.raises(MkosiError, match="more than"):  # mkfs.btrfs wants about twice the data
        make_filesystem("btrfs", data, tmp_path / "a.btrfs", size=160 * MiB)


# ---------------------------------------------------------------------------------------------- xfs


def test_xfs(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", spaces=False)
    img = tmp_path / "a.xfs"
    fs_uuid = uuid.uuid4()
    size = make_filesystem("xfs", tree, img, uuid=fs_uuid, label="var", minimize=True, sector_size=4096)
    assert size == 300 * MiB
    repair = subprocess.run(["xfs_repair", "-n", "-f", img], capture_output=True, text=True)
    assert repair.returncode == 0, repair.stderr
    assert str(fs_uuid) in sh("xfs_db", "-r", "-c", "uuid", img)
    assert 'label = "var"' in sh("xfs_db", "-r", "-c", "label", img)
    assert "sectsize = 4096" in sh("xfs_db", "-r", "-c", "sb 0", "-c", "print sectsize", img)
    listing = sh("xfs_db", "-r", "-c", "ls /usr/bin", "-c", "ls /dev", "-c", "ls /", img)
    for name in ("tool", "tool2", "null", "fifo", "lib", "home"):
        assert re.search(rf"\s{name} \(good\)", listing), name

    def core(path: str) -> str:
        return sh(
            "xfs_db", "-r", "-c", f"path {path}", "-c", "print core.mode core.uid core.gid core.size", img
        )

    assert core("/etc/shadow").split() == ["core.mode", "=", "0100640", "core.uid", "=", "0", "core.gid",
                                           "=", "42", "core.size", "=", "15"]  # fmt: skip
    assert "core.mode = 0104755" in core("/usr/bin/tool")
    assert "core.size = 2097152" in core("/usr/lib/big")
    assert "core.mode = 040750" in core("/")
    assert "core.mode = 020666" in core("/dev/null")


def test_xfs_refuses_unrepresentable_names(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="prototype"):
        make_filesystem("xfs", tree, tmp_path / "a.xfs")


def test_xfs_protofile_shape(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", spaces=False)
    links = tmp_path / "links"
    links.mkdir()
    proto = xfs_protofile(tree, links).splitlines()
    assert proto[:3] == ["mkosi", "0 0", "d--750 0 5"]
    assert "tool -u-755 0 0 " + str(links) + "/5" in proto or any(
        line.startswith("tool -u-755 0 0 ") for line in proto
    )
    assert "lib l--777 0 0 usr/lib" in proto
    assert "null c--666 0 0 1 3" in proto
    assert proto.count("$") == sum(1 for line in proto if re.match(r"\S+ d", line)) + 1
    assert proto[-1] == "$"


# ---------------------------------------------------------------------------------------------- vfat


def make_esp(root: Path) -> Path:
    (root / "EFI/BOOT").mkdir(parents=True)
    (root / "EFI/BOOT/BOOTX64.EFI").write_bytes(os.urandom(300_000))
    (root / "loader/entries").mkdir(parents=True)
    (root / "loader/loader.conf").write_text("timeout 3\n")
    (root / "loader/entries/a long entry name.conf").write_text("title x\n")
    os.utime(root / "loader/loader.conf", (OLD, OLD))
    return root


def test_vfat(tmp_path: Path) -> None:
    esp = make_esp(tmp_path / "esp")
    a, b = tmp_path / "a.vfat", tmp_path / "b.vfat"
    fs_uuid = uuid.UUID("deadbeef-0000-4000-8000-000000000000")
    size = make_filesystem("vfat", esp, a, uuid=fs_uuid, label="ESP", source_date_epoch=EPOCH)
    time.sleep(2.1)  # FAT times have 2 s granularity: the second image is made at another time
    make_filesystem("vfat", esp, b, uuid=fs_uuid, label="ESP", source_date_epoch=EPOCH)
    assert a.read_bytes() == b.read_bytes()
    assert size >= 16 * MiB
    sh("fsck.vfat", "-n", a)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    listing = subprocess.run(
        ["mdir", "-i", a, "-/", "::"], capture_output=True, text=True, env=env, check=True
    )
    assert "DEAD-BEEF" in listing.stdout and "ESP" in listing.stdout
    assert "a long entry name.conf" in listing.stdout
    # everything clamped to the epoch, except loader.conf's own older mtime
    assert set(re.findall(r"\d{4}-\d\d-\d\d", listing.stdout)) == {"2017-07-14", "2001-09-09"}
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["mcopy", "-s", "-i", a, "::/EFI", "::/loader", out], env=env, check=True)
    files = sorted(str(p.relative_to(esp)) for p in esp.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == files
    assert all((out / f).read_bytes() == (esp / f).read_bytes() for f in files)

    small = tmp_path / "small.vfat"
    assert make_filesystem("vfat", esp, small, minimize=True) < size
    sh("fsck.vfat", "-n", small)
    exact = tmp_path / "exact.vfat"
    assert make_filesystem("vfat", esp, exact, size=34 * MiB, sector_size=4096) == 34 * MiB
    sh("fsck.vfat", "-n", exact)


def test_fat_clamp_times_on_fat32(tmp_path: Path) -> None:
    esp = make_esp(tmp_path / "esp")
    img = tmp_path / "fat32.img"
    make_filesystem("vfat", esp, img, size=300 * MiB, extra_options=["-F", "32"])
    assert img.read_bytes()[82:90] == b"FAT32   "  # the FAT32 boot sector's file system type
    fat_clamp_times(img, EPOCH)
    sh("fsck.vfat", "-n", img)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    listing = subprocess.run(["mdir", "-i", img, "-/", "::"], capture_output=True, text=True, env=env).stdout
    dates = set(re.findall(r"\d{4}-\d\d-\d\d", listing))
    assert dates == {"2017-07-14", "2001-09-09"}


# ---------------------------------------------------------------------------------------------- errors


def test_errors(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="Unsupported file system"):
        make_filesystem("ntfs", tree, tmp_path / "x")
    with pytest.raises(MkosiError, match="not a directory"):
        make_filesystem("ext4", tmp_path / "missing", tmp_path / "x")
    with pytest.raises(MkosiError, match="sector size"):
        make_filesystem("ext4", tree, tmp_path / "x", sector_size=300)


def test_seed_derives_stable_distinct_uuids(tree: Path, tmp_path: Path) -> None:
    a = make_filesystem("erofs", tree, tmp_path / "a", seed="s", label="one")
    assert a > 0
    u1 = filesystems._uuid_for("ext4", None, "s", "one")
    assert u1 == filesystems._uuid_for("ext4", None, "s", "one")
    assert (
        u1
        != filesystems._uuid_for("ext4", None, "s", "two")
        != filesystems._uuid_for("xfs", None, "s", "two")
    )
    assert filesystems._uuid_for("ext4", None, None, None) != filesystems._uuid_for("ext4", None, None, None)

"""newc cpio writer, checked against GNU cpio as the oracle (extraction, listing, byte-for-byte output)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from mkosi.errors import MkosiError
from mkosi.formats import cpio
from mkosi.formats.cpio import list_cpio, make_cpio, read_cpio, write_cpio

OLD = 1_000_000_000
NEW = 2_000_000_000


def make_tree(root: Path) -> Path:
    """A small tree with every kind of entry cpio must handle (needs root for owners and devices)."""
    root.mkdir()
    (root / "etc").mkdir(mode=0o755)
    (root / "etc/hostname").write_text("test\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    os.chmod(root / "home/user", 0o700)
    (root / "home/user/with space.txt").write_bytes(b"spaces\n")
    os.chown(root / "home/user/with space.txt", 1000, 1000)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")
    os.link(root / "usr/bin/tool", root / "usr/bin/another-alias")
    (root / "usr/lib").mkdir()
    os.symlink("usr/lib", root / "lib")
    os.symlink("/etc/hostname", root / "usr/lib/abs-link")
    (root / "usr/lib/big.bin").write_bytes(os.urandom(3 << 20))  # larger than the in-memory threshold
    (root / "usr/lib/odd").write_bytes(b"abc")  # size not a multiple of 4
    (root / "usr/lib/empty").touch()
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mkfifo(root / "dev/fifo", 0o600)
    (root / "a-b").mkdir()  # sorts between "a" and "a/…" bytewise
    (root / "a").mkdir()
    (root / "a/x").write_text("x")
    os.utime(root / "etc/hostname", (OLD, OLD))
    os.utime(root / "usr/lib/odd", (NEW, NEW))
    os.utime(root / "lib", (OLD, OLD), follow_symlinks=False)
    return root


def gnu_cpio(root: Path, out: Path) -> None:
    """The reference: ``find . | LC_ALL=C sort | cpio -o -H newc --reproducible``."""
    env = {**os.environ, "LC_ALL": "C"}
    names = subprocess.run(["find", "."], cwd=root, env=env, check=True, capture_output=True).stdout
    names = b"\n".join(sorted(names.splitlines())) + b"\n"
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"], cwd=root, env=env,
                       input=names, stdout=f, check=True)  # fmt: skip


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything about a tree that an archive must carry (no atime/ctime, no inode numbers)."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            # GNU cpio -m restores neither symlink nor directory times (files created inside a directory
            # after it change them), so those are checked on the archive itself.
            mtime = None if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            result[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime, extra)
    return result


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


def test_byte_identical_to_gnu_cpio(tree: Path, tmp_path: Path) -> None:
    # Hard links aside, GNU cpio writes exactly what we write.
    for alias in ("usr/bin/tool-alias", "usr/bin/another-alias"):
        (tree / alias).unlink()
    make_cpio(tree, tmp_path / "ours.cpio")
    gnu_cpio(tree, tmp_path / "gnu.cpio")
    assert (tmp_path / "ours.cpio").read_bytes() == (tmp_path / "gnu.cpio").read_bytes()


def test_same_entries_as_gnu_cpio_with_hard_links(tree: Path, tmp_path: Path) -> None:
    # GNU cpio holds hard-linked files back until it has seen their last link (so they leave the sorted
    # order); we keep the sorted order. The entries themselves, data on the last link included, agree.
    make_cpio(tree, tmp_path / "ours.cpio")
    gnu_cpio(tree, tmp_path / "gnu.cpio")
    ours = list_cpio(tmp_path / "ours.cpio")
    gnu = list_cpio(tmp_path / "gnu.cpio")
    assert {e.name: e for e in ours} == {e.name: e for e in gnu}
    assert [e.name for e in ours] == sorted(e.name for e in ours)


def test_gnu_cpio_extracts_the_same_tree(tree: Path, tmp_path: Path) -> None:
    make_cpio(tree, tmp_path / "a.cpio")
    out = tmp_path / "out"
    out.mkdir()
    with open(tmp_path / "a.cpio", "rb") as f:
        subprocess.run(["cpio", "-i", "-d", "-m", "-u", "--quiet", "--no-absolute-filenames"], cwd=out,
                       stdin=f, check=True)  # fmt: skip
    assert snapshot(out) == snapshot(tree)
    # hard links came back as hard links
    inodes = {os.lstat(out / "usr/bin" / n).st_ino for n in ("tool", "tool-alias", "another-alias")}
    assert len(inodes) == 1
    assert os.lstat(out / "usr/bin/tool").st_nlink == 3


def test_listing_matches_gnu_cpio(tree: Path, tmp_path: Path) -> None:
    make_cpio(tree, tmp_path / "a.cpio")
    with open(tmp_path / "a.cpio", "rb") as f:
        listed = subprocess.run(["cpio", "-t", "--quiet"], stdin=f, check=True, capture_output=True).stdout
    ours = [e.name for e in list_cpio(tmp_path / "a.cpio")]
    assert listed.decode().splitlines() == ours
    assert ours[0] == "."
    assert ours.index("a") < ours.index("a-b") < ours.index("a/x")  # bytewise sort, like `find | sort`
    for i, name in enumerate(ours[1:], 1):
        parent = os.path.dirname(name)
        if parent:
            assert ours.index(parent) < i


def test_two_runs_and_a_copy_are_byte_identical(tree: Path, tmp_path: Path) -> None:
    make_cpio(tree, tmp_path / "1.cpio")
    make_cpio(tree, tmp_path / "2.cpio")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", tree, copy], check=True)  # other inode numbers, other ctimes
    make_cpio(copy, tmp_path / "3.cpio")
    one = (tmp_path / "1.cpio").read_bytes()
    assert one == (tmp_path / "2.cpio").read_bytes() == (tmp_path / "3.cpio").read_bytes()
    assert len(one) % 512 == 0


def test_entries_carry_metadata(tree: Path, tmp_path: Path) -> None:
    make_cpio(tree, tmp_path / "a.cpio")
    with open(tmp_path / "a.cpio", "rb") as f:
        entries = {e.name: e for e in read_cpio(f)}
    assert [e.ino for e in entries.values()][:3] == [0, 1, 2]
    shadow = entries["etc/shadow"]
    assert (shadow.mode, shadow.uid, shadow.gid) == (0o100640, 0, 42)
    assert entries["home/user"].mode == 0o40700 and entries["home/user"].uid == 1000
    assert entries["etc/hostname"].mtime == OLD
    assert entries["etc"].mtime == int(os.lstat(tree / "etc").st_mtime)
    assert entries["lib"].mtime == OLD  # the symlink's own time
    assert entries["lib"].is_symlink and entries["lib"].data == b"usr/lib"
    assert entries["usr/lib/abs-link"].data == b"/etc/hostname"
    null = entries["dev/null"]
    assert stat.S_ISCHR(null.mode) and (null.rdevmajor, null.rdevminor) == (1, 3)
    loop = entries["dev/loop0"]
    assert stat.S_ISBLK(loop.mode) and (loop.rdevmajor, loop.rdevminor) == (7, 0)
    assert stat.S_ISFIFO(entries["dev/fifo"].mode)
    assert entries["usr/lib/big.bin"].data == (tree / "usr/lib/big.bin").read_bytes()
    # directories: 2 + subdirectories, independent of the file system
    assert entries["."].nlink == 2 + len([p for p in tree.iterdir() if p.is_dir() and not p.is_symlink()])
    assert entries["usr"].nlink == 4
    # newc hard links: same inode, nlink 3, data only on the last one in archive order
    links = [entries[n] for n in ("usr/bin/another-alias", "usr/bin/tool", "usr/bin/tool-alias")]
    assert len({e.ino for e in links}) == 1
    assert all(e.nlink == 3 for e in links)
    assert [e.size for e in links] == [0, 0, len(b"#!/bin/sh\necho hi\n")]
    assert all(e.devmajor == e.devminor == 0 for e in entries.values())


def test_mtime_clamp(tree: Path, tmp_path: Path) -> None:
    epoch = 1_500_000_000
    make_cpio(tree, tmp_path / "a.cpio", source_date_epoch=epoch)
    entries = {e.name: e for e in list_cpio(tmp_path / "a.cpio")}
    assert entries["etc/hostname"].mtime == OLD  # older: kept
    assert entries["usr/lib/odd"].mtime == epoch  # newer: clamped
    assert entries["."].mtime == epoch  # created now: clamped
    assert all(e.mtime <= epoch for e in entries.values())


def test_owner_override_and_subset(tree: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()  # no file descriptor: the buffered write path
    write_cpio(tree, buf, paths=["etc", "etc/shadow", "/usr/lib/big.bin", "./etc/hostname"], owner=(0, 0))
    buf.seek(0)
    entries = list(read_cpio(buf))
    assert [e.name for e in entries] == [".", "etc", "etc/hostname", "etc/shadow", "usr/lib/big.bin"]
    assert all((e.uid, e.gid) == (0, 0) for e in entries)
    assert entries[-1].data == (tree / "usr/lib/big.bin").read_bytes()


def test_pipe_output(tree: Path, tmp_path: Path) -> None:
    """Streaming into a pipe (sendfile to a pipe) gives the same bytes as into a file."""
    make_cpio(tree, tmp_path / "file.cpio")
    r, w = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        with open(r, "rb") as f:
            chunks.extend(iter(lambda: f.read(1 << 16), b""))

    reader = threading.Thread(target=drain)
    reader.start()
    with open(w, "wb") as out:
        write_cpio(tree, out)
    reader.join()
    assert b"".join(chunks) == (tmp_path / "file.cpio").read_bytes()


def test_concatenated_archives(tree: Path, tmp_path: Path) -> None:
    early = tmp_path / "early"
    (early / "kernel/x86/microcode").mkdir(parents=True)
    (early / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"ucode")
    make_cpio(early, tmp_path / "1.cpio")
    make_cpio(tree, tmp_path / "2.cpio")
    both = tmp_path / "both.cpio"
    both.write_bytes((tmp_path / "1.cpio").read_bytes() + (tmp_path / "2.cpio").read_bytes())
    names = [e.name for e in list_cpio(both)]
    assert "kernel/x86/microcode/GenuineIntel.bin" in names and "usr/lib/big.bin" in names
    assert names.count(".") == 2


def test_errors(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="does not exist"):
        make_cpio(tree, tmp_path / "a.cpio", paths=["missing"])
    with pytest.raises(MkosiError, match="outside"):
        make_cpio(tree, tmp_path / "a.cpio", paths=["../etc"])
    huge = tmp_path / "huge"
    huge.mkdir()
    with open(huge / "sparse", "wb") as f:
        f.truncate(5 << 30)  # newc sizes are 32-bit
    with pytest.raises(MkosiError, match="does not fit"):
        make_cpio(huge, tmp_path / "h.cpio")
    (tmp_path / "bad.cpio").write_bytes(b"070707" + b"0" * 200)
    with pytest.raises(MkosiError, match="magic"):
        list_cpio(tmp_path / "bad.cpio")
    assert cpio.TRAILER == "TRAILER!!!"

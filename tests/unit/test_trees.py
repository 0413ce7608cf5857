"""Tree copying, merging, archiving and overlay differences, on real trees (as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from mkosi.build import trees
from mkosi.build.trees import (
    clamp_mtimes,
    copy_tree,
    extract_tree,
    merge_tree,
    overlay_difference,
    resolve_in_root,
    tar_directory,
)
from mkosi.errors import MkosiError
from mkosi.formats.compression import from_extension


def make_tree(root: Path) -> Path:
    root.mkdir(mode=0o755)
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/hostname").write_text("base\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib").mkdir()
    (root / "usr/bin/ping").write_bytes(b"\x7fELF ping")
    os.setxattr(
        root / "usr/bin/ping",
        "security.capability",
        bytes.fromhex("0100000200200000000000000000000000000000"),
    )
    (root / "usr/bin/tool").write_bytes(b"tool")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool2")
    os.symlink("usr/bin", root / "bin")
    os.symlink("usr/lib", root / "lib")
    (root / "usr/lib/libc.so").write_bytes(b"c" * 10000)
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    os.chmod(root / "home/user", 0o700)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(root / "dev/initctl", 0o600)
    (root / "var/empty").mkdir(parents=True)
    os.utime(root / "etc/hostname", (1000, 1000))
    return root


def describe(root: Path, *, mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Path → (mode, uid, gid, content/target/rdev, xattrs) for every entry; mtimes of non-dirs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            data: object = None
            if stat.S_ISREG(st.st_mode):
                data = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode):
                data = st.st_rdev
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {n: os.getxattr(p, n) for n in os.listxattr(p)}
            mtime = (
                None if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode) or not mtimes else st.st_mtime_ns
            )
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, data, xattrs, mtime)
    return out


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "base")


# ---------------------------------------------------------------------------------------------- copy


def test_copy_tree_preserves_everything(base: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    copy_tree(base, dst)
    assert describe(dst) == describe(base)
    assert os.lstat(dst / "usr/bin/tool").st_ino == os.lstat(dst / "usr/bin/tool2").st_ino
    assert stat.S_IMODE(os.lstat(dst).st_mode) == 0o755


def test_copy_tree_into_existing_directory_merges(base: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    dst.mkdir()
    (dst / "keep").write_text("keep")
    copy_tree(base, dst)
    assert (dst / "keep").read_text() == "keep"
    assert (dst / "etc/hostname").read_text() == "base\n"


def test_copy_tree_without_preserve_and_dereference(base: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    copy_tree(base / "home", dst, preserve=False)
    assert os.lstat(dst / "user").st_uid == os.getuid()
    assert stat.S_IMODE(os.lstat(dst / "user").st_mode) == 0o700
    deref = tmp_path / "deref"
    copy_tree(base, deref, dereference=True)
    assert (deref / "bin").is_dir() and not (deref / "bin").is_symlink()
    assert (deref / "bin/ping").read_bytes() == b"\x7fELF ping"


def test_python_fallback_matches_cp(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trees, "which", lambda name: None)
    dst = tmp_path / "py"
    copy_tree(base, dst)
    assert describe(dst) == describe(base)
    assert os.lstat(dst / "usr/bin/tool").st_ino == os.lstat(dst / "usr/bin/tool2").st_ino
    assert os.lstat(dst).st_mtime_ns == os.lstat(base).st_mtime_ns


def test_copy_missing_source(tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="does not exist"):
        copy_tree(tmp_path / "nope", tmp_path / "dst")


# ---------------------------------------------------------------------------------------------- merge


def test_resolve_in_root_never_leaves_the_root(base: Path) -> None:
    os.symlink("/usr/bin", base / "abs")
    os.symlink("../../../../..", base / "usr/up")
    assert resolve_in_root(base, "bin/ping") == base / "usr/bin/ping"
    assert resolve_in_root(base, "/abs/x") == base / "usr/bin/x"
    assert resolve_in_root(base, "usr/up/etc") == base / "etc"
    os.symlink("loop", base / "loop")
    with pytest.raises(MkosiError, match="symbolic links"):
        resolve_in_root(base, "loop/x")


def test_merge_directory_follows_root_symlinks_inside_the_root(base: Path, tmp_path: Path) -> None:
    os.symlink("/usr/sbin-host", base / "sbin")  # absolute: must resolve inside the root, not on the host
    (base / "usr/sbin-host").mkdir()
    victim = tmp_path / "host-file"
    victim.write_text("host")
    os.symlink(victim, base / "etc/motd")  # a file symlink pointing out of the root: replaced, not written
    extra = tmp_path / "extra"
    (extra / "lib/systemd/system").mkdir(parents=True)
    (extra / "lib/systemd/system/foo.service").write_text("[Unit]\n")
    (extra / "sbin").mkdir()
    (extra / "sbin/helper").write_text("helper")
    (extra / "etc").mkdir()
    (extra / "etc/motd").write_text("welcome")
    (extra / "etc/hostname").write_text("extra\n")
    os.chmod(extra, 0o700)
    os.chown(extra, 1000, 1000)
    before = os.lstat(base)

    merge_tree(extra, base)

    assert (base / "usr/lib/systemd/system/foo.service").read_text() == "[Unit]\n"
    assert (base / "lib").is_symlink()
    assert (base / "usr/sbin-host/helper").read_text() == "helper"
    assert (base / "sbin").is_symlink()
    assert not (base / "etc/motd").is_symlink() and (base / "etc/motd").read_text() == "welcome"
    assert victim.read_text() == "host"
    assert (base / "etc/hostname").read_text() == "extra\n"
    after = os.lstat(base)  # the root's own metadata is kept
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)


def test_merge_plain_directory_and_target(base: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "file").write_text("x")
    os.chown(extra / "file", 1000, 1001)
    merge_tree(extra, base, target="/opt/app")
    assert (base / "opt/app/file").read_text() == "x"
    assert os.lstat(base / "opt/app/file").st_uid == 1000
    merge_tree(extra, base, target="bin/sub")  # target resolved inside the root: bin -> usr/bin
    assert (base / "usr/bin/sub/file").exists()
    merge_tree(extra, base, target="tmp", preserve=False)
    assert os.lstat(base / "tmp/file").st_uid == os.getuid()


@pytest.mark.parametrize("suffix", [".tar", ".tar.zst", ".tar.gz", ".tar.xz"])
def test_merge_tar_archives(suffix: str, base: Path, tmp_path: Path) -> None:
    src = tmp_path / "skeleton"
    (src / "lib/modules").mkdir(parents=True)
    (src / "lib/modules/mod.ko").write_bytes(b"module")
    (src / "etc").mkdir()
    (src / "etc/hostname").write_text("from-tar\n")
    os.chown(src / "etc/hostname", 7, 8)
    archive = tmp_path / f"skeleton{suffix}"
    tar_directory(src, archive, compress=from_extension(archive))

    merge_tree(archive, base)  # non-empty root: via a staging directory, lib -> usr/lib followed
    assert (base / "usr/lib/modules/mod.ko").read_bytes() == b"module"
    assert (base / "etc/hostname").read_text() == "from-tar\n"
    assert os.lstat(base / "etc/hostname").st_uid == 7
    assert not any(p.name.startswith(".mkosi-tree-") for p in base.parent.iterdir())

    empty = tmp_path / "empty"
    empty.mkdir()
    merge_tree(archive, empty, target="srv")
    assert (empty / "srv/etc/hostname").read_text() == "from-tar\n"


def test_tar_without_top_entry_keeps_the_root(base: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("x")
    archive = tmp_path / "no-dot.tar"
    subprocess.run(["tar", "-C", src, "-cf", archive, "file"], check=True)
    os.chmod(base, 0o751)
    extract_tree(archive, base)  # non-empty root: through a staging directory
    assert (base / "file").read_text() == "x"
    assert stat.S_IMODE(os.lstat(base).st_mode) == 0o751


def test_merge_rejects_other_files(base: Path, tmp_path: Path) -> None:
    (tmp_path / "tree.zip").write_bytes(b"PK")
    with pytest.raises(MkosiError, match="neither a directory nor a tar"):
        merge_tree(tmp_path / "tree.zip", base)


def test_extract_base_trees(base: Path, tmp_path: Path) -> None:
    archive = tmp_path / "base.tar.zst"
    tar_directory(base, archive, compress="zstd")
    os.chmod(base, 0o750)
    root = tmp_path / "root"
    extract_tree(base, root)
    assert describe(root) == describe(base)
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o750  # the root takes the tree's metadata

    root2 = tmp_path / "root2"
    extract_tree(archive, root2)
    assert describe(root2) == describe(root)
    second = tmp_path / "second"
    (second / "etc").mkdir(parents=True)
    (second / "etc/hostname").write_text("second\n")
    extract_tree(second, root2)  # layered on top
    assert (root2 / "etc/hostname").read_text() == "second\n"
    assert (root2 / "etc/shadow").exists()


# ---------------------------------------------------------------------------------------------- overlay


def test_overlay_difference(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy_tree(base, root)
    # changes relative to the base
    (root / "etc/hostname").write_text("root\n")  # same size, other content
    os.utime(root / "etc/hostname", (1000, 1000))  # … and the same mtime
    os.chmod(root / "etc/ssh/sshd_config", 0o600)  # mode
    os.chown(root / "usr/lib/libc.so", 5, 5)  # owner
    os.removexattr(root / "usr/bin/ping", "security.capability")  # xattr
    (root / "lib").unlink()
    os.symlink("usr/lib64", root / "lib")  # symlink target
    (root / "usr/bin/new").write_text("new")  # added file
    (root / "opt/app").mkdir(parents=True)  # added empty directory
    os.chmod(root / "home/user", 0o750)  # directory mode changed, no new entries
    (root / "dev/initctl").unlink()  # deleted
    # identical but touched: must go
    os.utime(root / "usr/bin/tool", (5, 5))

    deleted = overlay_difference([base], root)

    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == [
        "etc",
        "etc/hostname",
        "etc/ssh",
        "etc/ssh/sshd_config",
        "home",
        "home/user",
        "lib",
        "opt",
        "opt/app",
        "usr",
        "usr/bin",
        "usr/bin/new",
        "usr/bin/ping",
        "usr/lib",
        "usr/lib/libc.so",
    ]
    assert deleted == [Path("dev/initctl")]
    assert (base / "dev/initctl").exists()  # the base is never touched
    assert describe(base, mtimes=False) == describe(make_tree(tmp_path / "pristine"), mtimes=False)


def test_overlay_difference_content_compare_is_default(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy_tree(base, root)
    data = (root / "usr/lib/libc.so").read_bytes()
    (root / "usr/lib/libc.so").write_bytes(data[:-1] + b"X")
    st = os.lstat(base / "usr/lib/libc.so")
    os.utime(root / "usr/lib/libc.so", ns=(st.st_atime_ns, st.st_mtime_ns))
    overlay_difference([base], root)
    assert (root / "usr/lib/libc.so").exists()  # same size and mtime, other bytes: kept

    root2 = tmp_path / "root2"
    copy_tree(base, root2)
    (root2 / "usr/lib/libc.so").write_bytes(data[:-1] + b"X")
    os.utime(root2 / "usr/lib/libc.so", ns=(st.st_atime_ns, st.st_mtime_ns))
    overlay_difference([base], root2, trust_mtime=True)
    assert not (root2 / "usr/lib/libc.so").exists()  # trusted size+mtime: dropped


def test_overlay_difference_hard_linked_root_and_layers(base: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    (second / "etc").mkdir(parents=True)
    (second / "etc/hostname").write_text("second\n")
    (second / "srv").mkdir()
    (second / "srv/data").write_text("data")

    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--link", f"{base}/.", str(root)], check=True)  # hard links to the base
    extract_tree(second, root)
    (root / "srv/more").write_text("more")
    overlay_difference([base, second], root)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["srv", "srv/more"]

    # against the first layer alone, the second layer's changes are differences
    root2 = tmp_path / "root2"
    copy_tree(base, root2)
    extract_tree(second, root2)
    overlay_difference([base], root2)
    assert (root2 / "etc/hostname").read_text() == "second\n"
    assert (root2 / "srv/data").exists()


def test_overlay_difference_type_changes(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy_tree(base, root)
    (root / "var/empty").rmdir()
    (root / "var/empty").write_text("now a file")
    (root / "lib").unlink()
    (root / "lib").mkdir()  # symlink became a directory
    overlay_difference([base], root)
    assert (root / "var/empty").is_file()
    assert (root / "lib").is_dir() and not (root / "lib").is_symlink()


# ---------------------------------------------------------------------------------------------- tar


def test_tar_directory_is_deterministic_and_faithful(base: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    tar_directory(base, a)
    copy = tmp_path / "copy"
    copy_tree(base, copy)  # other inodes and ctimes
    os.utime(copy / "usr/bin/tool", ns=(12345, os.lstat(base / "usr/bin/tool").st_mtime_ns))  # atime only
    tar_directory(copy, b)
    assert a.read_bytes() == b.read_bytes()

    with tarfile.open(a) as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names[0] == "." and names == ["."] + sorted(names[1:], key=lambda n: n.split("/"))
        assert all(m.uname == "" and m.gname == "" for m in members)  # numeric owners only
        shadow = tf.getmember("./etc/shadow")
        assert (shadow.mode, shadow.uid, shadow.gid) == (0o640, 0, 42)
        assert tf.getmember("./usr/bin/tool2").islnk() or tf.getmember("./usr/bin/tool").islnk()
        ping = tf.getmember("./usr/bin/ping")
        assert "SCHILY.xattr.security.capability" in ping.pax_headers
        assert not any("atime" in m.pax_headers or "ctime" in m.pax_headers for m in members)
    listing = subprocess.run(["tar", "-tvf", a], capture_output=True, check=True, text=True).stdout
    assert "PaxHeaders." not in listing

    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["tar", "-xf", a, "-C", out, "--xattrs", "--xattrs-include=*", "--numeric-owner"], check=True
    )
    assert describe(out) == describe(base)


def test_tar_directory_compressed_and_clamped(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.tar.zst"
    tar_directory(base, out, compress="zstd", level=19, source_date_epoch=1_500_000_000)
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    raw = subprocess.run(["zstd", "-d", "-c", out], capture_output=True, check=True).stdout
    (tmp_path / "a.tar").write_bytes(raw)
    with tarfile.open(tmp_path / "a.tar") as tf:
        times = {m.name: m.mtime for m in tf.getmembers()}
    assert times["./etc/hostname"] == 1000
    assert times["./usr/bin/tool"] == 1_500_000_000
    assert max(times.values()) == 1_500_000_000


def test_clamp_mtimes(base: Path) -> None:
    future = 4_000_000_000
    os.utime(base / "bin", (future, future), follow_symlinks=False)
    changed = clamp_mtimes(base, 1_500_000_000)
    assert changed > 5
    for p in [base, *base.rglob("*")]:
        assert os.lstat(p).st_mtime <= 1_500_000_000
    assert os.lstat(base / "etc/hostname").st_mtime == 1000
    assert os.lstat(base / "bin").st_mtime == 1_500_000_000
    assert os.stat(base / "bin").st_mtime == 1_500_000_000  # its target, too, as a member of the tree
    assert clamp_mtimes(base, 1_500_000_000) == 0

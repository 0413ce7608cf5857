"""Copying, merging, archiving and diffing directory trees (as root).

* :func:`copy_tree` — ``cp -a --reflink=auto`` (a Python copy where ``cp`` is missing);
* :func:`merge_tree` — skeleton/extra trees (a directory or a tar archive) on top of an existing root,
  optionally below a target directory. A directory in the tree that meets a symlink to a directory in the
  root (``lib`` → ``usr/lib`` on merged-/usr systems) is merged into the symlink's target, resolved inside
  the root (never on the host); the root's own top directory keeps its mode, owner and timestamps;
* :func:`install_tree` — skeleton, extra and sandbox trees with the manual's ownership rule;
* :func:`extract_tree` — base trees into a (usually empty) root, whose top directory takes the tree's;
* :func:`overlay_difference` — strips from a root what its base trees already contain;
* :func:`tar_directory` — deterministic (optionally compressed) tar archives with GNU tar;
* :func:`clamp_mtimes` — SOURCE_DATE_EPOCH for a whole tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from mkosi import log
from mkosi.errors import MkosiError
from mkosi.formats import compression
from mkosi.run import run, which

TAR_SUFFIXES = (
    ".tar",
    ".tar.zst",
    ".tar.gz",
    ".tar.xz",
    ".tar.bz2",
    ".tar.lz4",
    ".tar.lzma",
    ".tgz",
    ".txz",
    ".tzst",
    ".tbz2",
)

_TAR_EXTRACT_PRESERVE = [
    "--numeric-owner",
    "--same-owner",
    "--same-permissions",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
]
_TAR_EXTRACT_PLAIN = ["--no-same-owner", "--same-permissions"]


def is_tar(path: Path) -> bool:
    """Whether ``path`` names a tar archive (by suffix, compressed or not)."""
    return path.name.lower().endswith(TAR_SUFFIXES)


# ---------------------------------------------------------------------------------------------- copying


def _cp_flags(preserve: bool, dereference: bool) -> list[str]:
    if preserve:
        flags = ["--archive"]  # -dR --preserve=all: mode, owner, timestamps, links, xattrs, ACLs, labels
    else:
        flags = ["--recursive", "--no-dereference", "--preserve=mode,timestamps,links"]
    if dereference:
        flags.append("--dereference")  # after --archive, so it wins over its --no-dereference
    # --remove-destination: never write through a symlink that exists in the destination (it may point
    # anywhere on the host); replace it instead.
    return [*flags, "--reflink=auto", "--sparse=auto", "--remove-destination"]


def copy_tree(src: Path, dst: Path, *, preserve: bool = True, dereference: bool = False) -> None:
    """Copy ``src`` to ``dst`` (``cp -a --reflink=auto --no-target-directory``).

    If ``dst`` is an existing directory, ``src``'s contents are merged into it and its metadata replaced
    by ``src``'s. ``preserve`` keeps owners, xattrs, ACLs and SELinux labels (mode, timestamps and hard
    links are always kept); ``dereference`` copies what symlinks point to instead of the links.
    """
    if not os.path.lexists(src):
        raise MkosiError(f"Cannot copy {src}: it does not exist")
    if which("cp") is None:
        _copy_python(src, dst, preserve=preserve, dereference=dereference)
        return
    run(["cp", *_cp_flags(preserve, dereference), "--no-target-directory", src, dst], what=f"copying {src}")


def _copy_entries(srcs: Sequence[Path], dst_dir: Path, *, preserve: bool) -> None:
    """Copy each of ``srcs`` into the directory ``dst_dir`` (one ``cp`` for all)."""
    if not srcs:
        return
    if which("cp") is None:
        for s in srcs:
            _copy_python(s, dst_dir / s.name, preserve=preserve, dereference=False)
        return
    run(
        ["cp", *_cp_flags(preserve, False), f"--target-directory={dst_dir}", "--", *srcs],
        what=f"copying {srcs[0].parent}",
    )


def _copy_metadata(src: os.stat_result | Path, dst: Path, *, preserve: bool) -> None:
    st = src if isinstance(src, os.stat_result) else os.lstat(src)
    if preserve:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if isinstance(src, Path):
            _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: Path, dst: Path) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


def _copy_python(src: Path, dst: Path, *, preserve: bool, dereference: bool) -> None:
    """The slow path of :func:`copy_tree`: the same semantics, in Python."""
    links: dict[tuple[int, int], Path] = {}
    dirs: list[tuple[Path, Path]] = []

    def one(s: Path, d: Path) -> None:
        st = os.stat(s) if dereference else os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if not d.is_dir() or d.is_symlink():
                if os.path.lexists(d):
                    raise MkosiError(f"Cannot overwrite non-directory {d} with directory {s}")
                d.mkdir(mode=0o700)
            for entry in sorted(os.listdir(s)):
                one(s / entry, d / entry)
            dirs.append((s, d))
            return
        if os.path.lexists(d):
            if d.is_dir() and not d.is_symlink():
                raise MkosiError(f"Cannot overwrite directory {d} with non-directory {s}")
            d.unlink()
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and not stat.S_ISDIR(mode) and key in links:
            os.link(links[key], d)
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode):
            shutil.copyfile(s, d)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, stat.S_IMODE(mode))
        elif stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            os.mknod(d, mode, st.st_rdev)
        else:
            log.debug(f"Not copying socket {s}")
            return
        links[key] = d
        _copy_metadata(st if dereference else s, d, preserve=preserve)

    one(src, dst)
    for s, d in reversed(dirs):  # directory times last, after their contents were written
        _copy_metadata(os.stat(s) if dereference else s, d, preserve=preserve)


# ---------------------------------------------------------------------------------------------- merging


def resolve_in_root(root: Path, path: Path | str) -> Path:
    """Resolve ``path`` (relative to ``root``) following symlinks as if ``root`` were ``/``.

    Absolute symlink targets and ``..`` never leave ``root``. Missing components are kept as they are.
    """
    parts = [p for p in Path(path).parts if p not in ("/", "")]
    resolved: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, name)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise MkosiError(f"Too many levels of symbolic links below {root}: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in Path(target).parts if p not in ("/", "")] + parts
            continue
        resolved.append(name)
    return root.joinpath(*resolved)


@contextlib.contextmanager
def _keeping_metadata(path: Path) -> Iterator[None]:
    """Restore ``path``'s mode, owner and timestamps after the block (when it existed before)."""
    st = os.lstat(path) if os.path.isdir(path) else None
    yield
    if st is not None:
        _copy_metadata(st, path, preserve=True)


def _needs_care(src: Path, dst: Path, root: Path, memo: dict[Path, bool]) -> bool:
    """Whether some directory below ``src`` meets a symlink in ``dst`` (so plain ``cp`` would fail)."""
    found = False
    with os.scandir(src) as it:
        subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    for name in subdirs:
        target = dst / name
        if target.is_symlink():
            memo[src / name] = True
            found = True
        elif target.is_dir():
            if _needs_care(src / name, target, root, memo):
                found = True
    memo[src] = found
    return found


def _merge_dir(src: Path, dst: Path, root: Path, memo: dict[Path, bool], preserve: bool) -> None:
    plain: list[Path] = []
    for name in sorted(os.listdir(src)):
        s, d = src / name, dst / name
        if s.is_dir() and not s.is_symlink() and memo.get(s):
            if d.is_symlink():
                resolved = resolve_in_root(root, d.relative_to(root))
                if not resolved.is_dir():
                    raise MkosiError(f"Cannot merge directory {s} into {d}, a symlink to a non-directory")
                _needs_care(s, resolved, root, memo)
                _merge_dir(s, resolved, root, memo, preserve)
                continue
            _merge_dir(s, d, root, memo, preserve)
            _copy_metadata(s, d, preserve=preserve)
            continue
        plain.append(s)
    _copy_entries(plain, dst, preserve=preserve)


def _merge_directory(src: Path, dst: Path, root: Path, *, preserve: bool) -> None:
    memo: dict[Path, bool] = {}
    if not _needs_care(src, dst, root, memo):
        copy_tree(src, dst, preserve=preserve)
        return
    _merge_dir(src, dst, root, memo, preserve)
    _copy_metadata(src, dst, preserve=preserve)


def _untar(archive: Path, dst: Path, *, preserve: bool) -> None:
    algo = compression.detect(archive)
    prog = ["--use-compress-program", compression.decompressor_shell(algo)] if algo != "none" else []
    flags = _TAR_EXTRACT_PRESERVE if preserve else _TAR_EXTRACT_PLAIN
    run(
        ["tar", "--extract", "--file", archive, "--directory", dst, *prog, *flags, "--warning=no-timestamp"],
        what=f"extracting {archive}",
    )


def _apply_tree(src: Path, root: Path, target: Path | None, *, preserve: bool, keep_top: bool) -> None:
    if not os.path.lexists(src):
        raise MkosiError(f"Tree {src} does not exist")
    root.mkdir(parents=True, exist_ok=True)
    dst = root
    if target is not None and str(target).strip("/"):
        dst = resolve_in_root(root, target)
        dst.mkdir(mode=0o755, parents=True, exist_ok=True)
    keeper = _keeping_metadata(dst) if keep_top else contextlib.nullcontext()
    with keeper:
        if src.is_dir():
            _merge_directory(src, dst, root, preserve=preserve)
        elif is_tar(src):
            if not any(dst.iterdir()):
                _untar(src, dst, preserve=preserve)
                return
            with tempfile.TemporaryDirectory(dir=root.parent, prefix=".mkosi-tree-") as tmp:
                # An archive without a "./" member must leave the top directory as it is.
                _copy_metadata(os.lstat(dst), Path(tmp), preserve=True)
                _untar(src, Path(tmp), preserve=preserve)
                _merge_directory(Path(tmp), dst, root, preserve=preserve)
        else:
            hint = f"tar archives are recognized by their suffix: {', '.join(TAR_SUFFIXES)}"
            raise MkosiError(f"Tree {src} is neither a directory nor a tar archive", hint=hint)


def merge_tree(src: Path, root: Path, *, target: Path | str | None = None, preserve: bool = True) -> None:
    """Copy the tree ``src`` (a directory or tar archive) on top of ``root``, below ``target`` if given.

    Existing files are replaced; existing directories take the tree's metadata, except the top one
    (``root`` or ``root/target``), which keeps its own. ``target`` is resolved inside ``root`` and created
    (mode 0755) if missing. ``preserve=False`` leaves files owned by the caller (no xattrs either).
    """
    _apply_tree(src, root, Path(target) if target else None, preserve=preserve, keep_top=True)


def install_tree(src: Path, root: Path, target: Path | str | None = None) -> None:
    """A skeleton, extra or sandbox tree: a directory's files become owned by root (the caller), a tar
    archive keeps the ownership it records — the manual: "When using the directory, file ownership is not
    preserved: all files copied will be owned by root. To preserve ownership, use a tar archive"."""
    merge_tree(src, root, target=target, preserve=not Path(src).is_dir())


def extract_tree(src: Path, root: Path, *, preserve: bool = True) -> None:
    """Install a base tree (a directory or tar archive) into ``root`` — normally empty or missing.

    Unlike :func:`merge_tree` the root directory takes the tree's own mode, owner and timestamps. Several
    base trees are installed by calling this once per tree, in order.
    """
    _apply_tree(src, root, None, preserve=preserve, keep_top=False)


# ---------------------------------------------------------------------------------------------- overlays


def _xattrs(path: str | bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return {}
        raise


def _same_content(a: str | bytes, b: str | bytes) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            ca = fa.read(1 << 20)
            cb = fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _same_owner_mode(r: os.stat_result, b: os.stat_result) -> bool:
    return r.st_mode == b.st_mode and r.st_uid == b.st_uid and r.st_gid == b.st_gid


def _same_entry(rpath: bytes, r: os.stat_result, bpath: bytes, b: os.stat_result, trust_mtime: bool) -> bool:
    """Whether the non-directory ``rpath`` is identical to ``bpath`` (content, mode, owner, xattrs)."""
    if not _same_owner_mode(r, b):
        return False
    if (r.st_dev, r.st_ino) == (b.st_dev, b.st_ino):
        return True  # the very same inode (root made from the base with hard links)
    mode = r.st_mode
    if stat.S_ISLNK(mode):
        if os.readlink(rpath) != os.readlink(bpath):
            return False
    elif stat.S_ISREG(mode):
        if r.st_size != b.st_size:
            return False
        if not (trust_mtime and r.st_mtime_ns == b.st_mtime_ns) and not _same_content(rpath, bpath):
            return False
    elif stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        if r.st_rdev != b.st_rdev:
            return False
    return _xattrs(rpath) == _xattrs(bpath)


def _scan(path: bytes) -> dict[bytes, os.DirEntry[bytes]]:
    with os.scandir(path) as it:
        return {e.name: e for e in it}


def _diff_dir(
    rdir: bytes, bases: list[bytes], rel: bytes, trust_mtime: bool, deleted: list[Path]
) -> tuple[bool, int]:
    """Strip ``rdir`` of what ``bases`` (in order, later on top) hold; whether entries remain, and how
    many were removed."""
    merged: dict[bytes, os.DirEntry[bytes]] = {}
    scans = [_scan(b) for b in bases]
    for scan in scans:
        merged.update(scan)
    mine = _scan(rdir)
    kept = False
    removed = 0
    for name, entry in sorted(mine.items()):
        base = merged.get(name)
        if base is None:
            kept = True  # new
            continue
        rst = entry.stat(follow_symlinks=False)
        bst = base.stat(follow_symlinks=False)
        if stat.S_ISDIR(rst.st_mode):
            if not stat.S_ISDIR(bst.st_mode):
                kept = True
                continue
            below = [s[name].path for s in scans if name in s and s[name].is_dir(follow_symlinks=False)]
            has, n = _diff_dir(entry.path, below, os.path.join(rel, name), trust_mtime, deleted)
            removed += n
            # A directory whose mode, owner or xattrs changed is kept even when empty: in an overlay it
            # is what makes the change visible.
            if has or not _same_owner_mode(rst, bst) or _xattrs(entry.path) != _xattrs(base.path):
                kept = True
            else:
                os.rmdir(entry.path)
                removed += 1
        elif _same_entry(entry.path, rst, base.path, bst, trust_mtime):
            os.unlink(entry.path)
            removed += 1
        else:
            kept = True
    for name in sorted(merged.keys() - mine.keys()):
        gone = Path(os.fsdecode(os.path.join(rel, name)))
        log.debug(f"overlay: /{gone} was deleted relative to the base trees (no whiteout is written)")
        deleted.append(gone)
    return kept, removed


def overlay_difference(base_roots: Sequence[Path], root: Path, *, trust_mtime: bool = False) -> list[Path]:
    """Remove from ``root`` everything the base trees already contain identically.

    ``base_roots`` are layered in order (a later one wins for the same path), as they were installed.
    Dropped: non-directories identical in type, mode, owner, xattrs and content (regular files), target
    (symlinks) or device number (device nodes) — the same inode counts as identical without looking
    further; with ``trust_mtime``, equal size and mtime count as equal content. Directories that exist
    in the base are removed when nothing remains below them, unless their mode, owner or xattrs differ
    from the base's (then they are kept, possibly empty). Everything new stays, and ``root`` itself
    stays. mtimes of non-identical files are irrelevant to the comparison.

    Returns the paths (relative to ``root``) that the base has but ``root`` lacks — deleted relative to
    the base; they are also logged at debug level. Whiteouts for them are not created.
    """
    bases = [os.fsencode(b) for b in base_roots if os.path.isdir(b)]
    deleted: list[Path] = []
    _, removed = _diff_dir(os.fsencode(root), bases, b"", trust_mtime, deleted)
    log.debug(f"overlay: removed {removed} entries of {root} identical to the base trees")
    return deleted


# ---------------------------------------------------------------------------------------------- archiving


def tar_directory(
    src: Path,
    dst_file: Path,
    *,
    compress: str | None = None,
    level: int | None = None,
    source_date_epoch: int | None = None,
) -> None:
    """Write ``src`` as a deterministic pax tar archive to ``dst_file`` (compressed with ``compress``).

    Members are named ``./…``, sorted by name, with numeric owners only, xattrs and ACLs, without atime
    and ctime; mtimes newer than ``source_date_epoch`` are clamped to it.
    """
    algo = compression.normalize(compress)
    cmd: list[str | Path] = [
        "tar",
        "--create",
        "--file",
        dst_file,
        "--directory",
        src,
        "--sort=name",
        "--numeric-owner",
        "--format=pax",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
        "--sparse",
    ]
    if source_date_epoch is not None:
        cmd += [f"--mtime=@{source_date_epoch}", "--clamp-mtime"]
    if algo != "none":
        cmd += ["--use-compress-program", compression.compressor_shell(algo, level)]
    run([*cmd, "."], what=f"archiving {src}")


def clamp_mtimes(root: Path, epoch: int) -> int:
    """Set atime and mtime of every entry below (and including) ``root`` newer than ``epoch`` to it.

    Symlinks themselves are touched, never their targets. Returns how many entries were changed.
    """
    limit = epoch * 1_000_000_000
    changed = 0
    for path, st in _walk_bottom_up(os.fsencode(root)):
        if st.st_mtime_ns > limit:
            os.utime(path, ns=(min(st.st_atime_ns, limit), limit), follow_symlinks=False)
            changed += 1
    return changed


def _walk_bottom_up(top: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Every entry below ``top`` and ``top`` itself, children before their directory; no symlink followed."""
    with os.scandir(top) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_bottom_up(entry.path)
        else:
            yield entry.path, entry.stat(follow_symlinks=False)
    yield top, os.lstat(top)

"""newc ("070701") cpio archives, written in pure Python and deterministically.

The archive lists the tree the way ``find . | LC_ALL=C sort | cpio -o -H newc --reproducible`` would:
``.`` first, then every path sorted bytewise (so a parent always precedes its children), names without
a leading ``./``. Inode numbers are handed out sequentially from 1 in that order, device numbers of the
containing file system are zero, and link counts are computed from the archive itself (directories:
2 + sub-directories, regular files: the number of their hard links inside the archive), so the bytes
depend only on the tree's content, never on which file system it sits on. The archive is padded to whole
512-byte blocks; for a tree on ext4 the result is byte-identical to GNU cpio's.

Hard links follow the newc convention: every link carries the same inode number and link count, and
only the last one (in archive order) carries the data; the others have size 0.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from mkosi.errors import MkosiError

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110
_MAX_FIELD = 0xFFFFFFFF
_FLUSH_AT = 4 << 20  # bytes gathered in memory before one big write
_INLINE_MAX = 256 << 10  # files up to this size are read into the buffer; larger ones are sent directly


@dataclasses.dataclass(frozen=True)
class CpioEntry:
    """One member of an archive as read back by :func:`read_cpio`."""

    name: str
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    data: bytes = b""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _header(
    name: bytes,
    *,
    ino: int,
    mode: int,
    uid: int,
    gid: int,
    nlink: int,
    mtime: int,
    size: int,
    rdevmajor: int = 0,
    rdevminor: int = 0,
) -> bytes:
    namesize = len(name) + 1
    fields = (ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdevmajor, rdevminor, namesize, 0)
    for v in fields:
        if not 0 <= v <= _MAX_FIELD:
            raise MkosiError(f"cpio: value {v} of {os.fsdecode(name)} does not fit in a newc header field")
    head = MAGIC + b"".join(b"%08X" % v for v in fields) + name + b"\0"
    return head + b"\0" * _pad4(len(head))


class _Sink:
    """Gathers small writes into one buffer; sends large files straight from their descriptor."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.buf = bytearray()
        self.fd: int | None = None
        self.written = 0
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is not None:
            out.flush()
            self.fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data
        self.written += len(data)
        if len(self.buf) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        if self.fd is None:
            self.out.write(self.buf)
        else:
            view = memoryview(self.buf)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            view.release()
        self.buf.clear()

    def copy_from(self, fd: int, size: int, name: str) -> None:
        """Append exactly ``size`` bytes read from ``fd``."""
        if size <= _INLINE_MAX:
            data = _read_exactly(fd, size, name)
            self.write(data)
            return
        self.flush()
        done = 0
        if self.fd is not None:
            try:
                while done < size:
                    n = os.sendfile(self.fd, fd, done, size - done)
                    if n == 0:
                        break
                    done += n
            except OSError:
                pass  # not supported between these two descriptors: fall back to read/write below
        while done < size:
            chunk = os.pread(fd, min(size - done, 8 << 20), done)
            if not chunk:
                break
            if self.fd is None:
                self.out.write(chunk)
            else:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.fd, view) :]
            done += len(chunk)
        if done != size:
            raise MkosiError(f"cpio: {name} shrank while it was being archived")
        self.written += size


def _read_exactly(fd: int, size: int, name: str) -> bytes:
    data = os.read(fd, size) if size else b""
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise MkosiError(f"cpio: {name} shrank while it was being archived")
        data += more
    return data


def _walk(root: Path) -> list[bytes]:
    """Every path below ``root`` (relative, as bytes, without the root itself); symlinks not followed."""
    out: list[bytes] = []
    stack = [b""]
    base = os.fsencode(root)
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(base, rel) if rel else base) as it:
            for entry in it:
                name = os.path.join(rel, entry.name) if rel else entry.name
                out.append(name)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
    return out


def _select(root: Path, paths: Iterable[Path | str] | None) -> list[bytes]:
    if paths is None:
        names = _walk(root)
    else:
        names = []
        for p in paths:
            rel = os.path.normpath(os.fsencode(p)).lstrip(b"/")
            if rel in (b".", b""):
                continue
            if rel == b".." or rel.startswith(b"../"):
                raise MkosiError(f"cpio: {os.fsdecode(p)} is outside of {root}")
            names.append(rel)
    names = sorted(set(names))
    return [b".", *names]


def write_cpio(
    root: Path,
    out: IO[bytes],
    *,
    paths: Iterable[Path | str] | None = None,
    source_date_epoch: int | None = None,
    owner: tuple[int, int] | None = None,
) -> int:
    """Write the tree at ``root`` to ``out`` as a newc archive; return the number of bytes written.

    ``paths`` (relative to ``root``) restricts the archive to those entries (the caller lists parents it
    wants included; ``.`` is always included). mtimes newer than ``source_date_epoch`` are clamped to it.
    ``owner`` replaces every entry's (uid, gid). Symlinks are stored as links, never followed.
    """
    names = _select(root, paths)
    base = os.fsencode(root)
    stats: list[os.stat_result] = []
    for name in names:
        try:
            stats.append(os.lstat(os.path.join(base, name) if name != b"." else base))
        except FileNotFoundError as e:
            raise MkosiError(f"cpio: {os.fsdecode(name)} does not exist below {root}") from e

    # Link counts from the archive itself, so they do not depend on the file system underneath.
    subdirs: dict[bytes, int] = {}
    links: dict[tuple[int, int], list[int]] = {}
    for i, (name, st) in enumerate(zip(names, stats)):
        if stat.S_ISDIR(st.st_mode) and name != b".":
            parent = os.path.dirname(name) or b"."
            subdirs[parent] = subdirs.get(parent, 0) + 1
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            links.setdefault((st.st_dev, st.st_ino), []).append(i)

    sink = _Sink(out)
    inos: dict[tuple[int, int], int] = {}
    next_ino = 0
    for i, (name, st) in enumerate(zip(names, stats)):
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        group = links.get(key) if stat.S_ISREG(mode) else None
        if group is not None and key in inos:
            ino = inos[key]
        else:
            ino = next_ino
            next_ino += 1
            if group is not None:
                inos[key] = ino
        mtime = max(0, st.st_mtime_ns // 1_000_000_000)
        if source_date_epoch is not None:
            mtime = min(mtime, source_date_epoch)
        uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
        path = os.path.join(base, name) if name != b"." else base

        if stat.S_ISDIR(mode):
            sink.write(
                _header(
                    name,
                    ino=ino,
                    mode=mode,
                    uid=uid,
                    gid=gid,
                    nlink=2 + subdirs.get(name, 0),
                    mtime=mtime,
                    size=0,
                )
            )
        elif stat.S_ISLNK(mode):
            target = os.readlink(path)
            sink.write(
                _header(name, ino=ino, mode=mode, uid=uid, gid=gid, nlink=1, mtime=mtime, size=len(target))
            )
            sink.write(target + b"\0" * _pad4(len(target)))
        elif stat.S_ISREG(mode):
            carries_data = group is None or group[-1] == i
            size = st.st_size if carries_data else 0
            sink.write(
                _header(
                    name,
                    ino=ino,
                    mode=mode,
                    uid=uid,
                    gid=gid,
                    nlink=len(group) if group else 1,
                    mtime=mtime,
                    size=size,
                )
            )
            if size:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    sink.copy_from(fd, size, os.fsdecode(name))
                finally:
                    os.close(fd)
                sink.write(b"\0" * _pad4(size))
        else:  # block/char devices, fifos, sockets
            rdev = st.st_rdev if (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)) else 0
            sink.write(
                _header(
                    name,
                    ino=ino,
                    mode=mode,
                    uid=uid,
                    gid=gid,
                    nlink=1,
                    mtime=mtime,
                    size=0,
                    rdevmajor=os.major(rdev),
                    rdevminor=os.minor(rdev),
                )
            )

    sink.write(_header(TRAILER.encode(), ino=0, mode=0, uid=0, gid=0, nlink=1, mtime=0, size=0))
    sink.write(b"\0" * ((512 - sink.written % 512) % 512))  # like GNU cpio: whole 512-byte blocks
    sink.flush()
    return sink.written


def make_cpio(
    root: Path,
    dst: Path,
    *,
    paths: Iterable[Path | str] | None = None,
    source_date_epoch: int | None = None,
    owner: tuple[int, int] | None = None,
) -> int:
    """:func:`write_cpio` into the file ``dst`` (created or truncated); returns its size."""
    with open(dst, "wb") as f:
        return write_cpio(root, f, paths=paths, source_date_epoch=source_date_epoch, owner=owner)


def _read_full(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            raise MkosiError("cpio: archive is truncated")
        data += more
    return data


def read_cpio(f: IO[bytes], *, with_data: bool = True) -> Iterator[CpioEntry]:
    """Yield the members of a newc (or crc, "070702") archive, trailers excluded.

    Concatenated archives (as in early-microcode initrds) are read one after the other; zero padding
    between them is skipped. Without ``with_data`` regular file contents are skipped (symlink targets
    are always returned as data).
    """
    while True:
        magic = f.read(6)
        while magic.startswith(b"\0"):  # padding after a trailer, up to the next archive
            magic = magic.lstrip(b"\0")
            more = f.read(6 - len(magic))
            if not more:
                return
            magic += more
        if not magic:
            return
        if magic not in (b"070701", b"070702"):
            raise MkosiError(f"cpio: bad magic {magic!r}, only newc archives are supported")
        fields_raw = _read_full(f, _HEADER_LEN - 6)
        fields = [int(fields_raw[i : i + 8], 16) for i in range(0, 104, 8)]
        ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize, _check = fields
        name_raw = _read_full(f, namesize + _pad4(_HEADER_LEN + namesize))
        name = os.fsdecode(name_raw[: namesize - 1])
        if name == TRAILER:
            continue
        keep = with_data or not stat.S_ISREG(mode)
        if keep:
            data = _read_full(f, size)
        else:
            data = b""
            _skip(f, size)
        _skip(f, _pad4(size))
        yield CpioEntry(
            name=name,
            ino=ino,
            mode=mode,
            uid=uid,
            gid=gid,
            nlink=nlink,
            mtime=mtime,
            size=size,
            devmajor=dmaj,
            devminor=dmin,
            rdevmajor=rmaj,
            rdevminor=rmin,
            data=data,
        )


def _skip(f: IO[bytes], n: int) -> None:
    if n == 0:
        return
    if f.seekable():
        f.seek(n, os.SEEK_CUR)
    else:
        while n:
            n -= len(_read_full(f, min(n, 1 << 20)))


def list_cpio(path: Path) -> list[CpioEntry]:
    """The members of the archive at ``path`` without file contents (symlink targets included)."""
    with open(path, "rb") as f:
        return list(read_cpio(f, with_data=False))

"""File system images made from a directory, without mounting, with Debian 12's mkfs tools.

:func:`make_filesystem` is the one entry point. What each type gives (as root, Debian 12 tools):

=========  ==============================  ===========  ===========================================
type       tool                            owners/xattr reproducible (same tree, uuid/seed, epoch)
=========  ==============================  ===========  ===========================================
erofs      mkfs.erofs 1.5                  yes / yes    yes (SOURCE_DATE_EPOCH clamps mtimes)
squashfs   mksquashfs 4.5                  yes / yes    yes (SOURCE_DATE_EPOCH clamps mtimes)
ext4       mkfs.ext4 -d, debugfs           yes / yes    yes: times fixed up with debugfs
btrfs      mkfs.btrfs --rootdir 6.2        yes / yes    no: random device/chunk UUIDs, build times
xfs        mkfs.xfs -p protofile 6.1       yes / no     no: build times; hard links become copies
vfat       mkfs.vfat + mcopy               n/a          yes: entries written in sorted order,
                                                        timestamps clamped in the FAT directories
=========  ==============================  ===========  ===========================================

Caveats of the Debian 12 tools, beyond the table: btrfs does not copy the top directory's mode and owner
and does not clamp mtimes (clamp the tree first with ``build.trees.clamp_mtimes``); mkfs.btrfs enlarges
an image it deems too small (about twice the data), so an exact ``size`` below that is an error; xfs
prototype files cannot hold names with whitespace or ``:`` (an error), lose the sticky bit, xattrs and
sockets; erofs 1.5 has no label; vfat stores regular files only (symlinks as the files they point to).

Sizes: ``size`` given and ``minimize`` false → the image is exactly ``size`` bytes (an error if the tree
does not fit); ``minimize`` → as small as the content allows (ext4: ``resize2fs -M``; btrfs:
``--shrink``; xfs, vfat: an estimate from :func:`filesystem_usage`, grown until it fits; erofs and
squashfs are minimal by nature), padded up to ``size`` if that is larger; neither → writable file
systems get the usage plus headroom (half again, at least 16 MiB), read-only ones are minimal.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import hashlib
import os
import stat
import struct
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from pathlib import Path

from mkosi import log
from mkosi.errors import MkosiError
from mkosi.run import DEVNULL, capture, run

FILESYSTEMS = ("erofs", "squashfs", "ext4", "btrfs", "xfs", "vfat")
_ALIASES = {
    "ext4": "ext4",
    "btrfs": "btrfs",
    "xfs": "xfs",
    "vfat": "vfat",
    "fat": "vfat",
    "fat32": "vfat",
    "erofs": "erofs",
    "squashfs": "squashfs",
}

MiB = 1 << 20
_XFS_MIN = 300 * MiB  # xfsprogs ≥ 5.19 refuses smaller file systems
_BTRFS_MIN = 114 * MiB  # mkfs.btrfs' minimum for a single device with DUP metadata
_BLOCK = 4096
_GROWTH = 1.5
_ATTEMPTS = 6


# ---------------------------------------------------------------------------------------------- sizes


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def filesystem_usage(directory: Path) -> int:
    """An estimate, in bytes, of what storing ``directory`` takes in a file system with 4 KiB blocks.

    Regular files count their size rounded up to whole blocks (hard links once); directories one block;
    symlinks with targets longer than 60 bytes one block; every inode 256 bytes.
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [os.fsencode(directory)]
    while stack:
        d = stack.pop()
        total += _BLOCK + 256
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += 256
                if stat.S_ISREG(st.st_mode):
                    total += _round_up(st.st_size, _BLOCK)
                elif stat.S_ISLNK(st.st_mode) and st.st_size > 60:
                    total += _BLOCK
    return total


def _count_entries(directory: Path) -> int:
    return sum(1 + len(dirs) + len(files) for _, dirs, files in os.walk(directory))


def _allocate(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _pad(path: Path, size: int | None) -> None:
    if size is None:
        return
    have = path.stat().st_size
    if have > size:
        raise MkosiError(f"{path.name}: the file system needs {have} bytes, more than the {size} requested")
    if have < size:
        with open(path, "r+b") as f:
            f.truncate(size)


# ---------------------------------------------------------------------------------------------- identities


def _derive(seed: str, purpose: str) -> uuidlib.UUID:
    digest = hashlib.sha256(f"mkosi:{seed}:{purpose}".encode()).digest()
    return uuidlib.UUID(bytes=digest[:16], version=4)


def _uuid_for(
    fstype: str, uuid: uuidlib.UUID | str | None, seed: str | None, label: str | None
) -> uuidlib.UUID:
    if uuid is not None:
        return uuid if isinstance(uuid, uuidlib.UUID) else uuidlib.UUID(str(uuid))
    if seed is not None:
        return _derive(seed, f"{fstype}:{label or ''}:uuid")
    return uuidlib.uuid4()


# ---------------------------------------------------------------------------------------------- entry point


@dataclasses.dataclass(frozen=True)
class _Job:
    src: Path
    out: Path
    uuid: uuidlib.UUID
    label: str | None
    size: int | None
    minimize: bool
    sector_size: int
    epoch: int | None
    compression: str | None
    extra: tuple[str, ...]

    def env(self) -> dict[str, str]:
        return {"SOURCE_DATE_EPOCH": str(self.epoch)} if self.epoch is not None else {}

    def first_size(self, minimum: int) -> int:
        """The size to try first for a writable file system."""
        if self.size is not None and not self.minimize:
            return self.size
        usage = filesystem_usage(self.src)
        if self.minimize:
            guess = int(usage * 1.1) + 4 * MiB
        else:
            guess = max(int(usage * 1.5), usage + 16 * MiB)
        return _round_up(max(guess, minimum, self.size or 0), MiB)

    def retrying(self, minimum: int, build: Callable[[int], None]) -> int:
        """``build(size)`` with growing sizes until the tree fits (when the size is ours to pick)."""
        size = self.first_size(minimum)
        fixed = self.size is not None and not self.minimize
        for attempt in range(_ATTEMPTS):
            try:
                build(size)
                return size
            except MkosiError as e:
                if fixed or attempt == _ATTEMPTS - 1:
                    raise
                log.debug(f"{self.out.name}: {size} bytes were not enough ({e}), trying a larger size")
                size = _round_up(int(size * _GROWTH), MiB)
        raise AssertionError("unreachable")


def make_filesystem(
    fstype: str,
    src_dir: Path,
    out_path: Path,
    *,
    uuid: uuidlib.UUID | str | None = None,
    label: str | None = None,
    size: int | None = None,
    minimize: bool = False,
    sector_size: int = 512,
    seed: uuidlib.UUID | str | None = None,
    source_date_epoch: int | None = None,
    compression: str | None = None,
    extra_options: Sequence[str] = (),
) -> int:
    """Make a ``fstype`` file system holding ``src_dir`` in the file ``out_path``; return its size.

    ``uuid`` (default: derived from ``seed`` when given, else random) is the file system UUID (vfat: its
    first 32 bits are the volume id; ext4's directory hash seed is derived from it). ``sector_size`` is
    the logical sector size of the disk the image goes to (vfat, xfs; ext4 blocks are at least as large).
    ``source_date_epoch`` fixes creation times and clamps newer mtimes. ``compression`` selects the
    compressor of erofs (``lz4``, ``lz4hc``) and squashfs (``gzip``, ``xz``, ``zstd``, ``lz4``, ``lzo``).
    ``extra_options`` are appended to the mkfs command line. ``src_dir`` is never modified.
    """
    kind = _ALIASES.get(fstype.lower())
    if kind is None:
        raise MkosiError(
            f"Unsupported file system type {fstype}", hint=f"supported: {', '.join(FILESYSTEMS)}"
        )
    if not src_dir.is_dir():
        raise MkosiError(f"Cannot make a file system from {src_dir}: not a directory")
    if sector_size not in (512, 1024, 2048, 4096):
        raise MkosiError(f"Unsupported sector size {sector_size}")
    fs_uuid = _uuid_for(kind, uuid, str(seed) if seed is not None else None, label)
    # An open file handed in by its /proc/<pid>/fd/<n> link (a memfd) is written in place.
    if not (out_path.parent.name == "fd" and out_path.parent.parent.parent == Path("/proc")):
        out_path.unlink(missing_ok=True)
    job = _Job(
        src_dir,
        out_path,
        fs_uuid,
        label,
        size,
        minimize,
        sector_size,
        source_date_epoch,
        compression,
        tuple(extra_options),
    )
    _BUILDERS[kind](job)
    return out_path.stat().st_size


# ---------------------------------------------------------------------------------------------- read-only


@functools.cache
def _erofs_has_label() -> bool:
    return "-L" in capture(["mkfs.erofs", "--help"], check=False)


def _erofs(job: _Job) -> None:
    cmd: list[str | Path] = ["mkfs.erofs", "--quiet", f"-U{job.uuid}"]
    if job.compression:
        cmd.append(f"-z{job.compression}")
    if job.label:
        if _erofs_has_label():
            cmd += ["-L", job.label]
        else:
            log.debug(f"{job.out.name}: this mkfs.erofs cannot set a label, {job.label!r} is ignored")
    run([*cmd, *job.extra, job.out, job.src], extra_env=job.env(), what="mkfs.erofs")
    _pad(job.out, job.size)


def _squashfs(job: _Job) -> None:
    cmd: list[str | Path] = ["mksquashfs", job.src, job.out, "-noappend", "-quiet", "-no-progress"]
    if job.compression:
        cmd += ["-comp", job.compression]
    if job.label:
        log.debug(f"{job.out.name}: squashfs has no label, {job.label!r} is ignored")
    run([*cmd, *job.extra], extra_env=job.env(), stdout=DEVNULL, what="mksquashfs")
    _pad(job.out, job.size)


# ---------------------------------------------------------------------------------------------- ext4


def _fake_time(job: _Job) -> dict[str, str]:
    return {"E2FSPROGS_FAKE_TIME": str(job.epoch)} if job.epoch is not None else {}


def _ext4_fixups(job: _Job) -> None:
    """Root directory mode (mke2fs -d does not copy it) and, with an epoch, reproducible inode times."""
    root = os.lstat(job.src)
    cmds = [f"sif / mode 0{root.st_mode:o}"]
    if job.epoch is not None:
        epoch = job.epoch
        for rel, st in _walk_sorted(job.src):
            path = "/" + rel
            if '"' in path or "\n" in path:
                log.debug(f"{job.out.name}: cannot name {path!r} in debugfs, its times stay as copied")
                continue
            t = min(st.st_mtime_ns // 1_000_000_000, epoch)
            # "@N" is seconds since the epoch; a bare number would be read as a date (YYYYMMDD...).
            cmds += [f'sif "{path}" {field} @{t}' for field in ("mtime", "atime", "ctime")]
    with tempfile.NamedTemporaryFile("w", prefix="debugfs-", suffix=".cmds") as f:
        f.write("\n".join(cmds) + "\n")
        f.flush()
        result = run(
            ["debugfs", "-w", "-f", f.name, job.out],
            stdout=DEVNULL,
            extra_env=_fake_time(job),
            what="debugfs",
        )
    problems = [
        ln for ln in result.stderr.decode(errors="replace").splitlines() if not ln.startswith("debugfs ")
    ]
    if problems:
        log.warn(f"{job.out.name}: debugfs: {'; '.join(problems[-3:])}")


def _ext4_blocks(path: Path) -> int:
    info = capture(["dumpe2fs", "-h", path], what="dumpe2fs")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


def _ext4(job: _Job) -> None:
    root = os.lstat(job.src)
    entries = _count_entries(job.src)
    hash_seed = _derive(str(job.uuid), "ext4:hash_seed")

    def build(size: int) -> None:
        _allocate(job.out, size)
        opts = [f"root_owner={root.st_uid}:{root.st_gid}", f"hash_seed={hash_seed}", "nodiscard"]
        cmd: list[str | Path] = [
            "mkfs.ext4",
            "-q",
            "-F",
            "-b",
            str(max(_BLOCK, job.sector_size)),
            "-U",
            str(job.uuid),
            "-E",
            ",".join(opts),
            "-d",
            job.src,
        ]
        inodes = int(entries * 1.2) + 64
        if job.minimize or size // 16384 < inodes:
            cmd += ["-N", str(inodes)]
        if job.label:
            cmd += ["-L", job.label]
        run([*cmd, *job.extra, job.out], extra_env=_fake_time(job), what="mkfs.ext4")

    job.retrying(0, build)
    if job.minimize:
        run(["resize2fs", "-M", job.out], stdout=DEVNULL, extra_env=_fake_time(job), what="resize2fs")
        used = _ext4_blocks(job.out)
        if job.size is not None and job.size > used:
            run(
                ["resize2fs", job.out, f"{job.size // 1024}K"],
                stdout=DEVNULL,
                extra_env=_fake_time(job),
                what="resize2fs",
            )
            used = _ext4_blocks(job.out)
        with open(job.out, "r+b") as f:
            f.truncate(used)
    _ext4_fixups(job)
    _pad(job.out, job.size)


# ---------------------------------------------------------------------------------------------- btrfs


def _btrfs(job: _Job) -> None:
    cmd: list[str | Path] = ["mkfs.btrfs", "-q", "-f", "-U", str(job.uuid), "--rootdir", job.src]
    if job.label:
        cmd += ["-L", job.label]
    cmd += list(job.extra)
    if job.minimize:
        run([*cmd, "--shrink", job.out], stdout=DEVNULL, what="mkfs.btrfs")
        if job.size is not None and job.out.stat().st_size < job.size:
            _allocate(job.out, job.size)
            run([*cmd, job.out], stdout=DEVNULL, what="mkfs.btrfs")
        return

    def build(size: int) -> None:
        _allocate(job.out, size)
        run([*cmd, job.out], stdout=DEVNULL, what="mkfs.btrfs")

    job.retrying(_BTRFS_MIN, build)
    if job.size is not None:
        # mkfs.btrfs --rootdir enlarges an image it deems too small for the tree (it wants about twice
        # the data); an exact size it overrode is an error here.
        _pad(job.out, job.size)


# ---------------------------------------------------------------------------------------------- xfs


def _walk_sorted(top: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry below ``top`` as (relative path, lstat), directories before their contents, sorted."""
    out: list[tuple[str, os.stat_result]] = []

    def walk(d: Path, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            st = os.lstat(d / name)
            r = f"{rel}/{name}" if rel else name
            out.append((r, st))
            if stat.S_ISDIR(st.st_mode):
                walk(d / name, r)

    walk(top, "")
    return out


def _proto_mode(st: os.stat_result) -> str:
    mode = st.st_mode
    kind = "-"
    if stat.S_ISDIR(mode):
        kind = "d"
    elif stat.S_ISBLK(mode):
        kind = "b"
    elif stat.S_ISCHR(mode):
        kind = "c"
    elif stat.S_ISFIFO(mode):
        kind = "p"
    elif stat.S_ISLNK(mode):
        kind = "l"
    suid = "u" if mode & stat.S_ISUID else "-"
    sgid = "g" if mode & stat.S_ISGID else "-"
    return f"{kind}{suid}{sgid}{mode & 0o777:03o}"


def _proto_token(token: str, what: str) -> str:
    if not token or any(c.isspace() for c in token) or ":" in token or token.startswith("$"):
        raise MkosiError(
            f"{what} cannot be put in an xfs prototype file (whitespace, ':' or leading '$')",
            hint="mkfs.xfs -p on Debian 12 cannot represent such names; use ext4 or btrfs",
        )
    return token


def xfs_protofile(src: Path, links_dir: Path) -> str:
    """A mkfs.xfs prototype file describing ``src``; regular files are read through symlinks created in
    ``links_dir`` (so their own paths need no quoting). Sockets are left out; the sticky bit is lost."""
    root = os.lstat(src)
    lines = ["mkosi", "0 0", f"{_proto_mode(root)} {root.st_uid} {root.st_gid}"]
    depth = [0]
    counter = 0
    for rel, st in _walk_sorted(src):
        level = rel.count("/") + 1
        while depth[-1] >= level:
            lines.append("$")
            depth.pop()
        name = _proto_token(rel.rsplit("/", 1)[-1], f"{rel!r}")
        head = f"{name} {_proto_mode(st)} {st.st_uid} {st.st_gid}"
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            lines.append(head)
            depth.append(level)
        elif stat.S_ISREG(mode):
            counter += 1
            link = links_dir / str(counter)
            link.symlink_to((src / rel).absolute())
            lines.append(f"{head} {link}")
        elif stat.S_ISLNK(mode):
            lines.append(f"{head} {_proto_token(os.readlink(src / rel), f'the target of {rel!r}')}")
        elif stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            lines.append(f"{head} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
        elif stat.S_ISFIFO(mode):
            lines.append(head)
        else:
            log.warn(f"xfs: leaving out {rel}, a socket")
    while len(depth) > 1:
        lines.append("$")
        depth.pop()
    lines.append("$")
    return "\n".join(lines) + "\n"


def _xfs(job: _Job) -> None:
    with tempfile.TemporaryDirectory(prefix=".mkosi-xfs-", dir=job.out.parent) as tmp:
        proto = Path(tmp) / "proto"
        links = Path(tmp) / "files"
        links.mkdir()
        proto.write_text(xfs_protofile(job.src, links))
        cmd: list[str | Path] = [
            "mkfs.xfs",
            "-q",
            "-f",
            "-m",
            f"uuid={job.uuid}",
            "-s",
            f"size={job.sector_size}",
            "-p",
            proto,
        ]
        if job.label:
            cmd += ["-L", job.label]

        def build(size: int) -> None:
            _allocate(job.out, size)
            run([*cmd, *job.extra, job.out], what="mkfs.xfs")

        job.retrying(_XFS_MIN, build)


# ---------------------------------------------------------------------------------------------- vfat


_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}


def _vfat_populate(job: _Job) -> None:
    entries = _walk_sorted(job.src)
    dirs = [rel for rel, st in entries if stat.S_ISDIR(st.st_mode)]
    if dirs:
        run(
            ["mmd", "-i", job.out, *(f"::/{d}" for d in dirs)],
            extra_env=_MTOOLS_ENV,
            stdin=DEVNULL,
            what="mmd",
        )
    by_dir: dict[str, list[Path]] = {}
    for rel, st in entries:
        if stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode) and (job.src / rel).is_file():
            log.debug(f"vfat: {rel} is a symlink, copying the file it points to")
        elif not stat.S_ISREG(st.st_mode):
            log.warn(f"vfat: leaving out {rel}, which FAT cannot store")
            continue
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        by_dir.setdefault(parent, []).append(job.src / rel)
    for parent, files in by_dir.items():
        run(
            ["mcopy", "-i", job.out, "-p", "-Q", "-m", *files, f"::/{parent}"],
            extra_env=_MTOOLS_ENV,
            stdin=DEVNULL,
            what="mcopy",
        )


def _vfat(job: _Job) -> None:
    volid = f"{job.uuid.int >> 96:08x}"

    def build(size: int) -> None:
        _allocate(job.out, size)
        cmd: list[str | Path] = ["mkfs.vfat", "--invariant", "-i", volid, "-S", str(job.sector_size)]
        if job.label:
            cmd += ["-n", job.label]
        run([*cmd, *job.extra, job.out], stdout=DEVNULL, what="mkfs.vfat")
        _vfat_populate(job)

    job.retrying(0, build)
    if job.epoch is not None:
        fat_clamp_times(job.out, job.epoch)


def _fat_encode(t: int) -> tuple[int, int]:
    tm = time.gmtime(max(t, 315532800))  # 1980-01-01, the first date FAT can store
    year = min(tm.tm_year, 2107)
    return ((year - 1980) << 9) | (tm.tm_mon << 5) | tm.tm_mday, (tm.tm_hour << 11) | (tm.tm_min << 5) | (
        tm.tm_sec // 2
    )


def _fat_decode(date: int, tod: int) -> int | None:
    try:
        y, mo, d = 1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F
        h, mi, s = tod >> 11, (tod >> 5) & 0x3F, (tod & 0x1F) * 2
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
            return None
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def fat_clamp_times(image: Path, epoch: int) -> None:
    """Clamp every directory entry's times (write, creation, access) in a FAT image to ``epoch`` (UTC)."""
    with open(image, "r+b") as f:
        bs = f.read(512)
        bps, spc, reserved, nfats, root_entries, total16, _media, fatsz16 = struct.unpack_from(
            "<HBHBHHBH", bs, 11
        )
        total32, fatsz32, _flags, _ver, root_cluster = struct.unpack_from("<IIHHI", bs, 32)
        fatsz = fatsz16 or fatsz32
        total = total16 or total32
        root_sectors = (root_entries * 32 + bps - 1) // bps
        first_data = reserved + nfats * fatsz + root_sectors
        clusters = (total - first_data) // spc
        bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        f.seek(reserved * bps)
        fat = f.read(fatsz * bps)

        def chain(c: int) -> list[int]:
            out: list[int] = []
            while 2 <= c < clusters + 2 and c not in out:
                out.append(c)
                if bits == 12:
                    v = int.from_bytes(fat[c + c // 2 : c + c // 2 + 2], "little")
                    c = v >> 4 if c & 1 else v & 0xFFF
                elif bits == 16:
                    c = int.from_bytes(fat[2 * c : 2 * c + 2], "little")
                else:
                    c = int.from_bytes(fat[4 * c : 4 * c + 4], "little") & 0x0FFFFFFF
            return out

        def regions(first: int | None) -> list[tuple[int, int]]:
            if first is None:  # FAT12/16 root directory: a fixed area
                return [((reserved + nfats * fatsz) * bps, root_sectors * bps)]
            return [((first_data + (c - 2) * spc) * bps, spc * bps) for c in chain(first)]

        seen: set[int] = set()
        todo: list[int | None] = [root_cluster if bits == 32 else None]
        while todo:
            for offset, length in regions(todo.pop()):
                f.seek(offset)
                area = bytearray(f.read(length))
                end = False
                for i in range(0, length, 32):
                    e = area[i : i + 32]
                    if e[0] == 0:
                        end = True
                        break
                    if e[0] == 0xE5 or e[11] == 0x0F or e[11] & 0x08:
                        continue
                    wtime, wdate = struct.unpack_from("<HH", e, 22)
                    cur = _fat_decode(wdate, wtime)
                    date, tod = _fat_encode(min(cur, epoch) if cur is not None else epoch)
                    struct.pack_into("<BHHH", area, i + 13, 0, tod, date, date)
                    struct.pack_into("<HH", area, i + 22, tod, date)
                    if e[11] & 0x10 and bytes(e[:11]) not in (b".          ", b"..         "):
                        start = (int.from_bytes(e[20:22], "little") << 16) | int.from_bytes(
                            e[26:28], "little"
                        )
                        if start not in seen:
                            seen.add(start)
                            todo.append(start)
                f.seek(offset)
                f.write(area)
                if end:
                    break


_BUILDERS: dict[str, Callable[[_Job], None]] = {
    "erofs": _erofs,
    "squashfs": _squashfs,
    "ext4": _ext4,
    "btrfs": _btrfs,
    "xfs": _xfs,
    "vfat": _vfat,
}

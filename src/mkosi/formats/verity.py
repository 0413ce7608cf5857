"""dm-verity hash trees, as ``veritysetup format`` writes them.

Format version 1 (the only one in use): every data block is hashed as H(salt || block); the digests are
packed into hash blocks (zero-padded at the end), which are hashed the same way, level after level, until
one block remains; the root hash is H(salt || that block). The hash device starts with a 512-byte
superblock padded to a whole hash block, followed by the levels from the top (one block) down to the one
that covers the data. With the same data, salt and UUID the output is byte-identical to
``veritysetup format --salt=<hex> --uuid=<uuid> DATA HASH``.

The partition UUIDs of a verity data/hash pair are the halves of the root hash (Discoverable Partitions
Specification; systemd-repart uses the bytes as they are, without setting UUID version bits).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from mkosi import log
from mkosi import workers as processes
from mkosi.errors import MkosiError
from mkosi.formats.gpt import data_extents, derive_uuid

BLOCK_SIZE = 4096
SUPERBLOCK_SIZE = 512
SALT_SIZE = 32
MAX_SALT_SIZE = 256
VERITY_SIGNATURE = b"verity\0\0"
HASH_ALGORITHM = "sha256"
DIGEST_SIZE = 32

_READ_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerityResult:
    """What :func:`format_verity` wrote."""

    root_hash: bytes
    salt: bytes
    verity_uuid: uuid.UUID
    data_blocks: int
    data_block_size: int
    hash_block_size: int
    hash_size: int
    """Bytes written to the hash device: superblock block plus all tree levels."""

    @property
    def root_hash_hex(self) -> str:
        return self.root_hash.hex()

    @property
    def data_partition_uuid(self) -> uuid.UUID:
        return partition_uuids(self.root_hash)[0]

    @property
    def hash_partition_uuid(self) -> uuid.UUID:
        return partition_uuids(self.root_hash)[1]


def derive_salt(seed: uuid.UUID, label: str = "") -> bytes:
    """A 32-byte salt: HMAC-SHA256 keyed by the seed over ``verity-salt`` (plus ``:label`` if given)."""
    message = b"verity-salt" + (b":" + label.encode() if label else b"")
    return hmac.new(seed.bytes, message, hashlib.sha256).digest()


def derive_verity_uuid(seed: uuid.UUID, label: str = "") -> uuid.UUID:
    """The UUID stored in the verity superblock, derived from the seed like the partition UUIDs."""
    return derive_uuid(seed, b"verity-uuid" + (b":" + label.encode() if label else b""))


def partition_uuids(root_hash: bytes) -> tuple[uuid.UUID, uuid.UUID]:
    """(data partition UUID, hash partition UUID): the first and the last 128 bits of the root hash."""
    if len(root_hash) < 32:
        raise MkosiError(f"A verity root hash has at least 32 bytes, got {len(root_hash)}")
    return uuid.UUID(bytes=root_hash[:16]), uuid.UUID(bytes=root_hash[-16:])


def _check_block_size(name: str, size: int) -> None:
    if size < 512 or size > 512 * 1024 or size & (size - 1):
        raise MkosiError(f"Verity {name} block size {size} is not a power of two between 512 and 512 KiB")


def _level_sizes(data_blocks: int, hash_block_size: int) -> list[int]:
    """Number of hash blocks per level, from the bottom level (covering the data) to the top (one block).

    One data block needs no level at all: the root hash is the hash of that block.
    """
    per_block = hash_block_size // DIGEST_SIZE
    sizes = []
    count = data_blocks
    while count > 1:
        count = -(-count // per_block)
        sizes.append(count)
    return sizes


def verity_hash_size(
    data_size: int, *, data_block_size: int = BLOCK_SIZE, hash_block_size: int = BLOCK_SIZE
) -> int:
    """Bytes the hash device needs for ``data_size`` bytes of data (superblock included)."""
    _check_block_size("data", data_block_size)
    _check_block_size("hash", hash_block_size)
    blocks = data_size // data_block_size
    return (1 + sum(_level_sizes(blocks, hash_block_size))) * hash_block_size


def superblock(
    *, salt: bytes, verity_uuid: uuid.UUID, data_blocks: int, data_block_size: int, hash_block_size: int
) -> bytes:
    """The 512-byte verity superblock (format version 1, sha256)."""
    return struct.pack(
        "<8sII16s32sIIQH6s256s168s",
        VERITY_SIGNATURE,
        1,  # superblock version
        1,  # hash format version
        verity_uuid.bytes,
        HASH_ALGORITHM.encode(),
        data_block_size,
        hash_block_size,
        data_blocks,
        len(salt),
        b"",
        salt,
        b"",
    )


def _hash_blocks(base: hashlib._Hash, data: bytes | bytearray | memoryview, block_size: int) -> bytes:
    view = memoryview(data)
    new = base.copy
    digests = []
    for pos in range(0, len(view), block_size):
        h = new()
        h.update(view[pos : pos + block_size])
        digests.append(h.digest())
    return b"".join(digests)


def _hash_range(fd: int, first: int, last: int, block_size: int, base: hashlib._Hash) -> bytearray:
    """Digests of data blocks ``first`` up to (not including) ``last``; holes are hashed once and repeated."""
    zero_digest = base.copy()
    zero_digest.update(bytes(block_size))
    zero = zero_digest.digest()
    buffer = bytearray(min(_READ_CHUNK, (last - first) * block_size))
    digests = bytearray()
    done = first  # blocks hashed so far
    for start, end in data_extents(fd, last * block_size, first * block_size):
        begin = start // block_size
        stop_block = min(-(-end // block_size), last)
        if begin > done:
            digests += zero * (begin - done)
            done = begin
        pos = done * block_size
        stop = stop_block * block_size
        while pos < stop:
            want = min(len(buffer), stop - pos)
            got = os.preadv(fd, [memoryview(buffer)[:want]], pos)
            if got % block_size or not got:
                raise MkosiError("Verity data file changed while it was being hashed")
            digests += _hash_blocks(base, memoryview(buffer)[:got], block_size)
            pos += got
        done = max(done, stop_block)
    if done < last:
        digests += zero * (last - done)
    return digests


# The bottom level is most of the work: with enough data it is split between processes (one per CPU we
# may use), each hashing a contiguous range of blocks and sending its digests back through a pipe. sha256
# in hashlib holds the interpreter lock for every 4 KiB block's call overhead, so threads do not help.
_PARALLEL_MIN_BYTES = 32 * 1024 * 1024
_MAX_WORKERS = 8


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _start_worker(fd: int, first: int, last: int, block_size: int, base: hashlib._Hash) -> tuple[int, int]:
    """Start a process that hashes blocks ``first``..``last``; returns its pid and the pipe to read."""
    r, w = os.pipe()

    def work() -> None:
        os.close(r)
        _write_all(w, _hash_range(fd, first, last, block_size, base))

    try:
        pid = processes.start(work)
    except OSError:
        os.close(r)
        raise
    finally:
        os.close(w)
    return pid, r


def _hash_data(fd: int, data_blocks: int, block_size: int, base: hashlib._Hash, workers: int) -> bytearray:
    """Digests of every data block, in order, hashed by up to ``workers`` processes."""
    workers = min(workers, _MAX_WORKERS, max(1, data_blocks * block_size // (_PARALLEL_MIN_BYTES // 2)))
    # fork() in a process with other threads may leave locks held in the child: hash in-process then.
    if workers <= 1 or data_blocks * block_size < _PARALLEL_MIN_BYTES or not processes.can_fork():
        return _hash_range(fd, 0, data_blocks, block_size, base)
    bounds = [data_blocks * i // workers for i in range(workers + 1)]
    children: list[tuple[int, int, int, int]] = []  # pid, pipe, first block, last block
    reaped: set[int] = set()
    try:
        for first, last in zip(bounds[1:-1], bounds[2:]):
            try:
                pid, r = _start_worker(fd, first, last, block_size, base)
            except OSError as e:
                log.debug(f"Cannot start a verity hashing process ({e}), hashing in this one")
                break
            children.append((pid, r, first, last))
        covered = children[-1][3] if children else bounds[1]
        # This process takes the first range, and whatever no child took.
        digests = _hash_range(fd, 0, bounds[1], block_size, base)
        tail = _hash_range(fd, covered, data_blocks, block_size, base) if covered < data_blocks else b""
        for pid, r, first, last in children:
            part = _read_all(r)
            status = processes.wait(pid)
            reaped.add(pid)
            if status != 0 or len(part) != (last - first) * DIGEST_SIZE:
                raise MkosiError(f"A verity hashing process failed (wait status {status})")
            digests += part
        digests += tail
        return digests
    finally:
        for pid, r, _, _ in children:
            os.close(r)
            if pid not in reaped:
                processes.stop(pid)


def _pad(data: bytearray, block_size: int) -> bytearray:
    remainder = len(data) % block_size
    if remainder:
        data += bytes(block_size - remainder)
    return data


def format_verity(
    data: Path,
    hash_path: Path,
    *,
    salt: bytes,
    verity_uuid: uuid.UUID,
    data_blocks: int | None = None,
    data_block_size: int = BLOCK_SIZE,
    hash_block_size: int = BLOCK_SIZE,
    workers: int | None = None,
) -> VerityResult:
    """Compute the hash tree of ``data`` and write superblock and tree to a new file ``hash_path``.

    ``data_blocks`` defaults to the whole file, whose size must then be a multiple of the data block size.
    The bottom level of large data is hashed by up to ``workers`` processes (default: the CPUs this
    process may run on); the result does not depend on their number.
    """
    _check_block_size("data", data_block_size)
    _check_block_size("hash", hash_block_size)
    if len(salt) > MAX_SALT_SIZE:
        raise MkosiError(f"Verity salt is {len(salt)} bytes, at most {MAX_SALT_SIZE} are allowed")
    try:
        fd = os.open(data, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MkosiError(f"Cannot read verity data {data}: {e.strerror}") from e
    try:
        size = os.fstat(fd).st_size
        if data_blocks is None:
            if size % data_block_size:
                raise MkosiError(
                    f"Verity data {data} is {size} bytes, not a multiple of the block size {data_block_size}",
                    hint="pad the file system image to a whole number of blocks",
                )
            data_blocks = size // data_block_size
        if data_blocks <= 0:
            raise MkosiError(f"Verity data {data} is empty")
        if data_blocks * data_block_size > size:
            raise MkosiError(
                f"Verity data {data} is smaller than {data_blocks} blocks of {data_block_size} bytes"
            )
        base = hashlib.sha256(salt)
        digests = _hash_data(fd, data_blocks, data_block_size, base, workers or _cpus())
        if data_blocks == 1:
            root_hash = bytes(digests)
            levels: list[bytearray] = []
        else:
            levels = []
            current = _pad(digests, hash_block_size)
            while True:
                levels.append(current)
                if len(current) == hash_block_size:
                    break
                current = _pad(bytearray(_hash_blocks(base, current, hash_block_size)), hash_block_size)
            h = base.copy()
            h.update(levels[-1])
            root_hash = h.digest()
    finally:
        os.close(fd)

    sb = superblock(
        salt=salt,
        verity_uuid=verity_uuid,
        data_blocks=data_blocks,
        data_block_size=data_block_size,
        hash_block_size=hash_block_size,
    )
    try:
        with open(hash_path, "wb") as f:
            f.write(sb.ljust(hash_block_size, b"\0"))
            for level in reversed(levels):
                f.write(level)
            hash_size = f.tell()
    except OSError as e:
        raise MkosiError(f"Cannot write verity hash tree {hash_path}: {e.strerror}") from e
    return VerityResult(
        root_hash=root_hash,
        salt=salt,
        verity_uuid=verity_uuid,
        data_blocks=data_blocks,
        data_block_size=data_block_size,
        hash_block_size=hash_block_size,
        hash_size=hash_size,
    )

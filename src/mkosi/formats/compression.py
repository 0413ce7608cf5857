"""Compressing and decompressing files and streams, by algorithm name.

Algorithms are plain strings: ``zstd`` (the default), ``xz``, ``gz``/``gzip``, ``bz2``/``bzip2``, ``lz4``,
``lzma`` and ``none``. Compression runs the external tools through :func:`mkosi.run.run` (they are
multi-threaded where it helps); output is deterministic for the same input, level and tool:

* zstd: ``zstd -q -T0`` — multi-threaded zstd output does not depend on the number of threads;
* xz: ``xz -T0 --check=crc32`` — block-split output independent of the thread count, CRC32 so the
  kernel's XZ decoder accepts it (initrds, compressed modules);
* gzip: ``pigz -n`` when installed, else ``gzip -n`` (no name, no timestamp in the header). pigz output
  does not depend on the thread count, but differs from gzip's: both machines need the same tool;
* lz4: legacy frame format (``lz4 -l``), the only one the kernel can unpack an initrd from;
* bzip2, lzma: single-threaded ``bzip2`` and ``xz --format=lzma``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import IO

from mkosi.errors import MkosiError
from mkosi.run import PIPE, run, which

_ALIASES = {
    "zstd": "zstd",
    "zst": "zstd",
    "xz": "xz",
    "gz": "gz",
    "gzip": "gz",
    "bz2": "bz2",
    "bzip2": "bz2",
    "lz4": "lz4",
    "lzma": "lzma",
    "none": "none",
    "no": "none",
    "": "none",
}

_EXTENSIONS = {
    "zstd": ".zst",
    "xz": ".xz",
    "gz": ".gz",
    "bz2": ".bz2",
    "lz4": ".lz4",
    "lzma": ".lzma",
    "none": "",
}

_LEVELS = {"zstd": (1, 22), "xz": (0, 9), "gz": (1, 9), "bz2": (1, 9), "lz4": (1, 12), "lzma": (0, 9)}

_TAR_SUFFIXES = {".tgz": "gz", ".txz": "xz", ".tzst": "zstd", ".tbz2": "bz2", ".tbz": "bz2", ".tlz4": "lz4"}

# Magic numbers at the start of a stream.
_MAGICS = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\x04\x22\x4d\x18", "lz4"),  # frame format
    (b"\x02\x21\x4c\x18", "lz4"),  # legacy format
    (b"\x5d\x00\x00", "lzma"),
)


def normalize(algorithm: str | None) -> str:
    """The canonical name of ``algorithm`` (``gzip`` → ``gz``, ``None`` → ``none``)."""
    if algorithm is None:
        return "none"
    name = _ALIASES.get(algorithm.strip().lower())
    if name is None:
        raise MkosiError(
            f"Unknown compression algorithm: {algorithm}",
            hint="use one of zstd, xz, gz, bz2, lz4, lzma or none",
        )
    return name


def extension(algorithm: str | None) -> str:
    """The file name suffix for ``algorithm``: ``.zst``, ``.xz``, ``.gz``, …; ``""`` for none."""
    return _EXTENSIONS[normalize(algorithm)]


def from_extension(path: Path | str) -> str:
    """The algorithm a file name's suffix implies (``foo.tar.zst`` → ``zstd``), or ``none``."""
    name = os.fspath(path).lower()
    for algo, ext in _EXTENSIONS.items():
        if ext and name.endswith(ext):
            return algo
    for suffix, algo in _TAR_SUFFIXES.items():
        if name.endswith(suffix):
            return algo
    return "none"


def detect(path_or_head: Path | bytes) -> str:
    """The algorithm of a file (or of its first bytes), from its magic number; ``none`` if unknown."""
    if isinstance(path_or_head, bytes):
        head = path_or_head
    else:
        with open(path_or_head, "rb") as f:
            head = f.read(8)
    for magic, algo in _MAGICS:
        if head.startswith(magic):
            return algo
    return "none"


def _check_level(algo: str, level: int | None) -> None:
    if level is None:
        return
    lo, hi = _LEVELS[algo]
    if not lo <= level <= hi:
        raise MkosiError(f"Compression level {level} is out of range for {algo} ({lo}…{hi})")


def _gzip_tool() -> str:
    return "pigz" if which("pigz") else "gzip"


def compressor_command(algorithm: str | None, level: int | None = None) -> list[str]:
    """A command that compresses stdin to stdout. For ``none``: ``cat``."""
    algo = normalize(algorithm)
    _check_level(algo, level)
    lvl = [f"-{level}"] if level is not None else []
    if algo == "zstd":
        ultra = ["--ultra"] if level is not None and level > 19 else []
        return ["zstd", "-q", "-T0", *ultra, *lvl, "-c", "-"]
    if algo == "xz":
        return ["xz", "-T0", "--check=crc32", *lvl, "-c", "-"]
    if algo == "gz":
        return [_gzip_tool(), "-n", *lvl, "-c", "-"]
    if algo == "bz2":
        return ["bzip2", *lvl, "-c", "-"]
    if algo == "lz4":
        return ["lz4", "-q", "-l", *lvl, "-c", "-"]
    if algo == "lzma":
        return ["xz", "--format=lzma", *lvl, "-c", "-"]
    return ["cat"]


def decompressor_command(algorithm: str | None) -> list[str]:
    """A command that decompresses stdin to stdout. For ``none``: ``cat``."""
    algo = normalize(algorithm)
    if algo == "zstd":
        return ["zstd", "-q", "-d", "-c", "-"]
    if algo == "xz":
        return ["xz", "-T0", "-d", "-c", "-"]
    if algo == "gz":
        return [_gzip_tool(), "-d", "-c", "-"]
    if algo == "bz2":
        return ["bzip2", "-d", "-c", "-"]
    if algo == "lz4":
        return ["lz4", "-q", "-d", "-c", "-"]
    if algo == "lzma":
        return ["xz", "--format=lzma", "-d", "-c", "-"]
    return ["cat"]


def compressor_shell(algorithm: str | None, level: int | None = None) -> str:
    """:func:`compressor_command` as one shell word list (for ``tar -I`` and pipelines)."""
    return shlex.join(compressor_command(algorithm, level))


def decompressor_shell(algorithm: str | None) -> str:
    """:func:`decompressor_command` as one shell word list (for ``tar -I``)."""
    return shlex.join(decompressor_command(algorithm))


def _has_fd(f: IO[bytes]) -> bool:
    try:
        f.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _pipe(cmd: list[str], src: IO[bytes], dst: IO[bytes], what: str) -> None:
    if _has_fd(src) and _has_fd(dst):
        if src.seekable():
            # The tool reads the descriptor: start it where the caller stopped reading, not after
            # whatever the file object buffered ahead.
            os.lseek(src.fileno(), src.tell(), os.SEEK_SET)
        dst.flush()
        run(cmd, stdin=src, stdout=dst, what=what)
        return
    result = run(cmd, input=src.read(), stdout=PIPE, what=what)
    dst.write(result.stdout)


def compress_stream(src: IO[bytes], dst: IO[bytes], algorithm: str | None, level: int | None = None) -> None:
    """Compress everything readable from ``src`` into ``dst``."""
    algo = normalize(algorithm)
    _pipe(compressor_command(algo, level), src, dst, what=f"{algo} compression")


def decompress_stream(src: IO[bytes], dst: IO[bytes], algorithm: str | None) -> None:
    """Decompress everything readable from ``src`` into ``dst``."""
    algo = normalize(algorithm)
    _pipe(decompressor_command(algo), src, dst, what=f"{algo} decompression")


def compress(
    src_path: Path, dst_path: Path, algorithm: str | None = "zstd", level: int | None = None
) -> None:
    """Compress the file ``src_path`` into ``dst_path`` (created or replaced)."""
    if Path(src_path).resolve() == Path(dst_path).resolve():
        raise MkosiError(f"Cannot compress {src_path} onto itself")
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        compress_stream(src, dst, algorithm, level)


def decompress(src_path: Path, dst_path: Path, algorithm: str | None = None) -> None:
    """Decompress ``src_path`` into ``dst_path``; the algorithm is detected from the data if not given."""
    algo = normalize(algorithm) if algorithm is not None else detect(src_path)
    if Path(src_path).resolve() == Path(dst_path).resolve():
        raise MkosiError(f"Cannot decompress {src_path} onto itself")
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        decompress_stream(src, dst, algo)

"""Compression helpers, checked against the real decompressors."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from mkosi.errors import MkosiError
from mkosi.formats import compression
from mkosi.formats.compression import (
    compress,
    compress_stream,
    compressor_command,
    decompress,
    decompress_stream,
    decompressor_command,
    detect,
    extension,
    from_extension,
    normalize,
)

ALGORITHMS = ["zstd", "xz", "gz", "bz2", "lz4", "lzma"]

# The real tool that unpacks each format, as a consumer would run it.
ORACLES = {
    "zstd": ["zstd", "-d", "-c"],
    "xz": ["xz", "-d", "-c"],
    "gz": ["gzip", "-d", "-c"],
    "bz2": ["bzip2", "-d", "-c"],
    "lz4": ["lz4", "-d", "-c"],
    "lzma": ["unxz", "--format=lzma", "-c"],
}


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    p = tmp_path / "payload"
    # compressible and incompressible parts, a few MiB so multi-threaded tools split blocks
    p.write_bytes((b"mkosi builds images\n" * 40_000) + os.urandom(256 << 10))
    return p


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_real_tool_decompresses(algo: str, payload: Path, tmp_path: Path) -> None:
    out = tmp_path / f"payload{extension(algo)}"
    compress(payload, out, algo)
    assert detect(out) == algo
    assert out.stat().st_size < payload.stat().st_size
    with open(out, "rb") as f:
        plain = subprocess.run(ORACLES[algo], stdin=f, capture_output=True, check=True).stdout
    assert plain == payload.read_bytes()
    back = tmp_path / "back"
    decompress(out, back)  # algorithm detected from the magic number
    assert back.read_bytes() == payload.read_bytes()


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_deterministic(algo: str, payload: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    compress(payload, a, algo, 3)
    os.utime(payload, (0, 12345))  # a different mtime must not leak into the output
    compress(payload, b, algo, 3)
    assert a.read_bytes() == b.read_bytes()


def test_gzip_header_has_no_name_or_time(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.gz"
    compress(payload, out, "gzip")
    head = out.read_bytes()[:10]
    assert head[:2] == b"\x1f\x8b"
    assert head[3] & 0x08 == 0  # FNAME flag unset
    assert head[4:8] == b"\0\0\0\0"  # MTIME zero


def test_xz_uses_crc32_for_the_kernel(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.xz"
    compress(payload, out, "xz")
    info = subprocess.run(["xz", "--robot", "--list", out], capture_output=True, check=True, text=True).stdout
    assert "CRC32" in info


def test_lz4_legacy_frames(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.lz4"
    compress(payload, out, "lz4", 9)
    assert out.read_bytes()[:4] == b"\x02\x21\x4c\x18"  # the only lz4 format the kernel unpacks initrds from


def test_levels(payload: Path, tmp_path: Path) -> None:
    rng = random.Random(0)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)]
    text = tmp_path / "text"
    text.write_bytes(b" ".join(rng.choices(words, k=300_000)))
    fast, strong = tmp_path / "fast.zst", tmp_path / "strong.zst"
    compress(text, fast, "zstd", 1)
    compress(text, strong, "zstd", 20)  # needs --ultra
    assert strong.stat().st_size < fast.stat().st_size
    assert "--ultra" in compressor_command("zstd", 22)
    assert "-19" in compressor_command("zstd", 19) and "--ultra" not in compressor_command("zstd", 19)
    with pytest.raises(MkosiError, match="out of range"):
        compressor_command("gz", 12)
    with pytest.raises(MkosiError, match="out of range"):
        compressor_command("zstd", 0)


def test_streams_without_file_descriptors() -> None:
    data = b"hello world\n" * 1000
    packed = io.BytesIO()
    compress_stream(io.BytesIO(data), packed, "zstd")
    packed.seek(0)
    unpacked = io.BytesIO()
    decompress_stream(packed, unpacked, "zstd")
    assert unpacked.getvalue() == data
    result = subprocess.run(["zstd", "-d", "-c"], input=packed.getvalue(), capture_output=True, check=True)
    assert result.stdout == data


def test_streams_with_file_descriptors(payload: Path, tmp_path: Path) -> None:
    data = payload.read_bytes()
    with open(payload, "rb") as src, open(tmp_path / "x.zst", "wb") as dst:
        assert src.read(10) == data[:10]  # the reader buffers ahead; the tool must still start at byte 10
        dst.write(b"HEADER")  # buffered, must land before the tool's output
        compress_stream(src, dst, "zstd", 5)
    packed = (tmp_path / "x.zst").read_bytes()
    assert packed.startswith(b"HEADER")
    (tmp_path / "y.zst").write_bytes(packed[6:])
    with open(tmp_path / "y.zst", "rb") as src, open(tmp_path / "y", "wb") as dst:
        decompress_stream(src, dst, "zstd")
    assert (tmp_path / "y").read_bytes() == data[10:]


def test_none_is_a_copy(payload: Path, tmp_path: Path) -> None:
    compress(payload, tmp_path / "copy", "none")
    assert (tmp_path / "copy").read_bytes() == payload.read_bytes()
    assert compressor_command(None) == ["cat"] == decompressor_command("none")
    assert extension(None) == ""


def test_names() -> None:
    assert [extension(a) for a in ALGORITHMS] == [".zst", ".xz", ".gz", ".bz2", ".lz4", ".lzma"]
    assert normalize("gzip") == "gz" and normalize("GZ") == "gz" and normalize("bzip2") == "bz2"
    assert normalize("zst") == "zstd" and normalize(None) == "none"
    with pytest.raises(MkosiError, match="Unknown compression"):
        normalize("brotli")
    assert from_extension("image.tar.zst") == "zstd"
    assert from_extension(Path("initrd.cpio.xz")) == "xz"
    assert (
        from_extension("a.tgz") == "gz"
        and from_extension("a.txz") == "xz"
        and from_extension("a.tar") == "none"
    )
    assert detect(b"hello") == "none"
    assert compression.compressor_shell("zstd", 3) == "zstd -q -T0 -3 -c -"


def test_refuses_to_overwrite_its_input(payload: Path) -> None:
    with pytest.raises(MkosiError, match="onto itself"):
        compress(payload, payload, "zstd")
    assert payload.stat().st_size > 0


def test_gzip_prefers_pigz_when_installed() -> None:
    tool = compressor_command("gz")[0]
    assert tool == ("pigz" if shutil.which("pigz") else "gzip")
    assert "-n" in compressor_command("gz")

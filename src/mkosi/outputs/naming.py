"""File names of artifacts: ``Output=`` + ``.OutputExtension`` + the compression's suffix."""

from __future__ import annotations

from mkosi.config.model import Compression, OutputFormat
from mkosi.config.typed import Config

#: Formats whose whole artifact is compressed when CompressOutput= says so.
OUTER_COMPRESSION = frozenset(
    {
        OutputFormat.tar,
        OutputFormat.cpio,
        OutputFormat.disk,
        OutputFormat.sysext,
        OutputFormat.confext,
        OutputFormat.portable,
    }
)


def compression_of(config: Config) -> Compression:
    value = config.compress_output
    if not isinstance(value, Compression) or config.output_format not in OUTER_COMPRESSION:
        return Compression.none
    return value


def output_with_format(config: Config) -> str:
    ext = config.output_extension
    return f"{config.output}.{ext}" if ext else str(config.output)


def output_name(config: Config) -> str:
    """The file (or directory) name of an image's main artifact, e.g. ``initrd.cpio.zst``."""
    return output_with_format(config) + compression_of(config).extension()


def split_name(config: Config, suffix: str) -> str:
    """Side artifacts: ``image.roothash``, ``image.SHA256SUMS``, ``image.nspawn``, …"""
    return f"{config.output}.{suffix}"

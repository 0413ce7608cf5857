"""``Format=sysext``, ``confext`` and ``portable``: verity-protected images systemd merges or attaches.

The image is a GPT disk image written by :func:`mkosi.outputs.disk.write_image`. Without partition
definitions the format's default layout applies: a read-only erofs root partition with what the format
carries (``/usr`` and ``/opt`` for a sysext, ``/etc`` for a confext, everything for a portable service
image), a verity hash partition, and a partition with the signed root hash when a key and certificate are
available (see ``Verity=``). Partition names follow the types (``root-x86-64``, ``root-x86-64-verity``,
``root-x86-64-verity-sig``); data and hash partitions are marked read-only.

systemd only merges a sysext or confext whose ``extension-release.<name>`` matches the file name of the
image, so its absence is worth a warning here (the pipeline writes the file before this step).
"""

from __future__ import annotations

from mkosi import log
from mkosi.build.context import Context
from mkosi.build.finalize import extension_release_path
from mkosi.config.model import OutputFormat
from mkosi.outputs import disk
from mkosi.outputs.naming import compression_of


def _check_tree(ctx: Context) -> None:
    c = ctx.config
    name = c.name
    if c.output_format in (OutputFormat.sysext, OutputFormat.confext):
        release = extension_release_path(ctx)
        if not release.exists():
            log.warn(f"{name}: /{release.relative_to(ctx.root)} is missing, systemd will not merge the image")
        if compression_of(c).value != "none":
            log.warn(
                f"{name}: systemd cannot use a compressed {c.output_format.value} without decompressing it"
            )
    elif c.output_format == OutputFormat.portable:
        if not any((ctx.root / p).exists() for p in ("usr/lib/os-release", "etc/os-release")):
            log.warn(f"{name}: a portable service image needs an os-release file, this one has none")


def write(ctx: Context) -> None:
    _check_tree(ctx)
    disk.write_image(ctx)

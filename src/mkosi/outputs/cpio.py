"""``Format=cpio``: a newc archive of the root (an initrd with ``MakeInitrd=yes``), zstd by default."""

from __future__ import annotations

from mkosi.build.context import Context
from mkosi.config.model import Compression
from mkosi.formats import compression
from mkosi.formats.cpio import make_cpio
from mkosi.outputs.naming import compression_of, output_name, output_with_format


def write(ctx: Context) -> None:
    name = output_name(ctx.config)
    target = ctx.staging / name
    algo = compression_of(ctx.config)
    if algo == Compression.none:
        make_cpio(ctx.root, target, source_date_epoch=ctx.config.source_date_epoch)
    else:
        plain = ctx.workspace / output_with_format(ctx.config)
        make_cpio(ctx.root, plain, source_date_epoch=ctx.config.source_date_epoch)
        compression.compress(plain, target, algo.value, ctx.config.compress_level)
        plain.unlink()
    ctx.artifacts[name] = target

"""``Format=tar``: a deterministic tar archive of the root (compressed per ``CompressOutput=``)."""

from __future__ import annotations

from mkosi.build.context import Context
from mkosi.build.trees import tar_directory
from mkosi.outputs.naming import compression_of, output_name


def write(ctx: Context) -> None:
    name = output_name(ctx.config)
    target = ctx.staging / name
    tar_directory(
        ctx.root,
        target,
        compress=compression_of(ctx.config).value,
        level=ctx.config.compress_level,
        source_date_epoch=ctx.config.source_date_epoch,
    )
    ctx.artifacts[name] = target

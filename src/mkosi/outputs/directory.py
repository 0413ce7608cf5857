"""``Format=directory``: the root itself, moved into staging."""

from __future__ import annotations

from mkosi.build.context import Context
from mkosi.outputs.naming import output_name


def write(ctx: Context) -> None:
    name = output_name(ctx.config)
    target = ctx.staging / name
    ctx.root.rename(target)
    ctx.root.mkdir()
    ctx.artifacts[name] = target

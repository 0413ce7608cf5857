"""Output formats: one module per ``Format=``, looked up in a registry keyed by the enum."""

from __future__ import annotations

from collections.abc import Callable

from mkosi.build.context import Context
from mkosi.config.model import OutputFormat
from mkosi.errors import MkosiError
from mkosi.outputs import cpio, directory, disk, extension, tar

Writer = Callable[[Context], None]

WRITERS: dict[OutputFormat, Writer] = {
    OutputFormat.directory: directory.write,
    OutputFormat.tar: tar.write,
    OutputFormat.cpio: cpio.write,
    OutputFormat.disk: disk.write,
    OutputFormat.sysext: extension.write,
    OutputFormat.confext: extension.write,
    OutputFormat.portable: extension.write,
}


def write_output(ctx: Context) -> None:
    writer = WRITERS.get(ctx.config.output_format)
    if writer is None:
        raise MkosiError(f"Format={ctx.config.output_format.value} is not implemented yet")
    writer(ctx)

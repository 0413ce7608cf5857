"""The build of one image, top to bottom: an ordered list of steps, each with its condition beside it.

This follows the manual's EXECUTION FLOW. A step is ``function(ctx) -> None``; ``when`` decides whether it
runs. Steps that later issues add (scripts, finalize settings, manifests, bootable disks) slot into the list.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import mkosi.build.finalize as finalize
import mkosi.build.packages as packages
import mkosi.build.trees as trees
from mkosi import log
from mkosi.build.context import Context
from mkosi.config.model import Feature, OutputFormat
from mkosi.errors import MkosiError
from mkosi.outputs import write_output


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], None]
    when: Callable[[Context], bool] = lambda ctx: True


def _is(*formats: OutputFormat) -> Callable[[Context], bool]:
    return lambda ctx: ctx.config.output_format in formats


def _not_extension(ctx: Context) -> bool:
    return not ctx.config.overlay and not ctx.config.output_format.is_extension_or_portable()


def install_base_trees(ctx: Context) -> None:
    for tree in ctx.base_trees():
        if not tree.exists():
            raise MkosiError(f"BaseTrees={tree}: does not exist (build the image that makes it first)")
        trees.extract_tree(tree, ctx.root)


def install_skeleton_trees(ctx: Context) -> None:
    for tree in ctx.config.skeleton_trees:
        trees.merge_tree(tree.source, ctx.root, target=tree.target)


def install_extra_trees(ctx: Context) -> None:
    for tree in ctx.config.extra_trees:
        trees.merge_tree(tree.source, ctx.root, target=tree.target)


def clean_package_metadata(ctx: Context) -> None:
    packages.clean_metadata(ctx)


def _want_clean_metadata(ctx: Context) -> bool:
    return bool(ctx.config.clean_package_metadata != Feature.disabled)


def clamp_mtimes(ctx: Context) -> None:
    trees.clamp_mtimes(ctx.root, int(ctx.config.source_date_epoch))


def overlay_difference(ctx: Context) -> None:
    trees.overlay_difference(ctx.base_trees(), ctx.root)


def _has(attr: str) -> Callable[[Context], bool]:
    return lambda ctx: bool(getattr(ctx.config, attr))


STEPS: list[Step] = [
    Step("Installing base trees", install_base_trees, when=_has("base_trees")),
    Step("Installing skeleton trees", install_skeleton_trees, when=_has("skeleton_trees")),
    Step("Installing packages", packages.install, when=packages.wanted),
    Step("Configuring the initrd", finalize.configure_initrd, when=_not_extension),
    Step("Installing extra trees", install_extra_trees, when=_has("extra_trees")),
    Step("Writing os-release", finalize.configure_os_release, when=_not_extension),
    Step(
        "Writing extension-release", finalize.write_extension_release, when=finalize.wants_extension_release
    ),
    Step("Removing files", finalize.remove_files, when=_has("remove_files")),
    Step("Cleaning package metadata", clean_package_metadata, when=_want_clean_metadata),
    Step(
        "Keeping only what the base trees lack",
        overlay_difference,
        when=lambda ctx: _has("overlay")(ctx) and _has("base_trees")(ctx),
    ),
    Step(
        "Clamping modification times", clamp_mtimes, when=lambda ctx: ctx.config.source_date_epoch is not None
    ),
    Step("Writing the output", write_output, when=lambda ctx: ctx.config.output_format != OutputFormat.none),
]


def run_steps(ctx: Context) -> None:
    ctx.root.mkdir(mode=0o755, parents=True, exist_ok=True)
    ctx.staging.mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        if not step.when(ctx):
            log.debug(f"Skipping: {step.name}")
            continue
        start = time.monotonic()
        with log.step(step.name):
            try:
                step.run(ctx)
            except MkosiError as e:
                raise MkosiError(f"image {ctx.config.name}: {step.name.lower()}: {e.message}", e.hint) from e
        log.debug(f"{step.name} took {time.monotonic() - start:.1f}s")


def directory_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total

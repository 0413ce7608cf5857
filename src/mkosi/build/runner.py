"""Build every image of an invocation in dependency order; publish artifacts only when all succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import mkosi.build.cache as cache
from mkosi import log
from mkosi.build.checks import preflight
from mkosi.build.context import Context, Shared
from mkosi.build.pipeline import run_steps
from mkosi.cli import Args
from mkosi.config.model import OutputFormat
from mkosi.config.typed import Config
from mkosi.errors import MkosiError
from mkosi.outputs.naming import output_name


def output_dir(args: Args, config: Config) -> Path:
    return Path(config.output_directory or args.directory or Path.cwd())


def planned_outputs(args: Args, images: list[Config]) -> list[Path]:
    return [output_dir(args, c) / output_name(c) for c in images if c.output_format != OutputFormat.none]


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_outputs(args: Args, images: list[Config]) -> None:
    """Refuse to overwrite without -f; with -f remove what the previous build left (and caches with -ff)."""
    outputs = planned_outputs(args, images)
    if args.force == 0:
        existing = [p for p in outputs if p.exists() or p.is_symlink()]
        if existing:
            raise MkosiError(
                f"{existing[0]} already exists",
                hint="Run with -f to rebuild (-ff also removes caches, -fff also the package cache)",
            )
    for config in images:
        out = output_dir(args, config)
        if out.exists() and not os.access(out, os.W_OK):
            raise MkosiError(f"OutputDirectory={out}: not writable")
        if not out.exists():
            parent = next((p for p in out.parents if p.exists()), Path("/"))
            if not os.access(parent, os.W_OK):
                raise MkosiError(f"OutputDirectory={out}: cannot be created ({parent} is not writable)")
    for config in images:
        if args.force >= 2:
            cache.remove_for_rebuild(args, config)
        if config.output_format == OutputFormat.none:
            continue
        if args.force >= 3 and config.package_cache_directory:
            remove_path(Path(config.package_cache_directory))


def publish(shared: Shared) -> None:
    for final, staged in shared.staged.items():
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_path(final)
        try:
            os.rename(staged, final)
        except OSError:
            shutil.move(os.fspath(staged), os.fspath(final))
        log.info(f"Wrote {final}")


def workspace_parent(args: Args, images: list[Config]) -> Path:
    main = images[-1]
    if main.workspace_directory:
        return Path(main.workspace_directory)
    # Next to the outputs, so that publishing them is a rename on the same file system.
    out = output_dir(args, main)
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_images(args: Args, images: list[Config]) -> None:
    preflight(images)
    check_outputs(args, images)
    parent = workspace_parent(args, images)
    parent.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=".mkosi-workspace-", dir=parent))
    shared = Shared(workspace)
    start = time.monotonic()
    succeeded = False
    try:
        cache_plan = cache.plan_for(args, images, shared)
        for config in images:
            if config.output_format == OutputFormat.none and not config.build_scripts:
                log.info(f"Skipping image {config.name}: Format=none and no build scripts")
                continue
            log.info(f"Building image {config.name}")
            ctx = Context(args=args, config=config, shared=shared, workspace=workspace / config.name)
            ctx.workspace.mkdir(exist_ok=True)
            ctx.facts[cache.PLAN] = cache_plan
            run_steps(ctx)
            out = output_dir(args, config)
            for name, path in ctx.artifacts.items():
                shared.staged[(out / name).absolute()] = path
        publish(shared)
        succeeded = True
    finally:
        if args.debug_workspace and not succeeded:
            log.info(f"Keeping the workspace {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)
    log.info(f"Built {len(images)} image(s) in {time.monotonic() - start:.0f}s")
    for name, seconds in log.timings():
        log.debug(f"  {name}: {seconds:.1f}s")

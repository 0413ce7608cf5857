"""Verb → function. Each verb takes the loaded configuration; none re-parses files."""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from pathlib import Path

from mkosi import log
from mkosi.cli import Args, CliValues, Verb, parse_args, print_help
from mkosi.config.images import find_configdir, load
from mkosi.config.summary import cat_config, summary_json, summary_text
from mkosi.config.typed import Config
from mkosi.errors import MkosiError

VerbFunction = Callable[[Args, list[Config]], int]


def verb_summary(args: Args, images: list[Config]) -> int:
    if args.json:
        sys.stdout.write(summary_json(images) + "\n")
    else:
        sys.stdout.write(summary_text(images, origins=args.origins))
    return 0


def verb_cat_config(args: Args, images: list[Config]) -> int:
    sys.stdout.write(cat_config(images))
    return 0


def verb_genkey(args: Args, images: list[Config]) -> int:
    from mkosi.keys import genkey

    try:
        days = int(args.genkey_valid_days)
    except ValueError:
        raise MkosiError(f"--genkey-valid-days={args.genkey_valid_days}: not a number of days") from None
    assert args.directory is not None
    genkey(
        Path(args.directory) / "mkosi.key",
        Path(args.directory) / "mkosi.crt",
        common_name=args.genkey_common_name,
        valid_days=days,
        force=args.force > 0,
    )
    log.info(f"Wrote {args.directory}/mkosi.key and {args.directory}/mkosi.crt")
    return 0


def verb_build(args: Args, images: list[Config]) -> int:
    from mkosi.build.runner import build_images
    from mkosi.build.scripts import run_configure_scripts

    build_images(args, run_configure_scripts(images))
    return 0


#: Suffixes of the side artifacts a build writes next to ``<Output>`` (nothing else is removed by clean).
ARTIFACT_SUFFIXES = re.compile(
    r"\.(raw|tar|cpio|efi|vmlinuz|initrd|pcrs|roothash|usrhash|osrelease|nspawn|manifest|changelog"
    r"|SHA256SUMS|SHA256SUMS\.gpg|kernel-modules-initrd|repart\.d|[a-z0-9-]+\.raw)"
    r"(\.(zst|xz|gz|bz2|lz4|lzma))?$"
)


def is_artifact_of(name: str, config: Config) -> bool:
    from mkosi.outputs.naming import output_name

    if name == output_name(config):
        return True
    stem = f"{config.output}"
    return name.startswith(stem + ".") and bool(ARTIFACT_SUFFIXES.fullmatch(name[len(stem) :]))


def verb_clean(args: Args, images: list[Config]) -> int:
    """Remove what a build left: outputs and their side files; -f also caches, -ff also the package cache."""
    import mkosi.build.cache as cache
    from mkosi.build.runner import output_dir, remove_path
    from mkosi.build.scripts import run_clean_scripts

    for config in images:
        out = output_dir(args, config)
        if out.is_dir():
            for p in sorted(out.iterdir()):
                if is_artifact_of(p.name, config):
                    remove_path(p)
                    log.info(f"Removed {p}")
        if args.force >= 1:
            cache.remove_for_rebuild(args, config)
        if args.force >= 2:
            from mkosi.build.context import Context, Shared

            ctx = Context(args=args, config=config, shared=Shared(out), workspace=out)
            if ctx.package_cache_dir.exists():
                remove_path(ctx.package_cache_dir)
                log.info(f"Removed the package cache {ctx.package_cache_dir}")
    run_clean_scripts(args, images)
    return 0


def verb_bump(args: Args, images: list[Config]) -> int:
    """Write the next version to mkosi.version (from mkosi.bump, or the last number increased by one)."""
    from mkosi.build.artifacts import next_version, write_version

    assert args.directory is not None
    configdir = find_configdir(args.directory)
    current = images[-1].image_version if images else None
    version = next_version(configdir, current)
    path = write_version(configdir, version)
    log.info(f"Bumped the version to {version} ({path})")
    return 0


def auto_bump(args: Args, cli: CliValues) -> tuple[list[Config], str]:
    """``--auto-bump``/``-B``: the images loaded again with the next version (written after the build)."""
    from mkosi.build.artifacts import next_version, version_file

    assert args.directory is not None
    configdir = find_configdir(args.directory)
    current = None
    if not (configdir / "mkosi.bump").exists() and not version_file(configdir).is_file():
        # Without mkosi.version the configured ImageVersion= is the one to bump.
        current = load(args, cli)[-1].image_version
    version = next_version(configdir, current)
    bumped = copy.deepcopy(cli)
    bumped.values["image_version"] = version
    log.info(f"Building version {version} (--auto-bump)")
    return load(args, bumped), version


VERBS: dict[Verb, VerbFunction] = {
    Verb.build: verb_build,
    Verb.clean: verb_clean,
    Verb.bump: verb_bump,
    Verb.summary: verb_summary,
    Verb.cat_config: verb_cat_config,
    Verb.genkey: verb_genkey,
}


def run_verb(argv: list[str]) -> int:
    args, cli, parser = parse_args(argv)
    log.setup(debug=args.debug, timing=args.debug_timing)
    if args.verb == Verb.help:
        print_help(parser)
        return 0
    function = VERBS.get(args.verb)
    if function is None:
        raise MkosiError(f"the {args.verb.value} verb is not implemented yet")
    if args.auto_bump and args.verb.needs_build():
        from mkosi.build.artifacts import write_version

        images, version = auto_bump(args, cli)
        code = function(args, images)
        if code == 0:
            assert args.directory is not None
            path = write_version(find_configdir(args.directory), version)
            log.info(f"Wrote version {version} to {path}")
        return code
    images = load(args, cli) if args.verb.needs_config() else []
    return function(args, images)

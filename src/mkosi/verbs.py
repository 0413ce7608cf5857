"""Verb → function. Each verb takes the loaded configuration; none re-parses files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from mkosi import log
from mkosi.cli import Args, Verb, parse_args, print_help
from mkosi.config.images import LoadedImage, load
from mkosi.config.summary import cat_config, summary_json, summary_text
from mkosi.errors import MkosiError

VerbFunction = Callable[[Args, list[LoadedImage]], int]


def verb_summary(args: Args, images: list[LoadedImage]) -> int:
    if args.json:
        sys.stdout.write(summary_json(images) + "\n")
    else:
        sys.stdout.write(summary_text(images, origins=args.origins))
    return 0


def verb_cat_config(args: Args, images: list[LoadedImage]) -> int:
    sys.stdout.write(cat_config(images))
    return 0


def verb_genkey(args: Args, images: list[LoadedImage]) -> int:
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


def verb_build(args: Args, images: list[LoadedImage]) -> int:
    from mkosi.build.runner import build_images

    build_images(args, images)
    return 0


VERBS: dict[Verb, VerbFunction] = {
    Verb.build: verb_build,
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
    images = load(args, cli) if args.verb.needs_config() else []
    return function(args, images)

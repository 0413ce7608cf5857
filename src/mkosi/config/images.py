"""The image graph: the main image, the subimages in ``mkosi.images/``, what they inherit, and build order.

Rules (the manual's "BUILDING MULTIPLE IMAGES"):

* universal settings (and "multiversal" ones) of the main image are forced on every subimage, as if given
  on the command line;
* inherited settings are the subimage's starting values, which its own files may override;
* main-only settings cannot be configured in a subimage;
* ``Dependencies=`` of the main image selects the subimages to build (default: all that match); the order
  is dependencies first, the main image last; cycles and unknown names are errors.

Two images are derived from built-in configurations (see :mod:`mkosi.config.builtin`): the default tools
tree, which is not built like the other images and hangs off the main image (``Config.tools``), and
the default initrd, an ordinary subimage added when some image lists ``default`` in ``Initrds=``.
"""

from __future__ import annotations

import copy
import dataclasses
import graphlib
import os
from pathlib import Path
from typing import Any

from mkosi.cli import Args, CliValues
from mkosi.config import builtin
from mkosi.config.loader import ParseState, chdir
from mkosi.config.settings import SETTINGS, Scope
from mkosi.config.typed import Config
from mkosi.config.values import try_boolean
from mkosi.errors import ConfigErrors, MkosiError


def image_config(
    state: ParseState, values: dict[str, Any] | None = None, tools: Config | None = None
) -> Config:
    """The frozen :class:`Config` of one image from its parse state (``values``: its finalized values)."""
    return Config(
        name=state.image,
        files=state.files,
        origins=state.origins,
        match_notes=state.match_notes,
        tools=tools,
        **(state.finalize() if values is None else values),
    )


def find_configdir(directory: Path) -> Path:
    """The directory whose mkosi.conf is read: ``directory``, or its ``mkosi/`` subdirectory."""
    top = (directory / "mkosi.conf").exists() or (directory / "mkosi.tools.conf").exists()
    sub = (directory / "mkosi/mkosi.conf").exists() or (directory / "mkosi/mkosi.tools.conf").exists()
    if not top and sub:
        return directory / "mkosi"
    return directory


def output_path(config: Config) -> Path:
    """Where an image's artifact is written: its output directory (default: the configuration directory
    of the current directory) plus ``Output=``, without extension."""
    directory = Path(config.output_directory or find_configdir(Path.cwd()))
    return directory / config.output


def load(args: Args, cli: CliValues) -> list[Config]:
    """Read the configuration of every image. Raises :class:`ConfigErrors` listing every problem."""
    assert args.directory is not None
    errors: list[MkosiError] = list(cli.errors)
    configdir = find_configdir(args.directory)

    state = ParseState(image="main", directory=args.directory)
    state.cli = copy.deepcopy(cli.values)
    state.cli_reset = set(cli.reset)
    for dest, origins in cli.origins.items():
        state.origins[dest] = list(origins)

    with chdir(args.directory):
        return _load(args, cli, configdir, state, errors)


def _load(
    args: Args, cli: CliValues, configdir: Path, state: ParseState, errors: list[MkosiError]
) -> list[Config]:
    state.parse_new_includes()
    # Files included from the command line are not listed among the image's files (as in mkosi).
    state.files = []
    with chdir(configdir):
        state.parse_one(configdir, profiles=True, local=True)
    main_values = state.finalize()
    errors += state.errors

    # The default tools tree comes first: its path is the ToolsTree= that subimages and the initrd inherit.
    tools: Config | None = None
    tools_tree = main_values["tools_tree"]
    if tools_tree in (Path("default"), Path("yes")) and not errors:
        if try_boolean(os.environ.get("MKOSI_IN_BOX", "")):
            # Inside `mkosi box` the default tools tree is the one the box runs in.
            if not (in_box := os.environ.get("MKOSI_DEFAULT_TOOLS_TREE_PATH")):
                message = "$MKOSI_IN_BOX is set but $MKOSI_DEFAULT_TOOLS_TREE_PATH is not"
                raise ConfigErrors([*errors, MkosiError(message)])
            main_values["tools_tree"] = Path(in_box)
        else:
            tools_state = builtin.default_tools(state, main_values, configdir)
            errors += tools_state.errors
            tools = image_config(tools_state)
            main_values["tools_tree"] = output_path(tools)
    elif tools_tree == Path("no"):
        main_values["tools_tree"] = None

    explicit_dependencies = "dependencies" in state.cli or "dependencies" in state.config
    default_dependencies: list[str] = []

    # Universal settings are forced on subimages by making them look like command-line values.
    passed_cli: dict[str, Any] = {}
    passed_reset: set[str] = set()
    for s in SETTINGS:
        if s.scope in (Scope.universal, Scope.multiversal):
            passed_cli[s.dest] = copy.deepcopy(main_values[s.dest])
    base_cli_origins = {d: o for d, o in state.origins.items() if d in passed_cli}

    subimages: list[Config] = []
    imagedir = configdir / "mkosi.images"
    for p in sorted(imagedir.iterdir()) if imagedir.is_dir() else []:
        p = p.absolute()
        if not p.is_dir() and p.suffix != ".conf":
            continue
        name = p.name.removesuffix(".conf")
        if not name:
            errors.append(MkosiError(f"{p}: not a valid image name"))
            continue
        sub = ParseState(image=name, directory=args.directory)
        sub.cli = copy.deepcopy(passed_cli)
        sub.cli_reset = set(passed_reset)
        sub.origins = {d: list(o) for d, o in base_cli_origins.items()}
        for s in SETTINGS:
            if s.scope == Scope.inherit and s.dest in main_values:
                sub.config[s.dest] = copy.deepcopy(main_values[s.dest])
                if s.dest in state.origins:
                    sub.origins[s.dest] = list(state.origins[s.dest])
        environment = main_values.get("environment") or {}
        sub.config["environment"] = {
            k: environment[k] for k in main_values.get("pass_environment") or [] if k in environment
        }
        with chdir(p if p.is_dir() else Path.cwd()):
            matched = sub.parse_one(p, profiles=p.is_dir(), local=True)
        errors += sub.errors
        if not matched:
            state.match_notes += sub.match_notes
            continue
        subimages.append(image_config(sub))
        default_dependencies.append(name)

    if not explicit_dependencies:
        main_values["dependencies"] = default_dependencies

    if errors:
        raise ConfigErrors(errors)

    main = image_config(state, main_values, tools)

    wanting = [image for image in [*subimages, main] if wants_default_initrd(image)]
    if wanting:
        initrd_state = builtin.default_initrd(state, main_values, configdir)
        if initrd_state.errors:
            raise ConfigErrors(initrd_state.errors)
        initrd = image_config(initrd_state)
        subimages = [use_default_initrd(i, initrd) if wants_default_initrd(i) else i for i in subimages]
        if wants_default_initrd(main):
            main = use_default_initrd(main, initrd)
        subimages.append(initrd)

    ordered = order_images(subimages, main.dependencies)
    return [*ordered, main]


def wants_default_initrd(image: Config) -> bool:
    return Path("default") in image.initrds


def use_default_initrd(image: Config, initrd: Config) -> Config:
    """The image with ``default`` in Initrds= replaced by the default initrd's artifact, depending on it."""
    artifact = output_path(initrd)
    return dataclasses.replace(
        image,
        initrds=[artifact if p == Path("default") else p for p in image.initrds],
        dependencies=[*image.dependencies, initrd.name],
    )


def order_images(images: list[Config], wanted: list[str]) -> list[Config]:
    graph = {image.name: list(image.dependencies) for image in images}
    for name in [*wanted, *(d for deps in graph.values() for d in deps)]:
        if name not in graph:
            raise MkosiError(f"Dependencies={name}: no image with that name in mkosi.images/")
    needed: set[str] = set()
    queue = list(wanted)
    while queue:
        name = queue.pop(0)
        if name not in needed:
            needed.add(name)
            queue += graph[name]
    selected = {n: graph[n] for n in graph if n in needed}
    try:
        order = list(graphlib.TopologicalSorter(selected).static_order())
    except graphlib.CycleError as e:
        raise MkosiError(f"image dependency cycle: {' → '.join(e.args[1])}") from None
    return sorted((i for i in images if i.name in needed), key=lambda i: order.index(i.name))

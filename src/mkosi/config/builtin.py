"""Configurations that come with mkosi, and the images derived from them.

``Include=mkosi-initrd`` (or ``mkosi-tools``, ``mkosi-vm``, ``mkosi-addon``, ``mkosi-obs``) names a
configuration directory shipped in this package under ``mkosi/resources/``. Two of them also define whole
images that mkosi adds on its own:

* the default tools tree (``ToolsTree=default``/``yes``): an image called ``tools`` configured by the main
  image's ``ToolsTree*`` settings (minus the prefix), its multiversal settings, ``mkosi.tools.conf`` and
  ``mkosi-tools``;
* the default initrd (``Initrds=`` containing ``default``): an image called ``default-initrd`` configured
  by the main image's universal, multiversal, inherited and initrd-inherited settings, its ``Initrd*``
  settings (minus the prefix), ``mkosi.initrd.conf`` and ``mkosi-initrd``.

A main-image setting that configures a derived image keeps its precedence there: given on the command line
it counts as given on the command line, set in a file it counts as set in a file (so files of the derived
image add to or replace it), otherwise it only replaces the derived image's default.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkosi.config.settings import SETTINGS, Scope
from mkosi.config.settings.config import BUILTIN_CONFIGS
from mkosi.errors import MkosiError

if TYPE_CHECKING:
    from mkosi.config.loader import ParseState

#: Where the built-in configurations live: one directory per name in ``BUILTIN_CONFIGS``.
RESOURCES = Path(__file__).resolve().parent.parent / "resources"

#: Image names of the derived images (the reference uses the same names; they appear in Dependencies=).
TOOLS_IMAGE = "tools"
INITRD_IMAGE = "default-initrd"


def is_builtin(path: Path) -> bool:
    """Whether an ``Include=`` value names a built-in configuration rather than a path."""
    return str(path) in BUILTIN_CONFIGS


def builtin_config(name: str) -> Path:
    """The directory of the built-in configuration ``name``."""
    if name not in BUILTIN_CONFIGS:
        raise MkosiError(f"{name} is not a built-in configuration (one of {', '.join(BUILTIN_CONFIGS)})")
    path = RESOURCES / name
    if not (path / "mkosi.conf").is_file():
        raise MkosiError(f"the built-in configuration {name} is missing from this installation ({path})")
    return path


def resolve_include(path: Path) -> Path:
    """An ``Include=`` value as a path to read: built-in names map to their directory."""
    return builtin_config(str(path)) if is_builtin(path) else path


# ---------------------------------------------------------------------------------------------------------
# Derived images.


def _hand_over(main: ParseState, derived: ParseState, finalized: Mapping[str, Any], scope: Scope) -> None:
    """Pass the main image's ``scope`` settings to ``derived`` under their unprefixed names."""
    prefix = {Scope.tools: "tools_tree_", Scope.initrd: "initrd_"}[scope]
    for s in SETTINGS:
        if s.scope != scope:
            continue
        dest = s.dest.removeprefix(prefix)
        value = copy.deepcopy(finalized[s.dest])
        if s.dest in main.cli:
            derived.cli[dest] = value
            if s.dest in main.cli_reset:
                derived.cli_reset.add(dest)
        elif s.dest in main.config:
            derived.config[dest] = value
        else:
            derived.defaults[dest] = value
        if s.dest in main.origins:
            derived.origins[dest] = list(main.origins[s.dest])


def _passed_environment(finalized: Mapping[str, Any]) -> dict[str, str]:
    environment = finalized.get("environment") or {}
    return {k: environment[k] for k in environment if k in (finalized.get("pass_environment") or [])}


def _read(derived: ParseState, configdir: Path | None, local_name: str, builtin_name: str) -> None:
    """Read ``configdir/local_name`` (a file or directory) if it exists, then the built-in configuration."""
    if configdir is not None and (p := (configdir / local_name).absolute()).exists():
        derived.parse_path(p, profiles=p.is_dir(), local=p.is_dir())
    derived.parse_path(builtin_config(builtin_name), profiles=True)


def default_tools(main: ParseState, finalized: Mapping[str, Any], configdir: Path | None) -> ParseState:
    """The parsed configuration of the default tools tree of the main image ``main``."""
    from mkosi.config.loader import ParseState
    from mkosi.config.model import OutputFormat

    tools = ParseState(image=TOOLS_IMAGE, directory=main.directory)
    for s in SETTINGS:
        if s.scope == Scope.multiversal:
            tools.cli[s.dest] = copy.deepcopy(finalized[s.dest])
    _hand_over(main, tools, finalized, Scope.tools)
    # A tools tree is always a plain directory tree.
    tools.cli["output_format"] = OutputFormat.directory
    tools.config["environment"] = _passed_environment(finalized)
    _read(tools, configdir, "mkosi.tools.conf", "mkosi-tools")
    return tools


def default_initrd(main: ParseState, finalized: Mapping[str, Any], configdir: Path | None) -> ParseState:
    """The parsed configuration of the default initrd shared by every image that wants one."""
    from mkosi.config.loader import ParseState

    initrd = ParseState(image=INITRD_IMAGE, directory=main.directory)
    for s in SETTINGS:
        if s.scope in (Scope.universal, Scope.multiversal):
            initrd.cli[s.dest] = copy.deepcopy(finalized[s.dest])
        elif s.scope in (Scope.inherit, Scope.initrd_inherit):
            initrd.config[s.dest] = copy.deepcopy(finalized[s.dest])
    _hand_over(main, initrd, finalized, Scope.initrd)
    initrd.config["environment"] = _passed_environment(finalized)
    _read(initrd, configdir, "mkosi.initrd.conf", "mkosi-initrd")
    return initrd

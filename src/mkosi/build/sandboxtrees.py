"""``SandboxTrees=`` (``mkosi.sandbox/``, ``mkosi.sandbox.tar``): files for the tools' sandbox, not the image.

mkosi copies the sandbox trees into one directory (:func:`assemble`, once per image, in the image's
workspace); nothing of them reaches the image. What is honoured, for apt-based builds:

* ``etc/apt/sources.list.d/*.sources`` and ``*.list``: extra repositories, used next to the ones mkosi
  generates; a tree's own ``mkosi.sources`` replaces the generated one (as the manual says, mkosi writes
  ``/etc/apt/sources.list.d/mkosi.sources`` only when the sandbox trees lack it);
* ``etc/apt/sources.list``: appended to mkosi's own one-line sources;
* ``etc/apt/trusted.gpg`` and ``etc/apt/trusted.gpg.d/``: keys apt trusts for every repository;
* ``etc/apt/apt.conf`` and ``etc/apt/apt.conf.d/``: apt configuration, read after mkosi's own (so it
  wins);
* ``etc/apt/preferences`` and ``etc/apt/preferences.d/``: pinning;
* absolute paths in ``Signed-By:`` fields and ``[signed-by=…]`` options that exist in the sandbox trees
  (e.g. ``/etc/apt/keyrings/foo.asc``) are used from there; other paths are looked up on the host;
* the distribution's archive keyring (``/usr/share/keyrings/debian-archive-keyring.gpg``, …): one at that
  path in the sandbox trees is used instead of the host's (:func:`mkosi.distributions.apt_based.keyrings`).

apt itself runs on the host with a private configuration (see :mod:`mkosi.installers.apt`); the sandbox
trees are turned into that configuration's paths, not mounted over the host's ``/etc``. Not supported:
other tools' configuration in the sandbox trees (``/etc/dnf``, ``/etc/pacman.d``, …, irrelevant for
Debian), and files outside ``etc/apt`` affecting apt.

User scripts see every file of the sandbox trees at its path (read-only overlays over the host's ``/etc``,
``/usr``, …, inside the script's own mount namespace; see
:func:`mkosi.build.scripts.sandbox_tree_mounts`). The host is never changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from mkosi.build import trees
from mkosi.build.context import Context
from mkosi.config.values import ConfigTree

_FACT = "sandbox_tree"


def wanted(ctx: Context) -> bool:
    return bool(ctx.config.sandbox_trees)


def merge(sandbox_trees: Sequence[ConfigTree], dst: Path) -> Path | None:
    """``SandboxTrees=`` (a list of trees with ``source`` and ``target``) merged into ``dst``, in order."""
    if not sandbox_trees:
        return None
    dst.mkdir(mode=0o755, parents=True, exist_ok=True)
    for tree in sandbox_trees:
        trees.install_tree(tree.source, dst, tree.target)
    return dst


def assemble(ctx: Context) -> Path | None:
    """The sandbox trees merged into one directory of the workspace (``None`` without sandbox trees)."""
    if not wanted(ctx):
        return None
    done = ctx.facts.get(_FACT)
    if isinstance(done, Path):
        return done
    dst = merge(ctx.config.sandbox_trees, ctx.workspace / "sandbox-tree")
    ctx.facts[_FACT] = dst
    return dst


def install(ctx: Context) -> None:
    """The pipeline step: assemble the trees early, so that a missing tree fails before any download."""
    assemble(ctx)


def apt_digest(tree: Path | None) -> str | None:
    """A short digest of what apt reads from ``tree`` (names and contents below ``etc/apt``)."""
    if tree is None:
        return None
    etc = tree / "etc/apt"
    if not etc.is_dir():
        return None
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(etc):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(os.fsencode(p.relative_to(etc)) + b"\0")
            if p.is_file():
                h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:12]

"""SandboxTrees=: how scripts see them, and which keyring apt is pointed at.

No root needed: the mounts of a script's sandbox are checked as data (what :mod:`mkosi.sandbox` is asked
to mount), and the apt set-up as the values it is built from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mkosi.build import packages, scripts
from mkosi.build.context import Context, Shared
from mkosi.cli import parse_args
from mkosi.config.images import load
from mkosi.distributions import debian
from mkosi.sandbox import Bind, Overlay


def write(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_tree_files_appear_at_their_paths(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "etc/apt/apt.conf.d/99proxy")
    write(tree / "etc/ssl/certs/local.pem")
    write(tree / "usr/share/keyrings/local.gpg")
    write(tree / "var/lib/thing/state")
    write(tree / "root/.netrc")
    write(tree / "srv-data/file")
    scaffold = scripts.scaffold(tmp_path / "work")
    binds, overlays, skipped = scripts.sandbox_tree_mounts(tree, scaffold)
    # The host's /etc and /usr stay visible beneath the tree's files.
    assert Overlay((tree / "etc", Path("/etc")), Path("/etc")) in overlays
    assert Overlay((tree / "usr", Path("/usr")), Path("/usr")) in overlays
    # Elsewhere the scaffold is the sandbox's own: the tree's entries are bound onto it, read-only, as deep as
    # the scaffold has directories of its own (var/tmp must stay the sandbox's).
    assert Bind(tree / "var/lib", Path("/var/lib"), readonly=True) in binds
    assert Bind(tree / "root/.netrc", Path("/root/.netrc"), readonly=True) in binds
    assert Bind(tree / "srv-data", Path("/srv-data"), readonly=True) in binds
    assert all(b.readonly for b in binds)
    assert skipped == []


def test_places_the_sandbox_owns_are_left_out(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for place in ("proc/x", "dev/x", "tmp/x", "var/tmp/x", "work/x", "buildroot/x", "run/x"):
        write(tree / place)
    scaffold = scripts.scaffold(tmp_path / "work")
    binds, overlays, skipped = scripts.sandbox_tree_mounts(tree, scaffold)
    assert binds == [] and overlays == []
    assert sorted(skipped) == ["/buildroot", "/dev", "/proc", "/run", "/tmp", "/var/tmp", "/work"]


def load_context(directory: Path) -> Context:
    args, values, _ = parse_args(["-C", os.fspath(directory), "build"])
    config: Any = load(args, values)[-1]
    shared = Shared(workspace=directory / "workspace")
    return Context(args=args, config=config, shared=shared, workspace=shared.workspace / config.name)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the configuration names x86-64")
def test_keyring_in_the_sandbox_tree_is_the_one_apt_uses(tmp_path: Path) -> None:
    d = tmp_path / "project"
    write(d / "mkosi.conf", "[Distribution]\nDistribution=debian\nRelease=bookworm\nArchitecture=x86-64\n")
    keyring = write(d / "mkosi.sandbox" / debian.KEYRING.relative_to("/"), "a keyring\n")
    s = packages.setup(load_context(d))
    assert s.sandbox_tree is not None
    expected = s.sandbox_tree / debian.KEYRING.relative_to("/")
    assert expected.read_text() == keyring.read_text()
    assert s.repositories and all(r.signed_by == (expected,) for r in s.repositories)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the configuration names x86-64")
def test_without_a_keyring_in_the_sandbox_tree_the_hosts_is_used(tmp_path: Path) -> None:
    d = tmp_path / "project"
    write(d / "mkosi.conf", "[Distribution]\nDistribution=debian\nRelease=bookworm\nArchitecture=x86-64\n")
    write(d / "mkosi.sandbox/etc/apt/apt.conf.d/99local", 'Acquire::Retries "5";\n')
    s = packages.setup(load_context(d))
    assert all(r.signed_by == (debian.KEYRING,) for r in s.repositories)
    assert not s.cache_only


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the configuration names x86-64")
@pytest.mark.parametrize(("mode", "offline"), [("always", True), ("metadata", False), ("auto", False)])
def test_cache_only_always_makes_apt_offline(tmp_path: Path, mode: str, offline: bool) -> None:
    d = tmp_path / "project"
    write(
        d / "mkosi.conf",
        f"[Distribution]\nDistribution=debian\nRelease=bookworm\n[Build]\nCacheOnly={mode}\n",
    )
    assert packages.setup(load_context(d)).cache_only is offline

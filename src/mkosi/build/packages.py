"""Installing, removing and cleaning packages: the distribution module plus its package manager."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mkosi import distributions, log
from mkosi.build import localrepo, sandboxtrees
from mkosi.build.context import Context
from mkosi.config.model import Architecture, CacheOnly, Feature
from mkosi.errors import MkosiError
from mkosi.installers import apt
from mkosi.installers.apt import AptSetup


def wanted(ctx: Context) -> bool:
    return bool(ctx.config.packages) or not ctx.config.base_trees


def state_dir(ctx: Context) -> Path:
    """Repository metadata: in the cache (reused across runs), else in the invocation's workspace."""
    c = ctx.config
    key = f"{c.distribution.value}~{c.release}~{c.architecture.value}"
    if digest := sandboxtrees.apt_digest(sandboxtrees.assemble(ctx)):
        key += f"~sandbox-{digest}"  # other sources, other metadata
    base = ctx.cache_dir / "metadata" if ctx.cache_dir else ctx.shared.workspace / "metadata"
    return base / key


def setup(ctx: Context) -> AptSetup:
    c = ctx.config
    if c.architecture != Architecture.native():
        raise MkosiError(
            f"Architecture={c.architecture.value}: only the host's architecture "
            f"({Architecture.native().value}) can be built here"
        )
    mod = distributions.module(c.distribution)
    s: AptSetup = mod.apt_setup(
        ctx.root,
        release=c.release,
        cache_dir=ctx.package_cache_dir,
        state_dir=state_dir(ctx),
        arch=c.architecture.value,
        mirror=c.mirror,
        components=(*mod.default_components(), *c.repositories),
        local_mirror=c.local_mirror,
        snapshot=c.snapshot,
        with_recommends=c.with_recommends,
        with_docs=c.with_docs,
        repository_key_check=c.repository_key_check,
        extra_sources=localrepo.sources(ctx),
        # SandboxTrees=: their etc/apt (sources, keys, apt.conf.d, preferences) is honoured by apt, and a
        # keyring at the distribution's keyring path in them replaces the host's.
        sandbox_tree=sandboxtrees.assemble(ctx),
        cache_only=c.cache_only == CacheOnly.always,
    )
    return s


def sync_once(ctx: Context, s: AptSetup) -> None:
    """Repository metadata is synced once per invocation and shared by every image using it."""
    key = str(s.state_dir)
    if key in ctx.shared.synced:
        return
    with log.step("Syncing repository metadata"):
        apt.sync(s)
    ctx.shared.synced[key] = s.state_dir


def install(ctx: Context) -> None:
    s = setup(ctx)
    sync_once(ctx, s)
    localrepo.sync(ctx, s)
    bootstrap = not (ctx.root / "var/lib/dpkg/status").exists()
    apt.install(s, list(ctx.config.packages), bootstrap=bootstrap)


def synced_setup(ctx: Context, root: Path | None = None) -> AptSetup:
    """An :class:`AptSetup` for ``root`` (default: the image's) with the repository metadata up to date."""
    s = setup(ctx)
    if root is not None:
        s = dataclasses.replace(s, root=root)
    sync_once(ctx, s)
    localrepo.sync(ctx, s)
    return s


def install_volatile(ctx: Context) -> None:
    """``VolatilePackages=``: installed after the build scripts (which may have built them)."""
    apt.install(synced_setup(ctx), list(ctx.config.volatile_packages))


def remove(ctx: Context) -> None:
    """``RemovePackages=``: purged after the post-installation scripts ran."""
    apt.remove(setup(ctx), list(ctx.config.remove_packages))


def clean_metadata(ctx: Context) -> None:
    """``CleanPackageMetadata=``: ``auto`` removes it when the image cannot install packages later."""
    policy = ctx.config.clean_package_metadata
    if policy == Feature.auto:
        # auto: keep the dpkg database when the package manager stays in the image.
        dpkg = not (ctx.root / "usr/bin/apt").exists() and not (ctx.root / "usr/bin/dpkg").exists()
    else:
        dpkg = True
    apt.clean_metadata(ctx.root, dpkg=dpkg)

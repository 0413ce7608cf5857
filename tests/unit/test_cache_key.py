"""The incremental cache key: every input that shapes the cached tree changes it, and nothing else does.

Each test writes a real configuration tree into ``tmp_path`` (packages, a skeleton tree, a prepare script, a
base tree, a package directory and a sandbox tree), loads it the way ``mkosi`` does and compares the key of
the unchanged tree with the key after one change: a drop-in in ``mkosi.conf.d/`` or a change to a file.
The CacheOnly= plan is checked on the same trees, with caches written by :func:`mkosi.build.cache.save`'s
manifest format.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mkosi.build import cache, scripts
from mkosi.build.context import Context, Shared
from mkosi.cli import parse_args
from mkosi.config.images import load
from mkosi.config.settings import BY_DEST
from mkosi.errors import MkosiError

BASE = """\
[Distribution]
Distribution=debian
Release=bookworm
Architecture=x86-64

[Output]
Format=directory

[Content]
Packages=systemd
         udev
BaseTrees=base
ExtraTrees=mkosi.extra

[Build]
CacheDirectory=mkosi.cache
Incremental=yes
"""


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    write(d / "mkosi.conf", BASE)
    write(d / "mkosi.skeleton/etc/skeleton.conf", "skeleton\n")
    write(d / "mkosi.skeleton/usr/share/doc/readme", "readme\n")
    write(d / "mkosi.extra/etc/extra.conf", "extra\n")
    write(d / "mkosi.prepare", '#!/bin/sh\necho prepared > "$BUILDROOT/prepared"\n', 0o755)
    write(d / "base/etc/base-release", "base\n")
    write(d / "mkosi.packages/local_1.0_all.deb", "not really a deb\n")
    write(d / "mkosi.sandbox/etc/apt/apt.conf.d/99local", 'Acquire::Retries "5";\n')
    (d / "mkosi.cache").mkdir()
    return d


def load_main(directory: Path, *cli: str) -> Any:
    args, values, _ = parse_args(["-C", os.fspath(directory), *cli, "summary"])
    return load(args, values)[-1]


def key(directory: Path, *cli: str) -> str:
    return cache.key_digest(cache.key_inputs(load_main(directory, *cli)))


def dropin(directory: Path, text: str) -> None:
    write(directory / "mkosi.conf.d/50-change.conf", textwrap.dedent(text))


def touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# ---------------------------------------------------------------------------------------------------------
# Every input invalidates

Change = Callable[[Path], object]

INPUTS: dict[str, Change] = {
    "Distribution=": lambda d: dropin(d, "[Distribution]\nDistribution=ubuntu\nRelease=noble\n"),
    "Release=": lambda d: dropin(d, "[Distribution]\nRelease=trixie\n"),
    "Architecture=": lambda d: dropin(d, "[Distribution]\nArchitecture=arm64\n"),
    "Mirror=": lambda d: dropin(d, "[Distribution]\nMirror=http://mirror.example/debian\n"),
    "LocalMirror=": lambda d: dropin(d, "[Distribution]\nLocalMirror=http://local.example/debian\n"),
    "Snapshot=": lambda d: dropin(d, "[Distribution]\nSnapshot=20240101T000000Z\n"),
    "Repositories=": lambda d: dropin(d, "[Distribution]\nRepositories=contrib\n"),
    "Packages= (added)": lambda d: dropin(d, "[Content]\nPackages=less\n"),
    "Packages= (removed)": lambda d: dropin(d, "[Content]\nPackages=!udev\n"),
    "WithDocs=": lambda d: dropin(d, "[Content]\nWithDocs=no\n"),
    "WithRecommends=": lambda d: dropin(d, "[Content]\nWithRecommends=yes\n"),
    "SkeletonTrees= content": lambda d: write(d / "mkosi.skeleton/etc/skeleton.conf", "skeleton, changed\n"),
    "SkeletonTrees= mtime": lambda d: touch(d / "mkosi.skeleton/etc/skeleton.conf"),
    "SkeletonTrees= new file": lambda d: write(d / "mkosi.skeleton/etc/new.conf", "new\n"),
    "SkeletonTrees= removed file": lambda d: (d / "mkosi.skeleton/usr/share/doc/readme").unlink(),
    "SkeletonTrees= mode": lambda d: (d / "mkosi.skeleton/etc/skeleton.conf").chmod(0o600),
    "SkeletonTrees= symlink": lambda d: (d / "mkosi.skeleton/etc/link").symlink_to("skeleton.conf"),
    "SkeletonTrees= target": lambda d: dropin(d, "[Content]\nSkeletonTrees=mkosi.skeleton:/opt\n"),
    "BaseTrees= content": lambda d: write(d / "base/etc/base-release", "base, changed\n"),
    "BaseTrees= another": lambda d: (
        write(d / "base2/etc/other", "other\n"),
        dropin(d, "[Content]\nBaseTrees=base2\n"),
    ),
    "PrepareScripts= content": lambda d: write(
        d / "mkosi.prepare", '#!/bin/sh\necho changed > "$BUILDROOT/prepared"\n', 0o755
    ),
    "PrepareScripts= another": lambda d: write(d / "mkosi.prepare.d/10-more.sh", "#!/bin/sh\ntrue\n", 0o755),
    "Environment= (seen by prepare scripts)": lambda d: dropin(d, "[Build]\nEnvironment=FOO=bar\n"),
    "PackageDirectories= content": lambda d: write(d / "mkosi.packages/other_2.0_all.deb", "another\n"),
    "SandboxTrees= content": lambda d: write(d / "mkosi.sandbox/etc/apt/apt.conf.d/99local", "changed\n"),
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_input_changes_the_key(tree: Path, name: str) -> None:
    before = key(tree)
    assert key(tree) == before, "the key of an unchanged tree is stable"
    INPUTS[name](tree)
    after = key(tree)
    assert after != before, f"changing {name} must invalidate the cache"


def test_cli_values_count_like_config_files(tree: Path) -> None:
    before = key(tree)
    assert key(tree, "--package=less") != before
    assert key(tree, "--release=trixie") != before
    assert key(tree, "--hostname=elsewhere") == before


# ---------------------------------------------------------------------------------------------------------
# Nothing else does

NOT_INPUTS: dict[str, Change] = {
    "Hostname=": lambda d: dropin(d, "[Content]\nHostname=elsewhere\n"),
    "Locale=, Timezone=, Keymap=": lambda d: dropin(
        d, "[Content]\nLocale=de_DE.UTF-8\nTimezone=Europe/Berlin\nKeymap=de\n"
    ),
    "RootPassword=, RootShell=": lambda d: dropin(d, "[Content]\nRootPassword=secret\nRootShell=/bin/zsh\n"),
    "Autologin=": lambda d: dropin(d, "[Content]\nAutologin=yes\n"),
    "MachineId=": lambda d: dropin(d, "[Content]\nMachineId=b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0\n"),
    "Ssh=": lambda d: dropin(d, "[Content]\nSsh=never\n"),
    "ExtraTrees= (another)": lambda d: (
        write(d / "extra2/etc/x", "x\n"),
        dropin(d, "[Content]\nExtraTrees=extra2\n"),
    ),
    "ExtraTrees= content": lambda d: write(d / "mkosi.extra/etc/extra.conf", "extra, changed\n"),
    "Output=": lambda d: dropin(d, "[Output]\nOutput=other\n"),
    "OutputDirectory=": lambda d: dropin(d, "[Output]\nOutputDirectory=out\n"),
    "Format=": lambda d: dropin(d, "[Output]\nFormat=tar\n"),
    "CompressOutput=": lambda d: dropin(d, "[Output]\nCompressOutput=xz\n"),
    "ImageId=, ImageVersion=": lambda d: dropin(d, "[Output]\nImageId=thing\nImageVersion=1.2\n"),
    "ManifestFormat=, SplitArtifacts=": lambda d: dropin(
        d, "[Output]\nManifestFormat=json\nSplitArtifacts=os-release,tar\n"
    ),
    "Checksum=, Sign=": lambda d: dropin(d, "[Validation]\nChecksum=yes\nSign=yes\n"),
    "Incremental=": lambda d: dropin(d, "[Build]\nIncremental=strict\n"),
    "CacheOnly=": lambda d: dropin(d, "[Build]\nCacheOnly=never\n"),
    "RemoveFiles=, RemovePackages=": lambda d: dropin(
        d, "[Content]\nRemoveFiles=/usr/share/doc\nRemovePackages=udev\n"
    ),
    "CleanPackageMetadata=": lambda d: dropin(d, "[Content]\nCleanPackageMetadata=no\n"),
    "VolatilePackages=, BuildPackages=": lambda d: dropin(
        d, "[Content]\nVolatilePackages=less\nBuildPackages=make\n"
    ),
    "SourceDateEpoch=": lambda d: dropin(d, "[Content]\nSourceDateEpoch=1700000000\n"),
    "KernelCommandLine=": lambda d: dropin(d, "[Content]\nKernelCommandLine=quiet\n"),
    "PostInstallationScripts=": lambda d: write(d / "mkosi.postinst", "#!/bin/sh\ntrue\n", 0o755),
    "FinalizeScripts=": lambda d: write(d / "mkosi.finalize", "#!/bin/sh\ntrue\n", 0o755),
    "BuildScripts=": lambda d: write(d / "mkosi.build", "#!/bin/sh\ntrue\n", 0o755),
    "NSpawnSettings=": lambda d: write(d / "mkosi.nspawn", "[Exec]\nBoot=yes\n"),
    "mkosi.version": lambda d: write(d / "mkosi.version", "7\n"),
    "RepositoryKeyCheck=": lambda d: dropin(d, "[Distribution]\nRepositoryKeyCheck=no\n"),
    "PackageCacheDirectory=": lambda d: dropin(d, "[Build]\nPackageCacheDirectory=pkgcache\n"),
}


@pytest.mark.parametrize("name", list(NOT_INPUTS))
def test_other_settings_keep_the_key(tree: Path, name: str) -> None:
    before = key(tree)
    NOT_INPUTS[name](tree)
    assert key(tree) == before, f"{name} does not shape the cached tree and must not invalidate it"


def test_environment_without_prepare_scripts_is_not_an_input(tree: Path) -> None:
    (tree / "mkosi.prepare").unlink()
    before = key(tree)
    dropin(tree, "[Build]\nEnvironment=FOO=bar\n")
    assert key(tree) == before


class Recorder:
    """A configuration that remembers which settings were read."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._config, name)


def test_the_key_reads_exactly_the_declared_settings(tree: Path) -> None:
    recorder = Recorder(load_main(tree))
    cache.key_inputs(recorder)
    assert recorder.read == set(cache.KEY_SETTINGS)
    assert set(cache.KEY_SETTINGS) <= set(BY_DEST)


def test_inputs_name_the_settings_that_changed(tree: Path) -> None:
    old = cache.key_inputs(load_main(tree))
    dropin(tree, "[Content]\nPackages=less\nWithDocs=no\n")
    new = cache.key_inputs(load_main(tree))
    assert cache.changed_inputs(old, new) == ["Packages=", "WithDocs="]


# ---------------------------------------------------------------------------------------------------------
# Fingerprints and names


def test_fingerprint(tmp_path: Path) -> None:
    d = write(tmp_path / "t/etc/a", "content").parent.parent
    first = cache.fingerprint(d)
    # Where the tree lives does not matter, only what is in it (cp -a keeps modes and mtimes).
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", d, copy], check=True)
    assert cache.fingerprint(copy) == first
    # The same size, but a later modification time.
    write(d / "etc/a", "CONTENT")
    touch(d / "etc/a")
    assert cache.fingerprint(d) != first
    assert cache.fingerprint(tmp_path / "missing") == "missing"
    archive = write(tmp_path / "tree.tar", "tar")
    before = cache.fingerprint(archive)
    touch(archive)
    assert cache.fingerprint(archive) != before


def test_cache_key_specifiers(tree: Path) -> None:
    config = load_main(tree)
    assert cache.expand_cache_key(config) == "debian~bookworm~x86-64~main"
    paths = cache.CachePaths.of(config)
    assert paths is not None
    assert paths.tree == tree / "mkosi.cache/debian~bookworm~x86-64~main.cache"
    assert paths.manifest == tree / "mkosi.cache/debian~bookworm~x86-64~main.cache.json"
    dropin(tree, "[Build]\nCacheKey=&i-&v&&x\n[Output]\nImageId=thing\nImageVersion=3\n")
    assert cache.expand_cache_key(load_main(tree)) == "thing-3&x"


def test_bad_cache_key(tree: Path) -> None:
    dropin(tree, "[Build]\nCacheKey=&q\n")
    with pytest.raises(MkosiError, match="unknown specifier &q"):
        cache.expand_cache_key(load_main(tree))


# ---------------------------------------------------------------------------------------------------------
# CacheOnly=: the plan for an invocation


def fake_cache(config: Any, *, current: bool = True) -> None:
    paths = cache.CachePaths.of(config)
    assert paths is not None
    paths.tree.mkdir(parents=True, exist_ok=True)
    inputs = cache.key_inputs(config)
    digest = cache.key_digest(inputs) if current else "0" * 64
    paths.manifest.write_text(json.dumps({"key": digest, "inputs": inputs}))


def test_plan_reuses_up_to_date_caches_without_syncing(tree: Path) -> None:
    config = load_main(tree)
    fake_cache(config)
    assert cache.up_to_date(config)
    plan = cache.plan([config], metadata_exists=lambda c: True)
    assert plan.reusable == {"main"} and not plan.resync


def test_plan_syncs_and_rebuilds_when_a_cache_is_out_of_date(tree: Path) -> None:
    config = load_main(tree)
    fake_cache(config, current=False)
    plan = cache.plan([config], metadata_exists=lambda c: True)
    assert plan.reusable == frozenset() and plan.resync


def test_plan_syncs_when_nothing_was_built_before(tree: Path) -> None:
    config = load_main(tree)
    plan = cache.plan([config], metadata_exists=lambda c: False)
    assert plan.resync and plan.reusable == frozenset()


def two_images(tree: Path) -> list[Any]:
    write(tree / "mkosi.images/one/mkosi.conf", "[Content]\nPackages=less\n")
    write(tree / "mkosi.images/two/mkosi.conf", "[Content]\nPackages=vim\n")
    args, values, _ = parse_args(["-C", os.fspath(tree), "summary"])
    images = [c for c in load(args, values) if c.name in ("one", "two")]
    assert [c.name for c in images] == ["one", "two"]
    return images


def test_plan_invalidates_caches_when_metadata_is_synced(tree: Path) -> None:
    one, two = two_images(tree)
    fake_cache(one)
    plan = cache.plan([one, two], metadata_exists=lambda c: False)
    assert plan.resync and plan.reusable == frozenset()


def test_plan_with_an_image_never_cached_uses_old_metadata(tree: Path) -> None:
    # Not every image was cached before: auto uses the metadata an earlier build synced.
    one, two = two_images(tree)
    fake_cache(one)
    plan = cache.plan([one, two], metadata_exists=lambda c: True)
    assert not plan.resync and plan.reusable == {"one"}


def test_plan_one_stale_cache_of_many_rebuilds_all(tree: Path) -> None:
    one, two = two_images(tree)
    fake_cache(one)
    fake_cache(two, current=False)
    plan = cache.plan([one, two], metadata_exists=lambda c: True)
    assert plan.resync and plan.reusable == frozenset()
    assert "out of date" in plan.reason


def test_plan_keeps_metadata_when_not_every_image_was_cached(tree: Path) -> None:
    # An image built before without Incremental=: auto uses the metadata that build synced.
    dropin(tree, "[Build]\nIncremental=no\n")
    config = load_main(tree)
    plan = cache.plan([config], metadata_exists=lambda c: True)
    assert not plan.resync


def test_plan_never_always_syncs_and_invalidates(tree: Path) -> None:
    dropin(tree, "[Build]\nCacheOnly=never\n")
    config = load_main(tree)
    fake_cache(config)
    plan = cache.plan([config], metadata_exists=lambda c: True)
    assert plan.resync and plan.reusable == frozenset()


@pytest.mark.parametrize("mode", ["metadata", "always"])
def test_plan_metadata_and_always_never_sync(tree: Path, mode: str) -> None:
    dropin(tree, f"[Build]\nCacheOnly={mode}\n")
    config = load_main(tree)
    fake_cache(config)
    plan = cache.plan([config], metadata_exists=lambda c: False)
    assert not plan.resync and plan.reusable == {"main"}


def test_plan_with_every_image_cached_needs_no_metadata(tree: Path) -> None:
    config = load_main(tree)
    fake_cache(config)
    plan = cache.plan([config], metadata_exists=lambda c: False)
    assert not plan.resync and plan.reusable == {"main"}


def test_cache_keys_must_be_unique(tree: Path) -> None:
    write(tree / "mkosi.images/one/mkosi.conf", "[Build]\nCacheKey=same\n")
    write(tree / "mkosi.images/two/mkosi.conf", "[Build]\nCacheKey=same\n")
    args, values, _ = parse_args(["-C", os.fspath(tree), "summary"])
    images = load(args, values)
    with pytest.raises(MkosiError, match="CacheKey= expands to same for more than one image"):
        cache.plan(images, metadata_exists=lambda c: True)


def test_remove(tree: Path) -> None:
    config = load_main(tree)
    fake_cache(config)
    assert cache.remove(config)
    paths = cache.CachePaths.of(config)
    assert paths is not None and not paths.tree.exists() and not paths.manifest.exists()
    assert not cache.remove(config)


# ---------------------------------------------------------------------------------------------------------
# $CACHED: decided before the sync scripts run


def context(tree: Path, config: Any) -> Context:
    args, _, _ = parse_args(["-C", os.fspath(tree), "build"])
    shared = Shared(workspace=tree / "workspace")
    ctx = Context(args=args, config=config, shared=shared, workspace=shared.workspace / config.name)
    ctx.root.mkdir(parents=True)
    ctx.facts[cache.PLAN] = cache.plan([config], metadata_exists=lambda c: True)
    return ctx


def sync_cached(ctx: Context) -> str:
    """The $CACHED a sync script of ``ctx`` gets."""
    return scripts.documented_environment(ctx.config, scripts.ScriptKind.sync, cached=cache.available(ctx))[
        "CACHED"
    ]


def test_cached_is_1_when_the_cache_will_be_reused(tree: Path) -> None:
    config = load_main(tree)
    fake_cache(config)
    paths = cache.CachePaths.of(config)
    assert paths is not None
    write(paths.tree / "etc/from-cache", "cached\n")
    ctx = context(tree, config)
    cache.check(ctx)
    assert sync_cached(ctx) == "1"
    assert cache.will_restore(ctx)
    cache.restore(ctx)
    assert cache.restored(ctx) and (ctx.root / "etc/from-cache").read_text() == "cached\n"
    assert sync_cached(ctx) == "1"


@pytest.mark.parametrize("state", ["missing", "out of date", "not in the plan"])
def test_cached_is_0_without_a_cache_to_reuse(tree: Path, state: str) -> None:
    config = load_main(tree)
    if state != "missing":
        fake_cache(config, current=state != "out of date")
    ctx = context(tree, config)
    if state == "not in the plan":
        ctx.facts[cache.PLAN] = cache.CachePlan(frozenset(), resync=True, reason="metadata is synced")
    cache.check(ctx)
    assert sync_cached(ctx) == "0"
    assert not cache.will_restore(ctx)


def test_cached_without_incremental_is_0(tree: Path) -> None:
    dropin(tree, "[Build]\nIncremental=no\n")
    config = load_main(tree)
    ctx = context(tree, config)
    assert not cache.wants_restore(ctx)
    assert sync_cached(ctx) == "0"


def test_strict_fails_before_the_sync_scripts(tree: Path) -> None:
    dropin(tree, "[Build]\nIncremental=strict\n")
    ctx = context(tree, load_main(tree))
    with pytest.raises(MkosiError, match="Incremental=strict: no up-to-date cached image"):
        cache.check(ctx)


def test_sync_script_that_changes_an_input_drops_the_cache(tree: Path) -> None:
    write(tree / "mkosi.sync", "#!/bin/sh\ntrue\n", 0o755)
    config = load_main(tree)
    fake_cache(config)
    ctx = context(tree, config)
    cache.check(ctx)
    assert cache.available(ctx)
    # What a sync script may do: update the sources, the prepare script among them.
    write(tree / "mkosi.prepare", "#!/bin/sh\necho updated\n", 0o755)
    cache.restore(ctx)
    assert not cache.restored(ctx) and not cache.available(ctx)
    assert not any(ctx.root.iterdir())

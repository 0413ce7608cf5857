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

import mkosi.build.artifacts as artifacts
import mkosi.build.cache as cache
import mkosi.build.checks as checks
import mkosi.build.configure as configure
import mkosi.build.finalize as finalize
import mkosi.build.localrepo as localrepo
import mkosi.build.packages as packages
import mkosi.build.sandboxtrees as sandboxtrees
import mkosi.build.scripts as scripts
import mkosi.build.trees as trees
from mkosi import log
from mkosi.build.context import Context
from mkosi.config.model import ArtifactOutput, Feature, OutputFormat
from mkosi.config.typed import SETTING_FIELDS
from mkosi.errors import MkosiError
from mkosi.outputs import write_output


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], None]
    when: Callable[[Context], bool] = lambda ctx: True


class _Finished(Exception):
    """Raised by a step after which this image has nothing more to do."""


def finish_early(ctx: Context) -> None:
    raise _Finished


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
        trees.install_tree(tree.source, ctx.root, tree.target)


def install_extra_trees(ctx: Context) -> None:
    for tree in ctx.config.extra_trees:
        trees.install_tree(tree.source, ctx.root, tree.target)


def clean_package_metadata(ctx: Context) -> None:
    packages.clean_metadata(ctx)


def _want_clean_metadata(ctx: Context) -> bool:
    return bool(ctx.config.clean_package_metadata != Feature.disabled)


def clamp_mtimes(ctx: Context) -> None:
    epoch = ctx.config.source_date_epoch
    assert epoch is not None  # when=_with_epoch
    trees.clamp_mtimes(ctx.root, epoch)


def overlay_difference(ctx: Context) -> None:
    trees.overlay_difference(ctx.base_trees(), ctx.root)


def _with_epoch(ctx: Context) -> bool:
    return ctx.config.source_date_epoch is not None


def _has(attr: str) -> Callable[[Context], bool]:
    """A ``when`` condition: the setting ``attr`` is set (a non-empty list, true)."""
    if attr not in SETTING_FIELDS:
        raise AttributeError(f"Config has no setting {attr!r}")
    return lambda ctx: bool(getattr(ctx.config, attr))


STEPS: list[Step] = [
    Step("Copying in sandbox trees", sandboxtrees.install, when=sandboxtrees.wanted),
    # Incremental=: decided before the sync scripts, which are told in $CACHED; the steps up to the prepare
    # scripts are skipped when the root comes from the cache.
    Step("Checking the incremental cache", cache.check, when=cache.wants_restore),
    Step("Running sync scripts", scripts.run_sync_scripts, when=_has("sync_scripts")),
    Step("Restoring the cached image", cache.restore, when=cache.will_restore),
    Step("Installing base trees", install_base_trees, when=cache.unless_restored(_has("base_trees"))),
    Step(
        "Installing skeleton trees",
        install_skeleton_trees,
        when=cache.unless_restored(_has("skeleton_trees")),
    ),
    Step("Setting up the local package repository", localrepo.populate, when=localrepo.wanted),
    Step("Using cached repository metadata", cache.use_cached_metadata, when=cache.wants_cached_metadata),
    Step("Installing packages", packages.install, when=cache.unless_restored(packages.wanted)),
    Step(
        "Running prepare scripts",
        scripts.run_prepare_scripts,
        when=cache.unless_restored(_has("prepare_scripts")),
    ),
    Step("Saving the image to the cache", cache.save, when=cache.wants_save),
    Step("Running build scripts", scripts.run_build_scripts, when=scripts.wants_build),
    # Format=none: the image exists for its build scripts (the manual), nothing after them applies.
    Step("Finishing: Format=none writes no output", finish_early, when=_is(OutputFormat.none)),
    Step("Installing volatile packages", packages.install_volatile, when=_has("volatile_packages")),
    Step("Configuring the initrd", finalize.configure_initrd, when=_not_extension),
    Step("Installing extra trees", install_extra_trees, when=_has("extra_trees")),
    Step("Running post-installation scripts", scripts.run_postinst_scripts, when=_has("postinst_scripts")),
    Step("Writing os-release", finalize.configure_os_release, when=_not_extension),
    Step(
        "Writing extension-release", finalize.write_extension_release, when=finalize.wants_extension_release
    ),
    # Finalize settings (configure.py): none of them apply to overlays and extensions.
    Step("Configuring autologin", configure.write_autologin, when=configure.wants_autologin),
    Step("Installing sshd units", configure.write_ssh_units, when=configure.wants_ssh),
    Step("Running systemd-sysusers", configure.run_sysusers, when=configure.wants_tool("systemd-sysusers")),
    Step("Running systemd-tmpfiles", configure.run_tmpfiles, when=configure.wants_tool("systemd-tmpfiles")),
    Step("Running systemctl preset-all", configure.run_presets, when=configure.wants_tool("systemctl")),
    Step("Running depmod", configure.run_depmod, when=configure.wants_depmod),
    Step("Applying first boot settings", configure.apply_firstboot, when=configure.applies),
    Step("Running systemd-hwdb", configure.run_hwdb, when=configure.wants_hwdb),
    Step("Removing packages", packages.remove, when=_has("remove_packages")),
    Step("Writing manifests", artifacts.write_manifests, when=artifacts.wants_manifest),
    Step("Removing files", finalize.remove_files, when=_has("remove_files")),
    Step("Cleaning package metadata", clean_package_metadata, when=_want_clean_metadata),
    Step("Relabeling files for SELinux", configure.selinux_relabel, when=configure.wants_selinux_relabel),
    Step("Running finalize scripts", scripts.run_finalize_scripts, when=_has("finalize_scripts")),
    Step(
        "Keeping only what the base trees lack",
        overlay_difference,
        when=lambda ctx: _has("overlay")(ctx) and _has("base_trees")(ctx),
    ),
    Step(
        "Checking the extension against its base", checks.check_extension, when=checks.wants_extension_check
    ),
    Step("Removing build logs", finalize.remove_build_logs, when=_with_epoch),
    Step("Clamping modification times", clamp_mtimes, when=_with_epoch),
    Step(
        "Splitting out os-release",
        artifacts.write_split_os_release,
        when=artifacts.wants_split(ArtifactOutput.os_release),
    ),
    Step(
        "Splitting out a tar archive",
        artifacts.write_split_tar,
        when=artifacts.wants_split(ArtifactOutput.tar),
    ),
    Step("Copying the nspawn settings", artifacts.copy_nspawn_settings, when=artifacts.wants_nspawn_settings),
    Step("Writing the output", write_output),
    Step("Writing SHA256SUMS", artifacts.write_checksums, when=artifacts.wants_checksum),
    Step("Signing SHA256SUMS", artifacts.sign_checksums, when=artifacts.wants_signature),
    Step("Running post-output scripts", scripts.run_postoutput_scripts, when=_has("postoutput_scripts")),
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
            except _Finished:
                return
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

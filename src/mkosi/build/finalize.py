"""Steps that adjust the finished root: os-release, extension-release, initrd markers, removals."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from mkosi.build.context import Context
from mkosi.config.model import OutputFormat
from mkosi.hostinfo import read_os_release


def configure_initrd(ctx: Context) -> None:
    """``/init`` for every image with systemd; ``/etc/initrd-release`` with ``MakeInitrd=yes``."""
    init = ctx.root / "init"
    if not init.exists() and not init.is_symlink() and (ctx.root / "usr/lib/systemd/systemd").exists():
        init.symlink_to("/usr/lib/systemd/systemd")
    if ctx.config.make_initrd:
        marker = ctx.root / "etc/initrd-release"
        if not marker.exists() and not marker.is_symlink():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.symlink_to("/etc/os-release")


def _os_release_updates(ctx: Context) -> dict[str, str]:
    c = ctx.config
    updates = {}
    if c.image_id:
        updates["IMAGE_ID"] = c.image_id
    if c.image_version:
        updates["IMAGE_VERSION"] = c.image_version
    if c.hostname:
        updates["DEFAULT_HOSTNAME"] = c.hostname
    if prefixes := (c.environment or {}).get("PORTABLE_PREFIXES"):
        updates["PORTABLE_PREFIXES"] = prefixes
    return updates


def configure_os_release(ctx: Context) -> None:
    updates = _os_release_updates(ctx)
    if not updates:
        return
    for candidate in ("usr/lib/os-release", "usr/lib/initrd-release", "etc/os-release"):
        path = ctx.root / candidate
        if not path.is_file() or path.is_symlink():
            continue
        lines = path.read_text().splitlines()
        written = set()
        out = []
        for line in lines:
            key = line.partition("=")[0]
            if key in updates:
                out.append(f'{key}="{updates[key]}"')
                written.add(key)
            else:
                out.append(line)
        out += [f'{k}="{v}"' for k, v in updates.items() if k not in written]
        tmp = path.with_suffix(".new")
        tmp.write_text("\n".join(out) + "\n")
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        tmp.rename(path)


def wants_extension_release(ctx: Context) -> bool:
    return ctx.config.output_format in (OutputFormat.sysext, OutputFormat.confext)


def extension_release_path(ctx: Context) -> Path:
    d = "usr/lib" if ctx.config.output_format == OutputFormat.sysext else "etc"
    return ctx.root / d / f"extension-release.d/extension-release.{ctx.config.output}"


def write_extension_release(ctx: Context) -> None:
    """The extension-release file systemd-sysext/confext match against the host's os-release."""
    prefix = "SYSEXT" if ctx.config.output_format == OutputFormat.sysext else "CONFEXT"
    path = extension_release_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    osrelease = read_os_release(ctx.root)
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                existing[k.strip()] = v.strip()
    values = dict(existing)
    values.setdefault("ID", osrelease.get("ID", "_any"))
    if f"{prefix}_LEVEL" not in values and (level := osrelease.get(f"{prefix}_LEVEL")):
        values[f"{prefix}_LEVEL"] = level
    if "VERSION_ID" not in values and (version := osrelease.get("VERSION_ID")):
        values["VERSION_ID"] = version
    if ctx.config.image_id:
        values.setdefault(f"{prefix}_ID", ctx.config.image_id)
    if ctx.config.image_version:
        values.setdefault(f"{prefix}_VERSION_ID", ctx.config.image_version)
    scope = (ctx.config.environment or {}).get(f"{prefix}_SCOPE", "initrd system portable")
    values.setdefault(f"{prefix}_SCOPE", scope)
    values.setdefault("ARCHITECTURE", str(ctx.config.architecture))
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o644)


def remove_files(ctx: Context) -> None:
    """``RemoveFiles=``: globs relative to the root."""
    for pattern in ctx.config.remove_files:
        for match in glob.glob(str(ctx.root / pattern.lstrip("/")), recursive=True):
            p = Path(match)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


#: Files the package manager writes with the time of the build in them.
BUILD_LOGS = (
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
)


def remove_build_logs(ctx: Context) -> None:
    """With SOURCE_DATE_EPOCH, drop logs and caches that record when the build ran (reproducibility)."""
    for rel in BUILD_LOGS:
        (ctx.root / rel).unlink(missing_ok=True)

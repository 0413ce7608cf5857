"""Side artifacts of a build: manifests, split artifacts, the nspawn settings file, checksums, signatures;
and the image version's ``bump``.

* ``ManifestFormat=json`` → ``<output>.manifest``: every installed package, with the name, version and
  architecture exactly as the package database reports them;
* ``ManifestFormat=changelog`` → ``<output>.changelog``: per package its version and latest changelog entry,
  a text meant to be diffed between two builds;
* ``SplitArtifacts=os-release`` → ``<output>.osrelease``; ``SplitArtifacts=tar`` → ``<output>.tar``
  (compressed per ``CompressOutput=``);
* ``NSpawnSettings=`` (``mkosi.nspawn``) → ``<output>.nspawn``, where systemd-nspawn looks for it;
* ``Checksum=`` → ``<output>.SHA256SUMS`` over every file artifact of the image (``sha256sum -c`` checks it);
* ``Sign=`` → ``<output>.SHA256SUMS.gpg``, a detached OpenPGP signature by gpg (``Key=`` picks the key) or by
  the Stateless OpenPGP tool ``OpenPGPTool=`` names (``Key=`` is then the key file).

Everything is written to the image's staging directory and registered in ``ctx.artifacts``; the runner
moves it into the output directory when the whole build succeeded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkosi import log
from mkosi.build.context import Context
from mkosi.build.trees import resolve_in_root, tar_directory
from mkosi.config.model import ArtifactOutput, Compression, ManifestFormat
from mkosi.config.typed import Config
from mkosi.errors import MkosiError
from mkosi.outputs.naming import split_name
from mkosi.run import run, which

MANIFEST_VERSION = 1

# ---------------------------------------------------------------------------------------------------------
# Installed packages


def _dpkg_packages(root: Path) -> list[dict[str, Any]]:
    admindir = root / "var/lib/dpkg"
    if not (admindir / "status").is_file():
        return []
    fmt = "\t".join(
        [
            "${db:Status-Abbrev}",
            "${Package}",
            "${Version}",
            "${Architecture}",
            "${Installed-Size}",
            "${source:Package}",
        ]
    )
    out = run(
        ["dpkg-query", f"--admindir={admindir}", "--show", f"--showformat={fmt}\n"],
        stdout=-1,
        what="dpkg-query",
    ).stdout.decode()
    packages = []
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or not fields[0].startswith("ii"):
            continue
        _, name, version, arch, size, source = fields
        packages.append(
            {
                "type": "deb",
                "name": name,
                "version": version,
                "architecture": arch,
                # dpkg counts Installed-Size in KiB.
                "size": int(size) * 1024 if size.isdigit() else 0,
                "source": source,
            }
        )
    return sorted(packages, key=lambda p: (p["name"], p["architecture"]))


def installed_packages(root: Path) -> list[dict[str, Any]]:
    """Every installed package of the root, from its package database (dpkg today)."""
    return _dpkg_packages(root)


def manifest(ctx: Context, packages: list[dict[str, Any]]) -> dict[str, Any]:
    c = ctx.config
    return {
        "manifest_version": MANIFEST_VERSION,
        "config": {
            "name": c.image_id or "image",
            "version": c.image_version or "unspecified",
            "architecture": str(c.architecture),
        },
        "packages": packages,
    }


def _latest_changelog_entry(root: Path, package: str) -> list[str]:
    """The newest entry of the package's Debian changelog (empty when the image has no docs)."""
    for name in ("changelog.Debian.gz", "changelog.gz"):
        path = resolve_in_root(root, f"usr/share/doc/{package}/{name}")
        if not path.is_file():
            continue
        try:
            with gzip.open(path, "rt", errors="replace") as f:
                lines: list[str] = []
                for line in f:
                    lines.append(line.rstrip("\n"))
                    if line.startswith(" -- "):
                        break
                return lines
        except (OSError, EOFError):
            return []
    return []


def changelog(ctx: Context, packages: list[dict[str, Any]]) -> str:
    blocks = []
    for p in packages:
        head = f"{p['name']} {p['version']} ({p['architecture']})"
        if p.get("source") and p["source"] != p["name"]:
            head += f" from {p['source']}"
        entry = _latest_changelog_entry(ctx.root, p["name"])
        blocks.append("\n".join([head, *(f"    {line}" if line else "" for line in entry)]))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _stage(ctx: Context, name: str) -> Path:
    path = ctx.staging / name
    ctx.staging.mkdir(parents=True, exist_ok=True)
    ctx.artifacts[name] = path
    return path


def wants_manifest(ctx: Context) -> bool:
    return bool(ctx.config.manifest_format)


def write_manifests(ctx: Context) -> None:
    """``ManifestFormat=``: recorded before package metadata is cleaned out of the root."""
    packages = installed_packages(ctx.root)
    formats = set(ctx.config.manifest_format)
    if ManifestFormat.json in formats:
        path = _stage(ctx, split_name(ctx.config, "manifest"))
        path.write_text(json.dumps(manifest(ctx, packages), indent=2) + "\n")
    if ManifestFormat.changelog in formats:
        _stage(ctx, split_name(ctx.config, "changelog")).write_text(changelog(ctx, packages))
    log.debug(f"Manifest: {len(packages)} packages")


# ---------------------------------------------------------------------------------------------------------
# Split artifacts and the nspawn settings file


def wants_split(kind: ArtifactOutput) -> Callable[[Context], bool]:
    def when(ctx: Context) -> bool:
        return kind in (ctx.config.split_artifacts or [])

    return when


def write_split_os_release(ctx: Context) -> None:
    for candidate in ("usr/lib/os-release", "etc/os-release"):
        path = resolve_in_root(ctx.root, candidate)
        if path.is_file():
            shutil.copyfile(path, _stage(ctx, split_name(ctx.config, "osrelease")))
            return
    log.warn("SplitArtifacts=os-release: the image has no os-release file")


def split_tar_name(config: Config) -> str:
    value = config.compress_output
    compression = value if isinstance(value, Compression) else Compression.none
    return split_name(config, "tar") + compression.extension()


def write_split_tar(ctx: Context) -> None:
    """The root as a tar archive beside the main artifact (before the output step consumes the root)."""
    name = split_tar_name(ctx.config)
    value = ctx.config.compress_output
    tar_directory(
        ctx.root,
        _stage(ctx, name),
        compress=value.value if isinstance(value, Compression) else None,
        level=ctx.config.compress_level,
        source_date_epoch=ctx.config.source_date_epoch,
    )


def wants_nspawn_settings(ctx: Context) -> bool:
    return ctx.config.nspawn_settings is not None


def copy_nspawn_settings(ctx: Context) -> None:
    source = ctx.config.nspawn_settings
    assert source is not None  # when=wants_nspawn_settings
    if not source.is_file():
        raise MkosiError(f"NSpawnSettings={source}: not a file")
    shutil.copyfile(source, _stage(ctx, split_name(ctx.config, "nspawn")))


# ---------------------------------------------------------------------------------------------------------
# Checksums and signatures


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checksums_name(config: Config) -> str:
    return split_name(config, "SHA256SUMS")


def signature_name(config: Config) -> str:
    return checksums_name(config) + ".gpg"


def wants_checksum(ctx: Context) -> bool:
    return bool(ctx.config.checksum)


def write_checksums(ctx: Context) -> None:
    """``<output>.SHA256SUMS`` in ``sha256sum --binary`` format over every file artifact of the image."""
    own = {checksums_name(ctx.config), signature_name(ctx.config)}
    lines = []
    for name, path in sorted(ctx.artifacts.items()):
        if name in own or path.is_dir() or not path.exists():
            continue
        lines.append(f"{sha256_file(path)} *{name}\n")
    _stage(ctx, checksums_name(ctx.config)).write_text("".join(lines))


def wants_signature(ctx: Context) -> bool:
    return bool(ctx.config.checksum) and bool(ctx.config.sign)


def sign_checksums(ctx: Context) -> None:
    """A detached OpenPGP signature of the SHA256SUMS file."""
    sums = ctx.artifacts.get(checksums_name(ctx.config))
    if sums is None or not sums.exists():
        raise MkosiError("Sign=yes needs Checksum=yes (there is no SHA256SUMS file to sign)")
    tool = ctx.config.openpgp_tool or "gpg"
    key = ctx.config.key
    signature = _stage(ctx, signature_name(ctx.config))
    if which(tool) is None:
        raise MkosiError(f"Sign=yes: {tool} is not installed", hint="install it or pick OpenPGPTool=")
    if tool == "gpg":
        cmd = ["gpg", "--detach-sign", "--pinentry-mode", "loopback", "--output", os.fspath(signature)]
        if key:
            cmd += ["--default-key", key]
        signature.unlink(missing_ok=True)
        run([*cmd, os.fspath(sums)], what="gpg --detach-sign")
        return
    # A Stateless OpenPGP tool: "sop sign KEY... < DATA > SIGNATURE".
    if not key:
        raise MkosiError(f"OpenPGPTool={tool} needs Key= (the path of the secret key file)")
    with open(sums, "rb") as stdin, open(signature, "wb") as stdout:
        run([tool, "sign", key], stdin=stdin, stdout=stdout, what=f"{tool} sign")


# ---------------------------------------------------------------------------------------------------------
# mkosi.version and bump


def bump_version(version: str) -> str:
    """The next version: the last number in the version goes up by one (``1.9`` → ``1.10``,
    ``2~rc3`` → ``2~rc4``); a version without any number gets ``.2`` appended (it was the first)."""
    version = version.strip()
    numbers = list(re.finditer(r"\d+", version))
    if not numbers:
        log.warn(f"Version {version!r} has no number to increase: appending '.2'")
        return f"{version}.2"
    last = numbers[-1]
    return version[: last.start()] + str(int(last.group()) + 1) + version[last.end() :]


def version_file(configdir: Path) -> Path:
    return configdir / "mkosi.version"


def next_version(configdir: Path, current: str | None) -> str:
    """The bumped version: ``mkosi.bump``'s output when that script exists, else :func:`bump_version` of
    ``mkosi.version`` (or of ``current``, the configured ``ImageVersion=``)."""
    script = configdir / "mkosi.bump"
    if script.exists():
        if not os.access(script, os.X_OK):
            raise MkosiError(f"{script} is not executable")
        out = run([script], stdout=-1, cwd=configdir, what=str(script)).stdout.decode().strip()
        if not out:
            raise MkosiError(f"{script} printed no version")
        return out.splitlines()[0].strip()
    path = version_file(configdir)
    if path.is_file():
        if os.access(path, os.X_OK):
            raise MkosiError(
                f"{path} is executable: its output is the version, there is nothing to bump",
                hint="use mkosi.bump to compute the next version",
            )
        text = path.read_text().strip()
        if text:
            return bump_version(text)
    if current:
        return bump_version(current)
    raise MkosiError(
        f"No version to bump: {path} does not exist and ImageVersion= is not set",
        hint=f"write the first version to {path}",
    )


def write_version(configdir: Path, version: str) -> Path:
    path = version_file(configdir)
    tmp = path.with_name(".mkosi.version.new")
    tmp.write_text(f"{version}\n")
    tmp.replace(path)
    return path

"""Skeleton, extra and sandbox trees in a real Debian bookworm build (essential set plus one local package).

One configuration uses every form: ``mkosi.skeleton/``, ``mkosi.skeleton.tar``, ``SkeletonTrees=src:target``
(directory and tar), the same for extra trees, and sandbox trees as ``mkosi.sandbox/``,
``mkosi.sandbox.tar`` and ``SandboxTrees=src:target``. The manual (FILES) says of all three directory
forms: "When using the directory, file ownership is not preserved: all files copied will be owned by root.
To preserve ownership, use a tar archive." — the tests check exactly that.

The sandbox trees carry what apt needs for a package that only they make installable: a flat local
repository without a Release file (``mkosi.sandbox/etc/apt/sources.list.d/``), the apt.conf.d snippet that
allows such an insecure repository (``SandboxTrees=aptconf:/etc/apt/apt.conf.d``) and a pin that picks the
older of two versions (``mkosi.sandbox.tar``: ``etc/apt/preferences.d/``). None of these files may reach
the image.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PACKAGE_CACHE, check_mkosi, write

from mkosi.distributions import debian

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(shutil.which("dpkg-scanpackages") is None, reason="needs dpkg-dev"),
    pytest.mark.skipif(not debian.KEYRING.exists(), reason="needs debian-archive-keyring"),
]

UID = 4321

CONF = """\
[Distribution]
Distribution=debian
Release=bookworm

[Output]
Format=directory
Output=image
OutputDirectory=mkosi.output

[Content]
Packages=mkosi-sandbox-test
SkeletonTrees=skel-dir:/opt/skel-target
SkeletonTrees=skel.tar:/opt/skel-tar-target
ExtraTrees=extra-dir:/opt/extra-target
ExtraTrees=extra.tar:/opt/extra-tar-target

[Build]
SandboxTrees=aptconf:/etc/apt/apt.conf.d
"""


def _tar(path: Path, files: dict[str, str], uid: int) -> None:
    with tarfile.open(path, "w") as tar:
        dirs: set[str] = set()
        for name in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 0, 0
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, uid, uid
            tar.addfile(info, io.BytesIO(data))


def _owned_file(path: Path, text: str) -> None:
    write(path, text)
    os.chown(path, UID, UID)
    os.chown(path.parent, UID, UID)


def _deb(repo: Path, version: str) -> None:
    pkg = Path(tempfile.mkdtemp(dir=repo.parent))
    write(
        pkg / "DEBIAN/control",
        "Package: mkosi-sandbox-test\n"
        f"Version: {version}\n"
        "Architecture: all\n"
        "Maintainer: t <t@example.org>\n"
        "Description: only installable through the sandbox trees\n",
    )
    write(pkg / "usr/share/mkosi-sandbox-test/version", f"{version}\n")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", pkg, repo], check=True, capture_output=True)
    shutil.rmtree(pkg)


def _project(d: Path) -> None:
    write(d / "mkosi.conf", CONF)
    # Skeleton trees.
    _owned_file(d / "mkosi.skeleton/etc/skeleton-default", "skeleton default\n")
    _tar(d / "mkosi.skeleton.tar", {"etc/skeleton-tar-default": "skeleton tar\n"}, UID)
    _owned_file(d / "skel-dir/file", "skeleton with target\n")
    _tar(d / "skel.tar", {"file": "skeleton tar with target\n"}, UID)
    # Extra trees.
    _owned_file(d / "mkosi.extra/etc/extra-default", "extra default\n")
    _tar(d / "mkosi.extra.tar", {"etc/extra-tar-default": "extra tar\n"}, UID)
    _owned_file(d / "extra-dir/file", "extra with target\n")
    _tar(d / "extra.tar", {"file": "extra tar with target\n"}, UID)
    # A flat repository with two versions and no Release file.
    repo = d / "repo"
    repo.mkdir()
    _deb(repo, "1.0")
    _deb(repo, "2.0")
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    write(repo / "Packages", packages)
    # Sandbox trees: sources (directory), the pin (tar), the apt.conf.d snippet (SandboxTrees=src:target).
    _owned_file(
        d / "mkosi.sandbox/etc/apt/sources.list.d/local.sources",
        f"Types: deb\nURIs: file:{repo}\nSuites: ./\n",
    )
    _tar(
        d / "mkosi.sandbox.tar",
        {"etc/apt/preferences.d/pin": "Package: mkosi-sandbox-test\nPin: version 1.0\nPin-Priority: 1001\n"},
        UID,
    )
    write(
        d / "aptconf/50-insecure",
        'Acquire::AllowInsecureRepositories "true";\nAPT::Get::AllowUnauthenticated "true";\n',
    )


@pytest.fixture(scope="module")
def image() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mkosi-test-trees-", dir="/var/tmp"))
    try:
        _project(d)
        check_mkosi(f"--package-cache-directory={PACKAGE_CACHE}", "build", cwd=d)
        yield d / "mkosi.output/image"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("etc/skeleton-default", "skeleton default\n"),
        ("opt/skel-target/file", "skeleton with target\n"),
        ("etc/extra-default", "extra default\n"),
        ("opt/extra-target/file", "extra with target\n"),
    ],
)
def test_directory_trees_are_owned_by_root(image: Path, path: str, text: str) -> None:
    assert (image / path).read_text() == text
    assert _owner(image / path) == (0, 0)
    assert _owner((image / path).parent) == (0, 0)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("etc/skeleton-tar-default", "skeleton tar\n"),
        ("opt/skel-tar-target/file", "skeleton tar with target\n"),
        ("etc/extra-tar-default", "extra tar\n"),
        ("opt/extra-tar-target/file", "extra tar with target\n"),
    ],
)
def test_tar_trees_keep_ownership(image: Path, path: str, text: str) -> None:
    assert (image / path).read_text() == text
    assert _owner(image / path) == (UID, UID)


def test_skeleton_before_packages_extra_after(image: Path) -> None:
    # The skeleton's files were there before dpkg ran (it keeps them); extra trees were copied last.
    assert (image / "var/lib/dpkg/status").exists()
    assert (image / "etc/skeleton-default").exists()


def test_sandbox_trees_configure_apt(image: Path) -> None:
    # Installable only with the sandbox trees' source and apt.conf.d; version 1.0 only with their pin.
    assert (image / "usr/share/mkosi-sandbox-test/version").read_text() == "1.0\n"


def test_sandbox_trees_stay_out_of_the_image(image: Path) -> None:
    for path in (
        "etc/apt/sources.list.d/local.sources",
        "etc/apt/preferences.d/pin",
        "etc/apt/apt.conf.d/50-insecure",
    ):
        assert not os.path.lexists(image / path), path

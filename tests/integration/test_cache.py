"""Incremental builds, and the side artifacts of a build: manifests, SHA256SUMS, signatures, nspawn files.

The first part needs neither root nor network: ``bump`` and ``-B`` (mkosi.version), checksums and the
manifest's shape on small fake roots. The second part builds one real Debian image with
``Incremental=yes`` (and a skeleton tree, a prepare script, an extra tree, manifests, checksums and a gpg
signature) twice: the second build reuses the cache, skips the installation and is at least three times as
fast. Then every input of the cache key is changed alone (with ``--incremental=strict``, which fails
instead of rebuilding, so each check takes a second), settings that are no input are changed and the cache
is still used, one input change is built for real, and ``-ff`` removes the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PACKAGE_CACHE, check_mkosi, run_mkosi, write

from mkosi import log
from mkosi.__main__ import main
from mkosi.build import artifacts
from mkosi.build.context import Context, Shared
from mkosi.cli import parse_args
from mkosi.config.images import load
from mkosi.errors import MkosiError

# ---------------------------------------------------------------------------------------------------------
# bump and mkosi.version


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main()`` points mkosi's log at the sys.stderr of the moment (pytest's capture): undo that."""
    handlers = list(log.LOG.handlers)
    yield
    log.LOG.handlers[:] = handlers


@pytest.mark.parametrize(
    "old,new",
    [
        ("1", "2"),
        ("1.9", "1.10"),
        ("0.1.41", "0.1.42"),
        ("2~rc3", "2~rc4"),
        ("v7-beta", "v8-beta"),
        ("x", "x.2"),
    ],
)
def test_bump_version(old: str, new: str) -> None:
    assert artifacts.bump_version(old) == new


def test_bump_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "mkosi.conf", "[Distribution]\nDistribution=debian\nRelease=bookworm\n")
    write(tmp_path / "mkosi.version", "1.9\n")
    assert main(["-C", os.fspath(tmp_path), "bump"]) == 0
    assert (tmp_path / "mkosi.version").read_text() == "1.10\n"
    assert main(["-C", os.fspath(tmp_path), "--json", "summary"]) == 0
    assert '"ImageVersion": "1.10"' in capsys.readouterr().out


def test_bump_script_and_missing_version(tmp_path: Path) -> None:
    write(tmp_path / "mkosi.conf", "[Distribution]\nDistribution=debian\nRelease=bookworm\n")
    with pytest.raises(MkosiError, match="No version to bump"):
        artifacts.next_version(tmp_path, None)
    assert artifacts.next_version(tmp_path, "4") == "5", "ImageVersion= when there is no mkosi.version"
    write(tmp_path / "mkosi.bump", "#!/bin/sh\necho 2024.1\n").chmod(0o755)
    assert main(["-C", os.fspath(tmp_path), "bump"]) == 0
    assert (tmp_path / "mkosi.version").read_text() == "2024.1\n"


def test_auto_bump_writes_the_version_only_after_a_successful_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The build of version 4 fails at once (its output is in the way and -f is not given): 3 stays.
    conf = "[Distribution]\nDistribution=debian\nRelease=bookworm\n[Output]\nFormat=directory\n"
    write(tmp_path / "mkosi.conf", conf)
    write(tmp_path / "mkosi.version", "3\n")
    (tmp_path / "image_4").mkdir()
    assert main(["-C", os.fspath(tmp_path), "-B", "build"]) != 0
    assert "image_4 already exists" in capsys.readouterr().err
    assert (tmp_path / "mkosi.version").read_text() == "3\n"


# ---------------------------------------------------------------------------------------------------------
# Checksums and manifests on fake roots


def fake_context(tmp_path: Path, conf: str) -> Context:
    project = tmp_path / "project"
    write(project / "mkosi.conf", "[Distribution]\nDistribution=debian\nRelease=bookworm\n" + conf)
    args, values, _ = parse_args(["-C", os.fspath(project), "build"])
    config = load(args, values)[-1]
    ctx = Context(args=args, config=config, shared=Shared(tmp_path / "ws"), workspace=tmp_path / "ws/main")
    ctx.root.mkdir(parents=True)
    ctx.staging.mkdir(parents=True)
    return ctx


def test_checksums_cover_every_file_artifact(tmp_path: Path) -> None:
    ctx = fake_context(tmp_path, "[Output]\nFormat=directory\n[Validation]\nChecksum=yes\n")
    for name, text in (("image.manifest", "{}"), ("image.osrelease", "ID=debian\n")):
        write(ctx.staging / name, text)
        ctx.artifacts[name] = ctx.staging / name
    (ctx.staging / "image").mkdir()
    ctx.artifacts["image"] = ctx.staging / "image"
    artifacts.write_checksums(ctx)
    sums = (ctx.staging / "image.SHA256SUMS").read_text().splitlines()
    assert [line.split(" *")[1] for line in sums] == ["image.manifest", "image.osrelease"]
    subprocess.run(["sha256sum", "--quiet", "-c", "image.SHA256SUMS"], cwd=ctx.staging, check=True)


def test_manifest_without_package_database(tmp_path: Path) -> None:
    ctx = fake_context(tmp_path, "[Output]\nImageId=thing\nImageVersion=2\nManifestFormat=json,changelog\n")
    artifacts.write_manifests(ctx)
    data = json.loads((ctx.staging / "thing_2.manifest").read_text())
    assert data == {
        "manifest_version": 1,
        "config": {"name": "thing", "version": "2", "architecture": data["config"]["architecture"]},
        "packages": [],
    }
    assert (ctx.staging / "thing_2.changelog").read_text() == ""


# ---------------------------------------------------------------------------------------------------------
# A real incremental build

integration = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg"),
]


def _mark(f: Any) -> Any:
    for m in integration:
        f = m(f)
    return f


CONF = """\
[Distribution]
Distribution=debian
Release=bookworm

[Output]
Format=directory
ManifestFormat=json,changelog
SplitArtifacts=os-release

[Content]
Packages=systemd
Hostname=cached
CleanPackageMetadata=no

[Validation]
Checksum=yes
Sign=yes
Key={key}

[Build]
CacheDirectory=mkosi.cache
Incremental=yes
PackageCacheDirectory={package_cache}
"""

PREPARE = """\
#!/bin/sh
# Runs once per real installation: the cached tree keeps the one line it wrote.
date +%s.%N >> "$BUILDROOT/etc/prepare-runs"
"""

# Sync scripts may change the build sources: each build appends the $CACHED it was given.
SYNC = """\
#!/bin/sh
echo "$CACHED" >> "$SRCDIR/cached-values"
"""


def last_cached(directory: Path) -> str:
    """The ``$CACHED`` the sync script of the last build was given."""
    return (directory / "cached-values").read_text().split()[-1]


@dataclass
class Project:
    directory: Path
    gnupghome: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    first_seconds: float
    second_seconds: float
    #: $CACHED of the sync script in the first build
    first_cached: str

    @property
    def image(self) -> Path:
        return self.directory / "image"


def remove_outputs(directory: Path) -> None:
    for p in directory.glob("image*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def gpg_key(home: Path) -> str:
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": os.fspath(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "mkosi test <mkosi@example.invalid>",
         "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    work = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-cache-"))
    gnupghome = work / "gnupg"
    old_home = os.environ.get("GNUPGHOME")
    try:
        key = gpg_key(gnupghome)
        os.environ["GNUPGHOME"] = os.fspath(gnupghome)
        d = work / "project"
        write(d / "mkosi.conf", CONF.format(key=key, package_cache=PACKAGE_CACHE))
        write(d / "mkosi.skeleton/etc/skeleton-marker", "skeleton\n")
        write(d / "mkosi.prepare", PREPARE).chmod(0o755)
        # The sync script only in the first build: the timed second one stays as it was.
        write(d / "mkosi.sync", SYNC).chmod(0o755)
        write(d / "mkosi.extra/etc/extra-marker", "extra\n")
        write(d / "mkosi.nspawn", "[Exec]\nBoot=yes\n")
        PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        first = check_mkosi("-f", "build", cwd=d)
        first_seconds = time.monotonic() - start
        first_cached = last_cached(d)
        (d / "mkosi.sync").unlink()
        # Both builds start without outputs in the way (removing a whole tree is no part of the build).
        remove_outputs(d)
        start = time.monotonic()
        second = check_mkosi("-f", "build", cwd=d)
        second_seconds = time.monotonic() - start
        print(
            f"\nIncremental=yes: first build {first_seconds:.1f}s, second build {second_seconds:.1f}s, "
            f"{first_seconds / second_seconds:.1f}x faster"
        )
        yield Project(d, gnupghome, first, second, first_seconds, second_seconds, first_cached)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": os.fspath(gnupghome)})
        if old_home is None:
            os.environ.pop("GNUPGHOME", None)
        else:
            os.environ["GNUPGHOME"] = old_home
        shutil.rmtree(work, ignore_errors=True)


@_mark
def test_first_build_installs_and_saves_the_cache(project: Project) -> None:
    log = project.first.stderr
    assert "No cached image at" in log
    assert "Installing packages" in log and "Running prepare scripts" in log
    assert "Saved the image to the cache" in log
    cache = project.directory / "mkosi.cache/debian~bookworm~x86-64~main.cache"
    assert (cache / "usr/lib/systemd/systemd").exists()
    manifest = json.loads(cache.with_name(cache.name + ".json").read_text())
    assert manifest["inputs"]["packages"] == ["systemd"]
    # Only what came before the cache point is in the cached tree.
    assert (cache / "etc/skeleton-marker").exists() and (cache / "etc/prepare-runs").exists()
    assert not (cache / "etc/extra-marker").exists() and not (cache / "etc/hostname").exists()


@_mark
def test_second_build_reuses_the_cache(project: Project) -> None:
    # How much faster that is (the goal is 3x) is measured by benchmarks/incremental.py, not asserted here:
    # a timed test depends on the mirror's speed during the first build.
    log = project.second.stderr
    assert "Reusing the cached image" in log and "skipping the installation" in log
    for skipped in ("Installing packages", "Running prepare scripts", "Syncing repository metadata", "Saved"):
        assert skipped not in log, f"{skipped!r} in a build from the cache:\n{log}"


@_mark
def test_sync_scripts_are_told_whether_the_cache_is_used(project: Project) -> None:
    """$CACHED: 0 when the first build installs everything, 1 when a build starts from the cache (decided
    before the sync scripts run)."""
    d = project.directory
    assert project.first_cached == "0"
    with changed(d / "mkosi.sync", SYNC, 0o755):
        res = check_mkosi("-f", "build", cwd=d)
    assert "skipping the installation" in res.stderr
    assert last_cached(d) == "1"


@_mark
def test_image_from_the_cache_is_complete(project: Project) -> None:
    image = project.image
    assert (image / "etc/skeleton-marker").read_text() == "skeleton\n"
    assert (image / "etc/extra-marker").read_text() == "extra\n"
    assert (image / "etc/hostname").read_text() == "cached\n"
    assert len((image / "etc/prepare-runs").read_text().splitlines()) == 1, "prepare ran once, when cached"
    assert (image / "usr/lib/systemd/systemd").exists()


@_mark
def test_checksums_verify(project: Project) -> None:
    d = project.directory
    res = subprocess.run(["sha256sum", "-c", "image.SHA256SUMS"], cwd=d, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    names = sorted(line.split(":")[0] for line in res.stdout.splitlines())
    assert names == ["image.changelog", "image.manifest", "image.nspawn", "image.osrelease"]


@_mark
def test_signature_verifies(project: Project) -> None:
    d = project.directory
    res = subprocess.run(
        ["gpg", "--batch", "--verify", "image.SHA256SUMS.gpg", "image.SHA256SUMS"],
        cwd=d, capture_output=True, text=True, env={**os.environ, "GNUPGHOME": os.fspath(project.gnupghome)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Good signature" in res.stderr


@_mark
def test_manifest_lists_every_package_as_dpkg_query_does(project: Project) -> None:
    image = project.image
    out = subprocess.run(
        ["dpkg-query", f"--admindir={image}/var/lib/dpkg", "--show",
         "--showformat=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    expected = sorted(tuple(line.split("\t")[1:]) for line in out.splitlines() if line.startswith("ii"))
    manifest = json.loads((project.directory / "image.manifest").read_text())
    assert manifest["manifest_version"] == 1
    assert manifest["config"] == {"name": "image", "version": "unspecified", "architecture": "x86-64"}
    got = sorted((p["name"], p["version"], p["architecture"]) for p in manifest["packages"])
    assert got == expected
    assert len(got) > 50 and ("systemd", "amd64") in {(n, a) for n, _, a in got}
    assert all(p["type"] == "deb" and p["size"] > 0 for p in manifest["packages"])
    changelog = (project.directory / "image.changelog").read_text()
    version = next(v for n, v, _ in got if n == "systemd")
    assert f"systemd {version} (amd64)" in changelog


@_mark
def test_nspawn_settings_and_os_release_beside_the_image(project: Project) -> None:
    d = project.directory
    assert (d / "image.nspawn").read_text() == "[Exec]\nBoot=yes\n"
    assert "ID=debian" in (d / "image.osrelease").read_text()


@_mark
def test_settings_that_are_no_input_keep_the_cache(project: Project) -> None:
    d = project.directory
    with changed(d / "mkosi.extra/etc/extra-marker", "extra, changed\n"):
        res = check_mkosi(
            "-f",
            "--incremental=strict",
            "--hostname=elsewhere",
            "--output=renamed",
            "--format=tar",
            "build",
            cwd=d,
        )
    assert "skipping the installation" in res.stderr
    assert "Installing packages" not in res.stderr
    assert [p.name for p in d.glob("renamed.tar*")] == ["renamed.tar.zst"]
    for p in d.glob("renamed.*"):
        p.unlink()


@contextlib.contextmanager
def changed(path: Path, text: str, mode: int | None = None) -> Iterator[None]:
    """Change (or create) a file for the block; then restore it and its directory exactly (mtimes too)."""
    parent_st = path.parent.stat()
    old = path.read_bytes() if path.exists() else None
    st = path.stat() if path.exists() else None
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    try:
        yield
    finally:
        if old is None:
            path.unlink()
        else:
            assert st is not None
            path.write_bytes(old)
            path.chmod(st.st_mode & 0o7777)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.utime(path.parent, ns=(parent_st.st_atime_ns, parent_st.st_mtime_ns))


# Each changed alone: a command-line option or a changed file; the name the log gives the change.
CLI_INPUTS = {
    "Packages=": ["--package=less"],
    "Release=": ["--release=trixie"],
    "Distribution=": ["--distribution=ubuntu", "--release=noble"],
    "Mirror=": ["--mirror=http://deb.debian.org/debian"],
    "Snapshot=": ["--snapshot=20240101T000000Z"],
    "Repositories=": ["--repositories=contrib"],
    "WithDocs=": ["--with-docs=no"],
    "WithRecommends=": ["--with-recommends=yes"],
    "BaseTrees=": ["--base-tree={base}"],
}


#: Settings in the default CacheKey= (&d~&r~&a~&I): a change selects another cache altogether.
IN_CACHE_PATH = ("Distribution=", "Release=", "Architecture=")


def assert_rebuild_needed(res: subprocess.CompletedProcess[str], name: str) -> None:
    assert res.returncode != 0, f"the cache was reused although {name} changed:\n{res.stderr}"
    assert "Incremental=strict: no up-to-date cached image" in res.stderr, res.stderr
    if name in IN_CACHE_PATH:
        assert "No cached image at" in res.stderr, res.stderr
    else:
        assert f"{name} changed" in res.stderr or f", {name}" in res.stderr, res.stderr


@_mark
@pytest.mark.parametrize("name", list(CLI_INPUTS))
def test_each_setting_input_invalidates(project: Project, name: str) -> None:
    d = project.directory
    base = write(d.parent / "base/etc/base-marker", "base\n").parent.parent
    options = [o.format(base=base) for o in CLI_INPUTS[name]]
    res = run_mkosi("-f", "--incremental=strict", *options, "build", cwd=d)
    assert_rebuild_needed(res, name)


FILE_INPUTS = {
    "SkeletonTrees= (content)": (
        "SkeletonTrees=",
        "mkosi.skeleton/etc/skeleton-marker",
        "skeleton, changed\n",
    ),
    "SkeletonTrees= (new file)": ("SkeletonTrees=", "mkosi.skeleton/etc/new-file", "new\n"),
    "PrepareScripts=": ("PrepareScripts=", "mkosi.prepare", PREPARE + "true\n"),
}


@_mark
@pytest.mark.parametrize("what", list(FILE_INPUTS))
def test_each_file_input_invalidates(project: Project, what: str) -> None:
    name, rel, text = FILE_INPUTS[what]
    d = project.directory
    with changed(d / rel, text):
        res = run_mkosi("-f", "--incremental=strict", "build", cwd=d)
    assert_rebuild_needed(res, name)


@_mark
def test_changed_input_rebuilds_and_recaches(project: Project) -> None:
    d = project.directory
    with changed(d / "mkosi.sync", SYNC, 0o755):
        res = check_mkosi("-f", "--package=less", "build", cwd=d)
    assert "out of date (Packages= changed)" in res.stderr
    assert "Syncing repository metadata" in res.stderr, (
        "an out-of-date cache resyncs metadata (CacheOnly=auto)"
    )
    assert "Installing packages" in res.stderr and "Saved the image to the cache" in res.stderr
    assert (d / "image/usr/bin/less").exists()
    assert last_cached(d) == "0", "the cache key changed: no cached image is used"
    with changed(d / "mkosi.sync", SYNC, 0o755):
        again = check_mkosi("-f", "--package=less", "--incremental=strict", "build", cwd=d)
    assert "skipping the installation" in again.stderr
    assert last_cached(d) == "1"


@_mark
def test_ff_removes_the_cache(project: Project) -> None:
    d = project.directory
    cache = d / "mkosi.cache/debian~bookworm~x86-64~main.cache"
    assert cache.is_dir()
    res = run_mkosi("-ff", "--package=less", "--incremental=strict", "build", cwd=d)
    assert res.returncode != 0 and "Incremental=strict: no up-to-date cached image" in res.stderr
    assert not cache.exists() and not cache.with_name(cache.name + ".json").exists()
    assert not list((d / "mkosi.cache/metadata").glob("*")), "-ff also drops the synced repository metadata"


# ---------------------------------------------------------------------------------------------------------
# CacheOnly=always: no network at all, packages from the package cache

CACHE_ONLY_CONF = """\
[Distribution]
Distribution=debian
Release=bookworm

[Output]
Format=directory

[Content]
Packages=less

[Build]
CacheDirectory=mkosi.cache
PackageCacheDirectory={package_cache}
"""

#: A package with no dependencies beyond the essential set, not installed by the build above.
NOT_CACHED = "hello"


@pytest.fixture(scope="module")
def cache_only_project() -> Iterator[Path]:
    """A project built once normally: its repository metadata and packages are in the caches."""
    work = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-cache-only-"))
    try:
        d = work / "project"
        write(d / "mkosi.conf", CACHE_ONLY_CONF.format(package_cache=PACKAGE_CACHE))
        PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
        check_mkosi("build", cwd=d)
        yield d
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unreachable_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any HTTP(S) request apt makes goes to a closed port (a download would fail, not succeed quietly)."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


@_mark
def test_cache_only_always_builds_from_the_caches_offline(
    cache_only_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = cache_only_project
    unreachable_network(monkeypatch)
    before = sorted(p.name for p in (PACKAGE_CACHE / "archives").iterdir())
    res = check_mkosi("-f", "--cache-only=always", "build", cwd=d)
    assert "Syncing repository metadata" not in res.stderr
    assert "Using the repository metadata of an earlier build (CacheOnly=always)" in res.stderr
    assert sorted(p.name for p in (PACKAGE_CACHE / "archives").iterdir()) == before, "nothing downloaded"
    assert (d / "image/usr/bin/less").exists()


@_mark
def test_cache_only_always_names_the_package_missing_from_the_cache(
    cache_only_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mkosi.installers import apt

    d = cache_only_project
    # A package cache with exactly what the image has (linked from the shared one): NOT_CACHED is not in it.
    private = d.parent / "package-cache"
    (private / "archives/partial").mkdir(parents=True, exist_ok=True)
    for name, version, arch in apt.installed_packages(d / "image"):
        deb = apt.Package(name, version, arch).filename
        if not (private / "archives" / deb).exists():
            os.link(PACKAGE_CACHE / "archives" / deb, private / "archives" / deb)
    assert not list((private / "archives").glob(f"{NOT_CACHED}_*.deb"))
    unreachable_network(monkeypatch)
    res = run_mkosi(
        "-f", "--cache-only=always", f"--package-cache-directory={private}", f"--package={NOT_CACHED}",
        "build", cwd=d,
    )  # fmt: skip
    assert res.returncode != 0, res.stderr
    errors = [line for line in res.stderr.splitlines() if "CacheOnly=always" in line and "not in" in line]
    assert len(errors) == 1, res.stderr
    assert f": {NOT_CACHED} (" in errors[0] and os.fspath(private) in errors[0]
    assert "Traceback" not in res.stderr and "Failed to fetch" not in res.stderr
    assert not list((private / "archives").glob(f"{NOT_CACHED}_*.deb"))

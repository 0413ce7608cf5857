"""Ubuntu and Kali through ``LocalMirror=``: a local apt repository named like their suites.

Their own mirrors are out of reach here, so the tests build a repository on disk in the layout of theirs
(``dists/<suite>/<component>/binary-amd64/Packages`` plus a ``Release`` file, ``pool/`` with the ``.deb``
files) from the packages of a Debian bookworm image — essential set plus ``less`` — taken from the shared
package cache (a Debian build fills it first, cheaply when the cache is warm). What is checked:

* ``-d ubuntu -r noble`` and ``-d kali`` (its default release) install from that repository, with the
  suite and components our distribution modules name;
* a repository that lacks a component the module uses, or the release asked for, is a one-line error
  naming the repository;
* with key checking on, the distribution's own archive keyring is what apt is pointed at.

Needs root, apt and dpkg, ``dpkg-scanpackages`` (dpkg-dev) and Debian's archive keyring on the host.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PACKAGE_CACHE, check_mkosi, run_mkosi, write

from mkosi.config.model import Distribution
from mkosi.config.settings.distribution import DEFAULT_RELEASES
from mkosi.distributions import debian, kali, ubuntu
from mkosi.installers import apt

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(
        shutil.which("dpkg-scanpackages") is None, reason="needs dpkg-scanpackages (dpkg-dev)"
    ),
    pytest.mark.skipif(not debian.KEYRING.exists(), reason="needs debian-archive-keyring"),
]

#: A small package beyond the essential set.
EXTRA = "less"


@dataclass
class Debs:
    workdir: Path
    files: list[Path]


@pytest.fixture(scope="module")
def debs() -> Iterator[Debs]:
    """The .deb files of a Debian bookworm image with ``less``: what the fake repositories carry."""
    workdir = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-dist-"))
    try:
        project = workdir / "debian"
        project.mkdir()
        check_mkosi(
            "-d", "debian", "-r", "bookworm", "-t", "directory", "-p", EXTRA,
            "-O", workdir / "debian-out",
            "--cache-directory", workdir / "debian-cache",
            "--package-cache-directory", PACKAGE_CACHE,
            "build",
            cwd=project,
        )  # fmt: skip
        installed = apt.installed_packages(workdir / "debian-out/image")
        assert installed, "the Debian image has no dpkg database"
        files = [PACKAGE_CACHE / "archives" / apt.Package(*p).filename for p in installed]
        missing = [f.name for f in files if not f.exists()]
        assert not missing, f"not in the package cache: {missing}"
        shutil.rmtree(workdir / "debian-out")
        yield Debs(workdir, files)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _hashes(repo: Path, suite_dir: Path) -> str:
    files = sorted(p for p in suite_dir.rglob("*") if p.is_file() and p.name != "Release")
    out = []
    for algo, field in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        out.append(f"{field}:")
        for f in files:
            data = f.read_bytes()
            rel = f.relative_to(suite_dir)
            out.append(f" {hashlib.new(algo, data).hexdigest()} {len(data):>10} {rel}")
    return "\n".join(out) + "\n"


def make_repo(path: Path, debs: Debs, suite: str, components: dict[str, bool]) -> Path:
    """A repository at ``path`` with ``suite``; each component carries every package when True, none when
    False."""
    pool = path / "pool/main"
    pool.mkdir(parents=True)
    for f in debs.files:
        try:
            os.link(f, pool / f.name)
        except OSError:
            shutil.copy2(f, pool / f.name)
    index = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "pool/main"],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert index.count("Package: ") == len(debs.files)
    suite_dir = path / "dists" / suite
    for component, full in components.items():
        text = index if full else ""
        d = write(suite_dir / component / "binary-amd64/Packages", text).parent
        (d / "Packages.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    write(
        suite_dir / "Release",
        f"Origin: mkosi-test\nSuite: {suite}\nCodename: {suite}\nArchitectures: amd64\n"
        f"Components: {' '.join(components)}\nDate: Thu, 01 Jan 2026 00:00:00 UTC\n"
        + _hashes(path, suite_dir),
    )
    return path


def build(
    workdir: Path, name: str, *args: str | Path, key_check: bool = False
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """mkosi build of a directory image in ``workdir/name``; returns the result, image and cache dir."""
    project = workdir / name
    project.mkdir()
    out = project / "out"
    cache = project / "cache"
    res = run_mkosi(
        *args, "-t", "directory", "-p", EXTRA,
        f"--repository-key-check={'yes' if key_check else 'no'}",
        "-O", out, "--cache-directory", cache, "--package-cache-directory", project / "packages",
        "build",
        cwd=project,
    )  # fmt: skip
    return res, out / "image", cache


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0, f"mkosi succeeded:\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if "error" in line.lower() or "image main:" in line]
    assert lines, res.stderr
    return lines[-1]


def sources(cache: Path, distribution: str, release: str) -> str:
    return (cache / "metadata" / f"{distribution}~{release}~x86-64/sources.list.d/mkosi.sources").read_text()


@pytest.mark.parametrize(
    ("distribution", "module", "release"),
    [("ubuntu", ubuntu, "noble"), ("kali", kali, None)],
)
def test_local_mirror_install(debs: Debs, distribution: str, module: object, release: str | None) -> None:
    """The image comes from the local repository, through the suite and components of our module."""
    suite = release or DEFAULT_RELEASES[Distribution(distribution)]
    if distribution == "kali":
        assert suite == kali.RELEASE == kali.default_release()
    components = ubuntu.default_components() if module is ubuntu else kali.default_components()
    # The repository carries one more component than the module uses: apt must only be told about ours.
    repo = make_repo(
        debs.workdir / f"{distribution}-repo",
        debs,
        suite,
        {**dict.fromkeys(components, True), "extra": False},
    )
    url = f"file://{repo}"
    release_args = ("-r", release) if release else ()
    res, image, cache = build(
        debs.workdir, distribution, "-d", distribution, *release_args, f"--local-mirror={url}"
    )
    assert res.returncode == 0, res.stderr

    names = {name for name, _, _ in apt.installed_packages(image)}
    assert {EXTRA, "usr-is-merged", "dpkg", "base-files"} <= names
    # Nothing but what the repository offers.
    assert names <= {f.name.split("_", 1)[0] for f in debs.files}

    text = sources(cache, distribution, suite)
    assert f"URIs: copy://{repo}\n" in text
    assert f"Suites: {suite}\n" in text
    assert f"Components: {' '.join(components)}\n" in text
    assert "extra" not in text
    # LocalMirror= is the only repository: no -updates or -security suites, none of the real mirrors.
    assert "-updates" not in text and "-security" not in text
    assert "ubuntu.com" not in text and "kali.org" not in text


def test_local_mirror_missing_component(debs: Debs) -> None:
    repo = make_repo(debs.workdir / "no-main-repo", debs, "noble", {"universe": True})
    url = f"file://{repo}"
    res, _, _ = build(debs.workdir, "no-main", "-d", "ubuntu", "-r", "noble", f"--local-mirror={url}")
    line = error_line(res)
    assert f"LocalMirror={url}" in line
    assert "lacks the component main" in line and "universe" in line


@pytest.mark.parametrize("distribution", ["ubuntu", "kali"])
def test_local_mirror_unknown_release(debs: Debs, distribution: str) -> None:
    repo = make_repo(debs.workdir / f"{distribution}-unknown-repo", debs, "noble", {"main": True})
    url = f"file://{repo}"
    res, _, _ = build(
        debs.workdir, f"{distribution}-unknown", "-d", distribution, "-r", "nosuch", f"--local-mirror={url}"
    )
    line = error_line(res)
    assert f"LocalMirror={url}" in line
    assert f"no {distribution} release 'nosuch'" in line
    assert "noble" in line


@pytest.mark.parametrize(("distribution", "module"), [("ubuntu", ubuntu), ("kali", kali)])
def test_local_mirror_uses_distribution_keyring(debs: Debs, distribution: str, module: object) -> None:
    """With key checking on, the repository is checked against the distribution's archive keyring."""
    keyring = ubuntu.KEYRING if module is ubuntu else kali.KEYRING
    if keyring.exists():
        pytest.skip(f"{keyring} is installed on the host")
    suite = "noble" if module is ubuntu else kali.RELEASE
    repo = make_repo(debs.workdir / f"{distribution}-signed-repo", debs, suite, {"main": True})
    res, _, _ = build(
        debs.workdir,
        f"{distribution}-signed",
        "-d", distribution, "-r", suite, f"--local-mirror=file://{repo}",
        key_check=True,
    )  # fmt: skip
    line = error_line(res)
    assert f"Keyring {keyring}" in line and "not found" in line


def test_repositories_from_modules() -> None:
    """Without LocalMirror=: the mirrors and suites of the modules themselves."""
    repos = ubuntu.repositories("noble")
    assert [(r.url, r.suites) for r in repos] == [
        (ubuntu.MIRROR, ("noble", "noble-updates")),
        (ubuntu.SECURITY_MIRROR, ("noble-security",)),
    ]
    assert all(r.signed_by == (ubuntu.KEYRING,) for r in repos)
    repos = kali.repositories(kali.RELEASE)
    assert [(r.url, r.suites, r.signed_by) for r in repos] == [
        (kali.MIRROR, (kali.RELEASE,), (kali.KEYRING,))
    ]
    (local,) = ubuntu.repositories(
        "noble", local_mirror="file:///srv/mirror", components=("main", "universe")
    )
    assert (local.url, local.suites, local.components) == (
        "copy:///srv/mirror",
        ("noble",),
        ("main", "universe"),
    )


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_local_mirror_signed_with_sandbox_keyring(debs: Debs) -> None:
    """A signed repository, checked against the Ubuntu keyring path that ``SandboxTrees=`` provides."""
    repo = make_repo(debs.workdir / "signed-repo", debs, "noble", {"main": True})
    home = debs.workdir / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": os.fspath(home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode=loopback", "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-gen-key", "mkosi-test", "ed25519", "sign", "1d"], env=env, check=True)
        tree = debs.workdir / "sandbox-tree"
        keyring = tree / ubuntu.KEYRING.relative_to("/")
        keyring.parent.mkdir(parents=True)
        subprocess.run([*gpg, "--output", keyring, "--export", "mkosi-test"], env=env, check=True)
        release = repo / "dists/noble/Release"
        subprocess.run(
            [*gpg, "--clearsign", "--output", release.with_name("InRelease"), release], env=env, check=True
        )
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    res, image, _ = build(
        debs.workdir,
        "signed",
        "-d", "ubuntu", "-r", "noble", f"--local-mirror=file://{repo}", f"--sandbox-tree={tree}",
        key_check=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert EXTRA in {name for name, _, _ in apt.installed_packages(image)}

"""Build the real-world configuration from the corpus: mkosi's own repository (``shared/corpus/mkosi-repo``).

The corpus is used unchanged (copied to a temporary directory below ``/var/tmp`` first, so ``shared/`` is
never written to), with these additions on the command line only:

* ``-d debian -r bookworm``: the corpus' ``mkosi.conf.d/debian.conf`` asks for ``Release=testing``, but the
  mirror's ``testing`` Release files are expired on this machine, so that release cannot be synced. This is
  the one change the corpus needs;
* ``--format=directory``: the corpus' default already, spelled out so the output is a plain directory to
  inspect;
* ``--package-cache-directory=...``: the integration tests' shared warm package cache.

A user who built this would check: the build succeeds; the main image exists; ``mkosi.postinst`` ran (it
masks ``lvm2-monitor.service``); ``mkosi.extra/`` landed, owned by root (the manual: "When using the
directory, file ownership is not preserved: all files copied will be owned by root."); the packages that
``mkosi.conf`` and ``mkosi.conf.d/debian-kali-ubuntu/mkosi.conf`` list unconditionally for Debian are
installed; and ``mkosi.credentials/`` is picked up (``mkosi --json summary`` lists the credentials).
Credentials are passed to the machine at runtime, so they are not expected inside the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PACKAGE_CACHE, check_mkosi

from mkosi.distributions import debian

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(not debian.KEYRING.exists(), reason="needs debian-archive-keyring"),
]

CORPUS = (Path(__file__).parents[2] / "../shared/corpus/mkosi-repo").resolve()

ARGS = (
    "-d",
    "debian",
    "-r",
    "bookworm",
    "--format=directory",
    f"--package-cache-directory={PACKAGE_CACHE}",
)

# Plain package names the corpus asks for on Debian regardless of architecture or format:
# mkosi.conf (all distributions) and mkosi.conf.d/debian-kali-ubuntu/mkosi.conf.
PACKAGES = (
    "binutils",
    "gdb",
    "wireless-regdb",
    "openssh-client",
    "openssh-server",
    "python3",
    "systemd-userdbd",
)


@dataclass(frozen=True)
class Build:
    directory: Path
    seconds: float
    stderr: str

    @property
    def image(self) -> Path:
        return self.directory / "mkosi.output" / "image"


def _make_writable(path: Path) -> None:
    # The corpus is read-only and copytree keeps the modes; make the copy removable.
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            p = Path(root) / d
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o700)
    path.chmod(path.stat().st_mode | 0o700)


@pytest.fixture(scope="module")
def corpus_copy() -> Iterator[Path]:
    if not CORPUS.is_dir():
        pytest.fail(f"the corpus configuration is missing: {CORPUS} (expected shared/corpus/mkosi-repo)")
    tmp = Path(tempfile.mkdtemp(prefix="mkosi-test-corpus-", dir="/var/tmp"))
    repo = tmp / "mkosi-repo"
    shutil.copytree(CORPUS, repo, symlinks=True)
    _make_writable(repo)
    try:
        yield repo
    finally:
        _make_writable(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def build(corpus_copy: Path) -> Build:
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    res = check_mkosi(*ARGS, "build", cwd=corpus_copy, timeout=2400)
    return Build(corpus_copy, time.monotonic() - start, res.stderr)


def test_build_produces_main_image(build: Build) -> None:
    assert build.image.is_dir(), f"no image directory at {build.image}:\n{build.stderr[-4000:]}"
    assert (build.image / "usr/lib/os-release").exists()
    assert "bookworm" in (build.image / "usr/lib/os-release").read_text()


def test_postinst_masked_lvm2_monitor(build: Build) -> None:
    unit = build.image / "etc/systemd/system/lvm2-monitor.service"
    assert unit.is_symlink(), f"{unit} is not a symlink: mkosi.postinst did not run"
    assert os.readlink(unit) == "/dev/null"


def test_extra_tree_landed_owned_by_root(build: Build) -> None:
    extra = CORPUS / "mkosi.extra"
    files = [p for p in extra.rglob("*") if not p.is_dir()]
    assert files, f"the corpus has no files under {extra}"
    for src in files:
        rel = src.relative_to(extra)
        dst = build.image / rel
        assert dst.exists(), f"/{rel} from mkosi.extra/ is missing in the image"
        assert dst.read_bytes() == src.read_bytes(), f"/{rel} differs from mkosi.extra/{rel}"
        st = dst.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), f"/{rel} is owned by {st.st_uid}:{st.st_gid}, not root"


def test_configured_packages_installed(build: Build) -> None:
    res = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={build.image / 'var/lib/dpkg'}",
            "--show",
            "--showformat=${Package} ${db:Status-Status}\\n",
            *PACKAGES,
        ],
        capture_output=True,
        text=True,
    )
    status = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    missing = [p for p in PACKAGES if status.get(p) != "installed"]
    assert not missing, f"not installed in the image: {missing}\n{res.stdout}{res.stderr}"


def test_credentials_in_configuration(corpus_copy: Path) -> None:
    res = check_mkosi(*ARGS, "--json", "summary", cwd=corpus_copy, timeout=300)
    images = {image["Image"]: image for image in json.loads(res.stdout)["Images"]}
    assert "main" in images, f"no main image in the summary: {sorted(images)}"
    names = sorted(c["Name"] for c in images["main"]["Credentials"])
    expected = sorted(p.name for p in (CORPUS / "mkosi.credentials").iterdir())
    assert expected == ["userdb.group.mkosi", "userdb.user.mkosi"]
    assert names == expected

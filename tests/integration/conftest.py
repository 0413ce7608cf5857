"""Shared pieces of the integration tests: running our mkosi, the tutorial's build, and a host kept clean.

* :func:`host_untouched` (autouse) records the host's ``/etc``, ``/usr``, ``/var/lib/dpkg`` and apt state
  once per session and checks after every integration test that none of it changed and that nothing is
  left mounted below the tests' own directories;
* :func:`tutorial` builds the sysext tutorial's step two once per session (base directory, btrfs overlay,
  cpio initrd) with the persistent package cache, so reruns only download what the mirror changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: Downloaded packages (and the test kernel) live here between runs, so a rerun's builds are warm.
CACHE = Path(os.environ.get("MKOSI_TEST_CACHE", "/var/tmp/mkosi-test-cache"))
PACKAGE_CACHE = CACHE / "packages"

# Directories whose modification time (and inode) changes when an entry is added, removed or renamed in
# them: a build that wrote to the host's configuration, programs or package database shows up here.
WATCHED_DIRS = (
    "/etc",
    "/etc/apt",
    "/etc/apt/apt.conf.d",
    "/etc/apt/sources.list.d",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/share",
    "/var/lib/dpkg",
    "/var/lib/dpkg/info",
    "/var/lib/dpkg/updates",
    "/var/lib/apt",
    "/var/lib/apt/lists",
    "/var/cache/apt",
    "/var/cache/apt/archives",
)
# Files whose content must not change.
WATCHED_FILES = ("/var/lib/dpkg/status", "/etc/passwd", "/etc/group", "/etc/shadow")
# Files that must not appear (what a careless bootstrap leaves on the host).
MUST_NOT_EXIST = ("/usr/sbin/policy-rc.d",)
# Where the integration tests build: nothing may stay mounted below these (other mounts on a shared
# machine are none of our business).
OWN_PREFIXES = (os.fspath(CACHE), "/var/tmp/mkosi-test-")


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].replace("\\040", " ") for line in f}


def own_mounts() -> list[str]:
    return sorted(m for m in mount_points() if m.startswith(OWN_PREFIXES))


def host_state() -> dict[str, object]:
    state: dict[str, object] = {}
    for d in WATCHED_DIRS:
        try:
            st = os.lstat(d)
            state[d] = (st.st_ino, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid)
        except FileNotFoundError:
            state[d] = None
    for f in WATCHED_FILES:
        try:
            state[f] = hashlib.sha256(Path(f).read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError):
            state[f] = None
    for f in MUST_NOT_EXIST:
        state[f] = os.path.lexists(f)
    state["mounts below the test directories"] = own_mounts()
    return state


def state_diff(before: dict[str, object], after: dict[str, object]) -> list[str]:
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in before if before.get(k) != after.get(k)]


@pytest.fixture(scope="session")
def host_before() -> dict[str, object]:
    return host_state()


@pytest.fixture(autouse=True)
def host_untouched(request: pytest.FixtureRequest, host_before: dict[str, object]) -> Iterator[None]:
    """After every integration test: the host's /etc, /usr, package database and mounts are as before."""
    yield
    if request.node.get_closest_marker("integration") is None:
        return
    changed = state_diff(host_before, host_state())
    assert not changed, "the host changed during the test:\n" + "\n".join(changed)


# ---------------------------------------------------------------------------------------------- mkosi


def mkosi_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["NO_COLOR"] = "1"
    return env


def mkosi_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mkosi", *(os.fspath(a) for a in args)]


def run_mkosi(*args: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Our mkosi as a user runs it (``python3 -m mkosi``), stdin closed, output captured."""
    return subprocess.run(
        mkosi_command(*args),
        cwd=cwd,
        env=mkosi_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_mkosi(*args: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    res = run_mkosi(*args, cwd=cwd, timeout=timeout)
    assert res.returncode == 0, f"mkosi {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stderr}"
    return res


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------- tutorial

# The files of the sysext tutorial (shared/seed/sysext-tutorial.md), step two, verbatim except that the
# extension is a plain directory until Format=sysext exists.
TUTORIAL_MAIN = """\
[Output]
OutputDirectory=mkosi.output
CacheDirectory=mkosi.cache

[Output]
Format=cpio
Output=initrd

[Content]
MakeInitrd=yes
BaseTrees=%O/base
"""

TUTORIAL_BASE = """\
[Output]
Format=directory

[Content]
CleanPackageMetadata=no
Packages=systemd
         udev
"""

TUTORIAL_BTRFS = """\
[Config]
Dependencies=base

[Output]
Format=directory
Overlay=yes

[Content]
BaseTrees=%O/base
Packages=btrfs-progs
"""


@dataclass(frozen=True)
class Tutorial:
    directory: Path
    seconds: float
    stderr: str

    @property
    def output(self) -> Path:
        return self.directory / "mkosi.output"

    @property
    def base(self) -> Path:
        return self.output / "base"

    @property
    def btrfs(self) -> Path:
        return self.output / "btrfs"

    @property
    def initrd(self) -> Path:
        return self.output / "initrd.cpio.zst"


def write_tutorial(directory: Path) -> None:
    write(directory / "mkosi.conf", TUTORIAL_MAIN)
    write(directory / "mkosi.images/base/mkosi.conf", TUTORIAL_BASE)
    write(directory / "mkosi.images/btrfs/mkosi.conf", TUTORIAL_BTRFS)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """A scratch directory on a real file system (not tmpfs: roots need xattrs, device nodes, owners)."""
    d = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-build-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tutorial(workdir: Path) -> Tutorial:
    """``mkosi -f`` in the tutorial's directory: base (systemd, udev), btrfs overlay, initrd.cpio.zst."""
    if os.geteuid() != 0:
        pytest.skip("building images needs root")
    directory = workdir / "tutorial"
    write_tutorial(directory)
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    res = check_mkosi("-f", f"--package-cache-directory={PACKAGE_CACHE}", cwd=directory)
    seconds = time.monotonic() - start
    print(f"\ntutorial build (base, btrfs, initrd) with the package cache in {PACKAGE_CACHE}: {seconds:.0f}s")
    return Tutorial(directory, seconds, res.stderr)

"""Shared pieces of the integration tests: running our mkosi, the tutorial's builds, and a host kept clean.

* :func:`host_untouched` (autouse) records the host's ``/etc``, ``/usr``, ``/var/lib/dpkg`` and apt state
  once per session and checks after every integration test that none of it changed and that nothing is
  left mounted below the tests' own directories;
* :func:`sysext_tutorial` builds ``examples/sysext`` verbatim (``mkosi genkey``, ``mkosi -f``: base
  directory, signed ``btrfs.raw``, ``image.raw``) once per session for every test that reads it, and
  :func:`sysext_tutorial_step_two` is the separate, explicit second build after the tutorial's step two
  (``initrd.cpio.zst`` with ``btrfs.raw`` beside it), made in a copy so that step one stays as it was.
  Both use the persistent cache (``mkosi.cache`` links to it), so reruns only download what the mirror
  changed; each prints one line with its build time.

:class:`Tutorial` describes either build; :func:`unpack_extension` unpacks an extension's file system.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
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

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

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

# The tutorial's step two (shared/seed/sysext-tutorial.md), as it says to add it to mkosi.conf.
STEP_TWO = """
[Output]
Format=cpio
Output=initrd

[Content]
MakeInitrd=yes
BaseTrees=%O/base
"""


@dataclass(frozen=True)
class Tutorial:
    """One build of the tutorial: its directory, how long ``mkosi -f`` took and what mkosi logged."""

    directory: Path
    seconds: float
    stderr: str

    @property
    def output(self) -> Path:
        return self.directory / "mkosi.output"

    @property
    def base(self) -> Path:
        """The base image, a directory with systemd and udev (every build)."""
        return self.output / "base"

    @property
    def sysext(self) -> Path:
        """The signed extension image (``examples/sysext``, both steps)."""
        return self.output / "btrfs.raw"

    @property
    def image(self) -> Path:
        """The almost empty main image of step one."""
        return self.output / "image.raw"

    @property
    def initrd(self) -> Path:
        """The main image of step two."""
        return self.output / "initrd.cpio.zst"

    @property
    def certificate(self) -> Path:
        """What ``mkosi genkey`` wrote next to the key (``examples/sysext``, both steps)."""
        return self.directory / "mkosi.crt"


def scratch(prefix: str) -> Path:
    """A directory on a real file system, removed when the session ends."""
    d = Path(tempfile.mkdtemp(dir="/var/tmp", prefix=f"mkosi-test-{prefix}-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def copy_example(name: str, prefix: str) -> Path:
    d = scratch(prefix) / name
    shutil.copytree(REPO / "examples" / name, d, symlinks=True)
    if not os.environ.get("MKOSI_TEST_COLD"):
        # The tutorial's CacheDirectory=mkosi.cache, shared with the other integration tests' package cache.
        CACHE.mkdir(parents=True, exist_ok=True)
        (d / "mkosi.cache").symlink_to(CACHE)
    return d


def unpack_extension(image: Path, target: Path) -> Path:
    """The files of an extension image: its root partition (found by sfdisk) extracted by fsck.erofs."""
    table = json.loads(
        subprocess.run(["sfdisk", "--json", image], capture_output=True, text=True, check=True).stdout
    )
    root = table["partitiontable"]["partitions"][0]
    sector = table["partitiontable"].get("sectorsize", 512)
    with open(image, "rb") as f:
        f.seek(root["start"] * sector)
        data = f.read(root["size"] * sector)
    fs = target.with_name(target.name + ".erofs")
    fs.write_bytes(data)
    subprocess.run(["fsck.erofs", f"--extract={target}", fs], capture_output=True, check=True)
    fs.unlink()
    return target


def timed_build(directory: Path, what: str) -> Tutorial:
    start = time.monotonic()
    res = check_mkosi("-f", cwd=directory)
    seconds = time.monotonic() - start
    print(f"\n{what}: {seconds:.0f}s in {directory}")
    return Tutorial(directory, seconds, res.stderr)


@functools.cache
def step_one() -> Tutorial:
    """examples/sysext with ``mkosi genkey`` and ``mkosi -f``, built once per session (a failed build is
    tried again by the next caller)."""
    d = copy_example("sysext", "sysext")
    check_mkosi("genkey", cwd=d)
    return timed_build(d, "sysext tutorial, step one")


def skip_unless_builds_work() -> None:
    if os.geteuid() != 0:
        pytest.skip("building images needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt and dpkg on the host")


@pytest.fixture(scope="session")
def sysext_tutorial() -> Tutorial:
    """examples/sysext, step one: base (systemd, udev), signed btrfs.raw, image.raw; shared, so read only."""
    skip_unless_builds_work()
    return step_one()


@pytest.fixture(scope="session")
def sysext_tutorial_step_two(sysext_tutorial: Tutorial) -> Tutorial:
    """The tutorial's step two, a build of its own: step one's directory copied, STEP_TWO appended to its
    mkosi.conf and ``mkosi -f`` run again: base, btrfs.raw and initrd.cpio.zst."""
    d = scratch("sysext-step2") / "sysext"
    subprocess.run(["cp", "-a", "--reflink=auto", sysext_tutorial.directory, d], check=True)
    with open(d / "mkosi.conf", "a") as f:
        f.write(STEP_TWO)
    return timed_build(d, "sysext tutorial, step two")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """A scratch directory on a real file system (not tmpfs: roots need xattrs, device nodes, owners)."""
    d = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-build-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)

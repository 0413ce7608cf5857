"""Real Debian installs with the apt installer: bootstrap, base trees, errors, and a host left untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mkosi.distributions import debian
from mkosi.errors import MkosiError
from mkosi.installers import apt
from mkosi.sandbox import mounts_below

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(not debian.KEYRING.exists(), reason="needs debian-archive-keyring"),
]

CACHE = Path("/var/tmp/mkosi-test-cache")
RELEASE = "bookworm"
PACKAGES = ["systemd", "udev"]

# Host paths whose content or modification time must not change while we build.
WATCHED = [
    "/etc",
    "/etc/apt",
    "/usr",
    "/usr/bin",
    "/usr/sbin/policy-rc.d",
    "/var/lib/apt",
    "/var/lib/apt/lists",
    "/var/cache/apt",
    "/var/cache/apt/archives",
    "/var/log/apt",
    "/var/lib/dpkg",
]


def host_state() -> dict[str, object]:
    state: dict[str, object] = {}
    for p in WATCHED:
        try:
            st = os.lstat(p)
            state[p] = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            state[p] = None
    state["dpkg-status"] = hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()
    return state


@dataclass
class Built:
    base: apt.AptSetup
    host_before: dict[str, object]
    seconds: float
    workdir: Path


def make_setup(root: Path, state: Path, cache: Path, **kwargs: bool) -> apt.AptSetup:
    return debian.apt_setup(root, release=RELEASE, cache_dir=cache, state_dir=state, **kwargs)


def assert_unmounted(path: Path) -> None:
    assert mounts_below(path) == [], f"mounts left below {path}"


@pytest.fixture(scope="session")
def built() -> Iterator[Built]:
    CACHE.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-apt-"))
    before = host_state()
    setup = make_setup(workdir / "base", workdir / "state", CACHE / "packages")
    start = time.monotonic()
    apt.sync(setup)
    apt.install(setup, PACKAGES, bootstrap=True)
    seconds = time.monotonic() - start
    assert_unmounted(workdir)
    print(f"\nbootstrap ({RELEASE}, {' '.join(PACKAGES)}) with the shared cache: {seconds:.1f}s")
    try:
        yield Built(setup, before, seconds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def second(built: Built) -> apt.AptSetup:
    """A copy of the base root with btrfs-progs installed on top (like a base tree)."""
    root = built.workdir / "second"
    subprocess.run(["cp", "-a", "--reflink=auto", built.base.root, root], check=True)
    setup = replace(built.base, root=root)
    apt.install(setup, ["btrfs-progs"])
    assert_unmounted(built.workdir)
    return setup


def test_bootstrap_installs_requested_packages(built: Built) -> None:
    root = built.base.root
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "systemd", "udev"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert {line.split("\t")[0] for line in out.splitlines()} == {"systemd", "udev"}
    pkgs = apt.installed_packages(root)
    names = {name for name, _, _ in pkgs}
    print(f"\n{len(pkgs)} packages installed")
    assert {"systemd", "udev", "dpkg", "bash", "usr-is-merged"} <= names
    assert all(arch in ("amd64", "all") for _, _, arch in pkgs)
    # Everything is configured: nothing half-installed.
    status = (root / "var/lib/dpkg/status").read_text()
    assert "half-" not in status and "unpacked" not in status


def test_bootstrap_layout(built: Built) -> None:
    root = built.base.root
    for d in ("bin", "sbin", "lib", "lib64"):
        assert (root / d).is_symlink() and os.readlink(root / d) == f"usr/{d}"
    assert (root / "usr/bin/bash").exists()
    assert (root / "usr/lib/os-release").exists()
    # Nothing of the build machinery stays behind in the image.
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))


def test_systemd_runs_in_nspawn(built: Built) -> None:
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn (systemd-container) not installed")
    res = subprocess.run(
        ["systemd-nspawn", "--register=no", "--keep-unit", "--pipe", "-q", "-D", built.base.root,
         "systemctl", "--version"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("systemd ")


def test_install_on_top_of_existing_root(built: Built, second: apt.AptSetup) -> None:
    assert (second.root / "usr/bin/btrfs").exists()
    names = {name for name, _, _ in apt.installed_packages(second.root)}
    assert "btrfs-progs" in names and "systemd" in names
    # The base root is untouched.
    assert not (built.base.root / "usr/bin/btrfs").exists()
    # apt recorded btrfs-progs as wanted, not as pulled in automatically.
    states = (second.root / "var/lib/apt/extended_states").read_text().split("\n\n")
    assert not [s for s in states if "Package: btrfs-progs\n" in s and "Auto-Installed: 1" in s]


def test_unknown_package_is_named(built: Built, second: apt.AptSetup) -> None:
    with pytest.raises(MkosiError) as e:
        apt.install(second, ["no-such-package-mkosi-test"])
    assert "no-such-package-mkosi-test" in str(e.value)
    assert "\n" not in str(e.value)
    assert_unmounted(built.workdir)


def test_unknown_package_during_bootstrap(built: Built) -> None:
    setup = replace(built.base, root=built.workdir / "doomed")
    with pytest.raises(MkosiError) as e:
        apt.install(setup, ["systemd", "no-such-package-mkosi-test"], bootstrap=True)
    assert "no-such-package-mkosi-test" in str(e.value)
    assert_unmounted(built.workdir)


def test_unreachable_mirror_names_repository(built: Built) -> None:
    # Nothing listens on port 9 of the loopback address: the connection is refused at once.
    url = "http://127.0.0.1:9/debian"
    setup = debian.apt_setup(
        built.workdir / "unreachable",
        release=RELEASE,
        cache_dir=built.workdir / "unreachable-cache",
        state_dir=built.workdir / "unreachable-state",
        local_mirror=url,
    )
    with pytest.raises(MkosiError) as e:
        apt.sync(setup)
    assert "127.0.0.1:9" in str(e.value)
    assert "\n" not in str(e.value)


def test_without_docs(built: Built, second: apt.AptSetup) -> None:
    setup = replace(second, with_docs=False)
    apt.install(setup, ["less"])
    assert (second.root / "usr/bin/less").exists()
    assert (second.root / "usr/share/doc/less/copyright").exists()
    assert not list((second.root / "usr/share/man/man1").glob("less*"))
    # The base system installed with docs keeps them.
    assert (second.root / "usr/share/man/man1/btrfs.8.gz").exists() or list(
        (second.root / "usr/share/man").rglob("btrfs*")
    )
    assert_unmounted(built.workdir)


def test_remove_and_clean(built: Built, second: apt.AptSetup) -> None:
    apt.remove(second, ["btrfs-progs", "not-installed-anyway"])
    assert not (second.root / "usr/bin/btrfs").exists()
    names = {name for name, _, _ in apt.installed_packages(second.root)}
    assert "btrfs-progs" not in names and "systemd" in names
    assert_unmounted(built.workdir)

    apt.clean_metadata(second.root)
    assert not (second.root / "var/cache/apt").exists()
    assert not (second.root / "var/lib/apt/lists").exists()
    assert (second.root / "var/lib/dpkg/status").exists()
    apt.clean_metadata(second.root, dpkg=True)
    assert not (second.root / "var/lib/dpkg").exists()
    assert apt.installed_packages(second.root) == []


def test_cold_and_warm_bootstrap_times(built: Built) -> None:
    """A bootstrap with an empty package cache, then one with that cache filled (printed, not asserted)."""
    cold_cache = built.workdir / "cold-cache"
    times = []
    for name in ("cold", "warm"):
        setup = make_setup(built.workdir / f"{name}-root", built.workdir / f"{name}-state", cold_cache)
        start = time.monotonic()
        apt.sync(setup)
        apt.install(setup, PACKAGES, bootstrap=True)
        times.append(time.monotonic() - start)
        count = len(apt.installed_packages(setup.root))
        assert_unmounted(built.workdir)
        shutil.rmtree(setup.root)
    print(f"\nbootstrap {RELEASE} + {' '.join(PACKAGES)}: {count} packages, "
          f"cold {times[0]:.1f}s, warm {times[1]:.1f}s (metadata synced in both)")  # fmt: skip


def test_host_unchanged(built: Built, second: apt.AptSetup) -> None:
    """Runs last (file order): nothing outside the roots, caches and workspace changed on the host."""
    assert host_state() == built.host_before
    assert_unmounted(built.workdir)

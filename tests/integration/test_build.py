"""Whole builds with ``python3 -m mkosi`` against Debian's mirror: the sysext tutorial and its failure modes.

The tutorial (examples/sysext: base directory, btrfs.raw, image.raw) is built once per session by the
``sysext_tutorial`` fixture in conftest.py, its step two (initrd.cpio.zst) by ``sysext_tutorial_step_two``;
their artifacts are checked with independent consumers: dpkg-query, systemd-nspawn, fsck.erofs, GNU tar,
cpio and Debian's kernel under qemu. Every test here is also checked by conftest.py's
``host_untouched`` fixture: the host's /etc, /usr, package database and mount table stay as they were.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    CACHE,
    PACKAGE_CACHE,
    Tutorial,
    check_mkosi,
    mkosi_command,
    mkosi_env,
    mount_points,
    run_mkosi,
    unpack_extension,
    write,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
]

BOOKWORM_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
BOOT_TIMEOUT = 90


def leftovers(directory: Path) -> list[str]:
    """Workspaces anywhere below ``directory`` (there must be none once mkosi has exited)."""
    return glob.glob(f"{directory}/**/.mkosi-workspace-*", recursive=True)


def mounts_below(directory: Path) -> list[str]:
    prefix = os.fspath(directory.resolve())
    return sorted(m for m in mount_points() if m == prefix or m.startswith(prefix + "/"))


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """mkosi failed with a non-zero exit code and said why in one line near the end, without a traceback."""
    assert res.returncode != 0, f"mkosi succeeded:\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    assert "internal error" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    matching = [line for line in lines if all(n in line for n in needles)]
    assert len(matching) == 1, f"expected one line naming {needles}:\n{res.stderr}"
    # The error is the last line, or the one before its hint.
    assert matching[0] in lines[-2:], res.stderr
    return matching[0]


# ---------------------------------------------------------------------------------------------- base


def test_tutorial_writes_all_artifacts(sysext_tutorial_step_two: Tutorial) -> None:
    tutorial = sysext_tutorial_step_two
    assert tutorial.base.is_dir()
    assert tutorial.sysext.is_file()
    assert tutorial.initrd.is_file()
    assert leftovers(tutorial.directory) == []
    assert mounts_below(tutorial.directory) == []
    # Each image is announced, and published only at the end.
    for image in ("base", "btrfs", "main"):
        assert f"Building image {image}" in tutorial.stderr
    assert "Traceback" not in tutorial.stderr


def test_base_has_systemd_and_udev(sysext_tutorial: Tutorial) -> None:
    tutorial = sysext_tutorial
    res = subprocess.run(
        ["dpkg-query", f"--admindir={tutorial.base}/var/lib/dpkg", "--show",
         "--showformat=${db:Status-Abbrev} ${Package}\n", "systemd", "udev"],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    assert sorted(res.stdout.split("\n")[:-1]) == ["ii  systemd", "ii  udev"]
    listing = subprocess.run(
        ["dpkg-query", f"--admindir={tutorial.base}/var/lib/dpkg", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split()[1].split(":")[0] for line in listing.splitlines() if line.startswith("ii ")}
    assert {"systemd", "udev", "dpkg", "bash", "libc6"} <= installed
    # No half-configured package: every entry is "ii".
    assert not [line for line in listing.splitlines() if line[:2] in ("iU", "iF", "iH", "iW", "iT")]
    assert (tutorial.base / "usr/lib/systemd/systemd").is_file()
    # Nothing of the build machinery stays in the image.
    assert not (tutorial.base / "usr/sbin/policy-rc.d").exists()
    assert not list((tutorial.base / "var/cache/apt/archives").glob("*.deb"))


def test_base_runs_systemctl_in_nspawn(sysext_tutorial: Tutorial) -> None:
    tutorial = sysext_tutorial
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn (systemd-container) is not installed")
    res = subprocess.run(
        ["systemd-nspawn", "--register=no", "--keep-unit", "--pipe", "--quiet", "--read-only",
         "-D", tutorial.base, "systemctl", "--version"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("systemd "), res.stdout
    # It is the image's systemd that ran, not the host's.
    version = subprocess.run(
        ["dpkg-query", f"--admindir={tutorial.base}/var/lib/dpkg", "--show", "--showformat=${Version}",
         "systemd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    assert version.startswith(first.split()[1]), (first, version)


# ---------------------------------------------------------------------------------------------- overlay


def test_overlay_holds_only_what_the_base_lacks(sysext_tutorial: Tutorial, workdir: Path) -> None:
    tutorial = sysext_tutorial
    btrfs = unpack_extension(tutorial.sysext, workdir / "btrfs")
    assert (btrfs / "usr/bin/btrfs").is_file()
    assert os.access(btrfs / "usr/bin/btrfs", os.X_OK)
    for path in ("usr/bin/systemctl", "usr/lib/systemd/systemd", "usr/bin/bash", "etc/os-release"):
        assert not (btrfs / path).exists(), path
        assert (tutorial.base / path).exists() or (tutorial.base / path).is_symlink(), path
    # Much smaller than the base it sits on.
    files = [p for p in btrfs.rglob("*") if p.is_file() and not p.is_symlink()]
    assert 0 < len(files) < 200, len(files)
    # The base is not touched by the image built on top of it.
    assert not (tutorial.base / "usr/bin/btrfs").exists()


# ---------------------------------------------------------------------------------------------- initrd


def cpio_members(archive: Path) -> list[str]:
    zstd = subprocess.Popen(["zstd", "-dc", archive], stdout=subprocess.PIPE)
    res = subprocess.run(["cpio", "-it", "--quiet"], stdin=zstd.stdout, capture_output=True, text=True)
    assert zstd.wait() == 0
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_initrd_is_a_zstd_cpio_of_the_base(sysext_tutorial_step_two: Tutorial) -> None:
    tutorial = sysext_tutorial_step_two
    assert tutorial.initrd.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    members = {m.removeprefix("./") for m in cpio_members(tutorial.initrd)}
    wanted = ("init", "etc/initrd-release", "usr/lib/systemd/systemd", "usr/bin/systemctl", "usr/bin/bash")
    for path in wanted:
        assert path in members, path
    assert "usr/bin/btrfs" not in members  # the extension's file stays in the extension
    # Everything of the base tree is in the initrd (package manager caches may be cleaned on the way).
    base = {os.fspath(p.relative_to(tutorial.base)) for p in tutorial.base.rglob("*")}
    missing = sorted(p for p in base - members if not p.startswith(("var/cache/apt", "var/lib/apt")))
    assert not missing, missing[:20]


def kernel_apt(state: Path) -> dict[str, str]:
    """A private apt (configuration, lists and status under ``state``) that reads nothing of the host's."""
    for d in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
              "etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
              "var/lib/dpkg", "var/log/apt", "debs"):  # fmt: skip
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "var/lib/dpkg/status").touch()
    write(
        state / "apt.conf",
        f'Dir "{state}/";\n'
        f'Dir::State::status "{state}/var/lib/dpkg/status";\n'
        'Dir::Etc::Trusted "/dev/null";\n'
        'APT::Architecture "amd64";\n'
        'APT::Architectures { "amd64"; };\n'
        'Acquire::Languages "none";\n'
        'APT::Sandbox::User "root";\n',
    )
    write(
        state / "etc/apt/sources.list",
        f"deb [signed-by={KEYRING}] {BOOKWORM_MIRROR} bookworm main\n"
        f"deb [signed-by={KEYRING}] {BOOKWORM_MIRROR} bookworm-updates main\n",
    )
    env = dict(os.environ)
    env.update(APT_CONFIG=os.fspath(state / "apt.conf"), DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    return env


def fetch_kernel_deb(state: Path) -> Path:
    """The newest linux-image-amd64 flavour package, downloaded once into the test cache."""
    env = kernel_apt(state)
    debs = state / "debs"
    update = subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, text=True)
    cached = sorted(debs.glob("linux-image-*-amd64_*.deb"))
    if update.returncode != 0:
        if cached:
            return cached[-1]
        pytest.fail(f"apt-get update for the kernel failed:\n{update.stderr}")
    depends = subprocess.run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", "linux-image-amd64"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flavours = [line.split(":", 1)[1].strip() for line in depends.splitlines() if "Depends:" in line]
    package = next(p for p in flavours if p.startswith("linux-image-"))
    existing = sorted(debs.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    subprocess.run(["apt-get", "-q", "download", package], env=env, cwd=debs, check=True, capture_output=True)
    for old in cached:
        old.unlink()
    return sorted(debs.glob(f"{package}_*.deb"))[-1]


@pytest.fixture(scope="session")
def vmlinuz(workdir: Path) -> Path:
    deb = fetch_kernel_deb(CACHE / "kernel")
    target = workdir / "kernel"
    subprocess.run(["dpkg", "-x", deb, target], check=True)
    kernels = sorted((target / "boot").glob("vmlinuz-*"))
    assert kernels, f"no kernel in {deb}"
    return kernels[-1]


def boot_until(cmd: list[str], needles: tuple[str, ...], timeout: float, log: Path) -> tuple[bool, float]:
    """Run ``cmd`` until all ``needles`` appeared in its output or ``timeout`` passed; then kill it."""
    seen: list[str] = []
    found = threading.Event()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            seen.append(raw.decode(errors="replace"))
            text = "".join(seen)
            if all(n in text for n in needles):
                found.set()
        found.set()  # qemu exited: stop waiting

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        found.wait(timeout)
    finally:
        proc.kill()
        proc.wait()
        thread.join(10)
        log.write_text("".join(seen))
    text = "".join(seen)
    return all(n in text for n in needles), time.monotonic() - start


def test_initrd_boots_in_qemu(sysext_tutorial_step_two: Tutorial, vmlinuz: Path, workdir: Path) -> None:
    tutorial = sysext_tutorial_step_two
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 (qemu-system-x86) is not installed")
    cmd = [
        qemu, "-accel", "tcg", "-m", "1536", "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-kernel", os.fspath(vmlinuz), "-initrd", os.fspath(tutorial.initrd),
        "-append", "console=ttyS0 panic=-1 systemd.log_color=0",
    ]  # fmt: skip
    log = workdir / "console.log"
    ok, seconds = boot_until(cmd, ("Running in initrd", "Welcome to"), BOOT_TIMEOUT, log)
    console = log.read_text()
    tail = "\n".join(console.splitlines()[-30:])
    assert ok, f"systemd did not announce the initrd within {BOOT_TIMEOUT}s; the console ends with:\n{tail}"
    welcome = next(line for line in console.splitlines() if "Welcome to" in line)
    assert "Debian" in welcome, welcome
    assert "Kernel panic" not in console
    print(f"\ninitrd booted to systemd in {seconds:.0f}s under TCG: {welcome.strip()}")


# ---------------------------------------------------------------------------------------------- tar


def make_special_tree(tree: Path) -> None:
    """Entries whose metadata an archiver can get wrong: setuid, foreign owners, links, fifos, odd names."""
    d = tree / "opt/special"
    d.mkdir(parents=True)
    (d / "setuid").write_text("#!/bin/sh\n")
    os.chmod(d / "setuid", 0o4755)
    (d / "owned").write_text("owned by someone else\n")
    os.chown(d / "owned", 1234, 5678)
    os.chmod(d / "owned", 0o640)
    (d / "private").mkdir()
    os.chown(d / "private", 42, 42)
    os.chmod(d / "private", 0o700)
    (d / "sticky").mkdir()
    os.chmod(d / "sticky", 0o1777)
    (d / "link").symlink_to("../special/owned")
    (d / "dangling").symlink_to("/does/not/exist")
    (d / "hard1").write_text("two names, one inode\n")
    os.link(d / "hard1", d / "hard2")
    os.mkfifo(d / "fifo", 0o600)
    (d / "no-permissions").write_text("")
    os.chmod(d / "no-permissions", 0)
    (d / "name with spaces ü").write_text("unicode\n")
    (d / "empty-dir").mkdir(mode=0o751)
    os.chmod(d / "empty-dir", 0o751)


Entry = tuple[str, int, int, int, object]


def directory_listing(root: Path) -> dict[str, Entry]:
    """./path → (kind, permission bits, uid, gid, symlink target or size) for every entry, root included."""
    entries: dict[str, Entry] = {}

    def add(path: Path, rel: str) -> None:
        st = os.lstat(path)
        kind = {
            stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
            stat.S_IFCHR: "chr", stat.S_IFBLK: "blk", stat.S_IFSOCK: "socket",
        }[stat.S_IFMT(st.st_mode)]  # fmt: skip
        extra: object = None
        if kind == "symlink":
            extra = os.readlink(path)
        elif kind == "file":
            extra = st.st_size
        elif kind in ("chr", "blk"):
            extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
        entries[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)

    add(root, ".")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            add(path, "./" + os.fspath(path.relative_to(root)))
    return entries


def tar_listing(archive: Path, scratch: Path) -> dict[str, Entry]:
    if archive.name.endswith(".zst"):
        plain = scratch / archive.name.removesuffix(".zst")
        with plain.open("wb") as f:
            subprocess.run(["zstd", "-dc", archive], stdout=f, check=True)
        archive = plain
    entries: dict[str, Entry] = {}
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        by_name = {m.name: m for m in members}
        for m in members:
            rel = os.path.normpath(m.name)
            rel = "." if rel == "." else "./" + rel.removeprefix("./")
            extra: object = None
            if m.issym():
                kind, extra = "symlink", m.linkname
            elif m.islnk():  # a hard link to an earlier member: the same file under another name
                kind, extra = "file", by_name[m.linkname].size
            elif m.isreg():
                kind, extra = "file", m.size
            elif m.isdir():
                kind = "dir"
            elif m.isfifo():
                kind = "fifo"
            elif m.ischr() or m.isblk():
                kind, extra = ("chr" if m.ischr() else "blk"), (m.devmajor, m.devminor)
            else:
                kind = f"type {m.type!r}"
            entries[rel] = (kind, m.mode & 0o7777, m.uid, m.gid, extra)
    return entries


def test_tar_lists_what_the_directory_holds(sysext_tutorial: Tutorial, workdir: Path) -> None:
    tutorial = sysext_tutorial
    project = workdir / "tar-vs-directory"
    make_special_tree(project / "extra")
    # A tar archive: directory extra trees are copied root-owned (as the manual says); tar keeps owners.
    subprocess.run(
        [
            "tar",
            "--create",
            "--numeric-owner",
            "--file",
            project / "extra.tar",
            "--directory",
            project / "extra",
            ".",
        ],
        check=True,
    )
    write(
        project / "mkosi.conf",
        f"[Output]\nOutputDirectory=out\nOutput=image\n\n"
        f"[Content]\nBaseTrees={tutorial.base}\nExtraTrees=extra.tar\n",
    )
    check_mkosi("-f", "--format=directory", cwd=project)
    check_mkosi("-f", "--format=tar", cwd=project)
    directory = project / "out/image"
    archives = sorted((project / "out").glob("image.tar*"))
    assert len(archives) == 1, archives

    in_dir = directory_listing(directory)
    in_tar = tar_listing(archives[0], workdir)
    only_dir = sorted(in_dir.keys() - in_tar.keys())
    only_tar = sorted(in_tar.keys() - in_dir.keys())
    assert not only_dir and not only_tar, (
        f"only in the directory: {only_dir[:20]}; only in tar: {only_tar[:20]}"
    )
    differ = [(p, in_dir[p], in_tar[p]) for p in sorted(in_dir) if in_dir[p] != in_tar[p]]
    assert not differ, "\n".join(f"{p}: directory {d} tar {t}" for p, d, t in differ[:20])
    # The special entries made it through as such (so the comparison above covered them).
    special = {p: e for p, e in in_dir.items() if p.startswith("./opt/special/")}
    assert special["./opt/special/setuid"][:2] == ("file", 0o4755)
    assert special["./opt/special/owned"][1:4] == (0o640, 1234, 5678)
    assert special["./opt/special/private"][:4] == ("dir", 0o700, 42, 42)
    assert special["./opt/special/sticky"][:2] == ("dir", 0o1777)
    assert special["./opt/special/fifo"][0] == "fifo"
    assert special["./opt/special/link"][0::4] == ("symlink", "../special/owned")
    assert os.stat(directory / "opt/special/hard1").st_ino == os.stat(directory / "opt/special/hard2").st_ino
    assert len(in_dir) > 5000  # the whole base came along


def test_format_none_runs_build_scripts_and_stops(sysext_tutorial: Tutorial, workdir: Path) -> None:
    """Format=none: an image with build scripts runs them and nothing after; one without them is skipped."""
    tutorial = sysext_tutorial
    project = workdir / "format-none"
    # Build, post-installation and finalize scripts see $BUILDDIR, post-output scripts $OUTPUTDIR.
    for name in ("build", "postinst", "finalize", "postoutput"):
        script = write(
            project / f"{name}.sh", f'#!/bin/sh\nset -e\ntouch "${{BUILDDIR:-$OUTPUTDIR}}/ran-{name}"\n'
        )
        script.chmod(0o755)
    (project / "build").mkdir()
    write(
        project / "mkosi.conf",
        f"[Output]\nOutputDirectory=out\nFormat=none\n\n[Build]\nBuildDirectory=build\n\n"
        f"[Content]\nBaseTrees={tutorial.base}\nBuildScripts=build.sh\nPostInstallationScripts=postinst.sh\n"
        "FinalizeScripts=finalize.sh\nPostOutputScripts=postoutput.sh\n",
    )
    res = check_mkosi("-f", cwd=project)
    ran = sorted(p.name for p in [*(project / "build").rglob("ran-*"), *(project / "out").rglob("ran-*")])
    assert ran == ["ran-build"], res.stderr
    assert "Finishing: Format=none" in res.stderr
    assert not any((project / "out").iterdir()) if (project / "out").exists() else True

    write(
        project / "mkosi.conf",
        f"[Output]\nOutputDirectory=out\nFormat=none\n\n[Content]\nBaseTrees={tutorial.base}\n",
    )
    res = check_mkosi("-f", cwd=project)
    assert "Skipping image main: Format=none and no build scripts" in res.stderr
    assert "Installing base trees" not in res.stderr


# ---------------------------------------------------------------------------------------------- bad input


def simple_project(directory: Path, conf: str) -> Path:
    write(directory / "mkosi.conf", conf)
    return directory


def assert_nothing_written(project: Path, output: Path) -> None:
    left = sorted(p.name for p in output.iterdir()) if output.exists() else []
    assert left == [], f"{output} holds {left}"
    assert leftovers(project) == []
    assert mounts_below(project) == []


def test_missing_base_tree(workdir: Path) -> None:
    project = simple_project(
        workdir / "missing-base",
        "[Output]\nFormat=directory\nOutputDirectory=out\n\n[Content]\nBaseTrees=/nonexistent/mkosi-base\n",
    )
    res = run_mkosi("-f", cwd=project)
    assert_one_line_error(res, "/nonexistent/mkosi-base")
    assert_nothing_written(project, project / "out")


def test_unknown_package(workdir: Path) -> None:
    project = simple_project(
        workdir / "unknown-package",
        "[Output]\nFormat=directory\nOutputDirectory=out\n\n"
        "[Content]\nPackages=systemd\n         no-such-package-mkosi-test\n",
    )
    res = run_mkosi("-f", f"--package-cache-directory={PACKAGE_CACHE}", cwd=project)
    line = assert_one_line_error(res, "no-such-package-mkosi-test")
    assert "not found" in line
    assert_nothing_written(project, project / "out")


def test_unreachable_mirror(workdir: Path) -> None:
    # Nothing listens on port 9 of the loopback address: the connection is refused at once.
    project = simple_project(
        workdir / "unreachable-mirror",
        "[Distribution]\nMirror=http://127.0.0.1:9/debian\n\n"
        "[Output]\nFormat=directory\nOutputDirectory=out\n\n[Content]\nPackages=systemd\n",
    )
    res = run_mkosi("-f", f"--package-cache-directory={workdir / 'unreachable-cache'}", cwd=project)
    assert_one_line_error(res, "127.0.0.1:9")
    assert_nothing_written(project, project / "out")


def test_unwritable_output_directory(workdir: Path) -> None:
    project = simple_project(
        workdir / "read-only-output",
        "[Output]\nFormat=directory\nOutputDirectory=out\n\n[Content]\nPackages=systemd\n",
    )
    out = project / "out"
    out.mkdir()
    # A read-only bind mount of the output directory, in a private mount namespace of mkosi's own: root
    # can write into any directory, but not on a read-only mount (and nothing is left mounted here).
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", out,
         *mkosi_command("-f", f"--package-cache-directory={PACKAGE_CACHE}")],
        cwd=project,
        env=mkosi_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert_one_line_error(res, str(out))
    assert_nothing_written(project, out)


def test_second_build_without_force(sysext_tutorial: Tutorial) -> None:
    tutorial = sysext_tutorial
    before = {p.name: os.lstat(p) for p in tutorial.output.iterdir()}
    res = run_mkosi(cwd=tutorial.directory)
    assert_one_line_error(res, "already exists")
    after = {p.name: os.lstat(p) for p in tutorial.output.iterdir()}
    assert after.keys() == before.keys()
    for name, st in before.items():
        assert (after[name].st_ino, after[name].st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
    assert leftovers(tutorial.directory) == []


# ---------------------------------------------------------------------------------------------- SIGINT


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "mkosi exited before the install got going"
        assert time.monotonic() < deadline, "the install did not start in time"
        time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def interrupted_project(workdir: Path) -> Iterator[Path]:
    project = workdir / "interrupted"
    yield project
    shutil.rmtree(project, ignore_errors=True)


def test_sigint_during_install(interrupted_project: Path) -> None:
    project = simple_project(
        interrupted_project,
        "[Output]\nFormat=directory\nOutput=base\nOutputDirectory=mkosi.output\n\n"
        "[Content]\nPackages=systemd\n         udev\n",
    )
    stderr = (project / "stderr.log").open("w+")
    proc = subprocess.Popen(
        mkosi_command("-f", f"--package-cache-directory={PACKAGE_CACHE}"),
        cwd=project,
        env=mkosi_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    try:

        def installing() -> bool:
            # dpkg has begun recording installed packages in the root being built.
            statuses = glob.glob(f"{project}/mkosi.output/.mkosi-workspace-*/*/root/var/lib/dpkg/status")
            return any(os.path.getsize(s) > 0 for s in statuses if os.path.exists(s))

        wait_for(installing, proc, timeout=600)
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group (mkosi, apt, dpkg, ...).
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr.seek(0)
    log = stderr.read()
    assert code != 0, log
    assert code == 130, log
    assert "Traceback" not in log, log
    assert log.splitlines()[-1].endswith("Interrupted"), log
    # Nothing keeps running, nothing stays mounted, nothing was published, and the workspace is gone.
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(proc.pid), "processes of the interrupted build are still running"
    assert mounts_below(project) == []
    out = project / "mkosi.output"
    assert not (out / "base").exists()
    assert leftovers(project) == []
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []

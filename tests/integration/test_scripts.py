"""User scripts and package settings in real builds on top of a Debian bookworm base.

One configuration uses every kind of build script (sync, prepare, build, postinst, finalize, postoutput, each
also as ``.chroot`` where that exists), ``BuildPackages=``, ``VolatilePackages=`` built by a build script into
``$PACKAGEDIR``, ``mkosi.packages/``, ``RemovePackages=``, ``BuildSources=``, ``BuildDirectory=``,
``Environment=`` and ``EnvironmentFiles=``. Every script records its kind, arguments and environment in
``$SRCDIR/log/``; the tests read that record, the image and the output directory.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mkosi.distributions import debian

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(not debian.KEYRING.exists(), reason="needs debian-archive-keyring"),
]

CACHE = Path(os.environ.get("MKOSI_TEST_CACHE", "/var/tmp/mkosi-test-cache"))
SRC = Path(__file__).resolve().parents[2] / "src"
EPOCH = 1700000000

# Every script sources this: it appends its name to log/order and keeps its environment in log/NN-NAME.
RECORD = """\
record() {
    name="$1"; shift
    mkdir -p "$SRCDIR/log"
    n=0
    if [ -f "$SRCDIR/log/order" ]; then n=$(wc -l < "$SRCDIR/log/order"); fi
    echo "$name" >> "$SRCDIR/log/order"
    { echo "ARGS=$*"; echo "PWD=$(pwd)"; env; } > "$SRCDIR/log/$(printf %02d "$n")-$name"
}
"""

SCRIPTS = {
    "mkosi.sync": """\
        record sync "$@"
        cp "$MKOSI_CONFIG" "$SRCDIR/log/config.json"
        ls /sys/class/net > "$SRCDIR/log/sync-net"
    """,
    "mkosi.prepare": """\
        record "prepare-$1" "$@"
        if [ -x "$BUILDROOT/usr/bin/make" ]; then echo "prepare-$1 make" >> "$SRCDIR/log/facts"; fi
    """,
    "mkosi.prepare.chroot": """\
        record "prepare.chroot-$1" "$@"
        if command -v make >/dev/null; then echo "prepare.chroot-$1 make" >> "$SRCDIR/log/facts"; fi
    """,
    "mkosi.build.d/10-host.sh": """\
        record build "$@"
        set -e
        mkdir -p "$DESTDIR/usr/share/mkosi-test"
        cp "$SRCDIR/extra/hello" "$DESTDIR/usr/share/mkosi-test/from-build"
        echo "$WITH_TESTS" > "$BUILDDIR/with-tests"
        ls /sys/class/net > "$SRCDIR/log/build-net"
        # A package for VolatilePackages=, made into the local repository.
        pkg=$(mktemp -d)
        mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/mkosi-test"
        {
            echo "Package: mkosi-test-built"
            echo "Version: 1.0"
            echo "Architecture: all"
            echo "Maintainer: t <t@t>"
            echo "Description: built by a build script"
        } > "$pkg/DEBIAN/control"
        echo built > "$pkg/usr/share/mkosi-test/built"
        dpkg-deb --root-owner-group -Zgzip -b "$pkg" "$PACKAGEDIR/mkosi-test-built_1.0_all.deb" >/dev/null
    """,
    "mkosi.build.d/20-chroot.sh.chroot": """\
        record build.chroot "$@"
        set -e
        make --version > /dev/null
        echo "from the chroot" > "$DESTDIR/usr/share/mkosi-test/from-chroot-build"
        stat -f -c %T / > "$SRCDIR/log/build-root-fs"
    """,
    "mkosi.postinst": """\
        record postinst "$@"
        set -e
        mkosi-install mkosi-test-helper
        mkosi-chroot cat /etc/mkosi-in-image > "$SRCDIR/log/chroot-saw"
        mkosi-as-caller id -u > "$SRCDIR/log/caller"
        # dpkg and useradd work on the image.
        dpkg -s mkosi-test-local | grep -q "install ok installed"
        useradd --no-create-home mkosi-test-user
        echo postinst > "$OUTPUTDIR/postinst-artifact"
    """,
    "mkosi.postinst.chroot": """\
        record postinst.chroot "$@"
        set -e
        test -f /etc/mkosi-in-image
        test -f /usr/share/mkosi-test/built
        echo yes > /etc/from-postinst-chroot
    """,
    "mkosi.finalize": """\
        record finalize "$@"
        if [ -e "$BUILDROOT/usr/share/mkosi-test/remove" ]; then
            echo "finalize saw-removed" >> "$SRCDIR/log/facts"
        fi
    """,
    "mkosi.postoutput": """\
        record postoutput "$@"
        ls "$OUTPUTDIR" > "$SRCDIR/log/outputs"
        echo checksums > "$OUTPUTDIR/checksums.txt"
    """,
}

ORDER = [
    "sync",
    "prepare-final",
    "prepare.chroot-final",
    "prepare-build",
    "prepare.chroot-build",
    "build",
    "build.chroot",
    "postinst",
    "postinst.chroot",
    "finalize",
    "postoutput",
]


def mkosi(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.fspath(SRC), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "mkosi", "-C", os.fspath(directory), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def make_deb(directory: Path, name: str, files: dict[str, str]) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        (root / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: {name}\n"
        )
        for path, content in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(content)
        deb = directory / f"{name}_1.0_all.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb],
            check=True,
            capture_output=True,
        )
    return deb


def write_scripts(directory: Path, scripts: dict[str, str]) -> None:
    for name, body in scripts.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('#!/bin/sh\n. "$SRCDIR/record.sh"\n' + textwrap.dedent(body))
        path.chmod(0o755)


def conf(text: str) -> str:
    return textwrap.dedent(text).lstrip()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-scripts-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def base(workdir: Path) -> Path:
    """A Debian bookworm root with the essential packages (dpkg included, apt not)."""
    d = workdir / "base"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Distribution]
        Distribution=debian
        Release=bookworm

        [Output]
        Format=directory
        OutputDirectory={d / "out"}
        Output=base

        [Build]
        PackageCacheDirectory={CACHE / "packages"}
        """)
    )
    res = mkosi(d, "build")
    assert res.returncode == 0, res.stderr
    return d / "out/base"


@dataclass
class Built:
    config: Path
    out: Path
    image: Path
    result: subprocess.CompletedProcess[str]

    def record(self, name: str) -> dict[str, str]:
        order = (self.config / "log/order").read_text().split()
        path = self.config / "log" / f"{order.index(name):02d}-{name}"
        env = {}
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
        return env


@pytest.fixture(scope="module")
def built(workdir: Path, base: Path) -> Built:
    d = workdir / "all"
    d.mkdir()
    (d / "record.sh").write_text(RECORD)
    write_scripts(d, SCRIPTS)
    (d / "mkosi.packages").mkdir()
    make_deb(d / "mkosi.packages", "mkosi-test-local", {"usr/share/mkosi-test/local": "local\n"})
    make_deb(d / "mkosi.packages", "mkosi-test-remove", {"usr/share/mkosi-test/remove": "remove\n"})
    make_deb(d / "mkosi.packages", "mkosi-test-helper", {"usr/share/mkosi-test/helper": "helper\n"})
    (d / "mkosi.skeleton/etc").mkdir(parents=True)
    (d / "mkosi.skeleton/etc/mkosi-in-image").write_text("inside the image\n")
    (d / "mkosi.builddir").mkdir()
    (d / "extra-src").mkdir()
    (d / "extra-src/hello").write_text("hello from an extra build source\n")
    (d / "mkosi.env").write_text('FROM_FILE=1\nOVERRIDE=file\n# a comment\nQUOTED="a b"\n')
    out = d / "out"
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Distribution]
        Distribution=debian
        Release=bookworm

        [Output]
        Format=directory
        OutputDirectory={out}
        ImageId=scripttest
        ImageVersion=1.2.3

        [Content]
        BaseTrees={base}
        Packages=mkosi-test-local mkosi-test-remove
        BuildPackages=make
        VolatilePackages=mkosi-test-built
        RemovePackages=mkosi-test-remove
        SourceDateEpoch={EPOCH}

        [Build]
        PackageCacheDirectory={CACHE / "packages"}
        BuildSources=.
                     extra-src:extra
        Environment=FROM_ENV=yes OVERRIDE=env
        WithTests=no
        WithNetwork=no
        """)
    )
    res = mkosi(d, "build")
    assert res.returncode == 0, res.stderr
    return Built(d, out, out / "scripttest_1.2.3", res)


def test_scripts_run_in_order(built: Built) -> None:
    assert (built.config / "log/order").read_text().split() == ORDER


def test_arguments_and_working_directory(built: Built) -> None:
    assert built.record("sync")["ARGS"] == "final"
    assert built.record("prepare-final")["ARGS"] == "final"
    assert built.record("prepare-build")["ARGS"] == "build"
    assert built.record("postinst")["ARGS"] == "final"
    for name in ORDER:
        assert built.record(name)["PWD"] == "/work/src", name


def test_documented_environment(built: Built) -> None:
    common = {
        "DISTRIBUTION": "debian",
        "RELEASE": "bookworm",
        "ARCHITECTURE": "x86-64",
        "DISTRIBUTION_ARCHITECTURE": "amd64",
        "IMAGE_ID": "scripttest",
        "IMAGE_VERSION": "1.2.3",
        "MKOSI_UID": "0",
        "MKOSI_GID": "0",
        "MKOSI_DEBUG": "0",
        "SRCDIR": "/work/src",
        "MKOSI_CONFIG": "/work/config.json",
        # Environment= wins over mkosi.env; both reach every script.
        "FROM_FILE": "1",
        "FROM_ENV": "yes",
        "OVERRIDE": "env",
        "QUOTED": "a b",
    }
    if os.uname().machine != "x86_64":
        pytest.skip("the expected values are those of an x86-64 host")
    for name in ORDER:
        env = built.record(name)
        assert {k: env.get(k) for k in common} == common, name
        assert "QEMU_ARCHITECTURE" not in env

    sync = built.record("sync")
    assert sync["CACHED"] == "0"
    assert not {"BUILDROOT", "DESTDIR", "OUTPUTDIR", "PACKAGEDIR", "SOURCE_DATE_EPOCH"} & sync.keys()

    for name in ("prepare-final", "prepare-build", "build"):
        env = built.record(name)
        assert env["WITH_TESTS"] == "0" and env["WITH_NETWORK"] == "0" and env["WITH_DOCS"] == "1", name
        assert env["SOURCE_DATE_EPOCH"] == str(EPOCH)
        assert env["BUILDROOT"] == "/buildroot"
        assert env["PACKAGEDIR"] == "/work/packages" and env["ARTIFACTDIR"] == "/work/artifacts"
        assert env["CHROOT_SRCDIR"] == "/work/src"
        assert "OUTPUTDIR" not in env and "CACHED" not in env

    build = built.record("build")
    assert build["DESTDIR"] == build["CHROOT_DESTDIR"] == "/work/dest"
    assert build["BUILDDIR"] == build["CHROOT_BUILDDIR"] == "/work/build"
    assert build["CHROOT_SCRIPT"] == "/work/build-script"
    assert "DESTDIR" not in built.record("prepare-build")

    for name in ("postinst", "finalize"):
        env = built.record(name)
        assert env["OUTPUTDIR"] == env["CHROOT_OUTPUTDIR"] == "/work/out"
        assert env["BUILDDIR"] == "/work/build" and "CHROOT_BUILDDIR" not in env
        assert "WITH_TESTS" not in env and "DESTDIR" not in env
        assert env["CHROOT_SCRIPT"] == f"/work/{name}"

    post = built.record("postoutput")
    assert post["OUTPUTDIR"] == "/work/out"
    assert not {"BUILDROOT", "SOURCE_DATE_EPOCH", "PACKAGEDIR", "PROFILES"} & post.keys()

    config = json.loads((built.config / "log/config.json").read_text())
    assert config["ImageId"] == "scripttest"
    assert config["BuildPackages"] == ["make"]


def test_network(built: Built) -> None:
    # WithNetwork=no: the build scripts have a network namespace of their own, with loopback only.
    assert (built.config / "log/build-net").read_text().split() == ["lo"]
    host = sorted(os.listdir("/sys/class/net"))
    assert (built.config / "log/sync-net").read_text().split() == host  # sync scripts have the network


def test_chroot_scripts_run_inside_the_image(built: Built) -> None:
    for name in ("prepare.chroot-final", "build.chroot", "postinst.chroot"):
        env = built.record(name)
        # mkosi-chroot replaced the host values by the $CHROOT_* ones.
        assert env["BUILDROOT"] == "/", name
        assert env["SRCDIR"] == "/work/src"
        assert "/work/bin" not in env["PATH"]
    assert built.record("build.chroot")["DESTDIR"] == "/work/dest"
    assert (built.image / "etc/from-postinst-chroot").read_text() == "yes\n"
    assert (built.config / "log/chroot-saw").read_text() == "inside the image\n"
    assert (built.config / "log/caller").read_text().strip() == str(os.getuid())
    assert "mkosi-test-user:" in (built.image / "etc/passwd").read_text()
    # Nothing of the script machinery stays behind in the image.
    assert not (built.image / "work").exists() and not (built.image / "buildroot").exists()


def test_build_overlay(built: Built) -> None:
    facts = (built.config / "log/facts").read_text().split("\n")
    # BuildPackages= are there for the build half of the prepare scripts only, and not in the image.
    assert "prepare-build make" in facts and "prepare.chroot-build make" in facts
    assert "prepare-final make" not in facts and "prepare.chroot-final make" not in facts
    assert not (built.image / "usr/bin/make").exists()
    # Running as root, the build overlay is an overlayfs mount over the image, not a copy of it.
    assert (built.config / "log/build-root-fs").read_text().strip() == "overlayfs"
    # $DESTDIR went into the image, from host and chroot build scripts alike.
    share = built.image / "usr/share/mkosi-test"
    assert (share / "from-build").read_text() == "hello from an extra build source\n"
    assert (share / "from-chroot-build").read_text() == "from the chroot\n"
    # BuildDirectory= (mkosi.builddir/ by default) with the default BuildKey=.
    assert (built.config / "mkosi.builddir/debian~bookworm~x86-64/with-tests").read_text() == "0\n"


def test_packages(built: Built) -> None:
    share = built.image / "usr/share/mkosi-test"
    assert (share / "local").exists()  # Packages= from mkosi.packages/
    assert (share / "built").exists()  # VolatilePackages= from a build script's $PACKAGEDIR
    assert (share / "helper").exists()  # mkosi-install in a post-installation script
    assert not (share / "remove").exists()  # RemovePackages=
    facts = (built.config / "log/facts").read_text().split("\n")
    assert "finalize saw-removed" not in facts  # removed before the finalize scripts


def test_outputs_of_scripts_are_published(built: Built) -> None:
    outputs = (built.config / "log/outputs").read_text().split()
    assert "scripttest_1.2.3" in outputs and "postinst-artifact" in outputs
    assert (built.out / "postinst-artifact").read_text() == "postinst\n"
    assert (built.out / "checksums.txt").read_text() == "checksums\n"
    assert not any(p.name.startswith(".mkosi-workspace") for p in built.out.iterdir())


def test_failing_script_stops_the_build(workdir: Path, base: Path) -> None:
    d = workdir / "failing"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Output]
        Format=directory
        OutputDirectory={d / "out"}

        [Content]
        BaseTrees={base}
        """)
    )
    (d / "mkosi.build").write_text("#!/bin/sh\necho building >&2\nexit 3\n")
    (d / "mkosi.build").chmod(0o755)
    (d / "mkosi.postinst").write_text('#!/bin/sh\ntouch "$SRCDIR/postinst-ran"\n')
    (d / "mkosi.postinst").chmod(0o755)
    # --debug-shell needs a terminal: without one the build fails as it would without the option.
    res = mkosi(d, "-d", "debian", "-r", "bookworm", "--debug-shell", "build")
    assert res.returncode != 0
    assert "not a terminal" in res.stderr
    errors = [line for line in res.stderr.splitlines() if "failed" in line]
    assert len(errors) == 1, res.stderr
    assert "mkosi.build" in errors[0] and "exit code 3" in errors[0]
    assert "Traceback" not in res.stderr
    assert not (d / "postinst-ran").exists()
    assert not (d / "out").exists() or not any((d / "out").iterdir())


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float) -> bool:
    """Read the pty master into ``seen`` until ``needle`` shows up, the other side closes or time runs out."""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process on the terminal's side has closed it
            return False
        if not chunk:
            return False
        seen += chunk
    return True


def test_debug_shell_opens_a_shell_in_the_image(workdir: Path, base: Path) -> None:
    """--debug-shell on a terminal: a failed build script leaves the user in a shell inside the image it
    worked on; when the shell exits, the build fails as it would have."""
    d = workdir / "debug-shell"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Output]
        Format=directory
        OutputDirectory={d / "out"}

        [Content]
        BaseTrees={base}
        """)
    )
    (d / "mkosi.skeleton/etc").mkdir(parents=True)
    (d / "mkosi.skeleton/etc/debug-shell-marker").write_text("inside the image\n")
    (d / "mkosi.build").write_text("#!/bin/sh\nexit 3\n")
    (d / "mkosi.build").chmod(0o755)
    master, slave = os.openpty()
    env = dict(os.environ, PYTHONPATH=os.fspath(SRC), NO_COLOR="1", TERM="dumb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mkosi", "-C", os.fspath(d), "-d", "debian", "-r", "bookworm", "--debug-shell",
         "build"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    try:
        assert _read_until(master, b"Starting a shell in the image", seen, 600), seen.decode(errors="replace")
        os.write(master, b"cat /etc/debug-shell-marker; echo answer-$((6*7)); exit 0\n")
        assert _read_until(master, b"answer-42", seen, 60), seen.decode(errors="replace")
        _read_until(master, b"exit code 3", seen, 60)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "inside the image" in text, text
    assert "mkosi.build" in text and "exit code 3" in text, text
    assert not (d / "out").exists() or not any((d / "out").iterdir())


def test_ephemeral_build_sources(workdir: Path, base: Path) -> None:
    """BuildSourcesEphemeral=yes: what scripts change in the sources is gone, except for sync scripts."""
    d = workdir / "ephemeral"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Output]
        Format=directory
        OutputDirectory={d / "out"}

        [Content]
        BaseTrees={base}

        [Build]
        BuildSourcesEphemeral=yes
        """)
    )
    (d / "file").write_text("original\n")
    for name in ("sync", "prepare", "finalize"):
        script = d / f"mkosi.{name}"
        script.write_text(f'#!/bin/sh\necho {name} > "$SRCDIR/file"\ntouch "$SRCDIR/{name}-was-here"\n')
        script.chmod(0o755)
    res = mkosi(d, "-d", "debian", "-r", "bookworm", "--debug-shell", "build")
    assert res.returncode == 0, res.stderr
    assert (d / "sync-was-here").exists()
    assert not (d / "prepare-was-here").exists() and not (d / "finalize-was-here").exists()
    assert (d / "file").read_text() == "sync\n"


SANDBOX_SAW = """\
#!/bin/sh
set -e
{
    cat /etc/mkosi-sandbox-marker /etc/debian_version /etc/mkosi-test.d/conf /var/lib/mkosi-test/state
    # The host's own files are still there beneath the sandbox tree.
    grep -q '^root:' /etc/passwd && echo "host passwd"
    # Read-only: a script cannot change the host through them.
    if touch /etc/mkosi-test-written 2>/dev/null; then echo "etc writable"; fi
} > "$SRCDIR/$1-saw"
"""


def test_scripts_see_sandbox_trees(workdir: Path, base: Path) -> None:
    """SandboxTrees= (mkosi.sandbox/): scripts find its files at their paths, over the host's, which are
    left untouched."""
    d = workdir / "sandbox-trees"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        conf(f"""
        [Output]
        Format=directory
        OutputDirectory={d / "out"}

        [Content]
        BaseTrees={base}
        """)
    )
    tree = d / "mkosi.sandbox"
    (tree / "etc/mkosi-test.d").mkdir(parents=True)
    (tree / "etc/mkosi-sandbox-marker").write_text("a new file in /etc\n")
    (tree / "etc/debian_version").write_text("a host file replaced\n")
    (tree / "etc/mkosi-test.d/conf").write_text("a new directory in /etc\n")
    (tree / "var/lib/mkosi-test").mkdir(parents=True)
    (tree / "var/lib/mkosi-test/state").write_text("outside the host's directories\n")
    (d / "saw.sh").write_text(SANDBOX_SAW)
    for kind in ("sync", "prepare", "postinst", "finalize"):
        (d / f"mkosi.{kind}").write_text(f'#!/bin/sh\nexec sh "$SRCDIR/saw.sh" {kind}\n')
        (d / f"mkosi.{kind}").chmod(0o755)
    host_version = Path("/etc/debian_version").read_bytes()
    res = mkosi(d, "-d", "debian", "-r", "bookworm", "build")
    assert res.returncode == 0, res.stderr
    expected = [
        "a new file in /etc",
        "a host file replaced",
        "a new directory in /etc",
        "outside the host's directories",
        "host passwd",
    ]
    for kind in ("sync", "prepare", "postinst", "finalize"):
        assert (d / f"{kind}-saw").read_text().splitlines() == expected, kind
    assert Path("/etc/debian_version").read_bytes() == host_version
    for path in (
        "/etc/mkosi-sandbox-marker",
        "/etc/mkosi-test.d",
        "/etc/mkosi-test-written",
        "/var/lib/mkosi-test",
    ):
        assert not os.path.lexists(path), path
    # The sandbox trees are for the tools, not the image.
    image = d / "out/image"
    assert not (image / "etc/mkosi-sandbox-marker").exists()
    assert (image / "etc/debian_version").read_text() != "a host file replaced\n"


def test_script_not_executable(workdir: Path, base: Path) -> None:
    d = workdir / "not-executable"
    d.mkdir()
    (d / "mkosi.conf").write_text(f"[Output]\nFormat=directory\nOutputDirectory={d / 'out'}\n")
    (d / "mkosi.sync").write_text("#!/bin/sh\ntrue\n")
    res = mkosi(d, "-d", "debian", "-r", "bookworm", "build")
    assert res.returncode != 0
    assert "mkosi.sync is not executable" in res.stderr


def _load(directory: Path) -> list[object]:
    from mkosi.cli import parse_args
    from mkosi.config.images import load

    args, cli, _ = parse_args(["-C", os.fspath(directory), "summary"])
    return list(load(args, cli))


def test_configure_scripts(workdir: Path) -> None:
    from mkosi.build.scripts import run_configure_scripts

    d = workdir / "configure"
    d.mkdir()
    (d / "mkosi.conf").write_text(
        "[Distribution]\nDistribution=debian\nRelease=bookworm\n[Output]\nImageVersion=1.0\n"
    )
    (d / "mkosi.configure").write_text(
        '#!/bin/sh\nenv > "$SRCDIR/configure.env"\n'
        'sed -e \'s/"ImageVersion": "1.0"/"ImageVersion": "2.0"/\' '
        '-e \'s/"Packages": \\[\\]/"Packages": ["less", "vim"]/\'\n'
    )
    (d / "mkosi.configure").chmod(0o755)
    images = run_configure_scripts(_load(d))
    main = images[-1]
    assert main.values["image_version"] == "2.0"  # type: ignore[attr-defined]
    assert main.values["packages"] == ["less", "vim"]  # type: ignore[attr-defined]
    env = dict(line.split("=", 1) for line in (d / "configure.env").read_text().splitlines() if "=" in line)
    assert env["DISTRIBUTION"] == "debian" and env["SRCDIR"] == "/work/src" and "QEMU_ARCHITECTURE" in env
    assert "MKOSI_CONFIG" not in env and "BUILDROOT" not in env


def test_clean_scripts(workdir: Path) -> None:
    from mkosi.build.scripts import run_clean_scripts
    from mkosi.cli import parse_args

    d = workdir / "clean"
    d.mkdir()
    out = d / "out"
    (d / "mkosi.conf").write_text(f"[Distribution]\nDistribution=debian\n[Output]\nOutputDirectory={out}\n")
    (d / "mkosi.clean").write_text('#!/bin/sh\nenv > "$OUTPUTDIR/clean.env"\n')
    (d / "mkosi.clean").chmod(0o755)
    args, _, _ = parse_args(["-C", os.fspath(d), "clean"])
    run_clean_scripts(args, _load(d))
    env = dict(line.split("=", 1) for line in (out / "clean.env").read_text().splitlines() if "=" in line)
    assert env["OUTPUTDIR"] == "/work/out" and env["MKOSI_CONFIG"] == "/work/config.json"
    assert "BUILDROOT" not in env


def test_environment_files(tmp_path: Path) -> None:
    from mkosi.build.scripts import read_environment_file
    from mkosi.errors import MkosiError

    f = tmp_path / "env"
    f.write_text('# comment\n\nA=1\nexport B = two words\nC=\'x y\'\nD="q \\"z\\""\nE=\n')
    assert read_environment_file(f) == {"A": "1", "B": "two words", "C": "x y", "D": 'q "z"', "E": ""}
    f.write_text("not an assignment\n")
    with pytest.raises(MkosiError, match=r"env:1"):
        read_environment_file(f)


def test_configure_json_round_trip(workdir: Path) -> None:
    """Every setting's JSON turns back into the same value (so an unchanged script output changes nothing)."""
    from mkosi.build.scripts import value_from_json
    from mkosi.config.settings import SETTINGS

    d = workdir / "round-trip"
    d.mkdir(exist_ok=True)
    (d / "mkosi.conf").write_text(
        "[Distribution]\nDistribution=debian\n[Content]\nPackages=a b\nExtraTrees=/usr:/x\n"
        "[Build]\nEnvironment=A=1 B=2\n"
    )
    image = _load(d)[-1]
    values = image.values  # type: ignore[attr-defined]
    for s in SETTINGS:
        if s.dest not in values or not s.in_json:
            continue
        js = s.kind.to_json(values[s.dest])
        back = value_from_json(s.kind, js)
        assert s.kind.to_json(back) == js, s.name


def test_local_repository_index(tmp_path: Path) -> None:
    from mkosi.build import localrepo

    make_deb(tmp_path, "mkosi-test-index", {"usr/share/x": "x\n"})
    assert localrepo.index(tmp_path)
    packages = (tmp_path / "Packages").read_text()
    assert "Package: mkosi-test-index\n" in packages
    assert "Filename: ./mkosi-test-index_1.0_all.deb\n" in packages
    assert "SHA256: " in packages and "Size: " in packages
    release = (tmp_path / "Release").read_text()
    assert " Packages\n" in release
    before = (tmp_path / "Packages").stat().st_mtime_ns
    assert localrepo.index(tmp_path)  # unchanged: not rewritten
    assert (tmp_path / "Packages").stat().st_mtime_ns == before
    assert localrepo.source_line(tmp_path) == f"deb [trusted=yes] copy://{tmp_path.resolve()}/ ./"

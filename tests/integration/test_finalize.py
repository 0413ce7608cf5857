"""Finalize settings: Hostname=, Locale=, Timezone=, RootPassword=, Autologin=, MachineId=, sysusers, ….

The first part runs :mod:`mkosi.build.configure` on small fake roots (no root needed, seconds): what is
written where, that nothing is written through a symlink out of the root, and which steps apply to which
images. The second part builds a real Debian image with ``python3 -m mkosi`` and boots it with
``systemd-nspawn -b``: a unit in the extra tree asks the running system (hostnamectl, localectl,
timedatectl, getent, the journal) and writes the answers to a bind-mounted directory, then powers off.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PACKAGE_CACHE, check_mkosi, write

from mkosi.build import configure
from mkosi.build.context import Context, Shared
from mkosi.build.pipeline import STEPS
from mkosi.cli import parse_args
from mkosi.config.images import load
from mkosi.errors import MkosiError

BASE = """\
[Distribution]
Distribution=debian
Release=bookworm

[Output]
Format=directory
"""


def load_main(directory: Path, *cli: str) -> Any:
    args, values, _ = parse_args(["-C", os.fspath(directory), *cli, "summary"])
    return load(args, values)[-1]


def make_context(tmp_path: Path, conf: str, *cli: str) -> Context:
    project = tmp_path / "project"
    write(project / "mkosi.conf", BASE + textwrap.dedent(conf))
    config = load_main(project, *cli)
    args, _, _ = parse_args(["-C", os.fspath(project), "build"])
    ctx = Context(args=args, config=config, shared=Shared(tmp_path / "ws"), workspace=tmp_path / "ws/main")
    root = ctx.root
    write(root / "etc/passwd", "root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1::/:/usr/sbin/nologin\n")
    write(root / "etc/shadow", "daemon:*:19000::::::\n").chmod(0)
    write(root / "var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n")
    write(root / "usr/share/zoneinfo/Europe/Berlin", "TZif")
    (root / "etc/default").mkdir()
    return ctx


def field(path: Path, user: str, index: int) -> str:
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields[index]
    raise AssertionError(f"{user} not in {path}")


def verify_sha512(hashed: str, password: str) -> bool:
    salt = hashed.split("$")[2]
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password, capture_output=True, text=True
    )
    return out.stdout.strip() == hashed


# ---------------------------------------------------------------------------------------------------------
# Fake roots


def test_firstboot_settings_are_written(tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        """
        [Content]
        Hostname=frobnicator
        Locale=en_GB.UTF-8
        LocaleMessages=de_DE.UTF-8
        Keymap=de
        Timezone=Europe/Berlin
        RootPassword=secret
        RootShell=/bin/zsh
        """,
    )
    configure.apply_firstboot(ctx)
    root = ctx.root
    assert (root / "etc/hostname").read_text() == "frobnicator\n"
    assert (root / "etc/locale.conf").read_text() == "LANG=en_GB.UTF-8\nLC_MESSAGES=de_DE.UTF-8\n"
    assert (root / "etc/default/locale").read_text() == (root / "etc/locale.conf").read_text()
    assert (root / "etc/vconsole.conf").read_text() == "KEYMAP=de\n"
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    hashed = field(root / "etc/shadow", "root", 1)
    assert hashed.startswith("$6$") and verify_sha512(hashed, "secret")
    assert field(root / "etc/shadow", "daemon", 1) == "*", "other entries are kept"
    assert stat.S_IMODE((root / "etc/shadow").stat().st_mode) == 0, "the file's mode is kept"
    assert field(root / "etc/passwd", "root", 1) == "x"
    assert field(root / "etc/passwd", "root", 6) == "/bin/zsh"
    store = root / "usr/lib/credstore"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert (store / "passwd.hashed-password.root").read_text() == hashed
    assert (store / "passwd.shell.root").read_text() == "/bin/zsh"
    assert (store / "firstboot.locale").read_text() == "en_GB.UTF-8"
    assert (store / "firstboot.locale-messages").read_text() == "de_DE.UTF-8"
    assert (store / "firstboot.keymap").read_text() == "de"
    assert (store / "firstboot.timezone").read_text() == "Europe/Berlin"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in store.iterdir())
    # No MachineId=: the first boot initializes it (and does not take D-Bus's copy made at build time).
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"


def test_hashed_root_password_and_machine_id(tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path,
        """
        [Content]
        RootPassword=hashed:$6$abc$def
        MachineId=b0b0b0b0-b0b0-b0b0-b0b0-b0b0b0b0b0b0
        """,
    )
    configure.apply_firstboot(ctx)
    assert field(ctx.root / "etc/shadow", "root", 1) == "$6$abc$def"
    assert (ctx.root / "etc/machine-id").read_text() == "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0\n"
    assert not (ctx.root / "etc/hostname").exists()


def test_root_password_from_mkosi_rootpw(tmp_path: Path) -> None:
    write(tmp_path / "project/mkosi.rootpw", "hashed:$6$salt$fromfile\n").chmod(0o600)
    ctx = make_context(tmp_path, "")
    configure.apply_firstboot(ctx)
    assert field(ctx.root / "etc/shadow", "root", 1) == "$6$salt$fromfile"
    assert (ctx.root / "usr/lib/credstore/passwd.hashed-password.root").read_text() == "$6$salt$fromfile"


def test_empty_hash_unlocks_root_without_password(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "[Content]\nRootPassword=hashed:\n")
    (ctx.root / "etc/shadow").unlink()
    configure.apply_firstboot(ctx)
    assert field(ctx.root / "etc/shadow", "root", 1) == ""


def test_nothing_is_written_through_symlinks(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside/hostname", "host's own\n")
    ctx = make_context(tmp_path, "[Content]\nHostname=inside\nTimezone=Europe/Berlin\n")
    (ctx.root / "etc/hostname").symlink_to(outside)
    (ctx.root / "etc/localtime").symlink_to(outside)
    configure.apply_firstboot(ctx)
    assert outside.read_text() == "host's own\n"
    assert not (ctx.root / "etc/hostname").is_symlink()
    assert (ctx.root / "etc/hostname").read_text() == "inside\n"
    assert os.readlink(ctx.root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"


def test_bad_timezone(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "[Content]\nTimezone=../../etc/passwd\n")
    with pytest.raises(MkosiError, match="not a time zone name"):
        configure.apply_firstboot(ctx)


def test_autologin_dropins(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "[Content]\nAutologin=yes\n")
    assert configure.wants_autologin(ctx)
    configure.write_autologin(ctx)
    units = ctx.root / "usr/lib/systemd/system"
    for unit in ("console-getty.service", "container-getty@0.service", "getty@tty1.service"):
        text = (units / f"{unit}.d/autologin.conf").read_text()
        assert "ExecStart=\n" in text and "--autologin root" in text
    assert "--keep-baud 115200" in (units / "serial-getty@hvc0.service.d/autologin.conf").read_text()


def test_ssh_units(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "[Content]\nSsh=always\n")
    assert configure.wants_ssh(ctx)
    configure.write_ssh_units(ctx)
    units = ctx.root / "usr/lib/systemd/system"
    assert "ListenStream=vsock::22" in (units / "mkosi-ssh-vsock.socket").read_text()
    assert "sshd -i" in (units / "mkosi-ssh-vsock@.service").read_text()
    assert os.readlink(units / "sockets.target.wants/mkosi-ssh-vsock.socket") == "../mkosi-ssh-vsock.socket"


def test_ssh_auto_needs_sshd(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "")
    assert not configure.wants_ssh(ctx)
    write(ctx.root / "usr/sbin/sshd", "#!/bin/sh\n").chmod(0o755)
    assert configure.wants_ssh(ctx)
    write(ctx.root / "usr/lib/systemd/system-generators/systemd-ssh-generator", "")
    assert not configure.wants_ssh(ctx), "systemd-ssh-generator provides sshd over VSock itself"


@pytest.mark.parametrize("conf", ["[Output]\nOverlay=yes\n", "[Output]\nFormat=sysext\n"])
def test_overlays_and_extensions_are_not_configured(tmp_path: Path, conf: str) -> None:
    ctx = make_context(tmp_path, conf + "[Content]\nHostname=x\nAutologin=yes\nSsh=always\n")
    write(ctx.root / "usr/bin/systemd-sysusers", "#!/bin/sh\n").chmod(0o755)
    names = {s.name for s in STEPS if s.when(ctx)}
    finalize_steps = {
        "Configuring autologin",
        "Installing sshd units",
        "Running systemd-sysusers",
        "Applying first boot settings",
    }
    assert not names & finalize_steps


def test_image_tools_decide_their_steps(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "")
    names = {s.name for s in STEPS if s.when(ctx)}
    assert "Applying first boot settings" in names
    assert "Running systemd-sysusers" not in names and "Running depmod" not in names
    write(ctx.root / "usr/bin/systemd-sysusers", "#!/bin/sh\n").chmod(0o755)
    write(ctx.root / "usr/sbin/depmod", "#!/bin/sh\n").chmod(0o755)
    write(ctx.root / "usr/lib/modules/6.1.0-1-amd64/kernel/fs/x.ko", "")
    names = {s.name for s in STEPS if s.when(ctx)}
    assert {"Running systemd-sysusers", "Running depmod"} <= names
    assert configure.kernel_versions(ctx) == ["6.1.0-1-amd64"]


def test_selinux_relabel_runs_setfiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context(tmp_path, "[Content]\nSELinuxRelabel=yes\n")
    with pytest.raises(MkosiError, match="no SELinux policy"):
        configure.selinux_relabel(ctx)
    write(ctx.root / "etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=default\n")
    (ctx.root / "etc/selinux/default/policy").mkdir(parents=True)
    contexts = write(ctx.root / "etc/selinux/default/contexts/files/file_contexts", "")
    bin_dir = tmp_path / "bin"
    log = tmp_path / "setfiles.log"
    write(bin_dir / "setfiles", f'#!/bin/sh\necho "$@" > {log}\n').chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert configure.wants_selinux_relabel(ctx)
    configure.selinux_relabel(ctx)
    root = os.fspath(ctx.root)
    assert log.read_text().split() == ["-m", "-F", "-r", root, os.fspath(contexts), root]


def test_selinux_auto_skips_directories(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "")
    write(ctx.root / "etc/selinux/config", "SELINUXTYPE=default\n")
    (ctx.root / "etc/selinux/default/policy").mkdir(parents=True)
    write(ctx.root / "etc/selinux/default/contexts/files/file_contexts", "")
    assert not configure.wants_selinux_relabel(ctx)


def test_runtime_credentials(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / "mkosi.conf", BASE + "[Runtime]\nCredentials=greeting=hello\n")
    write(project / "mkosi.credentials/greeting", "from the directory\n")
    write(project / "mkosi.credentials/file", "file content\n")
    write(project / "mkosi.credentials/script", "#!/bin/sh\necho generated\n").chmod(0o755)
    creds = configure.credentials(load_main(project))
    assert creds == {"greeting": "hello", "file": "file content\n", "script": "generated\n"}
    options = configure.nspawn_credential_options(creds, tmp_path / "creds")
    assert f"--load-credential=greeting:{tmp_path / 'creds/greeting'}" in options
    assert (tmp_path / "creds/script").read_text() == "generated\n"
    assert stat.S_IMODE((tmp_path / "creds/file").stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------------------
# A real image, booted

integration = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="needs systemd-nspawn"),
]

BOOT_TIMEOUT = 180

IMAGE_CONF = """\
[Distribution]
Distribution=debian
Release=bookworm

[Output]
Format=directory

[Content]
Packages=systemd
         dbus
         tzdata
Hostname=frobnicator
Locale=en_GB.UTF-8
LocaleMessages=de_DE.UTF-8
Keymap=de
Timezone=Europe/Berlin
RootPassword=mkosi-secret
RootShell=/bin/sh
Autologin=yes
"""

# Waits (at most 60 s) until the console getty logged root in, asks the running system, powers off.
REPORT_SCRIPT = """\
#!/bin/sh
for i in $(seq 1 60); do
    journalctl -b --no-pager | grep -q 'ROOT LOGIN' && break
    sleep 1
done
{
    echo "== hostnamectl"; hostnamectl
    echo "== localectl"; localectl
    echo "== timedatectl"; timedatectl
    echo "== passwd"; getent passwd
    echo "== shadow"; getent shadow root
    echo "== login"; journalctl -b --no-pager | grep 'ROOT LOGIN'
    echo "== failed"; systemctl --failed --no-legend
} > /results/report.txt 2>&1
systemctl poweroff
"""

REPORT_UNIT = """\
[Unit]
Description=Report the settings mkosi configured
After=multi-user.target dbus.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/mkosi-report
"""


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[Path, str]]:
    """Build the image once, boot it once: (the image, the report its unit wrote)."""
    work = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-test-finalize-"))
    try:
        write(work / "mkosi.conf", IMAGE_CONF)
        extra = work / "mkosi.extra"
        sysusers = 'u mkosiuser - "mkosi test user" /home/mkosiuser\n'
        write(extra / "usr/lib/sysusers.d/mkosi-test.conf", sysusers)
        write(extra / "usr/local/bin/mkosi-report", REPORT_SCRIPT).chmod(0o755)
        write(extra / "usr/lib/systemd/system/mkosi-report.service", REPORT_UNIT)
        wants = extra / "usr/lib/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True)
        (wants / "mkosi-report.service").symlink_to("../mkosi-report.service")
        PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        check_mkosi("-f", f"--package-cache-directory={PACKAGE_CACHE}", "build", cwd=work)
        print(f"\nfinalize image built in {time.monotonic() - start:.0f}s")
        image = work / "image"
        before_boot = {
            "machine-id": (image / "etc/machine-id").read_text(),
            "credstore": sorted(p.name for p in (image / "usr/lib/credstore").iterdir()),
        }
        results = work / "results"
        results.mkdir()
        start = time.monotonic()
        boot = subprocess.run(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--timezone=off", "-b", "-D", image,
             f"--bind={results}:/results"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
        )  # fmt: skip
        print(f"booted and powered off in {time.monotonic() - start:.0f}s")
        report = results / "report.txt"
        assert report.exists(), f"the report unit did not run:\n{boot.stdout[-3000:]}\n{boot.stderr[-2000:]}"
        assert before_boot["machine-id"] == "uninitialized\n"
        assert before_boot["credstore"] == [
            "firstboot.keymap",
            "firstboot.locale",
            "firstboot.locale-messages",
            "firstboot.timezone",
            "passwd.hashed-password.root",
            "passwd.shell.root",
        ]
        yield image, report.read_text()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def section(report: str, name: str) -> str:
    return report.split(f"== {name}\n", 1)[1].split("\n== ", 1)[0]


def _mark(f: Any) -> Any:
    """The marks of the tests that build and boot (the tests above need neither root nor network)."""
    for m in integration:
        f = m(f)
    return f


@_mark
def test_booted_hostname(booted: tuple[Path, str]) -> None:
    assert "Static hostname: frobnicator" in section(booted[1], "hostnamectl")


@_mark
def test_booted_locale_and_keymap(booted: tuple[Path, str]) -> None:
    text = section(booted[1], "localectl")
    assert "LANG=en_GB.UTF-8" in text
    assert "LC_MESSAGES=de_DE.UTF-8" in text
    assert "VC Keymap: de" in text


@_mark
def test_booted_timezone(booted: tuple[Path, str]) -> None:
    assert "Time zone: Europe/Berlin" in section(booted[1], "timedatectl")


@_mark
def test_booted_root_password_and_shell(booted: tuple[Path, str]) -> None:
    shadow = section(booted[1], "shadow").strip()
    hashed = shadow.split(":")[1]
    assert hashed.startswith("$6$") and verify_sha512(hashed, "mkosi-secret")
    root = next(line for line in section(booted[1], "passwd").splitlines() if line.startswith("root:"))
    assert root.split(":")[1] == "x" and root.split(":")[6] == "/bin/sh"


@_mark
def test_booted_sysusers_dropin_from_extra_trees(booted: tuple[Path, str]) -> None:
    users = [line.split(":") for line in section(booted[1], "passwd").splitlines()]
    mkosiuser = next(u for u in users if u[0] == "mkosiuser")
    assert mkosiuser[4] == "mkosi test user" and 0 < int(mkosiuser[2]) < 1000


@_mark
def test_booted_autologin(booted: tuple[Path, str]) -> None:
    assert "ROOT LOGIN" in section(booted[1], "login")


@_mark
def test_booted_without_failed_units(booted: tuple[Path, str]) -> None:
    assert section(booted[1], "failed").strip() == ""

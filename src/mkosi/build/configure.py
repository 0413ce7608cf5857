"""Finalize settings: what the configuration says about the running system, written into the root.

The steps follow the manual's EXECUTION FLOW (steps 18 to 27): configuration files for ``Ssh=`` and
``Autologin=``; systemd-sysusers, systemd-tmpfiles, ``systemctl preset-all`` and depmod run inside the image
(when the image has them); the systemd-firstboot settings (``Hostname=``, ``Locale=``,
``LocaleMessages=``, ``Keymap=``, ``Timezone=``, ``RootPassword=``, ``RootShell=``) and ``MachineId=`` written
directly to the files systemd-firstboot would write, plus the matching credentials in ``/usr/lib/credstore``
so they also apply when only ``/usr`` is shipped; systemd-hwdb; and the SELinux relabel.

Overlays (``Overlay=yes``) and extension or portable images are only a part of a system: none of these
steps apply to them (the pipeline's conditions say so).

Every file written here replaces what is at its path; a symlink there is removed, never followed out of the
root. Programs that belong to the image run chrooted into it through :mod:`mkosi.sandbox`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mkosi import log
from mkosi.build.context import Context
from mkosi.build.trees import resolve_in_root
from mkosi.config.model import Feature, OutputFormat, Ssh
from mkosi.config.typed import Config
from mkosi.errors import MkosiError
from mkosi.run import run, which
from mkosi.sandbox import Sandbox, chroot_env

# ---------------------------------------------------------------------------------------------------------
# Helpers


def applies(ctx: Context) -> bool:
    """Finalize settings apply to whole systems: not to overlays, extensions and portable services."""
    return not ctx.config.overlay and not ctx.config.output_format.is_extension_or_portable()


def in_root(ctx: Context, path: str) -> Path:
    """``path`` inside the root, symlinks resolved as if the root were ``/``."""
    return resolve_in_root(ctx.root, path)


def has(ctx: Context, *paths: str) -> bool:
    """Whether any of ``paths`` exists in the root (``/usr/bin/foo``, …)."""
    return any(os.path.lexists(in_root(ctx, p)) for p in paths)


def find_program(ctx: Context, name: str) -> str | None:
    """The image's own ``name`` (as a path inside the root), if it has one."""
    for d in ("usr/bin", "usr/sbin", "bin", "sbin"):
        p = in_root(ctx, f"{d}/{name}")
        if p.is_file() and os.access(p, os.X_OK):
            return "/" + str(p.relative_to(ctx.root))
    return None


def write_file(ctx: Context, path: str, text: str | bytes, mode: int = 0o644) -> Path:
    """Write ``path`` (relative to the root) atomically, replacing a file or symlink that is there.

    Parent directories are resolved inside the root (so ``/etc`` → ``/usr/etc`` links are honoured) and
    created as needed; the last component is never followed.
    """
    parent = in_root(ctx, os.path.dirname(path.lstrip("/")))
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    target = parent / os.path.basename(path)
    if target.is_dir() and not target.is_symlink():
        raise MkosiError(f"Cannot write /{path.lstrip('/')} in the image: it is a directory")
    tmp = parent / f".#{target.name}.mkosi"
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return target


def symlink(ctx: Context, path: str, target: str) -> None:
    """Make ``path`` (relative to the root) a symlink to ``target``, replacing what is there."""
    parent = in_root(ctx, os.path.dirname(path.lstrip("/")))
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    link = parent / os.path.basename(path)
    tmp = parent / f".#{link.name}.mkosi"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def chroot(ctx: Context, cmd: Sequence[str], *, ok: Sequence[int] = (0,), what: str | None = None) -> int:
    """Run ``cmd`` chrooted into the image (no network, private /proc, /dev, /run and /tmp).

    Exit codes in ``ok`` are accepted; any other fails the build with the command's last stderr lines.
    """
    sandbox = Sandbox(root=ctx.root, chroot=True, network=False, env=chroot_env())
    result = run(cmd, sandbox=sandbox.command(), check=False, what=what or cmd[0])
    if result.returncode not in ok:
        tail = "; ".join(x.strip() for x in result.stderr.decode(errors="replace").splitlines()[-3:])
        raise MkosiError(f"{what or cmd[0]} failed with exit code {result.returncode}: {tail}")
    if result.returncode != 0:
        log.debug(f"{what or cmd[0]} exited with {result.returncode} (tolerated)")
    return result.returncode


# ---------------------------------------------------------------------------------------------------------
# Step 18: configuration files for Autologin= and Ssh=

#: The gettys mkosi's manual names for Autologin=: /dev/pts/0 (nspawn), /dev/tty1 and /dev/hvc0, plus the
#: console getty nspawn starts on /dev/console. Each keeps its unit's way of finding its terminal.
AUTOLOGIN_GETTYS: dict[str, str] = {
    "console-getty.service": "--noclear --keep-baud - 115200,38400,9600",
    "container-getty@0.service": "--noclear - ",
    "getty@tty1.service": "--noclear - ",
    "serial-getty@hvc0.service": "--keep-baud 115200,57600,38400,9600 - ",
}


def autologin_dropin(options: str) -> str:
    args = " ".join(f"{options} $TERM".split())
    return (
        "# Written by mkosi for Autologin=yes\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart=-/sbin/agetty --autologin root {args}\n"
    )


def write_autologin(ctx: Context) -> None:
    """``Autologin=yes``: drop-ins that make the console, container, VT and serial gettys log root in."""
    for unit, options in AUTOLOGIN_GETTYS.items():
        write_file(ctx, f"usr/lib/systemd/system/{unit}.d/autologin.conf", autologin_dropin(options))


def wants_autologin(ctx: Context) -> bool:
    return applies(ctx) and bool(ctx.config.autologin)


SSH_SOCKET = """\
# Written by mkosi for Ssh=
[Unit]
Description=OpenSSH server over VSock (mkosi)
Before=sockets.target

[Socket]
ListenStream=vsock::22
Accept=yes
PollLimitIntervalSec=30s
PollLimitBurst=50
"""

SSH_SERVICE = """\
# Written by mkosi for Ssh=
[Unit]
Description=OpenSSH connection over VSock (mkosi)

[Service]
ExecStart=-{sshd} -i
StandardInput=socket
StandardError=journal
RuntimeDirectory=sshd
RuntimeDirectoryPreserve=yes
"""


def wants_ssh(ctx: Context) -> bool:
    """``Ssh=always``, or ``auto`` when the image has sshd but not systemd-ssh-generator."""
    if not applies(ctx):
        return False
    mode = ctx.config.ssh
    if mode == Ssh.always:
        return True
    if mode != Ssh.auto:
        return False
    generator = "usr/lib/systemd/system-generators/systemd-ssh-generator"
    return find_program(ctx, "sshd") is not None and not has(ctx, generator)


def write_ssh_units(ctx: Context) -> None:
    """A socket-activated sshd on VSock port 22, enabled statically (``mkosi ssh`` connects to it)."""
    sshd = find_program(ctx, "sshd") or "/usr/sbin/sshd"
    unit_dir = "usr/lib/systemd/system"
    write_file(ctx, f"{unit_dir}/mkosi-ssh-vsock.socket", SSH_SOCKET)
    write_file(ctx, f"{unit_dir}/mkosi-ssh-vsock@.service", SSH_SERVICE.format(sshd=sshd))
    symlink(ctx, f"{unit_dir}/sockets.target.wants/mkosi-ssh-vsock.socket", "../mkosi-ssh-vsock.socket")


# ---------------------------------------------------------------------------------------------------------
# Steps 20 to 25: the image's own tools


def wants_tool(name: str) -> Callable[[Context], bool]:
    """A ``when`` condition: the step applies and the image has the program ``name``."""

    def when(ctx: Context) -> bool:
        return applies(ctx) and find_program(ctx, name) is not None

    return when


def run_sysusers(ctx: Context) -> None:
    """Create the users and groups of ``sysusers.d`` (packages' and the extra trees' drop-ins)."""
    chroot(ctx, ["systemd-sysusers"], what="systemd-sysusers")


#: API and temporary file systems: mounted fresh at boot, never populated in the image.
TMPFILES_EXCLUDES = ("/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp")


def run_tmpfiles(ctx: Context) -> None:
    """Create the files and directories of ``tmpfiles.d`` that belong in the image.

    Exit code 65 (some lines invalid, e.g. a user that only exists at runtime) and 73 (some paths could not
    be created) are tolerated: systemd-tmpfiles applies the same lines again at boot.
    """
    cmd = ["systemd-tmpfiles", "--create", "--boot"]
    cmd += [f"--exclude-prefix={p}" for p in TMPFILES_EXCLUDES]
    chroot(ctx, cmd, ok=(0, 65, 73), what="systemd-tmpfiles")


def run_presets(ctx: Context) -> None:
    """Enable or disable units as the image's preset files say, for the system and for users."""
    chroot(ctx, ["systemctl", "preset-all"], what="systemctl preset-all")
    chroot(ctx, ["systemctl", "--global", "preset-all"], what="systemctl --global preset-all")


def kernel_versions(ctx: Context) -> list[str]:
    """Kernel versions with modules in the image (``/usr/lib/modules/VERSION/kernel``)."""
    modules = in_root(ctx, "usr/lib/modules")
    if not modules.is_dir():
        return []
    return sorted(p.name for p in modules.iterdir() if (p / "kernel").is_dir() or any(p.glob("*.ko*")))


def wants_depmod(ctx: Context) -> bool:
    return wants_tool("depmod")(ctx) and bool(kernel_versions(ctx))


def run_depmod(ctx: Context) -> None:
    for version in kernel_versions(ctx):
        chroot(ctx, ["depmod", "--all", version], what=f"depmod {version}")


def wants_hwdb(ctx: Context) -> bool:
    return wants_tool("systemd-hwdb")(ctx) and (
        has(ctx, "usr/lib/udev/hwdb.d") or has(ctx, "etc/udev/hwdb.d")
    )


def run_hwdb(ctx: Context) -> None:
    """Compile the hardware database into ``/usr`` (and drop a stale copy a package left in ``/etc``)."""
    chroot(ctx, ["systemd-hwdb", "--usr", "update"], what="systemd-hwdb update")
    stale = in_root(ctx, "etc/udev/hwdb.bin")
    if stale.is_file() or stale.is_symlink():
        stale.unlink()


# ---------------------------------------------------------------------------------------------------------
# Step 24: the systemd-firstboot settings, written directly


def hash_password(password: str) -> str:
    """A crypt(3) SHA-512 (``$6$``) hash with a random salt, as ``openssl passwd -6`` makes it."""
    if which("openssl") is None:
        raise MkosiError("RootPassword=: hashing the password needs openssl", hint="install openssl")
    out = run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n", stdout=-1, what="openssl passwd")
    hashed = out.stdout.decode().strip()
    if not hashed.startswith("$6$"):
        raise MkosiError("RootPassword=: openssl passwd -6 returned no SHA-512 hash")
    return hashed


def root_password_hash(value: tuple[str, bool] | None) -> str | None:
    """``RootPassword=`` → the hash to store (``""`` for an unlocked account without password)."""
    if not value:
        return None
    password, hashed = value
    return str(password) if hashed else hash_password(str(password))


def _set_field(lines: list[str], user: str, index: int, value: str, template: list[str]) -> list[str]:
    """Set field ``index`` of ``user``'s line in a colon-separated database (adding the line if missing)."""
    out = []
    found = False
    for line in lines:
        fields = line.split(":")
        if fields and fields[0] == user and len(fields) > index:
            fields[index] = value
            line = ":".join(fields)
            found = True
        out.append(line)
    if not found:
        fields = list(template)
        fields[index] = value
        out.insert(0, ":".join(fields))
    return out


def _rewrite(ctx: Context, path: str, change: Any, default_mode: int) -> None:
    target = in_root(ctx, path)
    lines = target.read_text().splitlines() if target.is_file() else []
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else default_mode
    st = target.stat() if target.is_file() else None
    new = write_file(ctx, path, "".join(f"{line}\n" for line in change(lines)), mode)
    if st is not None:
        os.chown(new, st.st_uid, st.st_gid)


def set_root_password(ctx: Context, hashed: str) -> None:
    """Store the hash in ``/etc/shadow`` and point ``/etc/passwd`` at it (``x``)."""
    _rewrite(
        ctx,
        "etc/shadow",
        lambda lines: _set_field(lines, "root", 1, hashed, ["root", "", "", "0", "", "", "", "", ""]),
        0o000,
    )
    _rewrite(
        ctx,
        "etc/passwd",
        lambda lines: _set_field(lines, "root", 1, "x", ["root", "x", "0", "0", "root", "/root", "/bin/sh"]),
        0o644,
    )


def set_root_shell(ctx: Context, shell: str) -> None:
    _rewrite(
        ctx,
        "etc/passwd",
        lambda lines: _set_field(lines, "root", 6, shell, ["root", "x", "0", "0", "root", "/root", shell]),
        0o644,
    )


def locale_conf(locale: str | None, messages: str | None) -> str:
    lines = []
    if locale:
        lines.append(f"LANG={locale}")
    if messages:
        lines.append(f"LC_MESSAGES={messages}")
    return "".join(f"{line}\n" for line in lines)


def set_timezone(ctx: Context, timezone: str) -> None:
    zone = in_root(ctx, f"usr/share/zoneinfo/{timezone}")
    if ".." in Path(timezone).parts or timezone.startswith("/"):
        raise MkosiError(f"Timezone={timezone}: not a time zone name")
    if not zone.is_file():
        log.warn(f"Timezone={timezone}: /usr/share/zoneinfo/{timezone} is not in the image (install tzdata)")
    symlink(ctx, "etc/localtime", f"../usr/share/zoneinfo/{timezone}")
    # Debian's tools still read /etc/timezone when it exists.
    if in_root(ctx, "etc/timezone").is_file():
        write_file(ctx, "etc/timezone", f"{timezone}\n")


#: Credentials read by systemd-firstboot (from /usr/lib/credstore through ImportCredential=).
def firstboot_credentials(ctx: Context, password_hash: str | None) -> dict[str, str]:
    c = ctx.config
    creds = {
        "firstboot.locale": c.locale,
        "firstboot.locale-messages": c.locale_messages,
        "firstboot.keymap": c.keymap,
        "firstboot.timezone": c.timezone,
        "passwd.hashed-password.root": password_hash,
        "passwd.shell.root": c.root_shell,
    }
    return {k: v for k, v in creds.items() if v is not None}


def write_credstore(ctx: Context, creds: Mapping[str, str]) -> None:
    if not creds:
        return
    store = in_root(ctx, "usr/lib/credstore")
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(store, 0o700)
    for name, value in creds.items():
        write_file(ctx, f"usr/lib/credstore/{name}", value, 0o600)


def wants_firstboot(ctx: Context) -> bool:
    return applies(ctx)


def apply_firstboot(ctx: Context) -> None:
    """What systemd-firstboot would do with the configured values, and ``MachineId=``."""
    c = ctx.config
    if c.hostname:
        write_file(ctx, "etc/hostname", f"{c.hostname}\n")
    if c.locale or c.locale_messages:
        write_file(ctx, "etc/locale.conf", locale_conf(c.locale, c.locale_messages))
        # Debian's localed and login shells read /etc/default/locale; keep both in step.
        if in_root(ctx, "etc/default").is_dir() and not in_root(ctx, "etc/default/locale").is_symlink():
            write_file(ctx, "etc/default/locale", locale_conf(c.locale, c.locale_messages))
    if c.keymap:
        write_file(ctx, "etc/vconsole.conf", f"KEYMAP={c.keymap}\n")
    if c.timezone:
        set_timezone(ctx, c.timezone)
    hashed = root_password_hash(c.root_password)
    if hashed is not None:
        set_root_password(ctx, hashed)
    if c.root_shell:
        set_root_shell(ctx, c.root_shell)
    write_credstore(ctx, firstboot_credentials(ctx, hashed))
    write_machine_id(ctx)


def write_machine_id(ctx: Context) -> None:
    """``MachineId=``, or ``uninitialized`` so that the first boot sets one (and counts as first boot)."""
    machine_id = ctx.config.machine_id
    if machine_id is not None:
        write_file(ctx, "etc/machine-id", f"{machine_id.hex}\n", 0o444)
    elif in_root(ctx, "etc").is_dir():
        write_file(ctx, "etc/machine-id", "uninitialized\n", 0o444)
    else:
        return
    # D-Bus keeps its own copy, which systemd would otherwise take over at first boot (Debian's dbus writes
    # one while it is installed): point it at /etc/machine-id, as D-Bus recommends.
    dbus = in_root(ctx, "var/lib/dbus/machine-id")
    if dbus.is_file() and not dbus.is_symlink():
        symlink(ctx, "var/lib/dbus/machine-id", "/etc/machine-id")


# ---------------------------------------------------------------------------------------------------------
# Step 27: SELinux


@dataclasses.dataclass(frozen=True)
class SELinuxPolicy:
    name: str
    file_contexts: Path


def selinux_policy(ctx: Context) -> SELinuxPolicy | None:
    """The policy ``/etc/selinux/config`` names, if it and its file contexts are installed."""
    config = in_root(ctx, "etc/selinux/config")
    if not config.is_file():
        return None
    name = None
    for line in config.read_text().splitlines():
        m = re.match(r"\s*SELINUXTYPE\s*=\s*(\S+)", line)
        if m:
            name = m.group(1).strip("\"'")
    if not name:
        return None
    policy = in_root(ctx, f"etc/selinux/{name}/policy")
    contexts = in_root(ctx, f"etc/selinux/{name}/contexts/files/file_contexts")
    if not policy.is_dir() or not contexts.is_file():
        return None
    return SELinuxPolicy(name, contexts)


def wants_selinux_relabel(ctx: Context) -> bool:
    feature = ctx.config.selinux_relabel
    if feature == Feature.disabled or not applies(ctx):
        return False
    if feature == Feature.enabled:
        return True
    return ctx.config.output_format != OutputFormat.directory and selinux_policy(ctx) is not None


def selinux_relabel(ctx: Context) -> None:
    """Label every file for the image's policy with setfiles (the host's, else the image's own).

    With ``SELinuxRelabel=yes`` a missing policy or setfiles and every setfiles error fail the build; with
    ``auto`` they are ignored.
    """
    required = ctx.config.selinux_relabel == Feature.enabled
    policy = selinux_policy(ctx)
    if policy is None:
        if required:
            raise MkosiError("SELinuxRelabel=yes but the image has no SELinux policy installed")
        return
    if which("setfiles") is not None:
        root = os.fspath(ctx.root)
        cmd = ["setfiles", "-m", "-F", "-r", root, os.fspath(policy.file_contexts), root]
        result = run(cmd, check=False, what="setfiles")
        code = result.returncode
    elif find_program(ctx, "setfiles") is not None:
        inside = "/" + str(policy.file_contexts.relative_to(ctx.root))
        # -x: stay on the root's file system (not the API file systems the sandbox mounts).
        code = chroot(ctx, ["setfiles", "-m", "-F", "-x", inside, "/"], ok=range(256), what="setfiles")
    else:
        if required:
            raise MkosiError("SELinuxRelabel=yes but setfiles is neither on the host nor in the image")
        return
    if code != 0:
        if required:
            raise MkosiError(f"setfiles failed with exit code {code} while relabeling for {policy.name}")
        log.warn(f"setfiles exited with {code} while relabeling for {policy.name} (ignored)")


# ---------------------------------------------------------------------------------------------------------
# Credentials= (runtime): what shell, boot and vm pass to the container or VM


def credentials(config: Config) -> dict[str, str]:
    """``Credentials=`` and ``mkosi.credentials/`` as name → value (later entries win, so settings beat the
    directory). A file's content is the value; an executable file's standard output is."""
    result: dict[str, str] = {}
    for cred in config.credentials or []:
        if cred.value is not None:
            result[cred.name] = cred.value
            continue
        path = cred.path
        assert path is not None  # a credential has a value or a path
        if os.access(path, os.X_OK) and path.is_file():
            out = run([path], stdout=-1, env=dict(os.environ), what=f"credential script {path}")
            result[cred.name] = out.stdout.decode()
        else:
            result[cred.name] = path.read_text()
    return result


def nspawn_credential_options(creds: Mapping[str, str], directory: Path) -> list[str]:
    """``--load-credential=`` options for systemd-nspawn, the values written as files in ``directory``
    (never on the command line, where any user could read them)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = []
    for name, value in creds.items():
        if "/" in name or not name:
            raise MkosiError(f"Credentials={name}: not a valid credential name")
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        options.append(f"--load-credential={name}:{path}")
    return options

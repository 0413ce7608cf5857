"""The one place that knows namespaces, mounts, API file systems inside a root and chroot.

A :class:`Sandbox` describes what a command may see. :meth:`Sandbox.command` turns it into a command prefix
for :func:`mkosi.run.run`: this very file re-executed by the current interpreter with the description as
JSON. That helper process unshares a mount namespace (plus PID, IPC and UTS, and a network namespace when
the network is off), makes every mount private, sets the mounts up, chroots if asked and runs the command.

Every mount lives only in the new namespace, so nothing is left mounted on the host, even when the helper
is killed. The PID namespace makes sure that daemons started by maintainer scripts die with the command.

This module imports nothing from :mod:`mkosi`: it runs as a script in isolated mode (``python -I``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Syscalls that only make data durable, per audit architecture: with ``no_sync`` they succeed at once.
SYNC_SYSCALLS = {
    0xC000003E: (74, 75, 162, 277, 306, 26),  # x86-64: fsync fdatasync sync sync_file_range syncfs msync
    0xC00000B7: (82, 83, 81, 84, 267, 227),  # aarch64
}

# The device nodes bind-mounted from the host into a minimal /dev.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# The default environment inside a root when none is given.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Bind:
    """Make host path ``src`` visible at ``dst`` (inside the root when there is one)."""

    src: Path
    dst: Path
    readonly: bool = False


@dataclass(frozen=True)
class Overlay:
    """Show the directories ``lowers`` stacked at ``dst`` (inside the root when there is one), read-only.

    The first directory lies on top. Nothing is written to any of them. Mounts below the last directory
    (the host's own, e.g. a ``/etc/resolv.conf`` bind mount in a container) stay visible where no upper
    directory has the same path.
    """

    lowers: tuple[Path, ...]
    dst: Path


@dataclass(frozen=True)
class Sandbox:
    """What a command may see.

    ``root``: the tree the API file systems, binds and overlays are mounted into, and that is chrooted into
    when ``chroot`` is true. With ``chroot=False`` the command runs on the host's file system but finds the
    mounts prepared inside ``root`` (for tools such as apt that chroot by themselves).
    ``env``: the whole environment of the command; ``None`` keeps the caller's.
    ``cwd``: working directory (inside the root when chrooting).
    ``stdout_to_fd``: hand the caller's stdout to the command as this file descriptor and send the
    command's own stdout to stderr (for status protocols such as apt's ``APT::Status-Fd``).
    ``no_sync``: fsync() and friends return success without flushing anything (a seccomp filter), for
    throwaway trees where durability buys nothing: dpkg syncs its database after every step.
    """

    root: Path | None = None
    chroot: bool = True
    binds: tuple[Bind, ...] = ()
    overlays: tuple[Overlay, ...] = ()
    proc: bool = True
    sys: bool = True
    dev: bool = True
    run: bool = True
    tmp: bool = True
    network: bool = False
    pid_namespace: bool = True
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    hostname: str | None = None
    stdout_to_fd: int | None = None
    no_sync: bool = False

    def spec(self) -> dict[str, object]:
        return {
            "root": os.fspath(self.root) if self.root is not None else None,
            "chroot": self.chroot,
            "binds": [[os.fspath(b.src), os.fspath(b.dst), b.readonly] for b in self.binds],
            "overlays": [[[os.fspath(p) for p in o.lowers], os.fspath(o.dst)] for o in self.overlays],
            "proc": self.proc,
            "sys": self.sys,
            "dev": self.dev,
            "run": self.run,
            "tmp": self.tmp,
            "network": self.network,
            "pid": self.pid_namespace,
            "env": dict(self.env) if self.env is not None else None,
            "cwd": os.fspath(self.cwd) if self.cwd is not None else None,
            "hostname": self.hostname,
            "stdout_to_fd": self.stdout_to_fd,
            "no_sync": self.no_sync,
        }

    def command(self) -> list[str]:
        """The command prefix that runs a command inside this sandbox."""
        helper = os.fspath(Path(__file__).resolve())
        return [sys.executable, "-I", "-B", helper, json.dumps(self.spec()), "--"]


def chroot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for commands running inside an OS tree."""
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SYSTEMD_OFFLINE": "1",
    }
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------------------
# Everything below runs inside the helper process.


class _Fail(Exception):
    pass


_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise _Fail(f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    ret = _libc.mount(
        src.encode() if src is not None else None,
        dst.encode(),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    _check(ret, f"mount {src or fstype or ''} on {dst}")


def _umount(dst: str) -> None:
    _libc.umount2(dst.encode(), MNT_DETACH)


def resolve_in(root: str, path: str) -> str:
    """``path`` as seen from inside ``root``, with symlinks resolved as if chrooted (never escaping)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, name)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise _Fail(f"too many levels of symbolic links in {path} inside {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(name)
    return os.path.join(root, *done)


class _Mounts:
    """Mount points we created (to remove afterwards) and mounts we made (to undo before that)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.mounted: list[str] = []

    def ensure(self, path: str, directory: bool) -> None:
        if os.path.lexists(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path:
            self.ensure(parent, True)
        if directory:
            os.mkdir(path, 0o755)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        self.created.append(path)

    def mount(
        self, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None
    ) -> None:
        _mount(src, dst, fstype, flags, data)
        self.mounted.append(dst)

    def bind(self, src: str, dst: str, readonly: bool) -> None:
        directory = os.path.isdir(src)
        self.ensure(dst, directory)
        self.mount(src, dst, None, MS_BIND | MS_REC)
        if readonly:
            # Keep the flags the kernel locks (nosuid, nodev, noexec) or the remount is refused.
            f = os.statvfs(dst).f_flag
            keep = f & (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC)
            _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)

    def overlay(self, lowers: Sequence[str], dst: str) -> None:
        """A read-only overlay of ``lowers`` (the first on top) at ``dst``; the host mounts below the last
        lower directory are bound again on top where no upper directory covers them."""
        for p in lowers:
            if "," in p:
                raise _Fail(f"cannot overlay {p}: a comma in the path")
        self.ensure(dst, True)
        escaped = [p.replace("\\", "\\\\").replace(":", "\\:") for p in lowers]
        self.mount("overlay", dst, "overlay", MS_RDONLY, "lowerdir=" + ":".join(escaped))
        host = lowers[-1].rstrip("/")
        below = sorted(m for m in _mount_points() if m.startswith(host + "/"))
        tops = [m for m in below if not any(m.startswith(o + "/") for o in below if o != m)]
        for mount in tops:
            rel = mount[len(host) + 1 :]
            target = os.path.join(dst, rel)
            if any(os.path.lexists(os.path.join(upper, rel)) for upper in lowers[:-1]):
                continue
            if not os.path.lexists(target):
                continue
            self.bind(mount, target, True)

    def undo(self) -> None:
        for dst in reversed(self.mounted):
            _umount(dst)
        for path in reversed(self.created):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass


def _mount_points() -> list[str]:
    """Mount points of this mount namespace (octal escapes of /proc/self/mountinfo decoded)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split()[4]
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def _setup_dev(m: _Mounts, dev: str, userns: bool) -> None:
    m.ensure(dev, True)
    m.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=4m")
    for name in DEVICES:
        host = f"/dev/{name}"
        if not os.path.exists(host):
            continue
        target = os.path.join(dev, name)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        _mount(host, target, None, MS_BIND)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    opts = "newinstance,ptmxmode=0666,mode=0620" + ("" if userns else ",gid=5")
    _mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC, opts)
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    _mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))


def _setup(spec: dict[str, object], m: _Mounts, userns: bool) -> None:
    root = spec["root"]
    binds = spec["binds"]
    assert isinstance(binds, list)
    if root is not None:
        assert isinstance(root, str)
        root = os.path.realpath(root)
        if not os.path.isdir(root):
            raise _Fail(f"{root} is not a directory")

        def inside(p: str) -> str:
            return resolve_in(root, p)

        if spec["proc"]:
            dst = inside("/proc")
            m.ensure(dst, True)
            if spec["pid"]:
                m.mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            else:
                m.mount("/proc", dst, None, MS_BIND | MS_REC)
        if spec["sys"]:
            dst = inside("/sys")
            m.ensure(dst, True)
            try:
                m.mount("sysfs", dst, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except _Fail:
                m.bind("/sys", dst, True)
        if spec["dev"]:
            _setup_dev(m, inside("/dev"), userns)
        for name, mode in (("run", "0755"), ("tmp", "1777")):
            if spec[name]:
                dst = inside(f"/{name}")
                m.ensure(dst, True)
                m.mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")
        if spec["network"] and os.path.exists("/etc/resolv.conf"):
            m.bind(os.path.realpath("/etc/resolv.conf"), inside("/etc/resolv.conf"), True)
    else:

        def inside(p: str) -> str:
            return p

    overlays = spec.get("overlays") or []
    assert isinstance(overlays, list)
    # Outer mounts first: a bind or overlay at /etc comes before one at /etc/apt.
    mounts: list[tuple[str, list[str] | None, str | None, bool]] = [
        (dst, None, src, bool(readonly)) for src, dst, readonly in binds
    ]
    mounts += [(dst, list(lowers), None, True) for lowers, dst in overlays]
    for dst, lowers, src, readonly in sorted(mounts, key=lambda x: len(Path(x[0]).parts)):
        if lowers is not None:
            for lower in lowers:
                if not os.path.isdir(lower):
                    raise _Fail(f"overlay layer {lower} is not a directory")
            m.overlay([os.path.realpath(p) for p in lowers], inside(dst))
            continue
        assert src is not None
        if not os.path.exists(src):
            raise _Fail(f"bind source {src} does not exist")
        m.bind(os.path.realpath(src), inside(dst), bool(readonly))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _forward(pid: int, everyone: bool = False) -> None:
    """Pass termination signals on to ``pid``, or with ``everyone`` (as PID 1 of a PID namespace) to every
    process in the namespace, as a terminal would to its foreground process group."""

    def handler(signum: int, frame: object) -> None:
        try:
            os.kill(-1 if everyone else pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, handler)


def _status(wstatus: int) -> int:
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


def _wait(pid: int) -> int:
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
            return _status(wstatus)
        except InterruptedError:
            continue


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _audit_arch() -> int | None:
    return {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine)


def _no_sync() -> None:
    """Install a seccomp filter under which the sync syscalls return 0 without doing anything."""
    arch = _audit_arch()
    if arch is None:
        return
    nrs = SYNC_SYSCALLS[arch]
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    allow, errno0 = 0x7FFF0000, 0x00050000
    n = len(nrs)
    prog = [
        (ld_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, n + 1, arch),  # another architecture: allow
        (ld_abs, 0, 0, 0),  # seccomp_data.nr
    ]
    for i, nr in enumerate(nrs):
        prog.append((jeq, n - i, 0, nr))  # match: jump to the final "return 0"
    prog += [(ret, 0, 0, allow), (ret, 0, 0, errno0)]
    filters = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def _exec(spec: dict[str, object], cmd: list[str]) -> None:
    """In the grandchild: enter the root and become the command."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    if spec.get("no_sync"):
        _no_sync()
    fd = spec.get("stdout_to_fd")
    if isinstance(fd, int) and fd > 2:
        os.dup2(1, fd)
        os.dup2(2, 1)
    root = spec["root"]
    cwd = spec["cwd"]
    if root is not None and spec["chroot"]:
        assert isinstance(root, str)
        os.chroot(root)
        os.chdir(cwd if isinstance(cwd, str) else "/")
    elif isinstance(cwd, str):
        os.chdir(cwd)
    env = spec["env"]
    if env is None:
        os.execvp(cmd[0], cmd)
    assert isinstance(env, dict)
    os.execvpe(cmd[0], cmd, env)


def _init(spec: dict[str, object], cmd: list[str], userns: bool) -> int:
    """In the child (PID 1 of the new PID namespace): set up mounts, run the command, clean up."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    hostname = spec.get("hostname")
    if isinstance(hostname, str):
        _check(_libc.sethostname(hostname.encode(), len(hostname.encode())), "sethostname")
    m = _Mounts()
    try:
        _setup(spec, m, userns)
        pid = os.fork()
        if pid == 0:
            try:
                _exec(spec, cmd)
            except OSError as e:
                sys.stderr.write(f"mkosi-sandbox: {e.filename or cmd[0]}: {e.strerror}\n")
            except BaseException as e:
                sys.stderr.write(f"mkosi-sandbox: {e}\n")
            finally:
                sys.stderr.flush()
                os._exit(127)
        _forward(pid, everyone=bool(spec["pid"]))
        status = 0
        # As PID 1 we reap every orphan; the command's own status is the one we return.
        while True:
            try:
                done, wstatus = os.waitpid(-1, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                break
            if done == pid:
                status = _status(wstatus)
                break
        return status
    finally:
        m.undo()


def _userns_map() -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER), "unshare(user)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: sandbox.py SPEC -- COMMAND...\n")
        return 125
    spec = json.loads(argv[0])
    cmd = list(argv[2:])
    try:
        userns = os.getuid() != 0
        if userns:
            _userns_map()
        flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
        if spec["pid"]:
            flags |= CLONE_NEWPID
        if not spec["network"]:
            flags |= CLONE_NEWNET
        _check(_libc.unshare(flags), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    except _Fail as e:
        sys.stderr.write(f"mkosi-sandbox: {e}\n")
        return 125

    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            code = _init(spec, cmd, userns)
        except (_Fail, OSError) as e:
            sys.stderr.write(f"mkosi-sandbox: {e}\n")
        finally:
            sys.stderr.flush()
            os._exit(code)
    _forward(pid)
    return _wait(pid)


_private_namespace: bool | None = None


def private_mount_namespace() -> bool:
    """Move this process (and the children it starts from now on) into a mount namespace of its own,
    where mounts stay invisible to the host and vanish with the process however it ends.

    Only root can, and only while the process has one thread; returns whether this process has such a
    namespace. Called once, the answer is kept.
    """
    global _private_namespace
    if _private_namespace is None:
        _private_namespace = False
        if os.geteuid() == 0 and _libc.unshare(CLONE_NEWNS) == 0:
            try:
                _mount(None, "/", None, MS_REC | MS_PRIVATE)
                _private_namespace = True
            except _Fail:
                # Unshared but still propagating to the host: mount nothing in it.
                pass
    return _private_namespace


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> bool:
    """A writable overlay of ``lower`` with changes going to ``upper`` at ``target``, in this process's
    private mount namespace; ``False`` (and nothing mounted) where that is not possible."""
    paths = [os.fspath(p.resolve()) for p in (lower, upper, work)]
    if any("," in p or ":" in p for p in paths) or not private_mount_namespace():
        return False
    options = "lowerdir={},upperdir={},workdir={}".format(*paths)
    try:
        _mount("overlay", os.fspath(target), "overlay", 0, options)
    except _Fail:
        return False
    return True


def unmount(target: Path) -> None:
    """Detach the mount at ``target`` (from :func:`mount_overlay`)."""
    _umount(os.fspath(target))


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path`` visible from this process (for checks and tests)."""
    prefix = os.fspath(path.resolve()).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return found


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        if e.errno == errno.EPERM:
            sys.stderr.write("mkosi-sandbox: operation not permitted (need root or user namespaces)\n")
        else:
            sys.stderr.write(f"mkosi-sandbox: {e}\n")
        sys.exit(125)

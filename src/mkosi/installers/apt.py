"""Installing Debian packages into a root with the host's apt and dpkg, without debootstrap or mmdebstrap.

apt runs on the host with a private configuration (``APT_CONFIG``) whose every directory points into
``state_dir`` (sources, lists, caches), ``cache_dir`` (downloaded ``.deb`` files, shared between builds and
roots) or the root (its dpkg database). The host's own apt configuration, lists and caches are never read or
written. dpkg runs chrooted inside the root, in a :class:`mkosi.sandbox.Sandbox` that has no network, a
private ``/proc``, ``/dev``, ``/run`` and ``/tmp``, and a ``policy-rc.d`` that forbids starting services.

Bootstrapping an empty root:

1. the merged-/usr symlinks and an empty dpkg database are created;
2. everything (the essential set plus the requested packages) is downloaded into the package cache;
3. the essential set is extracted with ``dpkg-deb --fsys-tarfile | tar -x`` so a shell and dpkg exist;
4. the essential set is installed properly with dpkg running inside the root;
5. the rest is installed by apt, which runs dpkg inside the root (``DPkg::Chroot-Directory``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mkosi import log
from mkosi.errors import MkosiError
from mkosi.run import CompletedProcess, run
from mkosi.sandbox import Bind, Sandbox, chroot_env

# Where the package cache is visible inside the root while dpkg runs there.
ARCHIVES_IN_ROOT = Path("/var/cache/apt/archives")

# The directories that merged-/usr turns into symlinks, per Debian architecture (beyond bin, sbin, lib).
MERGED_USR_EXTRA = {
    "amd64": ("lib64",),
    "ppc64el": ("lib64",),
    "s390x": ("lib64",),
    "mips64el": ("lib64",),
    "loong64": ("lib64",),
}

DOC_EXCLUDES = (
    "--path-exclude=/usr/share/doc/*",
    "--path-include=/usr/share/doc/*/copyright",
    "--path-exclude=/usr/share/man/*",
    "--path-exclude=/usr/share/info/*",
)

POLICY_RC_D = "#!/bin/sh\n# Written by mkosi: no service may start while packages are installed.\nexit 101\n"


@dataclass(frozen=True)
class Repository:
    """One deb822 source entry."""

    url: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    signed_by: tuple[Path, ...] = ()
    trusted: bool = False
    types: tuple[str, ...] = ("deb",)

    def deb822(self) -> str:
        lines = [
            f"Types: {' '.join(self.types)}",
            f"URIs: {self.url}",
            f"Suites: {' '.join(self.suites)}",
        ]
        if self.components:
            lines.append(f"Components: {' '.join(self.components)}")
        if self.trusted:
            lines.append("Trusted: yes")
        elif self.signed_by:
            lines.append(f"Signed-By: {' '.join(os.fspath(k) for k in self.signed_by)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AptSetup:
    """Everything the apt installer needs, as explicit values.

    ``cache_dir`` holds downloaded packages (``cache_dir/archives``); it persists between builds and may be
    shared by several roots at once. ``state_dir`` holds the private apt configuration and the repository
    metadata; images that use the same repositories can share it, so metadata is synced once.
    ``essential`` is what a bootstrap installs before anything else (apt patterns allowed).
    ``extra_sources`` are one-line ``deb …`` entries added verbatim.
    ``sandbox_tree`` is the merged ``SandboxTrees=``: its ``etc/apt`` (sources, keys, apt.conf.d,
    preferences) is honoured (see :mod:`mkosi.build.sandboxtrees`).
    ``cache_only`` (``CacheOnly=always``): apt never contacts the network. Repository metadata is not
    synced, and apt runs on the host without a network (in a network namespace of its own), so packages
    come from the package cache (or local ``copy:`` repositories); one that is not there is an error.
    """

    root: Path
    repositories: tuple[Repository, ...]
    cache_dir: Path
    state_dir: Path
    architecture: str = "amd64"
    with_recommends: bool = False
    with_docs: bool = True
    repository_key_check: bool = True
    snapshot: bool = False
    essential: tuple[str, ...] = ("?essential",)
    merged_usr: bool = True
    extra_sources: tuple[str, ...] = ()
    sandbox_tree: Path | None = None
    cache_only: bool = False

    def __post_init__(self) -> None:
        # apt's configuration needs absolute paths, and DPkg::Chroot-Directory the real one.
        for name in ("root", "cache_dir", "state_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).resolve())
        if self.sandbox_tree is not None:
            object.__setattr__(self, "sandbox_tree", Path(self.sandbox_tree).resolve())

    def sandbox_etc(self, name: str) -> Path | None:
        """``etc/apt/<name>`` of the sandbox trees, when they have it."""
        if self.sandbox_tree is None:
            return None
        p = self.sandbox_tree / "etc/apt" / name
        return p if p.exists() else None

    @property
    def archives(self) -> Path:
        return self.cache_dir / "archives"

    @property
    def config(self) -> Path:
        return self.state_dir / "apt.conf"

    @property
    def status(self) -> Path:
        return self.root / "var/lib/dpkg/status"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str

    @property
    def filename(self) -> str:
        """The name apt gives the downloaded file."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


# ---------------------------------------------------------------------------------------------------------
# Configuration


def _apt_conf(setup: AptSetup) -> str:
    s = setup.state_dir
    empty = s / "empty"
    etc = setup.sandbox_etc
    options: dict[str, str | Path] = {
        "Dir::Etc::Main": etc("apt.conf") or "/dev/null",
        "Dir::Etc::Parts": etc("apt.conf.d") or empty,
        "Dir::Etc::Preferences": etc("preferences") or "/dev/null",
        "Dir::Etc::PreferencesParts": etc("preferences.d") or empty,
        "Dir::Etc::SourceList": s / "sources.list",
        "Dir::Etc::SourceParts": s / "sources.list.d",
        "Dir::Etc::Trusted": etc("trusted.gpg") or "/dev/null",
        "Dir::Etc::TrustedParts": etc("trusted.gpg.d") or empty,
        "Dir::State": s / "apt-state",
        "Dir::State::Lists": s / "lists",
        "Dir::Cache": s / "cache",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::Archives": setup.archives,
        "Dir::Log": s / "log",
        "APT::Architecture": setup.architecture,
        "APT::Sandbox::User": "root",
        "APT::Install-Suggests": "false",
        "APT::Get::Assume-Yes": "true",
        "APT::Update::Error-Mode": "any",
        # apt treats itself as essential unless told otherwise; we want the archive's Essential: yes set.
        "pkgCacheGen::ForceEssential": ",",
        "Acquire::Languages": "none",
        "Acquire::PDiffs": "false",
        "Acquire::Retries": "3",
        "Acquire::Check-Valid-Until": "false" if setup.snapshot else "true",
        "DPkg::Use-Pty": "false",
        "DPkg::Progress-Fancy": "false",
        "Binary::apt::APT::Color": "false",
    }
    if not setup.repository_key_check:
        options["APT::Get::AllowUnauthenticated"] = "true"
        options["Acquire::AllowInsecureRepositories"] = "true"
    lines = [f'{k} "{os.fspath(v)}";' for k, v in options.items()]
    lines.append(f'APT::Architectures {{ "{setup.architecture}"; }};')
    lines.append('DPkg::Options { "--force-confdef"; "--force-confold"; "--force-unsafe-io"; };')
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def prepare(setup: AptSetup) -> None:
    """Write the private apt configuration and sources into ``state_dir`` (idempotent)."""
    for repo in setup.repositories:
        if setup.repository_key_check and not repo.trusted:
            for key in repo.signed_by:
                if not key.exists():
                    raise MkosiError(
                        f"Keyring {key} for repository {repo.url} not found",
                        hint="install the distribution's archive keyring package on the host",
                    )
    s = setup.state_dir
    for d in (
        s / "empty",
        s / "sources.list.d",
        s / "lists/partial",
        s / "cache",
        s / "apt-state",
        s / "log",
        s / "tmp",
        setup.archives / "partial",
    ):
        d.mkdir(parents=True, exist_ok=True)
    _write_if_changed(setup.config, _apt_conf(setup))
    parts = _sandbox_sources(setup)
    parts.setdefault("mkosi.sources", "\n".join(r.deb822() for r in setup.repositories))
    for stale in (s / "sources.list.d").iterdir():
        if stale.name not in parts:
            stale.unlink()
    for name, text in parts.items():
        _write_if_changed(s / "sources.list.d" / name, text)
    own = "".join(f"{line}\n" for line in setup.extra_sources)
    if (extra := setup.sandbox_etc("sources.list")) is not None:
        own += _rebase_keys(extra.read_text(), setup.sandbox_tree)
    _write_if_changed(s / "sources.list", own)
    _write_if_changed(s / "policy-rc.d", POLICY_RC_D, 0o755)


_SIGNED_BY = re.compile(r"(?im)^(Signed-By:)([^\n]*)$|(signed-by=)([^\s\]]+)")


_FILE_URI = re.compile(r"(?im)^((?:URIs:|deb(?:-src)?\s)[^\n]*?\s?)file:(?=/)")


def _rebase_keys(text: str, tree: Path | None) -> str:
    """Absolute key paths in ``Signed-By:`` / ``[signed-by=…]`` that exist in ``tree`` point there, and
    ``file:`` repositories become ``copy:`` ones (dpkg runs chrooted into the root, where the repository's
    path does not exist: copied, the packages land in the package cache that is visible there)."""
    if tree is None:
        return text
    while (new := _FILE_URI.sub(r"\1copy:", text)) != text:
        text = new

    def rebase(path: str) -> str:
        if path.startswith("/") and (tree / path.lstrip("/")).is_file():
            return os.fspath(tree / path.lstrip("/"))
        return path

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1) + re.sub(r"\S+", lambda w: rebase(w.group(0)), m.group(2))
        return m.group(3) + ",".join(rebase(p) for p in m.group(4).split(","))

    return _SIGNED_BY.sub(sub, text)


def _sandbox_sources(setup: AptSetup) -> dict[str, str]:
    """``sources.list.d`` entries of the sandbox trees, by file name, with key paths rebased."""
    d = setup.sandbox_etc("sources.list.d")
    if d is None or not d.is_dir():
        return {}
    return {
        p.name: _rebase_keys(p.read_text(), setup.sandbox_tree)
        for p in sorted(d.iterdir())
        if p.suffix in (".sources", ".list") and p.is_file()
    }


def _host_env(setup: AptSetup) -> dict[str, str]:
    env = chroot_env(
        {
            "APT_CONFIG": os.fspath(setup.config),
            "DEBIAN_FRONTEND": "noninteractive",
            "DEBCONF_NONINTERACTIVE_SEEN": "true",
            "DEBIAN_PRIORITY": "critical",
        }
    )
    for key in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _run_options(setup: AptSetup) -> list[str]:
    opts = [
        "-o", f"Dir::State::status={setup.root / 'var/lib/dpkg/status'}",
        "-o", f"Dir::State::extended_states={setup.root / 'var/lib/apt/extended_states'}",
        "-o", f"APT::Install-Recommends={'true' if setup.with_recommends else 'false'}",
    ]  # fmt: skip
    if not setup.with_docs:
        for opt in DOC_EXCLUDES:
            opts += ["-o", f"DPkg::Options::={opt}"]
    return opts


# ---------------------------------------------------------------------------------------------------------
# Running apt and dpkg with progress


class _Output:
    """Reads a command's stdout: status lines become progress, the rest goes to debug and is kept."""

    def __init__(self, label: str, total: int = 0, keep: bool = False) -> None:
        self.label = label
        self.keep = keep
        self.lines: list[str] = []
        self.total = total
        self.done = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        # Per-package failures reported on the status protocol (apt's pmerror:, dpkg's " : error : ").
        self.failures: list[str] = []

    def line(self, text: str) -> None:
        if text.startswith(("pmerror:", "dlerror:")):
            parts = text.split(":", 3)
            if len(parts) == 4:
                self.failures.append(f"{parts[1]}: {parts[3].strip()}")
            return
        if text.startswith("status: ") and " : error : " in text:
            what, _, why = text[len("status: ") :].partition(" : error : ")
            self.failures.append(f"{Path(what.strip()).name}: {why.strip()}")
            return
        if text.startswith(("dlstatus:", "pmstatus:")):
            parts = text.split(":", 3)
            if len(parts) == 4:
                try:
                    pct = float(parts[2])
                except ValueError:
                    pct = 0.0
                log.progress(f"{self.label}: {pct:3.0f}% {parts[3]}")
            return
        if text.startswith(("status: ", "processing: ")):
            if text.startswith("status: ") and text.endswith(": installed"):
                self.done += 1
                pkg = text.split(": ")[1]
                of = f"/{self.total}" if self.total else ""
                log.progress(f"{self.label}: {self.done}{of} {pkg}")
            return
        self.tail.append(text)
        if self.keep:
            self.lines.append(text)
        log.debug(text)

    def errors(self) -> list[str]:
        return [t for t in self.tail if t.startswith(("E:", "W:", "dpkg:")) or " : Depends:" in t]


@contextlib.contextmanager
def _reading(out: _Output) -> Iterator[IO[bytes]]:
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb")
    writer = os.fdopen(wfd, "wb")

    def pump() -> None:
        for raw in iter(reader.readline, b""):
            out.line(raw.decode(errors="replace").rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield writer
    finally:
        writer.close()
        thread.join()
        reader.close()
        log.progress_done()


@contextlib.contextmanager
def _shared_locks(setup: AptSetup, wanted: bool) -> Iterator[None]:
    """Wait for other mkosi runs that use the same package cache or metadata (apt itself would fail)."""
    if not wanted:
        yield
        return
    with contextlib.ExitStack() as stack:
        for directory in (setup.cache_dir, setup.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
            f = stack.enter_context(open(directory / ".mkosi.lock", "w"))
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info(f"Waiting for another mkosi using {directory}")
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _apt(
    setup: AptSetup,
    args: Sequence[str],
    *,
    label: str,
    sandbox: Sandbox | None = None,
    check: bool = True,
    keep: bool = False,
) -> tuple[CompletedProcess[bytes], _Output]:
    out = _Output(label, keep=keep)
    # apt's status protocol goes to our pipe. dpkg's maintainer scripts break when that is also their
    # stdout, so in the sandbox it arrives as fd 3 and the command's stdout goes to stderr.
    status_fd = 1 if sandbox is None else 3
    cmd = [*args[:1], "-q", "-o", f"APT::Status-Fd={status_fd}", *_run_options(setup), *args[1:]]
    env = _host_env(setup)
    if sandbox is None:
        env["TMPDIR"] = os.fspath(setup.state_dir / "tmp")
    else:
        # dpkg runs chrooted; apt strips the chroot prefix from the paths of the .deb files it passes.
        root = setup.root
        # Everything is downloaded already: no lock on the shared package cache (dpkg still locks the root).
        cmd[1:1] = [
            "-o", f"DPkg::Chroot-Directory={root}",
            "-o", f"Dir::Cache::Archives={root / 'var/cache/apt/archives'}/",
            "-o", "Debug::NoLocking=true",
        ]  # fmt: skip
    writes_shared = sandbox is None and ("update" in args or "--download-only" in args)
    if sandbox is not None:
        prefix = dataclasses.replace(sandbox, stdout_to_fd=3).command()
    elif setup.cache_only:
        # CacheOnly=always: apt on the host gets a network namespace of its own, with nothing in it.
        prefix = Sandbox(network=False, pid_namespace=False).command()
    else:
        prefix = []
    with _shared_locks(setup, writes_shared), _reading(out) as stdout:
        result = run(cmd, env=env, stdout=stdout, check=False, sandbox=prefix)
    if check and result.returncode != 0:
        raise _apt_error(setup, args, result, out)
    return result, out


_UNKNOWN = (
    re.compile(r"E: Unable to locate package (?P<name>\S+)"),
    re.compile(r"E: Package '(?P<name>[^']+)' has no installation candidate"),
    re.compile(r"E: Couldn't find any package by \S+ '(?P<name>[^']+)'"),
    re.compile(r"E: Version '(?P<version>[^']+)' for '(?P<name>[^']+)' was not found"),
    re.compile(r"E: Release '(?P<version>[^']+)' for '(?P<name>[^']+)' was not found"),
)


def _apt_error(
    setup: AptSetup, args: Sequence[str], result: CompletedProcess[bytes], out: _Output
) -> MkosiError:
    stderr = result.stderr.decode(errors="replace").splitlines()
    unknown: list[str] = []
    for line in stderr:
        for pattern in _UNKNOWN:
            if m := pattern.search(line):
                version = m.groupdict().get("version")
                unknown.append(f"{m['name']}={version}" if version else m["name"])
    if unknown:
        repos = ", ".join(f"{r.url} {'/'.join(r.suites)}" for r in setup.repositories) or "none"
        return MkosiError(
            f"Package{'s' if len(unknown) > 1 else ''} not found: {', '.join(unknown)}",
            hint=f"searched the repositories: {repos}",
        )
    failed = [line for line in stderr if "Failed to fetch" in line]
    if failed:
        detail = re.sub(r"^[EW]: Failed to fetch\s*", "", failed[0]).strip()
        return MkosiError(f"Could not download from the repository: {detail}")
    if out.failures:
        first = next((f for f in out.failures if "dependency problems" not in f), out.failures[0])
        more = f" (and {len(out.failures) - 1} more)" if len(out.failures) > 1 else ""
        return MkosiError(f"Installing packages failed: {first}{more}")
    lines = [line for line in stderr if line.startswith("E:")] or out.errors() or stderr[-3:]
    everything = [*out.tail, *stderr]
    broken = [t.strip() for t in everything if " : Depends:" in t or " : PreDepends:" in t]
    what = " ".join(args[:2])
    msg = f"{what} failed (exit code {result.returncode}): " + "; ".join(x.strip() for x in lines[-3:])
    if broken:
        msg += " (" + "; ".join(broken[:3]) + ")"
    return MkosiError(msg)


def _chroot_sandbox(setup: AptSetup, *, chroot: bool) -> Sandbox:
    """dpkg inside the root: no network, package cache at /var/cache/apt/archives, services forbidden,
    no fsync()."""
    binds = (
        Bind(setup.archives, ARCHIVES_IN_ROOT, readonly=chroot),
        Bind(setup.state_dir / "policy-rc.d", Path("/usr/sbin/policy-rc.d"), readonly=True),
    )
    # The root is a build tree: a crash means a rebuild, so dpkg's fsync() after every step buys nothing.
    return Sandbox(
        root=setup.root, chroot=chroot, binds=binds, network=False, env=_host_env(setup), no_sync=True
    )


# ---------------------------------------------------------------------------------------------------------
# The public operations


def sync(setup: AptSetup) -> None:
    """Download the repository metadata into ``state_dir`` (once for every image sharing it).

    With ``cache_only`` nothing is downloaded: the metadata already there is used.
    """
    prepare(setup)
    if setup.cache_only:
        lists = setup.state_dir / "lists"
        if not any(p.is_file() and p.name != "lock" for p in lists.iterdir()):
            raise MkosiError(
                f"CacheOnly=always: there is no repository metadata in {lists} to use",
                hint="build once with CacheOnly=auto (and a CacheDirectory=) to sync it",
            )
        log.info("CacheOnly=always: not syncing repository metadata, using what is there")
        return
    result, out = _apt(setup, ["apt-get", "update"], label="Syncing repository metadata", check=False)
    if result.returncode == 0:
        return
    text = result.stderr.decode(errors="replace").splitlines() + list(out.tail)
    for line in text:
        m = re.search(r"Failed to fetch (\S+)\s*(.*)", line)
        if m:
            raise MkosiError(
                f"Could not fetch repository metadata from {m.group(1)}: {m.group(2).strip() or 'failed'}",
                hint="check the mirror, release and network",
            )
    for line in text:
        m = re.search(r"The repository '([^']+)' (.*)", line)
        if m:
            raise MkosiError(
                f"Repository {m.group(1)} {m.group(2).strip()}",
                hint="check that the release exists on the mirror",
            )
    raise _apt_error(setup, ["apt-get", "update"], result, out)


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([^\]]+)\]\)")


def resolve(setup: AptSetup, packages: Sequence[str]) -> list[Package]:
    """What apt would install into the root for ``packages`` (a simulation)."""
    return _simulate(setup, ["apt-get", "install", "--simulate", *packages])


def _simulate(setup: AptSetup, args: Sequence[str]) -> list[Package]:
    """The packages an apt command (with ``--simulate``) would install."""
    _, out = _apt(setup, args, label="Resolving", keep=True)
    pkgs = []
    for line in out.lines:
        m = _INST.match(line)
        if m:
            name = m.group(1).split(":", 1)[0]
            pkgs.append(Package(name, m.group(2), m.group(3)))
    return pkgs


def download(setup: AptSetup, packages: Sequence[str]) -> None:
    """Download ``packages`` and their dependencies (those the root lacks) into the package cache."""
    _download(setup, ["apt-get", "install", "--download-only", *packages])


def _download(setup: AptSetup, args: Sequence[str]) -> None:
    """``apt-get … --download-only``; with ``cache_only`` a package missing from the package cache fails
    with one line naming every missing package."""
    result, out = _apt(setup, args, label="Downloading", check=False)
    if result.returncode == 0:
        return
    if setup.cache_only:
        simulate = [a for a in args if a != "--download-only"]
        missing = not_cached(setup, _simulate(setup, [*simulate[:2], "--simulate", *simulate[2:]]))
        if missing:
            names = ", ".join(f"{p.name} ({p.version})" for p in missing[:10])
            if len(missing) > 10:
                names += f" (and {len(missing) - 10} more)"
            raise MkosiError(
                f"CacheOnly=always: not in the package cache {setup.archives}: {names}",
                hint="build once without CacheOnly=always to download them",
            )
    raise _apt_error(setup, args, result, out)


def not_cached(setup: AptSetup, packages: Sequence[Package]) -> list[Package]:
    """Those of ``packages`` whose ``.deb`` is not in the package cache."""
    return [p for p in packages if not (setup.archives / p.filename).exists()]


def _skeleton(setup: AptSetup) -> None:
    root = setup.root
    root.mkdir(parents=True, exist_ok=True)
    if setup.merged_usr:
        for d in ("bin", "sbin", "lib", *MERGED_USR_EXTRA.get(setup.architecture, ())):
            (root / "usr" / d).mkdir(parents=True, exist_ok=True)
            link = root / d
            if not link.is_symlink() and not link.exists():
                link.symlink_to(f"usr/{d}")
    dpkg = root / "var/lib/dpkg"
    for d in ("info", "updates", "triggers", "alternatives"):
        (dpkg / d).mkdir(parents=True, exist_ok=True)
    for f in ("status", "available"):
        (dpkg / f).touch()
    (root / "var/lib/apt").mkdir(parents=True, exist_ok=True)


def _extract(setup: AptSetup, debs: Sequence[Path]) -> None:
    """Unpack ``debs`` into the root with dpkg-deb and tar (so that dpkg and a shell exist)."""
    excludes = ""
    if not setup.with_docs:
        excludes = " ".join(f"--exclude='./usr/share/{d}/*'" for d in ("doc", "man", "info"))
    # --touch: directories shared by packages unpacked in parallel would otherwise keep whichever package's
    # time landed last (not reproducible); extraction times are clamped by SOURCE_DATE_EPOCH later, and dpkg
    # gives files their real times when it installs the same packages properly.
    script = (
        'root="$1"; shift; for deb; do '
        'dpkg-deb --fsys-tarfile "$deb" | '
        f'tar -x -p --touch --numeric-owner --keep-directory-symlink -C "$root" {excludes} || exit 1; done'
    )
    workers = max(1, min(4, os.cpu_count() or 1))
    chunks = [list(debs[i::workers]) for i in range(workers)]

    def one(chunk: list[Path]) -> None:
        if chunk:
            run(["sh", "-c", script, "sh", setup.root, *chunk], what="extracting essential packages")

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(one, c) for c in chunks]:
            f.result()


def _dpkg_install(setup: AptSetup, pkgs: Sequence[Package]) -> None:
    """Install ``pkgs`` (already in the package cache) with dpkg running inside the root."""
    opts = ["--force-depends", "--force-confdef", "--force-confold", "--force-unsafe-io", "--status-fd=1"]
    if not setup.with_docs:
        opts += DOC_EXCLUDES
    files = [os.fspath(ARCHIVES_IN_ROOT / p.filename) for p in pkgs]
    out = _Output("Installing essential packages", total=len(pkgs))
    with _reading(out) as stdout:
        result = run(
            ["dpkg", *opts, "--install", *files],
            sandbox=_chroot_sandbox(setup, chroot=True).command(),
            stdout=stdout,
            check=False,
        )
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").splitlines()
        detail = "; ".join(out.failures[:2]) or "; ".join(x.strip() for x in lines[-3:] if x.strip())
        raise MkosiError(f"Installing the essential packages with dpkg failed: {detail}")


def _bootstrap(setup: AptSetup, packages: Sequence[str]) -> None:
    if setup.status.exists() and setup.status.stat().st_size > 0:
        raise MkosiError(f"Cannot bootstrap {setup.root}: it already has a dpkg database")
    _skeleton(setup)
    wanted = [*setup.essential, *packages]
    # Which packages form the essential set is a separate question to apt; ask it while downloading.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(resolve, setup, setup.essential)
        download(setup, wanted)
        essential = future.result()
    if not essential:
        raise MkosiError("The repositories provide no essential packages", hint="check release and mirror")
    debs = [setup.archives / p.filename for p in essential]
    missing = [d.name for d in debs if not d.exists()]
    if missing:
        raise MkosiError(f"Downloaded packages missing from the cache: {', '.join(missing[:5])}")
    log.debug(f"Extracting {len(debs)} essential packages into {setup.root}")
    _extract(setup, debs)
    _dpkg_install(setup, essential)
    _apt(
        setup,
        ["apt-get", "install", *wanted],
        label="Installing",
        sandbox=_chroot_sandbox(setup, chroot=False),
    )


def install(setup: AptSetup, packages: Sequence[str], *, bootstrap: bool = False) -> None:
    """Install ``packages`` into the root; ``bootstrap`` first creates a base system in an empty root.

    Without ``bootstrap`` the root must already have a dpkg database (a base tree or an earlier install):
    apt sees what is installed there and adds only what is missing.
    """
    prepare(setup)
    if bootstrap:
        _bootstrap(setup, packages)
        return
    if not setup.status.exists():
        raise MkosiError(
            f"{setup.root} has no dpkg database (var/lib/dpkg/status)",
            hint="bootstrap the root first or use a base tree made from a Debian root",
        )
    if not packages:
        return
    (setup.root / "var/lib/apt").mkdir(parents=True, exist_ok=True)
    download(setup, packages)
    _apt(
        setup,
        ["apt-get", "install", *packages],
        label="Installing",
        sandbox=_chroot_sandbox(setup, chroot=False),
    )


def remove(setup: AptSetup, packages: Sequence[str]) -> None:
    """Purge ``packages`` (and what only they needed) from the root; names not installed are skipped."""
    prepare(setup)
    installed = {name for name, _, _ in installed_packages(setup.root)}
    todo = [p for p in packages if p in installed or any(c in p for c in "*?[~")]
    if not todo:
        return
    _apt(
        setup,
        ["apt-get", "purge", "--auto-remove", "--allow-remove-essential", *todo],
        label="Removing",
        sandbox=_chroot_sandbox(setup, chroot=False),
    )


def _download_then_run(setup: AptSetup, args: Sequence[str], *, label: str) -> None:
    """``apt-get VERB …``: download what it needs on the host first, then run it with dpkg in the root."""
    prepare(setup)
    _download(setup, [args[0], args[1], "--download-only", *args[2:]])
    _apt(setup, args, label=label, sandbox=_chroot_sandbox(setup, chroot=False))


def upgrade(setup: AptSetup, packages: Sequence[str] = ()) -> None:
    """Upgrade ``packages`` in the root (everything when none are named)."""
    if packages:
        _download_then_run(setup, ["apt-get", "install", "--only-upgrade", *packages], label="Upgrading")
    else:
        _download_then_run(setup, ["apt-get", "dist-upgrade"], label="Upgrading")


def reinstall(setup: AptSetup, packages: Sequence[str]) -> None:
    """Install ``packages`` again, in the same versions."""
    _download_then_run(setup, ["apt-get", "install", "--reinstall", *packages], label="Reinstalling")


def sync_local(setup: AptSetup, line: str) -> None:
    """Refresh the metadata of the one source ``line`` (a local repository) and of no other."""
    prepare(setup)
    only = setup.state_dir / "local.list"
    _write_if_changed(only, line + "\n")
    _apt(
        setup,
        [
            "apt-get",
            "-o", f"Dir::Etc::SourceList={only}",
            "-o", f"Dir::Etc::SourceParts={setup.state_dir / 'empty'}",
            "-o", "APT::Get::List-Cleanup=false",
            "update",
        ],
        label="Syncing local packages",
    )  # fmt: skip


def clean_metadata(root: Path, dpkg: bool = False) -> None:
    """Remove apt's lists and caches from the root, and with ``dpkg`` the package databases too."""
    paths = [root / "var/lib/apt/lists", root / "var/cache/apt"]
    if dpkg:
        paths += [root / "var/lib/apt", root / "var/lib/dpkg"]
    for p in paths:
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.exists():
            shutil.rmtree(p)


def installed_packages(root: Path) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of every package installed in the root."""
    admindir = root / "var/lib/dpkg"
    if not (admindir / "status").exists():
        return []
    res = run(
        [
            "dpkg-query",
            f"--admindir={admindir}",
            "--show",
            "--showformat=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
        ],
        stdout=-1,
    )
    pkgs = []
    for line in res.stdout.decode().splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0].startswith("ii"):
            pkgs.append((fields[1], fields[2], fields[3]))
    return sorted(pkgs)

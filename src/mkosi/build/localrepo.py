"""The local package repository: ``PackageDirectories=``, ``mkosi.packages/`` and ``$PACKAGEDIR``.

Every image of one invocation shares one directory of ``.deb`` files in the workspace. The packages of
``PackageDirectories=`` and ``VolatilePackageDirectories=`` are copied into it, and build scripts may add
more (``$PACKAGEDIR`` is bound to it). It is offered to apt as a flat repository with a ``Packages`` index
and an unsigned ``Release`` file written here (no dpkg-scanpackages needed), marked trusted. apt fetches it
with its ``copy`` method, so that the packages land in the package cache like downloaded ones and dpkg,
which runs chrooted in the image, can read them from there.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from mkosi import log
from mkosi.build.context import Context
from mkosi.errors import MkosiError
from mkosi.installers import apt
from mkosi.installers.apt import AptSetup
from mkosi.run import run

INDEX = "Packages"
RELEASE = "Release"


def directory(ctx: Context) -> Path:
    """The repository directory, shared by all images of the invocation (created on first use)."""
    d = ctx.shared.workspace / "packages"
    d.mkdir(mode=0o755, parents=True, exist_ok=True)
    return d


def wanted(ctx: Context) -> bool:
    c = ctx.config
    return bool(c.package_directories or c.volatile_package_directories)


def _debs(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*.deb") if p.is_file())


def _import(sources: Iterable[Path], repo: Path) -> None:
    """Copy the ``.deb`` files of ``sources`` into ``repo`` (a file with the same name is replaced)."""
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise MkosiError(f"Package directory {source} does not exist or is not a directory")
        for deb in _debs(source):
            target = repo / deb.name
            st = deb.stat()
            if target.exists():
                tt = target.stat()
                if tt.st_size == st.st_size and tt.st_mtime_ns == st.st_mtime_ns:
                    continue
            tmp = repo / f".{deb.name}.tmp"
            shutil.copy2(deb, tmp)
            tmp.replace(target)


def populate(ctx: Context) -> None:
    """Bring the packages of the configured package directories into the repository."""
    _import([*ctx.config.package_directories, *ctx.config.volatile_package_directories], directory(ctx))


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stanza(repo: Path, deb: Path) -> str:
    """One ``Packages`` entry: the package's control fields plus where the file is and its checksums."""
    fields = run(["dpkg-deb", "--field", deb], stdout=-1, what=f"reading {deb.name}").stdout.decode()
    control = [line for line in fields.rstrip("\n").splitlines() if line]
    if not any(line.startswith("Package:") for line in control):
        raise MkosiError(f"{deb} is not a Debian package (no Package: field)")
    rel = deb.relative_to(repo).as_posix()
    control += [
        f"Filename: ./{rel}",
        f"Size: {deb.stat().st_size}",
        f"MD5sum: {_digest(deb, 'md5')}",
        f"SHA256: {_digest(deb, 'sha256')}",
    ]
    return "\n".join(control) + "\n"


def _cache_key(repo: Path, deb: Path) -> str:
    st = deb.stat()
    return f"{deb.relative_to(repo).as_posix()} {st.st_size} {st.st_mtime_ns}"


def index(repo: Path) -> bool:
    """(Re)write ``Packages`` and ``Release`` when the set of packages changed. Whether there are any."""
    debs = _debs(repo)
    state = repo / ".mkosi-index-state"
    key = "\n".join(_cache_key(repo, d) for d in debs)
    if state.exists() and state.read_text() == key and (repo / INDEX).exists():
        return bool(debs)
    packages = "\n".join(_stanza(repo, d) for d in debs)
    (repo / INDEX).write_text(packages)
    size = (repo / INDEX).stat().st_size
    release = [
        "Origin: mkosi",
        "Label: mkosi local packages",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "MD5Sum:",
        f" {_digest(repo / INDEX, 'md5')} {size} {INDEX}",
        "SHA256:",
        f" {_digest(repo / INDEX, 'sha256')} {size} {INDEX}",
    ]
    (repo / RELEASE).write_text("\n".join(release) + "\n")
    state.write_text(key)
    log.debug(f"Indexed {len(debs)} local package(s) in {repo}")
    return bool(debs)


def source_line(repo: Path) -> str:
    """The one-line apt source for the repository (a trusted flat repository)."""
    return f"deb [trusted=yes] copy://{os.fspath(repo.resolve())}/ ./"


def sources(ctx: Context) -> tuple[str, ...]:
    """The extra apt sources of an image: the local repository once it holds packages."""
    repo = ctx.shared.workspace / "packages"
    if not repo.is_dir():
        return ()
    return (source_line(repo),) if index(repo) else ()


def sync(ctx: Context, setup: AptSetup) -> None:
    """Make apt see the repository's current packages (once per content, per metadata directory)."""
    repo = ctx.shared.workspace / "packages"
    if not repo.is_dir() or not index(repo):
        return
    key = f"localrepo:{setup.state_dir}:{(repo / INDEX).stat().st_mtime_ns}:{_digest(repo / INDEX, 'sha256')}"
    if key in ctx.shared.synced:
        return
    apt.sync_local(setup, source_line(repo))
    ctx.shared.synced[key] = repo

"""User scripts: configure, sync, prepare, build, postinst, finalize, postoutput and clean.

Every script runs in a :class:`mkosi.sandbox.Sandbox` whose root is a small scaffold directory: the host's
``/usr``, ``/etc`` and ``/opt`` appear read-only, ``/tmp``, ``/run`` and ``/var/tmp`` are private, and the
documented places are bound in: the build sources at ``/work/src`` (the working directory), the image at
``/buildroot``, ``$DESTDIR`` at ``/work/dest``, ``$OUTPUTDIR`` at ``/work/out``, ``$BUILDDIR`` at
``/work/build``, ``$ARTIFACTDIR`` at ``/work/artifacts``, ``$PACKAGEDIR`` at ``/work/packages``, the JSON of
the configuration at ``/work/config.json`` and the script itself at ``/work/<kind>``. The files of
``SandboxTrees=`` appear at their paths, over the host's (read-only overlays; the host is not changed).
Helper commands (``mkosi-chroot``, ``mkosi-install``, …) are small generated shell scripts in ``/work/bin``,
first on ``$PATH``; the ones that do real work call back into this module (:func:`helper_main`).

A script whose name ends in ``.chroot`` is run as ``mkosi-chroot /work/<kind>``: chrooted into the image,
with the ``$CHROOT_*`` values in place of the host ones.

The build scripts run in the build overlay: a copy of the image (cheap with reflinks) with
``BuildPackages=`` installed, in which ``mkosi.prepare build`` ran first. It is thrown away afterwards;
only what the scripts put in ``$DESTDIR`` is copied into the image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import shlex
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mkosi
from mkosi import log
from mkosi.build import cache
from mkosi.build.context import Context
from mkosi.build.script_helpers import APT_JSON, BUILDROOT, HELPERS, apt_spec, write_helpers
from mkosi.cli import Verb
from mkosi.config.model import Architecture, BuildSourcesEphemeral
from mkosi.config.specifiers import build_subdir
from mkosi.config.typed import Config
from mkosi.errors import MkosiError
from mkosi.run import run
from mkosi.sandbox import DEFAULT_PATH, Bind, Overlay, Sandbox, chroot_env, mount_overlay, unmount

WORK = Path("/work")
SRCDIR = WORK / "src"
DESTDIR = WORK / "dest"
OUTPUTDIR = WORK / "out"
BUILDDIR = WORK / "build"
ARTIFACTDIR = WORK / "artifacts"
PACKAGEDIR = WORK / "packages"
CONFIG_JSON = WORK / "config.json"

#: The host directories every script sees (read-only), when they exist as real directories.
HOST_DIRS = ("/usr", "/etc", "/opt", "/srv", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class ScriptKind(enum.Enum):
    """The kinds of scripts: where each is mounted and how it is called in messages."""

    configure = "configure"
    sync = "sync"
    prepare = "prepare"
    build = "build"
    postinst = "postinst"
    finalize = "finalize"
    postoutput = "postoutput"
    clean = "clean"

    @property
    def mount(self) -> Path:
        return WORK / ("build-script" if self is ScriptKind.build else self.value)

    @property
    def label(self) -> str:
        return {
            ScriptKind.postinst: "Post-installation",
            ScriptKind.postoutput: "Post-output",
        }.get(self, self.value.capitalize())

    @property
    def in_image(self) -> bool:
        """Whether the script works on an image root (``$BUILDROOT``, ``.chroot`` scripts, helpers)."""
        return self in (ScriptKind.prepare, ScriptKind.build, ScriptKind.postinst, ScriptKind.finalize)


K = ScriptKind
_ALL = frozenset(ScriptKind)
_IMAGE = frozenset({K.prepare, K.build, K.postinst, K.finalize})

#: Which documented variable each kind of script receives (the table in the manual's SCRIPTS section).
VARIABLES: dict[str, frozenset[ScriptKind]] = {
    "ARCHITECTURE": _ALL,
    "ARTIFACTDIR": _IMAGE,
    "BUILDDIR": frozenset({K.build, K.postinst, K.finalize}),
    "BUILDROOT": _IMAGE,
    "CACHED": frozenset({K.sync}),
    "CHROOT_BUILDDIR": frozenset({K.build}),
    "CHROOT_DESTDIR": frozenset({K.build}),
    "CHROOT_OUTPUTDIR": frozenset({K.postinst, K.finalize}),
    "CHROOT_SCRIPT": _IMAGE,
    "CHROOT_SRCDIR": _IMAGE,
    "MKOSI_DEBUG": _ALL,
    "DESTDIR": frozenset({K.build}),
    "DISTRIBUTION": _ALL,
    "DISTRIBUTION_ARCHITECTURE": _ALL,
    "EFI_ARCHITECTURE": _ALL,
    "IMAGE_ID": _ALL,
    "IMAGE_VERSION": _ALL,
    "MKOSI_CONFIG": _ALL - {K.configure},
    "MKOSI_GID": _ALL,
    "MKOSI_UID": _ALL,
    "OUTPUTDIR": frozenset({K.postinst, K.finalize, K.postoutput, K.clean}),
    "PACKAGEDIR": _IMAGE,
    "PROFILES": _ALL - {K.postoutput},
    "QEMU_ARCHITECTURE": frozenset({K.configure}),
    "RELEASE": _ALL,
    "SCRIPT": _IMAGE,
    "SOURCE_DATE_EPOCH": _IMAGE | {K.clean},
    "SRCDIR": _ALL,
    "WITH_DOCS": frozenset({K.prepare, K.build}),
    "WITH_NETWORK": _IMAGE,
    "WITH_TESTS": frozenset({K.prepare, K.build}),
}

EFI_ARCHITECTURES = {
    Architecture.x86_64: "x64",
    Architecture.x86: "ia32",
    Architecture.arm64: "aa64",
    Architecture.arm: "arm",
    Architecture.riscv64: "riscv64",
    Architecture.riscv32: "riscv32",
    Architecture.loongarch64: "loongarch64",
    Architecture.ia64: "ia64",
}

QEMU_ARCHITECTURES = {
    Architecture.x86_64: "x86_64",
    Architecture.x86: "i386",
    Architecture.arm64: "aarch64",
    Architecture.arm: "arm",
    Architecture.riscv64: "riscv64",
    Architecture.riscv32: "riscv32",
    Architecture.ppc64_le: "ppc64",
    Architecture.ppc64: "ppc64",
    Architecture.ppc: "ppc",
    Architecture.s390x: "s390x",
    Architecture.s390: "s390",
    Architecture.loongarch64: "loongarch64",
    Architecture.mips64_le: "mips64el",
    Architecture.mips_le: "mipsel",
    Architecture.alpha: "alpha",
    Architecture.parisc: "hppa",
}

PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


def one_zero(value: Any) -> str:
    return "1" if value else "0"


# ---------------------------------------------------------------------------------------------------------
# The environment


def read_environment_file(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines (``#`` comments, optional ``export``, values optionally quoted)."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise MkosiError(f"EnvironmentFiles={path}: cannot read it: {e.strerror}") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise MkosiError(f"{path}:{lineno}: not a NAME=VALUE assignment: {raw.strip()}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            try:
                value = shlex.split(value)[0] if value[0] == '"' else value[1:-1]
            except (ValueError, IndexError):
                value = value[1:-1]
        values[key] = value
    return values


def user_environment(config: Config) -> dict[str, str]:
    """``EnvironmentFiles=`` (``mkosi.env`` first, then the listed files), then ``Environment=``."""
    env: dict[str, str] = {}
    for path in config.environment_files or []:
        env.update(read_environment_file(Path(path)))
    env.update(config.environment or {})
    return env


def distribution_architecture(config: Config) -> str:
    from mkosi import distributions

    try:
        mod = distributions.module(config.distribution)
        return str(mod.architecture(config.architecture.value))
    except (MkosiError, AttributeError, KeyError):
        return str(config.architecture.deb_arch())


def documented_environment(
    config: Config,
    kind: ScriptKind,
    *,
    builddir: bool = False,
    cached: bool = False,
) -> dict[str, str]:
    """The variables the manual documents for ``kind``, with the values for this image."""
    arch = config.architecture
    values: dict[str, str | None] = {
        "ARCHITECTURE": arch.value,
        "ARTIFACTDIR": os.fspath(ARTIFACTDIR),
        "BUILDDIR": os.fspath(BUILDDIR) if builddir else None,
        "BUILDROOT": os.fspath(BUILDROOT),
        "CACHED": one_zero(cached),
        "CHROOT_BUILDDIR": os.fspath(BUILDDIR) if builddir else None,
        "CHROOT_DESTDIR": os.fspath(DESTDIR),
        "CHROOT_OUTPUTDIR": os.fspath(OUTPUTDIR),
        "CHROOT_SCRIPT": os.fspath(kind.mount),
        "CHROOT_SRCDIR": os.fspath(SRCDIR),
        "MKOSI_DEBUG": one_zero(log.debug_enabled()),
        "DESTDIR": os.fspath(DESTDIR),
        "DISTRIBUTION": config.distribution.value,
        "DISTRIBUTION_ARCHITECTURE": distribution_architecture(config),
        "EFI_ARCHITECTURE": EFI_ARCHITECTURES.get(arch),
        "IMAGE_ID": config.image_id or None,
        "IMAGE_VERSION": config.image_version or None,
        "MKOSI_CONFIG": os.fspath(CONFIG_JSON),
        "MKOSI_GID": str(os.getgid()),
        "MKOSI_UID": str(os.getuid()),
        "OUTPUTDIR": os.fspath(OUTPUTDIR),
        "PACKAGEDIR": os.fspath(PACKAGEDIR),
        "PROFILES": ",".join(config.profiles) if config.profiles else None,
        "QEMU_ARCHITECTURE": QEMU_ARCHITECTURES.get(arch),
        "RELEASE": config.release,
        "SCRIPT": os.fspath(kind.mount),
        "SOURCE_DATE_EPOCH": str(config.source_date_epoch) if config.source_date_epoch is not None else None,
        "SRCDIR": os.fspath(SRCDIR),
        "WITH_DOCS": one_zero(config.with_docs),
        "WITH_NETWORK": one_zero(config.with_network),
        "WITH_TESTS": one_zero(config.with_tests),
    }
    return {k: v for k, v in values.items() if v is not None and kind in VARIABLES[k]}


def script_environment(config: Config, kind: ScriptKind, **kwargs: Any) -> dict[str, str]:
    """The whole environment of a script: a clean base, the documented variables, then the user's."""
    env = chroot_env({"PATH": f"{HELPERS}:{DEFAULT_PATH}"})
    for name in ("TERM", *PROXY_VARIABLES):
        if name in os.environ:
            env[name] = os.environ[name]
    # git refuses repositories owned by someone else; build sources often are (manual: safe.directory=*).
    env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"})
    env.update(documented_environment(config, kind, **kwargs))
    env.update(user_environment(config))
    return env


# ---------------------------------------------------------------------------------------------------------
# Where scripts run


def _under_usr(path: Path) -> bool:
    return path == Path("/usr") or Path("/usr") in path.parents


def scaffold(where: Path) -> Path:
    """The (empty) root directory of the script sandbox; the host's directories are bound into it."""
    root = where / "sandbox-root"
    if root.is_dir():
        return root
    for d in ("usr", "etc", "work", "var/tmp", "root", "tmp", "buildroot"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/tmp").chmod(0o1777)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            (root / name).symlink_to(os.readlink(host))
    return root


#: Places of the script sandbox that are its own (API file systems, private directories, mkosi's mounts):
#: the sandbox trees cannot put files there.
SANDBOX_OWN = frozenset({"proc", "sys", "dev", "run", "tmp", "var/tmp", "work", "buildroot"})


def sandbox_tree_mounts(tree: Path, scaffold: Path) -> tuple[list[Bind], list[Overlay], list[str]]:
    """How the files of the merged ``SandboxTrees=`` appear at their paths in a script's sandbox.

    A top-level directory that is bound from the host (``/etc``, ``/usr``, …) becomes a read-only overlay
    of the tree's directory on top of the host's; anything else is bound read-only onto the scaffold (whose
    mount points live in the workspace). Nothing on the host changes. Also returns what is left out (a place
    the sandbox owns, or a host symlink such as ``/bin`` on merged-/usr hosts), for a warning.
    """
    binds: list[Bind] = []
    overlays: list[Overlay] = []
    skipped: list[str] = []

    def visit(rel: Path) -> None:
        for entry in sorted((tree / rel).iterdir()):
            r = rel / entry.name
            host = Path("/") / r
            if r.as_posix() in SANDBOX_OWN:
                skipped.append(f"/{r.as_posix()}")
            elif len(r.parts) == 1 and os.fspath(host) in HOST_DIRS and os.path.lexists(host):
                if host.is_dir() and not host.is_symlink() and entry.is_dir() and not entry.is_symlink():
                    overlays.append(Overlay((entry, host), host))
                else:
                    skipped.append(f"/{r.as_posix()}")
            elif entry.is_dir() and not entry.is_symlink() and (scaffold / r).is_dir():
                visit(r)
            else:
                binds.append(Bind(entry, host, readonly=True))

    visit(Path("."))
    return binds, overlays, skipped


def host_binds(root: Path) -> list[Bind]:
    """The scaffold on itself (so that nested sandboxes find a mount point at /), host directories, and
    the Python and mkosi that the helper commands run."""
    binds = [Bind(root, Path("/"))]
    for d in HOST_DIRS:
        p = Path(d)
        if p.is_dir() and not p.is_symlink():
            binds.append(Bind(p, p, readonly=True))
    extra = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    extra.add(Path(mkosi.__file__).resolve().parent.parent)
    for p in sorted(extra):
        if p.is_dir() and not _under_usr(p) and p != Path("/"):
            binds.append(Bind(p, p, readonly=True))
    return binds


@dataclasses.dataclass
class Place:
    """What scripts of one image need on the host: scaffold, helpers, JSON files, shared directories."""

    config: Config
    workdir: Path
    debug_shell: bool = False
    artifacts: Path | None = None
    packages: Path | None = None
    #: host path → same path inside the sandbox (apt's metadata, the package cache, the local repository)
    apt_paths: tuple[Path, ...] = ()
    apt_json: Path | None = None
    cached: bool = False
    #: the merged SandboxTrees= (their files appear at their paths in every script's sandbox)
    sandbox_tree: Path | None = None
    _tree_mounts: tuple[tuple[Bind, ...], tuple[Overlay, ...]] | None = dataclasses.field(
        default=None, init=False, repr=False
    )

    @property
    def root(self) -> Path:
        return scaffold(self.workdir)

    @property
    def helpers(self) -> Path:
        return write_helpers(self.workdir)

    def tree_mounts(self) -> tuple[tuple[Bind, ...], tuple[Overlay, ...]]:
        """The binds and overlays that show the sandbox trees to scripts (worked out once)."""
        if self._tree_mounts is None:
            binds: list[Bind] = []
            overlays: list[Overlay] = []
            if self.sandbox_tree is not None and self.sandbox_tree.is_dir():
                binds, overlays, skipped = sandbox_tree_mounts(self.sandbox_tree, self.root)
                if skipped:
                    what = ", ".join(skipped)
                    log.warn(f"SandboxTrees=: not visible to scripts (the sandbox's own places): {what}")
            self._tree_mounts = (tuple(binds), tuple(overlays))
        return self._tree_mounts

    @property
    def config_json(self) -> Path:
        path = self.workdir / "config.json"
        if not path.exists():
            from mkosi.config.summary import image_json

            path.write_text(json.dumps(image_json(self.config), indent=4, sort_keys=True) + "\n")
        return path


def _check_script(config: Config, script: Path) -> None:
    if not script.exists():
        raise MkosiError(f"Script {script} does not exist")
    if script.is_file() and not os.access(script, os.X_OK):
        if config.make_scripts_executable:
            script.chmod(script.stat().st_mode | 0o111)
        else:
            raise MkosiError(
                f"Script {script} is not executable",
                hint="make it executable (chmod +x) or set MakeScriptsExecutable=yes",
            )


def copy_sources(source: Path, dst: Path, exclude: Sequence[Path], *, update: bool = False) -> None:
    """Copy the tree ``source`` to ``dst`` without the directories ``exclude`` (mkosi's own directories,
    such as the workspace or the output directory, often lie inside the sources). ``update`` copies only
    files newer than those in ``dst``."""
    source = source.resolve()
    inside = [p for p in (Path(e).resolve() for e in exclude) if p != source and p.is_relative_to(source)]
    dst.mkdir(parents=True, exist_ok=True)
    dst.chmod(source.stat().st_mode & 0o7777)
    entries = []
    for entry in sorted(source.iterdir()):
        if entry in inside:
            continue
        if entry.is_dir() and not entry.is_symlink() and any(p.is_relative_to(entry) for p in inside):
            copy_sources(entry, dst / entry.name, inside, update=update)
        else:
            entries.append(entry)
    if entries:
        flags = ["-a", "--reflink=auto", *(["-u"] if update else [])]
        run(["cp", *flags, f"--target-directory={dst}", "--", *entries], what=f"copying {source}")


def mkosi_directories(config: Config) -> list[Path]:
    """The directories mkosi writes to, left out of ephemeral copies of the build sources."""
    names = ("output_directory", "cache_directory", "build_directory", "package_cache_directory")
    return [Path(getattr(config, n)) for n in (*names, "workspace_directory") if getattr(config, n, None)]


@contextlib.contextmanager
def mounted_sources(
    config: Config, workdir: Path, kind: ScriptKind, exclude: Sequence[Path] = ()
) -> Iterator[list[Bind]]:
    """``BuildSources=`` below ``/work/src``, copied first when they are ephemeral for ``kind``."""
    exclude = [*exclude, workdir, *mkosi_directories(config)]
    trees = sorted(config.build_sources or [], key=lambda t: os.fspath(t.target or ""))
    mode = config.build_sources_ephemeral
    ephemeral = kind is not K.sync and mode in (BuildSourcesEphemeral.yes, BuildSourcesEphemeral.buildcache)
    temporary: Path | None = None
    binds = []
    try:
        for i, tree in enumerate(trees):
            source = Path(tree.source)
            target = SRCDIR / os.fspath(tree.target or "").lstrip("/")
            if not source.is_dir():
                raise MkosiError(f"BuildSources={source}: not a directory")
            if ephemeral and mode == BuildSourcesEphemeral.buildcache and kind is K.build:
                sub = build_subdir(config)
                if sub is None:
                    raise MkosiError(
                        "BuildSourcesEphemeral=buildcache needs a build directory (BuildDirectory=)"
                    )
                copy = sub / "mkosi.buildcache" / str(i)
                # Keep what the build scripts changed; bring in what changed in the sources since.
                copy_sources(source, copy, exclude, update=True)
                source = copy
            elif ephemeral:
                if temporary is None:
                    temporary = Path(tempfile.mkdtemp(prefix="ephemeral-sources-", dir=workdir))
                copy = temporary / str(i)
                copy_sources(source, copy, exclude)
                source = copy
            binds.append(Bind(source, target))
        yield binds
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _outer_command(script: Path, kind: ScriptKind, args: Sequence[str]) -> list[str]:
    if script.name.endswith(".chroot"):
        if not kind.in_image:
            raise MkosiError(
                f"{script}: only prepare, build, post-installation and finalize scripts can be .chroot"
            )
        return ["mkosi-chroot", os.fspath(kind.mount), *args]
    return [os.fspath(kind.mount), *args]


def run_script(
    place: Place,
    kind: ScriptKind,
    script: Path,
    *,
    sources: Sequence[Bind],
    args: Sequence[str] = (),
    buildroot: Path | None = None,
    destdir: Path | None = None,
    outputdir: Path | None = None,
    network: bool = True,
    input: str | None = None,
    capture: bool = False,
) -> bytes:
    """Run one script in its sandbox; a failure raises one line naming the script and its exit code."""
    config = place.config
    script = Path(script)
    _check_script(config, script)
    builddir = build_subdir(config) if kind in (K.build, K.postinst, K.finalize) else None
    if builddir is not None:
        builddir.mkdir(parents=True, exist_ok=True)
    env = script_environment(config, kind, builddir=builddir is not None, cached=place.cached)

    tree_binds, overlays = place.tree_mounts()
    covered = {o.dst for o in overlays}
    binds = [b for b in host_binds(place.root) if b.dst not in covered]
    binds += [*tree_binds, *sources]
    binds += [Bind(script, kind.mount, readonly=True), Bind(place.helpers, HELPERS, readonly=True)]
    if "MKOSI_CONFIG" in env:
        binds.append(Bind(place.config_json, CONFIG_JSON, readonly=True))
    if buildroot is not None:
        binds.append(Bind(buildroot, BUILDROOT))
        for p in place.apt_paths:
            binds.append(Bind(p, p))
        if place.apt_json is not None:
            binds.append(Bind(place.apt_json, APT_JSON, readonly=True))
    if destdir is not None:
        binds.append(Bind(destdir, DESTDIR))
    if outputdir is not None:
        binds.append(Bind(outputdir, OUTPUTDIR))
    if builddir is not None:
        binds.append(Bind(builddir, BUILDDIR))
    if kind.in_image:
        if place.artifacts is not None:
            binds.append(Bind(place.artifacts, ARTIFACTDIR))
        if place.packages is not None:
            binds.append(Bind(place.packages, PACKAGEDIR))

    resolv = Path(os.path.realpath("/etc/resolv.conf"))
    if network and resolv.is_file() and not any(resolv.is_relative_to(d) for d in HOST_DIRS):
        # /etc/resolv.conf often points into /run (systemd-resolved), which is private in the sandbox.
        binds.append(Bind(resolv, resolv, readonly=True))
    sandbox = Sandbox(
        root=place.root,
        chroot=True,
        binds=tuple(binds),
        overlays=overlays,
        network=network,
        env=env,
        cwd=SRCDIR,
    )
    command = _outer_command(script, kind, args)
    log.info(f"Running {kind.label.lower()} script {script}{' ' + shlex.join(args) if args else ''}")
    result = run(
        command,
        sandbox=sandbox.command(),
        check=False,
        echo_stderr=True,
        input=input,
        stdout=-1 if capture else None,
    )
    if result.returncode != 0:
        if place.debug_shell and buildroot is not None:
            debug_shell(sandbox)
        detail = ""
        if result.returncode in (125, 127):
            tail = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
            if tail:
                detail = f": {tail[-1].strip()}"
        raise MkosiError(f"{kind.label} script {script} failed with exit code {result.returncode}{detail}")
    return result.stdout or b""


def debug_shell(sandbox: Sandbox) -> None:
    """``--debug-shell``: an interactive shell in the image the failed script worked on (needs a tty)."""
    if not sys.stdin.isatty():
        log.warn("--debug-shell: standard input is not a terminal, not starting a shell")
        return
    log.info("Starting a shell in the image to debug the failed script; exit it to stop the build")
    shell = "exec 2>&1; exec mkosi-chroot sh -c 'command -v bash >/dev/null && exec bash -i || exec sh -i'"
    run(["sh", "-c", shell], sandbox=sandbox.command(), check=False, echo_stderr=True)


# ---------------------------------------------------------------------------------------------------------
# Pipeline steps


def _place(ctx: Context) -> Place:
    """The per-image :class:`Place` (made once and kept in ``ctx.facts``)."""
    place = ctx.facts.get("scripts.place")
    if isinstance(place, Place):
        return place
    from mkosi.build import localrepo, sandboxtrees

    artifacts = ctx.shared.workspace / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    place = Place(
        config=ctx.config,
        workdir=ctx.workspace / "scripts",
        debug_shell=ctx.args.debug_shell,
        artifacts=artifacts,
        packages=localrepo.directory(ctx),
        sandbox_tree=sandboxtrees.assemble(ctx),
    )
    place.workdir.mkdir(parents=True, exist_ok=True)
    ctx.facts["scripts.place"] = place
    return place


def _apt_spec(ctx: Context, place: Place) -> None:
    """What the package manager helpers need: the apt setup (root replaced by /buildroot) and its paths.

    Written before every group of scripts, with the repository metadata synced (the local repository may
    have gained packages since the last group).
    """
    from mkosi.build import localrepo, packages

    try:
        s = packages.synced_setup(ctx)
    except MkosiError as e:
        log.warn(f"The package manager helpers will not work in scripts: {e.message}")
        return
    path = place.workdir / "apt.json"
    path.write_text(apt_spec(s))
    place.apt_json = path
    s.cache_dir.mkdir(parents=True, exist_ok=True)
    s.state_dir.mkdir(parents=True, exist_ok=True)
    place.apt_paths = (s.cache_dir, s.state_dir, localrepo.directory(ctx).resolve())
    if s.sandbox_tree is not None:
        # apt's private configuration names files of the sandbox trees by their workspace path.
        place.apt_paths += (s.sandbox_tree,)


def _network(config: Config, kind: ScriptKind) -> bool:
    if kind in (K.build, K.postinst, K.finalize):
        return bool(config.with_network)
    return True


def _run_group(
    ctx: Context,
    kind: ScriptKind,
    scripts: Sequence[Path],
    *,
    args: Sequence[str] = (),
    buildroot: Path | None = None,
    destdir: Path | None = None,
    outputdir: Path | None = None,
) -> None:
    place = _place(ctx)
    place.cached = cache.available(ctx)
    if kind.in_image:
        _apt_spec(ctx, place)
    before = set(os.listdir(outputdir)) if outputdir is not None and outputdir.is_dir() else set()
    with mounted_sources(ctx.config, place.workdir, kind, [ctx.shared.workspace]) as sources:
        for script in scripts:
            run_script(
                place,
                kind,
                Path(script),
                sources=sources,
                args=args,
                buildroot=buildroot,
                destdir=destdir,
                outputdir=outputdir,
                network=_network(ctx.config, kind),
            )
    if outputdir is not None and outputdir == ctx.staging:
        # What scripts put in $OUTPUTDIR is published with the image's own artifacts.
        for name in sorted(set(os.listdir(outputdir)) - before):
            ctx.artifacts.setdefault(name, outputdir / name)


def run_sync_scripts(ctx: Context) -> None:
    _run_group(ctx, K.sync, ctx.config.sync_scripts, args=["final"])


def run_prepare_scripts(ctx: Context) -> None:
    _run_group(ctx, K.prepare, ctx.config.prepare_scripts, args=["final"], buildroot=ctx.root)


def wants_build(ctx: Context) -> bool:
    return bool(ctx.config.build_scripts)


def _mount_build_overlay(root: Path, overlay: Path, upper: Path, work: Path) -> bool:
    """Show ``root`` at ``overlay`` with every change going to ``upper`` (overlayfs, in mkosi's private
    mount namespace, so the host never sees it); ``False`` where that is not possible (not root, or the
    file system refuses), and the caller copies instead."""
    st = os.stat(root)
    for path in (overlay, upper, work):
        path.mkdir(mode=0o755)
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    os.chown(upper, st.st_uid, st.st_gid)
    if mount_overlay(root, upper, work, overlay):
        log.debug(f"The build overlay is an overlayfs mount at {overlay}")
        return True
    log.debug("Cannot mount an overlay file system here, copying the image for the build overlay")
    for path in (overlay, upper, work):
        path.rmdir()
    return False


def run_build_scripts(ctx: Context) -> None:
    """The build overlay: a copy of the image with ``BuildPackages=``, ``mkosi.prepare build``, then the
    build scripts; what they put in ``$DESTDIR`` is copied into the image."""
    from mkosi.build import packages, trees
    from mkosi.installers import apt

    c = ctx.config
    overlay = ctx.workspace / "build-overlay"
    layers = (ctx.workspace / "build-changes", ctx.workspace / "build-overlay-work")
    for path in (overlay, *layers):
        if path.exists():
            shutil.rmtree(path)
    with log.step("Setting up the build overlay"):
        mounted = _mount_build_overlay(ctx.root, overlay, *layers)
        if not mounted:
            trees.copy_tree(ctx.root, overlay)
    try:
        if c.build_packages:
            with log.step("Installing build packages"):
                apt.install(packages.synced_setup(ctx, overlay), list(c.build_packages))
        if c.prepare_scripts:
            _run_group(ctx, K.prepare, c.prepare_scripts, args=["build"], buildroot=overlay)
        destdir = ctx.workspace / "dest"
        destdir.mkdir(mode=0o755, exist_ok=True)
        # The arguments after the verb go to the build scripts (of the build verb only).
        cmdline = list(ctx.args.cmdline) if ctx.args.verb == Verb.build else []
        _run_group(ctx, K.build, c.build_scripts, args=cmdline, buildroot=overlay, destdir=destdir)
    finally:
        if mounted:
            unmount(overlay)
        for path in (overlay, *layers):
            shutil.rmtree(path, ignore_errors=True)
    if any(destdir.iterdir()):
        with log.step("Copying the build scripts' output into the image"):
            trees.merge_tree(destdir, ctx.root)


def run_postinst_scripts(ctx: Context) -> None:
    _run_group(
        ctx,
        K.postinst,
        ctx.config.postinst_scripts,
        args=["final"],
        buildroot=ctx.root,
        outputdir=ctx.staging,
    )


def run_finalize_scripts(ctx: Context) -> None:
    _run_group(ctx, K.finalize, ctx.config.finalize_scripts, buildroot=ctx.root, outputdir=ctx.staging)


def run_postoutput_scripts(ctx: Context) -> None:
    _run_group(ctx, K.postoutput, ctx.config.postoutput_scripts, outputdir=ctx.staging)


# ---------------------------------------------------------------------------------------------------------
# Configure and clean scripts: outside of a build


@contextlib.contextmanager
def _temporary_place(config: Config, **kwargs: Any) -> Iterator[Place]:
    from mkosi.build import sandboxtrees

    parent = Path(os.environ.get("TMPDIR") or "/var/tmp")
    workdir = Path(tempfile.mkdtemp(prefix="mkosi-scripts-", dir=parent if parent.is_dir() else None))
    try:
        tree = sandboxtrees.merge(config.sandbox_trees or [], workdir / "sandbox-tree")
        yield Place(config=config, workdir=workdir, sandbox_tree=tree, **kwargs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_configure_scripts(images: Sequence[Config]) -> list[Config]:
    """``ConfigureScripts=``: each script gets its image's configuration as JSON on stdin and prints the
    new configuration as JSON. Call after loading, before building (build, shell, boot and vm verbs).
    Returns the images with the scripts' changes applied."""
    from mkosi.config.summary import image_json

    result: list[Config] = []
    for image in images:
        scripts = image.configure_scripts
        if not scripts:
            result.append(image)
            continue
        with _temporary_place(image) as place:
            for script in scripts:
                before = image_json(image)
                with mounted_sources(image, place.workdir, K.configure) as sources:
                    out = run_script(
                        place,
                        K.configure,
                        Path(script),
                        sources=sources,
                        input=json.dumps(before),
                        capture=True,
                    )
                try:
                    after = json.loads(out.decode() or "null")
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise MkosiError(f"Configure script {script} did not print JSON: {e}") from None
                if not isinstance(after, dict):
                    raise MkosiError(f"Configure script {script} did not print a JSON object")
                image = apply_json(image, before, after, str(script))
                place.config = image
        result.append(image)
    return result


def apply_json(image: Config, before: Mapping[str, Any], after: Mapping[str, Any], what: str) -> Config:
    """The image with the settings whose JSON changed taken from ``after`` (a configure script's output)."""
    from mkosi.config.settings import SETTINGS
    from mkosi.config.values import NoneType, union_members

    changes: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name not in after or after[setting.name] == before.get(setting.name):
            continue
        try:
            value = value_from_json(setting.kind, after[setting.name])
        except (ValueError, TypeError, KeyError) as e:
            raise MkosiError(
                f"Configure script {what}: {setting.name}={after[setting.name]!r}: {e}"
            ) from None
        if value is None and NoneType not in union_members(setting.value_type):
            # null empties a list or dictionary; settings that always have a value cannot be null.
            value = setting.kind.unset()
            if value is None:
                raise MkosiError(f"Configure script {what}: {setting.name}=null: the setting needs a value")
        changes[setting.dest] = value
    return dataclasses.replace(image, **changes)


def _json_text(value: Any) -> str:
    if isinstance(value, dict):
        if "Source" in value:
            target = value.get("Target")
            return f"{value['Source']}:{target}" if target else str(value["Source"])
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def value_from_json(kind: Any, value: Any) -> Any:
    """A setting's value from its JSON form (the inverse of ``Kind.to_json`` for what scripts change)."""
    from mkosi.config.values import Boolean, DictKind, Integer, ListKind, Size, ValueProblem

    try:
        if value is None:
            return None
        if isinstance(kind, ListKind):
            if not isinstance(value, list):
                raise TypeError("expected a list")
            return [kind.item(_json_text(v)) for v in value]
        if isinstance(kind, DictKind):
            if not isinstance(value, dict):
                raise TypeError("expected an object")
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(kind, Boolean) and isinstance(value, bool):
            return value
        if isinstance(kind, (Integer, Size)) and isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, list):
            result = kind.unset()
            for item in value:
                result = kind.parse(_json_text(item), result)
            return result
        return kind.parse(_json_text(value), None)
    except ValueProblem as e:
        raise ValueError(str(e)) from None


def run_clean_scripts(args: Any, images: Sequence[Config]) -> None:
    """``CleanScripts=``: run by the clean verb after the outputs were removed, with ``$OUTPUTDIR`` bound
    to the image's output directory."""
    for image in images:
        scripts = image.clean_scripts
        if not scripts:
            continue
        out = Path(image.output_directory or getattr(args, "directory", None) or Path.cwd())
        out.mkdir(parents=True, exist_ok=True)
        with _temporary_place(image) as place:
            with mounted_sources(image, place.workdir, K.clean) as sources:
                for script in scripts:
                    run_script(place, K.clean, Path(script), sources=sources, outputdir=out)

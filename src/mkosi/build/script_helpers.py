"""The helper commands user scripts find on ``$PATH``, and what they run inside the script sandbox.

The commands are small shell scripts written into a directory that :mod:`mkosi.build.scripts` binds at
``/work/bin``: ``mkosi-chroot``, ``mkosi-install``, ``mkosi-upgrade``, ``mkosi-remove``, ``mkosi-reinstall``,
``mkosi-as-caller``, plus ``apt``/``apt-get``, ``dpkg`` and the shadow tools (``useradd``, …) that work on
the image (``$BUILDROOT``) instead of the host. The ones that do real work call :func:`helper_main` with the
interpreter running mkosi. The package manager helpers read the apt setup from ``/work/apt.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mkosi
from mkosi import log
from mkosi.errors import MkosiError
from mkosi.installers import apt
from mkosi.installers.apt import AptSetup, Repository
from mkosi.sandbox import DEFAULT_PATH, Bind, Sandbox

#: Where the helper commands are, inside the script sandbox.
HELPERS = Path("/work/bin")
#: The apt setup of the image, for the package manager helpers.
APT_JSON = Path("/work/apt.json")
#: The image (or the build overlay), inside the script sandbox.
BUILDROOT = Path("/buildroot")

PACKAGE_HELPERS = ("mkosi-install", "mkosi-upgrade", "mkosi-remove", "mkosi-reinstall", "apt", "apt-get")
SHADOW_TOOLS = ("useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel")


def _python_command() -> str:
    src = os.fspath(Path(mkosi.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {src!r}); from mkosi.build.script_helpers import helper_main; "
        "sys.exit(helper_main(sys.argv[1:]))"
    )
    return f"{shlex.quote(sys.executable)} -B -c {shlex.quote(code)}"


def write_helpers(where: Path) -> Path:
    """Write the helper commands into ``where/helpers`` (once) and return that directory."""
    d = where / "helpers"
    if d.is_dir():
        return d
    d.mkdir(parents=True)
    py = _python_command()
    bodies = {name: f'exec {py} {name} "$@"\n' for name in ("mkosi-chroot", *PACKAGE_HELPERS)}
    # dpkg and the shadow tools work on the image when there is one (the script's $BUILDROOT).
    for tool in ("/usr/bin/dpkg", *(f"/usr/sbin/{t}" for t in SHADOW_TOOLS)):
        if os.path.exists(tool):
            bodies[Path(tool).name] = (
                f'if [ -n "$BUILDROOT" ]; then exec {tool} --root "$BUILDROOT" "$@"; fi\nexec {tool} "$@"\n'
            )
    if os.getuid() == 0:
        bodies["mkosi-as-caller"] = (
            'if [ "$(id -u)" = "$MKOSI_UID" ] && [ "$(id -g)" = "$MKOSI_GID" ]; then exec "$@"; fi\n'
            'exec setpriv --reuid="$MKOSI_UID" --regid="$MKOSI_GID" --clear-groups "$@"\n'
        )
    else:
        # Unprivileged, the caller is the user namespace's root already.
        bodies["mkosi-as-caller"] = 'exec "$@"\n'
    for name, body in bodies.items():
        path = d / name
        path.write_text("#!/bin/sh\n# Written by mkosi for scripts.\n" + body)
        path.chmod(0o755)
    return d


def apt_spec(setup: AptSetup) -> str:
    """``setup`` as JSON, without its root (the helpers work on ``$BUILDROOT``)."""
    data = dataclasses.asdict(setup)
    data.pop("root")
    return json.dumps(data, default=os.fspath, indent=2) + "\n"


def apt_setup(text: str, root: Path) -> AptSetup:
    """The inverse of :func:`apt_spec`, for ``root``."""
    data = json.loads(text)
    repos = []
    for r in data.pop("repositories"):
        r = {k: tuple(v) if isinstance(v, list) else v for k, v in r.items()}
        r["signed_by"] = tuple(Path(k) for k in r["signed_by"])
        repos.append(Repository(**r))
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return AptSetup(root=root, repositories=tuple(repos), **fields)


# ---------------------------------------------------------------------------------------------------------
# Inside the script sandbox


def _chroot_main(argv: Sequence[str]) -> int:
    """``mkosi-chroot [COMMAND…]``: run a command chrooted into $BUILDROOT with the $CHROOT_* values."""
    env = dict(os.environ)
    root = Path(env.get("BUILDROOT") or BUILDROOT)
    if not root.is_dir() or root == Path("/"):
        sys.stderr.write("mkosi-chroot: no image root ($BUILDROOT) to chroot into\n")
        return 1
    binds = []
    for var in ("SRCDIR", "DESTDIR", "BUILDDIR", "OUTPUTDIR", "SCRIPT"):
        host, inside = env.get(var), env.get(f"CHROOT_{var}")
        if host and inside and os.path.exists(host):
            binds.append(Bind(Path(host), Path(inside), readonly=var == "SCRIPT"))
            env[var] = inside
    for var in ("PACKAGEDIR", "ARTIFACTDIR"):
        if (host := env.get(var)) and os.path.isdir(host):
            binds.append(Bind(Path(host), Path(host)))
    env["BUILDROOT"] = "/"
    env["PATH"] = DEFAULT_PATH
    for name in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"):
        env.pop(name, None)
    cwd = Path("/")
    if "SRCDIR" in env and any(b.dst == Path(env["SRCDIR"]) for b in binds):
        cwd = Path(env["SRCDIR"])
    # The network namespace is the script's own: shared when it has network, empty when it has not.
    sandbox = Sandbox(root=root, chroot=True, binds=tuple(binds), network=True, env=env, cwd=cwd)
    prefix = sandbox.command()
    # This process only prepares the chroot: it becomes the sandbox (no output of its own to relay).
    os.execv(prefix[0], [*prefix, *(argv or ["sh"])])


def _package_main(name: str, argv: Sequence[str]) -> int:
    """``mkosi-install`` and friends, and ``apt``/``apt-get`` for the operations that change the image."""
    if not APT_JSON.exists():
        sys.stderr.write(f"{name}: no package manager is available to this script\n")
        return 1
    words = [a for a in argv if not a.startswith("-")]
    verb = name.removeprefix("mkosi-")
    if name in ("apt", "apt-get"):
        if not words:
            sys.stderr.write(
                f"{name}: which operation? (install, remove, purge, upgrade, reinstall, update)\n"
            )
            return 1
        verb, words = words[0], words[1:]
        if verb == "install" and "--reinstall" in argv:
            verb = "reinstall"
    setup = apt_setup(APT_JSON.read_text(), Path(os.environ.get("BUILDROOT") or BUILDROOT))
    log.setup(debug=os.environ.get("MKOSI_DEBUG") == "1")
    operations = {
        "update": lambda: apt.sync(setup),
        "install": lambda: apt.install(setup, words),
        "remove": lambda: apt.remove(setup, words),
        "purge": lambda: apt.remove(setup, words),
        "upgrade": lambda: apt.upgrade(setup, words),
        "dist-upgrade": lambda: apt.upgrade(setup, words),
        "full-upgrade": lambda: apt.upgrade(setup, words),
        "reinstall": lambda: apt.reinstall(setup, words),
    }
    if verb not in operations:
        sys.stderr.write(f"{name}: {verb} is not supported here; use mkosi-chroot {name} {verb} …\n")
        return 1
    try:
        operations[verb]()
    except MkosiError as e:
        sys.stderr.write(f"{name}: {e.message}\n")
        return 1
    return 0


def helper_main(argv: Sequence[str]) -> int:
    """Entry point of the generated helper commands: ``NAME ARGS…``."""
    if not argv:
        sys.stderr.write("usage: helper NAME [ARGS…]\n")
        return 2
    name, rest = argv[0], argv[1:]
    if name == "mkosi-chroot":
        return _chroot_main(rest)
    return _package_main(name, rest)

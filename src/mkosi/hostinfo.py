"""Facts about the host that defaults depend on (read once, cached)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mkosi.config.model import Distribution


def read_os_release(root: Path = Path("/")) -> dict[str, str]:
    """Parse os-release of ``root`` (``/etc/os-release``, else ``/usr/lib/os-release``)."""
    for candidate in (root / "etc/os-release", root / "usr/lib/os-release"):
        try:
            text = candidate.read_text()
        except OSError:
            continue
        result = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or key.startswith("#"):
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            result[key] = value
        return result
    return {}


@functools.cache
def host_distribution() -> tuple[Distribution | None, str | None]:
    """The host's distribution and release, as mkosi names them (release: codename where one exists)."""
    env_dist, env_release = os.environ.get("MKOSI_HOST_DISTRIBUTION"), os.environ.get("MKOSI_HOST_RELEASE")
    if env_dist and env_dist in Distribution.__members__.values():
        return Distribution(env_dist), env_release
    info = read_os_release()
    ids = [info.get("ID", "")] + info.get("ID_LIKE", "").split()
    distribution = None
    for candidate in ids:
        if candidate == "opensuse-tumbleweed" or candidate.startswith("opensuse"):
            candidate = "opensuse"
        if candidate in ("centos", "rhel") or candidate in Distribution.__members__.values():
            try:
                distribution = Distribution(candidate)
            except ValueError:
                continue
            break
    release = info.get("VERSION_CODENAME") or info.get("VERSION_ID")
    if distribution == Distribution.debian and not info.get("VERSION_CODENAME"):
        release = "testing"
    return distribution, release


@functools.cache
def host_systemd_version() -> str | None:
    """The host's systemd version (``systemctl --version``), or None without systemd."""
    from mkosi.errors import MkosiError
    from mkosi.run import capture

    try:
        out = capture(["systemctl", "--version"])
    except MkosiError:
        return None
    words = out.split()
    return words[1] if len(words) > 1 else None

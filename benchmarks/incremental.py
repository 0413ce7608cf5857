"""How much does ``Incremental=yes`` save? The same build twice: once filling the cache, once from it.

A project with ``Format=directory``, ``Packages=`` (default ``systemd udev``), a skeleton tree, a prepare
script, an extra tree, ``Hostname=``, ``Autologin=``, ``ManifestFormat=json`` and ``Checksum=yes``, plus
``CacheDirectory=`` and ``Incremental=yes``, all in a fresh directory below /var/tmp. The package cache
(``--package-cache``, default /var/tmp/mkosi-test-cache/packages, shared with the tests) is warm after the
first round, so what is compared is the installation itself against restoring the cached tree:

* **first**: ``python3 -m mkosi -f build`` with an empty cache directory: repository metadata is synced,
  packages installed, the prepare script run and the tree saved to the cache;
* **second**: the same command, unchanged configuration: the cached tree is copied in and the
  installation skipped (checked in the log), then the finalize steps and the output run as before.

Both builds start without outputs in the way (removing the previous output tree is no part of either
build). Times are from start to exit of ``mkosi``. With several rounds (each a new project) the best time
of each is kept.

    python3 benchmarks/incremental.py [--rounds N] [--packages "systemd udev"] [--package-cache DIR] [--keep]

Needs root and network access to Debian's mirror. Exit status: 0 when the second build is at least
3 times as fast as the first, 1 otherwise, 2 when the second build did not use the cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL = 3.0

CONF = """\
[Distribution]
Distribution=debian
Release={release}

[Output]
Format=directory
ManifestFormat=json

[Content]
Packages={packages}
Hostname=benchmark
Autologin=yes

[Validation]
Checksum=yes

[Build]
CacheDirectory=mkosi.cache
Incremental=yes
PackageCacheDirectory={package_cache}
"""


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def project(work: Path, n: int, args: argparse.Namespace) -> Path:
    d = work / f"round-{n}"
    write(
        d / "mkosi.conf",
        CONF.format(
            release=args.release, packages=" ".join(args.packages.split()), package_cache=args.package_cache
        ),
    )
    write(d / "mkosi.skeleton/etc/skeleton-marker", "skeleton\n")
    write(d / "mkosi.prepare", '#!/bin/sh\necho prepared > "$BUILDROOT/etc/prepared"\n', 0o755)
    write(d / "mkosi.extra/etc/extra-marker", "extra\n")
    return d


def remove_outputs(d: Path) -> None:
    for p in d.glob("image*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def build(d: Path) -> tuple[float, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO / "src"), env.get("PYTHONPATH", "")) if x)
    env["NO_COLOR"] = "1"
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "mkosi", "-f", "build"],
        cwd=d,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        sys.exit(f"mkosi failed in {d} with exit code {res.returncode}")
    return seconds, res.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds (each a new project); best time kept")
    parser.add_argument("--packages", default="systemd udev")
    parser.add_argument("--release", default="bookworm")
    parser.add_argument("--package-cache", default="/var/tmp/mkosi-test-cache/packages")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: packages are installed with dpkg inside a chroot")
    Path(args.package_cache).mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-bench-incremental-"))
    firsts: list[float] = []
    seconds: list[float] = []
    try:
        for n in range(args.rounds):
            d = project(work, n, args)
            first, _ = build(d)
            remove_outputs(d)
            second, log = build(d)
            if "skipping the installation" not in log or "Installing packages" in log:
                sys.stderr.write(log)
                print("the second build did not use the cache")
                return 2
            print(f"round {n + 1}/{args.rounds}: first {first:6.1f}s  second {second:6.1f}s", flush=True)
            firsts.append(first)
            seconds.append(second)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    first, second = min(firsts), min(seconds)
    ratio = first / second
    met = ratio >= GOAL
    print(f"\nIncremental=yes, {args.release} + {args.packages}, best of {args.rounds}:")
    print(f"  first build (fills the cache): {first:6.1f}s")
    print(f"  second build (from the cache): {second:6.1f}s")
    verdict = "met" if met else "NOT met"
    print(f"  ratio first/second:            {ratio:6.1f}x  (goal >= {GOAL:.0f}x: {verdict})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""How fast do we bootstrap the sysext tutorial's base image? Ours against mmdebstrap, cold and warm.

What is compared, in one run, on the same mirror (``--mirror``, default ``http://deb.debian.org/debian``)
and the same single suite (``bookworm main``, no -updates or -security, for both):

* **ours**: ``python3 -m mkosi -f`` (``src/`` of this repository) in a project whose ``mkosi.conf`` is the
  tutorial's base image (``Format=directory``, ``CleanPackageMetadata=no``, ``Packages=systemd udev``)
  plus ``LocalMirror=MIRROR`` (that mirror's release as the only repository, as mmdebstrap gets it) and
  ``PackageCacheDirectory=`` a directory of the benchmark's own. No ``CacheDirectory=``: the repository
  metadata is downloaded again on every run, as mmdebstrap does. Timed from start to exit (configuration,
  metadata, download, install, publishing the output directory).
* **mmdebstrap**: ``mmdebstrap --variant=essential --include=systemd,udev bookworm DIR MIRROR``, with its
  ``/var/cache/apt/archives`` bind-mounted from a directory of the benchmark's own by a ``--setup-hook``
  (unmounted by a ``--customize-hook``) and ``--skip=essential/unlink,cleanup/apt/cache`` so the packages
  it downloads stay there; that is how its manual suggests keeping a package cache. By default also with
  ``--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr``: merged-/usr made by symlinks, as we do, so both
  install the same packages (``usr-is-merged``). Without it (``--plain-mmdebstrap``) mmdebstrap satisfies
  init-system-helpers' dependency with ``usrmerge`` and installs 8 packages more (perl among them).
* **cold**: that package cache is empty (every .deb is downloaded); **warm**: it holds every package from
  the cold run (nothing is downloaded; metadata still is). Both tools get fresh output directories.

Runs are interleaved (ours, mmdebstrap, then the other order in the next round) so that a busy machine
or a warming mirror affects both alike; with several rounds the best time of each is kept. Memory: the
peak resident set of our build — the largest single process among mkosi and everything it ran, from
``wait4()``'s rusage (children + self) — and the peak of the sum over the whole process tree, sampled.

    python3 benchmarks/bootstrap.py [--rounds N] [--mirror URL] [--release NAME] [--plain-mmdebstrap] [--keep]

Needs root and network access to the mirror; installs mmdebstrap with apt-get when it is missing.
Exit status: 0 when every goal is met (cold ≤ 1.2×, warm ≤ 1.0×, peak < 150 MB), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOALS = {"cold": 1.2, "warm": 1.0}
MEMORY_GOAL_MB = 150
PACKAGES = ("systemd", "udev")

BASE_CONF = """\
[Distribution]
Release={release}
LocalMirror={mirror}

[Output]
Format=directory
Output=base
OutputDirectory={output}

[Build]
PackageCacheDirectory={cache}

[Content]
CleanPackageMetadata=no
Packages=systemd
         udev
"""


@dataclass
class Measurement:
    seconds: float
    peak_process_kb: int = 0
    peak_tree_kb: int = 0


@dataclass
class Results:
    runs: dict[tuple[str, str], list[Measurement]] = field(default_factory=dict)

    def add(self, tool: str, temperature: str, m: Measurement) -> None:
        self.runs.setdefault((tool, temperature), []).append(m)

    def best(self, tool: str, temperature: str) -> Measurement:
        return min(self.runs[(tool, temperature)], key=lambda m: m.seconds)


def ensure_mmdebstrap() -> None:
    if shutil.which("mmdebstrap"):
        return
    print("mmdebstrap is missing: apt-get install mmdebstrap", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "mmdebstrap"], check=True, env=env)


def tree_rss_kb(session: int) -> int:
    """The summed resident set of every process in ``session`` (those of one benchmarked command)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getsid(int(pid)) != session:
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total


def measure(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Measurement:
    """Run ``cmd`` in a session of its own; its wall time, peak process RSS and sampled peak tree RSS."""
    with log.open("w") as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        peak_tree = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not done.wait(0.2):
                peak_tree = max(peak_tree, tree_rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        sys.exit(f"{' '.join(cmd[:4])}… failed with exit code {proc.returncode} (log {log}):\n{tail}")
    # ru_maxrss of wait4(): the largest of the child and its waited-for descendants, in KiB.
    return Measurement(seconds, usage.ru_maxrss, peak_tree)


def installed(admindir: Path) -> int:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={admindir}", "--show", "--showformat=${db:Status-Abbrev}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if line.startswith("ii"))


def run_ours(work: Path, args: argparse.Namespace, temperature: str, n: int) -> Measurement:
    project = work / "ours"
    output = work / "ours-output"
    cache = work / "ours-cache"
    shutil.rmtree(output, ignore_errors=True)
    if temperature == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    project.mkdir(exist_ok=True)
    (project / "mkosi.conf").write_text(
        BASE_CONF.format(release=args.release, mirror=args.mirror, output=output, cache=cache)
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), NO_COLOR="1")
    m = measure(
        [sys.executable, "-m", "mkosi", "-f"], cwd=project, env=env, log=work / f"ours-{temperature}-{n}.log"
    )
    count = installed(output / "base/var/lib/dpkg")
    print(f"  ours        {temperature}: {m.seconds:6.1f}s  ({count} packages)", flush=True)
    return m


def run_mmdebstrap(work: Path, args: argparse.Namespace, temperature: str, n: int) -> Measurement:
    target = work / "mmdebstrap-root"
    cache = work / "mmdebstrap-cache"
    shutil.rmtree(target, ignore_errors=True)
    if temperature == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(exist_ok=True)
    cmd = [
        "mmdebstrap", "--variant=essential", f"--include={','.join(PACKAGES)}",
        "--skip=essential/unlink,cleanup/apt/cache",
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
        f"--setup-hook=mount --bind {cache} \"$1\"/var/cache/apt/archives",
        "--customize-hook=umount \"$1\"/var/cache/apt/archives",
        args.release, os.fspath(target), args.mirror,
    ]  # fmt: skip
    if not args.plain_mmdebstrap:
        cmd.insert(1, "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
    m = measure(cmd, cwd=work, env=dict(os.environ), log=work / f"mmdebstrap-{temperature}-{n}.log")
    count = installed(target / "var/lib/dpkg")
    print(f"  mmdebstrap  {temperature}: {m.seconds:6.1f}s  ({count} packages)", flush=True)
    return m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="cold+warm rounds; the best time is kept")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--release", default="bookworm")
    parser.add_argument(
        "--plain-mmdebstrap", action="store_true", help="run mmdebstrap without its merged-usr hook"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: both tools install packages with dpkg inside a chroot")
    ensure_mmdebstrap()

    work = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mkosi-bench-bootstrap-"))
    results = Results()
    try:
        for n in range(args.rounds):
            tools = [("ours", run_ours), ("mmdebstrap", run_mmdebstrap)]
            if n % 2:
                tools.reverse()
            print(f"round {n + 1}/{args.rounds}", flush=True)
            for temperature in ("cold", "warm"):
                for name, runner in tools:
                    results.add(name, temperature, runner(work, args, temperature, n))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ok = True
    print(f"\nbootstrap of {args.release} + {' '.join(PACKAGES)} from {args.mirror}, best of {args.rounds}:")
    for temperature in ("cold", "warm"):
        ours = results.best("ours", temperature).seconds
        theirs = results.best("mmdebstrap", temperature).seconds
        ratio = ours / theirs
        met = ratio <= GOALS[temperature]
        ok &= met
        print(
            f"  {temperature}: ours {ours:6.1f}s  mmdebstrap {theirs:6.1f}s  ratio {ratio:4.2f}x "
            f"(goal <= {GOALS[temperature]}x: {'met' if met else 'NOT met'})"
        )
    ours_runs = [m for (tool, _), ms in results.runs.items() if tool == "ours" for m in ms]
    peak = max(m.peak_process_kb for m in ours_runs) / 1024
    tree = max(m.peak_tree_kb for m in ours_runs) / 1024
    met = peak < MEMORY_GOAL_MB
    ok &= met
    print(
        f"  memory: peak process {peak:.0f} MB (mkosi and everything it ran; goal < {MEMORY_GOAL_MB} MB: "
        f"{'met' if met else 'NOT met'}), peak of the whole process tree {tree:.0f} MB (sampled)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

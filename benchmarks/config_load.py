"""How fast is loading a large configuration? ``mkosi --json summary``, ours against the reference.

Generates a configuration tree in a temporary directory: a main ``mkosi.conf``, ~50 drop-ins in
``mkosi.conf.d/`` (with ``[Match]`` blocks, ``|`` and ``!`` conditions, version comparisons and list
settings), a few enabled profiles, and 5 subimages in ``mkosi.images/``, each with drop-ins of its own.
Then runs ``python3 -m mkosi -C TREE --json summary`` in a subprocess for our implementation (``src/`` of
this repository) and for the reference (Debian's mkosi 27.1), several times each, keeps the best time,
checks that both produce the same images, and prints both times and the ratio ours/reference.

The reference is found through ``$MKOSI_REFERENCE_PYTHONPATH``, else
``/var/tmp/mkosi-reference/usr/lib/python3/dist-packages``, else
``/opt/ref/root/usr/lib/python3/dist-packages``.

    python3 benchmarks/config_load.py [--repetitions N] [--dropins N] [--keep] [--profile]

Exit status: 0 when the ratio is within the goal, 1 when it is not, 2 when the outputs disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GOAL = 0.5
REFERENCE_CANDIDATES = [
    Path("/var/tmp/mkosi-reference/usr/lib/python3/dist-packages"),
    Path("/opt/ref/root/usr/lib/python3/dist-packages"),
]
IMAGES = ["base", "app", "debug", "extra", "tools-sysext"]
PROFILES = ["desktop", "devel", "hardened"]


def reference_pythonpath() -> Path:
    env = os.environ.get("MKOSI_REFERENCE_PYTHONPATH")
    candidates = [Path(env)] if env else REFERENCE_CANDIDATES
    for candidate in candidates:
        if (candidate / "mkosi" / "__main__.py").exists():
            return candidate
    sys.exit(
        f"reference mkosi not found in {', '.join(map(str, candidates))} (set MKOSI_REFERENCE_PYTHONPATH)"
    )


# -- the tree ------------------------------------------------------------------------------------------------


def dropin(i: int) -> str:
    """A drop-in whose shape depends on ``i``: some match, some do not, all add list items."""
    match = [
        "",
        "[Match]\nDistribution=debian\n",
        "[Match]\nDistribution=|fedora\nDistribution=|debian\n",
        "[Match]\nRelease=!trixie\n",
        "[Match]\nImageVersion=>=1.2\nImageVersion=<2~rc1\n",
        "[Match]\nDistribution=fedora\n",  # never applies
        "[TriggerMatch]\nDistribution=fedora\n[TriggerMatch]\nRelease=bookworm\n",
        f"[Match]\nProfiles={PROFILES[i % len(PROFILES)]}\n",
        "[Match]\nImageId=bench-*\n",
        "[Assert]\nDistribution=|debian\nDistribution=|ubuntu\n",
    ][i % 10]
    packages = "\n".join(f"    pkg-{i}-{j}" for j in range(8))
    return (
        f"# drop-in number {i}\n"
        f"{match}"
        "[Content]\n"
        f"Packages=\n{packages}\n"
        f"BuildPackages=build-{i}-a,build-{i}-b\n"
        f"KernelCommandLine=opt{i}=%d-%r quiet\n"
        "[Build]\n"
        f"Environment=VAR_{i}=value-{i}\n"
        f"    OTHER_{i}=%%literal\n"
    )


def write_tree(root: Path, dropins: int) -> None:
    def write(name: str, text: str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write(
        "mkosi.conf",
        "[Distribution]\n"
        "Distribution=debian\n"
        "Release=bookworm\n"
        "Architecture=x86-64\n"
        "Repositories=main,contrib\n"
        "[Output]\n"
        "ImageId=bench-%d\n"
        "ImageVersion=1.4.2\n"
        "[Config]\n"
        f"Profiles={','.join(PROFILES[:2])}\n"
        "[Content]\n"
        "Packages=systemd\n"
        "    udev\n"
        "    dbus\n",
    )
    for i in range(dropins):
        write(f"mkosi.conf.d/{i:02d}-dropin.conf", dropin(i))
    # Two drop-ins that are directories with drop-ins of their own.
    for d in ("90-dir-a", "91-dir-b"):
        write(f"mkosi.conf.d/{d}/mkosi.conf", f"[Content]\nPackages={d}\n")
        for j in range(3):
            write(
                f"mkosi.conf.d/{d}/mkosi.conf.d/{j}.conf",
                f"[Match]\nImage=main\n[Content]\nPackages={d}-{j}\n",
            )
    for profile in PROFILES:
        write(f"mkosi.profiles/{profile}/mkosi.conf", f"[Content]\nPackages=profile-{profile}\n")
        write(
            f"mkosi.profiles/{profile}/mkosi.conf.d/10.conf",
            f"[Match]\nDistribution=debian\n[Content]\nBuildPackages=profile-build-{profile}\n",
        )
    write("mkosi.local.conf", "[Content]\nPackages=local-tool\n")
    for n, image in enumerate(IMAGES):
        write(
            f"mkosi.images/{image}/mkosi.conf",
            f"[Output]\nFormat={'sysext' if n else 'directory'}\nImageId={image}\n"
            f"[Content]\nPackages={image}-main\nBaseTrees=\n",
        )
        for j in range(6):
            write(
                f"mkosi.images/{image}/mkosi.conf.d/{j:02d}.conf",
                (
                    "[Match]\nImage=|{0}\nImage=|nothing\n" if j % 2 else "[Match]\nDistribution=!arch\n"
                ).format(image)
                + f"[Content]\nPackages={image}-{j}-a {image}-{j}-b\n"
                f"[Build]\nEnvironment={image.upper().replace('-', '_')}_{j}=%I\n",
            )


# -- running ----------------------------------------------------------------------------------------------


def run_summary(pythonpath: Path, tree: Path, cache: Path) -> tuple[float, dict[str, Any]]:
    # Byte code goes to a cache of our own (the reference is installed without __pycache__, and neither
    # tree should be written to), so that both are measured warm, without compiling their sources.
    env = dict(os.environ, PYTHONPATH=str(pythonpath), PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkosi", "-C", str(tree), "--json", "summary"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(f"mkosi from {pythonpath} failed with exit status {proc.returncode}")
    return elapsed, json.loads(proc.stdout)


def best_of(pythonpath: Path, tree: Path, cache: Path, repetitions: int) -> tuple[float, dict[str, Any]]:
    run_summary(pythonpath, tree, cache)  # warm the page cache and the byte code cache
    times = []
    document: dict[str, Any] = {}
    for _ in range(repetitions):
        elapsed, document = run_summary(pythonpath, tree, cache)
        times.append(elapsed)
    return min(times), document


def images_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["Image"]: image for image in document["Images"]}


def compare(ours: dict[str, Any], reference: dict[str, Any]) -> bool:
    a, b = images_of(ours), images_of(reference)
    if list(a) != list(b):
        print(f"DIFFERENT IMAGES: ours {list(a)}, reference {list(b)}")
        return False
    # Not required to agree for the benchmark, but worth knowing.
    for name in a:
        for key in ("Packages", "BuildPackages", "Environment", "KernelCommandLine", "Files", "Profiles"):
            if a[name].get(key) != b[name].get(key):
                print(f"note: {name}: {key} differs between ours and the reference")
    return True


def profile_ours(tree: Path, cache: Path) -> None:
    """cProfile of our loader in a subprocess, top functions by cumulative and own time."""
    code = (
        "import cProfile, pstats, io, contextlib, sys\n"
        "from mkosi.__main__ import main\n"
        "p = cProfile.Profile()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    p.enable(); main(['-C', {str(tree)!r}, '--json', 'summary']); p.disable()\n"
        "s = pstats.Stats(p)\n"
        "s.sort_stats('cumulative').print_stats(25)\n"
        "s.sort_stats('tottime').print_stats(15)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONPYCACHEPREFIX=str(cache))
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--dropins", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the generated tree and print where it is")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of our loader")
    opts = parser.parse_args()

    reference = reference_pythonpath()
    work = Path(tempfile.mkdtemp(prefix="mkosi-bench-"))
    tree, cache = work / "tree", work / "pycache"
    try:
        write_tree(tree, opts.dropins)
        files = sum(1 for p in tree.rglob("*") if p.is_file())
        print(f"tree: {tree} ({files} files, {opts.dropins} drop-ins, {len(IMAGES)} subimages)")

        ours_time, ours = best_of(REPO / "src", tree, cache, opts.repetitions)
        ref_time, ref = best_of(reference, tree, cache, opts.repetitions)
        same = compare(ours, ref)
        ratio = ours_time / ref_time
        print(f"images:    {', '.join(images_of(ours))}")
        print(f"ours:      {ours_time * 1000:8.1f} ms  (best of {opts.repetitions})")
        print(f"reference: {ref_time * 1000:8.1f} ms  (best of {opts.repetitions}, {reference})")
        print(f"ratio ours/reference: {ratio:.2f}  (goal <= {GOAL})")
        if opts.profile or ratio > GOAL:
            print("\n--- profile of ours ---")
            profile_ours(tree, cache)
        if not same:
            return 2
        return 0 if ratio <= GOAL else 1
    finally:
        if opts.keep:
            print(f"kept {tree}")
            shutil.rmtree(cache, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

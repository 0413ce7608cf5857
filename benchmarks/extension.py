"""How fast is writing a signed sysext? Ours against ``mkfs.erofs`` alone and against systemd-repart.

For one tree (``--tree ROOT``, a directory with ``/usr`` and maybe ``/opt``; by default a copy of the host's
``/usr/lib/python3`` and ``/usr/share/doc`` as ``/usr``, a few thousand files and ~200 MB) this times,
best of ``--repetitions`` runs each, with a warm page cache:

* ``ours``: :func:`mkosi.outputs.disk.build_image` with the default sysext layout, signed — what
  ``Format=sysext`` does after the tree is finished (erofs of /usr and /opt, verity, signature, GPT);
* ``mkfs.erofs``: just the file system of the same tree, as ``mkfs.erofs`` makes it for us;
* ``systemd-repart``: Debian trixie's ``systemd-repart --offline=yes`` (unpacked by
  tools/trixie-systemd.sh) with definitions equivalent to our default layout, the same seed, key and
  certificate.

It prints the times and the ratios ours/mkfs.erofs (goal ≤ 1.2) and ours/systemd-repart (goal ≤ 1.0), and
checks that both images hold the same partitions.

    python3 benchmarks/extension.py [--tree ROOT] [--repetitions N] [--workdir DIR] [--keep]

Exit status: 0 when both goals are met, 1 when one is not, 2 when a tool is missing or fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from mkosi import keys  # noqa: E402
from mkosi.formats import gpt, repart, signing  # noqa: E402
from mkosi.outputs.disk import Signer, build_image  # noqa: E402

GOAL_MKFS = 1.2
GOAL_REPART = 1.0
SEED = uuid.UUID("0d7a9c1e-3f06-4d3b-8f9e-0a1b2c3d4e5f")
EPOCH = 1_700_000_000
DEFAULT_SOURCES = ("/usr/lib/python3", "/usr/share/doc")

# systemd-repart definitions equivalent to repart.default_definitions("sysext").
REPART_DEFINITIONS = {
    "10-root.conf": "[Partition]\nType=root\nFormat=erofs\nCopyFiles=/usr\nCopyFiles=/opt\nVerity=data\n"
    "VerityMatchKey=root\nMinimize=best\n",
    "20-root-verity.conf": "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n",
    "30-root-verity-sig.conf": "[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n",
}


def make_tree(workdir: Path) -> Path:
    root = workdir / "tree"
    for source in DEFAULT_SOURCES:
        target = root / source.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", source, target], check=True)
    release = root / "usr/lib/extension-release.d/extension-release.bench"
    release.parent.mkdir(parents=True, exist_ok=True)
    release.write_text("ID=debian\nVERSION_ID=12\n")
    return root


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def best(repetitions: int, prepare: Callable[[], None], action: Callable[[], None]) -> float:
    times = []
    for _ in range(repetitions):
        prepare()
        os.sync()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def trixie_repart() -> Path:
    res = subprocess.run([REPO / "tools/trixie-systemd.sh"], capture_output=True, text=True)
    tool = Path(res.stdout.strip().splitlines()[-1]) / "systemd-repart" if res.returncode == 0 else None
    if tool is None or not tool.exists():
        sys.stderr.write(res.stderr)
        sys.exit("systemd-repart from trixie is not available (tools/trixie-systemd.sh failed)")
    return tool


def write_keys(workdir: Path) -> tuple[Path, Path, Signer]:
    from cryptography.hazmat.primitives import serialization

    key, cert = keys.make_key_and_certificate("benchmark", 30)
    key_path, cert_path = workdir / "bench.key", workdir / "bench.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, Signer(key, cert)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="a root with /usr (and /opt); default: from the host")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if shutil.which("mkfs.erofs") is None:
        sys.exit("mkfs.erofs (erofs-utils) is needed")
    repart_tool = trixie_repart()

    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="mkosi-bench-extension-"))
    try:
        if args.tree:
            root = work / "tree"
            subprocess.run(["cp", "-a", "--reflink=auto", args.tree, root], check=True)
        else:
            root = make_tree(work)
        files, size = tree_size(root)
        print(f"tree: {files} files, {size / 2**20:.0f} MiB ({args.tree or ', '.join(DEFAULT_SOURCES)})")
        key_path, cert_path, signer = write_keys(work)
        definitions = work / "repart.d"
        definitions.mkdir()
        for name, text in REPART_DEFINITIONS.items():
            (definitions / name).write_text(text)
        out = work / "out"
        out.mkdir()

        def clean() -> None:
            for p in out.iterdir():
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()

        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}

        def mkfs() -> None:
            subprocess.run(
                ["mkfs.erofs", "--quiet", f"-U{uuid.uuid4()}", out / "fs.erofs", root / "usr"],
                check=True,
                env=env,
            )

        def ours() -> None:
            build_image(
                repart.default_definitions("sysext"),
                root,
                out / "ours.raw",
                workdir=out / "work",
                architecture="x86-64",
                seed=SEED,
                source_date_epoch=EPOCH,
                mode=repart.VerityMode.signed,
                signer=signer,
            )

        def systemd_repart() -> None:
            subprocess.run(
                [repart_tool, "--empty=create", "--size=auto", "--dry-run=no", "--offline=yes",
                 f"--definitions={definitions}", f"--root={root}", f"--seed={SEED}",
                 f"--private-key={key_path}", f"--certificate={cert_path}", "--json=off",
                 out / "repart.raw"],
                check=True,
                env=env,
                capture_output=True,
            )  # fmt: skip

        t_mkfs = best(args.repetitions, clean, mkfs)
        t_ours = best(args.repetitions, clean, ours)
        t_repart = best(args.repetitions, clean, systemd_repart)

        # Both images hold the same partitions (types and names; sizes may differ by packing).
        clean()
        ours()
        systemd_repart()
        mine = [(e.type_name, e.name) for e in gpt.read_gpt(out / "ours.raw").partitions]
        theirs = [(e.type_name, e.name) for e in gpt.read_gpt(out / "repart.raw").partitions]
        sig = gpt.read_gpt(out / "repart.raw").partitions[-1]
        with open(out / "repart.raw", "rb") as f:
            f.seek(sig.offset)
            signing.parse_verity_signature(f.read(sig.size))
        if mine != theirs:
            print(f"partitions differ: ours {mine}, systemd-repart {theirs}")
            return 2

        print(f"mkfs.erofs alone:      {t_mkfs:7.3f}s")
        print(f"ours (sysext, signed): {t_ours:7.3f}s")
        print(f"systemd-repart 257:    {t_repart:7.3f}s")
        r_mkfs, r_repart = t_ours / t_mkfs, t_ours / t_repart
        print(f"ours / mkfs.erofs:     {r_mkfs:7.2f}   (goal <= {GOAL_MKFS})")
        print(f"ours / systemd-repart: {r_repart:7.2f}   (goal <= {GOAL_REPART})")
        return 0 if r_mkfs <= GOAL_MKFS and r_repart <= GOAL_REPART else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""The sysext tutorial with ``Format=sysext``, checked with real consumers.

``examples/sysext`` is copied and run verbatim (``mkosi genkey``, ``mkosi -f``) once per session by
conftest.py's ``sysext_tutorial``; its ``mkosi.cache`` is a link to the persistent test cache so that
reruns are warm. The tutorial's step two is conftest.py's ``sysext_tutorial_step_two``, a separate build
in a copy. ``btrfs.raw`` is then checked with Debian trixie's ``systemd-dissect`` (unpacked by
tools/trixie-systemd.sh, never installed), ``veritysetup verify`` and openssl, compared with what
upstream mkosi 25.3 produced (shared/reference), and merged by the systemd 252 of the tutorial's own base
tree in a booted container.

How the container trusts the signed image: it cannot verify it. This host's kernel has no device-mapper
at all, so neither signed nor unsigned dm-verity can be activated, and signature checks through the
kernel keyring are impossible in a container anyway; systemd 252 has no image policy either. The merge is
therefore run with ``SYSTEMD_DISSECT_VERITY_EMBEDDED=no``: systemd ignores the embedded root hash and
signature and mounts the erofs data partition directly (found by its GPT type, matched by its
extension-release). Without that variable systemd 252 recognises the signed verity partitions and tries
to activate them, which fails here for want of device-mapper (the test records that). Verity and
signature are checked on the host instead (veritysetup, openssl, trixie's systemd-dissect). Loop
partitions appear only on the host's devtmpfs, so the merge runs in a mount namespace with a devtmpfs on
/dev (the merged /usr propagates back to the container).
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, Tutorial, scratch, write

from mkosi.config.model import Architecture
from mkosi.formats import gpt, signing, verity

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and dpkg on the host"),
]

REFERENCE = REPO / "../shared/reference/upstream-mkosi-25.3-tutorial"
ARCH = Architecture.native().value


@functools.cache
def trixie_tools() -> Path | None:
    res = subprocess.run([REPO / "tools/trixie-systemd.sh"], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        print(res.stderr)
        return None
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def trixie() -> Path:
    tools = trixie_tools()
    if tools is None:
        pytest.skip("tools/trixie-systemd.sh could not unpack trixie's systemd")
    return tools


def dissect(trixie: Path, *args: str | Path, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [trixie / "systemd-dissect", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def partition_bytes(image: Path, entry: gpt.GptEntry) -> bytes:
    with open(image, "rb") as f:
        f.seek(entry.offset)
        return f.read(entry.size)


def extract(image: Path, entry: gpt.GptEntry, target: Path) -> Path:
    target.write_bytes(partition_bytes(image, entry))
    return target


def mtree(trixie: Path, image: Path) -> dict[str, dict[str, str]]:
    text = dissect(trixie, "--mtree", image, env={"SYSTEMD_DISSECT_VERITY_EMBEDDED": "no"})
    entries = {}
    for line in text.splitlines():
        path, *fields = line.split(" ")
        entries[path.removeprefix("./").rstrip("/")] = dict(f.split("=", 1) for f in fields)
    return entries


# ---------------------------------------------------------------------------------------------- layout


def test_btrfs_raw_has_root_verity_and_signature_partitions(sysext_tutorial: Tutorial) -> None:
    table = gpt.read_gpt(sysext_tutorial.sysext)
    names = [f"root-{ARCH}", f"root-{ARCH}-verity", f"root-{ARCH}-verity-sig"]
    assert [e.name for e in table.partitions] == names
    assert [e.type_name for e in table.partitions] == names
    data, hashp, sig = table.partitions
    assert data.attributes == gpt.ATTR_READ_ONLY and hashp.attributes == gpt.ATTR_READ_ONLY
    assert sig.attributes == 0
    assert data.offset == 1 << 20 and sig.size == 16384
    # The data and hash partition UUIDs are the halves of the signed root hash.
    signed = signing.parse_verity_signature(partition_bytes(sysext_tutorial.sysext, sig))
    assert (data.uuid, hashp.uuid) == verity.partition_uuids(signed.root_hash)
    assert "signed verity" in sysext_tutorial.stderr
    # Upstream's btrfs.raw of the same tutorial has exactly this shape (sizes depend on the mirror's day).
    if (REFERENCE / "btrfs.raw.sfdisk").exists() and ARCH == "x86-64":
        reference = (REFERENCE / "btrfs.raw.sfdisk").read_text()
        assert re.findall(r'name="([^"]+)"', reference) == names
        assert reference.count('attrs="GUID:60"') == 2


def test_dissect_reports_signed_verity(sysext_tutorial: Tutorial, trixie: Path) -> None:
    info = json.loads(dissect(trixie, "--json=short", sysext_tutorial.sysext))
    assert info["architecture"] == ARCH
    assert info["useSystemExtension"] is True
    assert "ID=debian" in info["sysextRelease"] and "VERSION_ID=12" in info["sysextRelease"]
    mounts = {m["designator"]: m for m in info["mounts"]}
    assert set(mounts) == {"root", "root-verity", "root-verity-sig"}
    assert mounts["root"]["verity"] == "signed"
    assert mounts["root"]["fstype"] == "erofs" and mounts["root"]["rw"] == "ro"
    assert mounts["root-verity"]["fstype"] == "DM_verity_hash"
    assert mounts["root-verity-sig"]["fstype"] == "verity_hash_signature"
    if (REFERENCE / "btrfs.raw.dissect.json").exists():
        reference = json.loads((REFERENCE / "btrfs.raw.dissect.json").read_text())
        assert info["sysextRelease"] == reference["sysextRelease"]
        keys = ("rw", "designator", "partition_label", "fstype", "verity", "growfs")
        assert [tuple(m[k] for k in keys) for m in info["mounts"]] == [
            tuple(m[k] for k in keys) for m in reference["mounts"]
        ]


def test_veritysetup_verifies_the_signed_root_hash(sysext_tutorial: Tutorial, tmp_path: Path) -> None:
    if shutil.which("veritysetup") is None:
        pytest.skip("veritysetup (cryptsetup-bin) is not installed")
    data, hashp, sig = gpt.read_gpt(sysext_tutorial.sysext).partitions
    signed = signing.parse_verity_signature(partition_bytes(sysext_tutorial.sysext, sig))
    certificate = signing.load_certificate(sysext_tutorial.certificate)
    assert signed.certificate_fingerprint == signing.certificate_fingerprint(certificate)
    subprocess.run(
        ["veritysetup", "verify", extract(sysext_tutorial.sysext, data, tmp_path / "data"),
         extract(sysext_tutorial.sysext, hashp, tmp_path / "hash"), signed.root_hash.hex()],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # The PKCS#7 signature is over the hex root hash and checks out against mkosi.crt.
    (tmp_path / "roothash").write_text(signed.root_hash.hex())
    (tmp_path / "roothash.p7s").write_bytes(signed.signature)
    subprocess.run(
        ["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "roothash.p7s",
         "-content", tmp_path / "roothash", "-CAfile", sysext_tutorial.certificate, "-purpose", "any",
         "-out", "/dev/null"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # A flipped bit in the data is caught.
    corrupt = bytearray((tmp_path / "data").read_bytes())
    corrupt[len(corrupt) // 2] ^= 1
    (tmp_path / "data").write_bytes(corrupt)
    bad = subprocess.run(
        ["veritysetup", "verify", tmp_path / "data", tmp_path / "hash", signed.root_hash.hex()],
        capture_output=True,
    )
    assert bad.returncode != 0


def test_extension_holds_btrfs_and_nothing_of_the_base(sysext_tutorial: Tutorial, trixie: Path) -> None:
    entries = mtree(trixie, sysext_tutorial.sysext)
    assert entries["usr/bin/btrfs"]["type"] == "file"
    release = entries["usr/lib/extension-release.d/extension-release.btrfs"]
    assert release["type"] == "file" and release["mode"] == "0644"
    content = dissect(
        trixie, "--copy-from", sysext_tutorial.sysext,
        "/usr/lib/extension-release.d/extension-release.btrfs", "-",
        env={"SYSTEMD_DISSECT_VERITY_EMBEDDED": "no"},
    )  # fmt: skip
    assert "ID=debian\n" in content and "VERSION_ID=12\n" in content
    assert not [p for p in entries if p and not p.startswith(("usr", "opt"))]
    # No file identical to the base's (directories are the hierarchy the files hang off).
    shared = []
    for path, fields in entries.items():
        base = sysext_tutorial.base / path
        if fields["type"] == "file" and base.is_file() and not base.is_symlink():
            if hashlib.sha256(base.read_bytes()).hexdigest() == fields["sha256sum"]:
                shared.append(path)
        elif fields["type"] == "link" and base.is_symlink() and os.readlink(base) == fields["link"]:
            shared.append(path)
    assert shared == []
    # The same paths as upstream's btrfs.raw of the tutorial.
    if (REFERENCE / "btrfs.raw.mtree").exists() and ARCH == "x86-64":
        upstream = {
            line.split(" ")[0].removeprefix("./").rstrip("/")
            for line in (REFERENCE / "btrfs.raw.mtree").read_text().splitlines()
        }
        assert set(entries) == upstream


# ---------------------------------------------------------------------------------------------- merging


def ensure_loop_devices(count: int = 8) -> list[Path]:
    """Make sure /dev/loop0 … exist (LOOP_CTL_ADD), so that they can be bound into a container."""
    fd = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for index in range(count):
            try:
                fcntl.ioctl(fd, 0x4C80, index)  # LOOP_CTL_ADD; EEXIST when it is already there
            except OSError:
                pass
    finally:
        os.close(fd)
    return sorted(Path(p) for p in Path("/dev").glob("loop[0-9]*"))


MERGE_UNIT = """\
[Unit]
Description=Merge the tutorial's extension and run btrfs from it
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/sbin/merge-test
ExecStartPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
"""

# Runs in the booted container. The merge runs in its own mount namespace with the kernel's devtmpfs on
# /dev, where loop partitions show up; the overlay on /usr propagates back to the container.
MERGE_SCRIPT = """\
#!/bin/sh
out=/merge-test.log
{
  echo "== without SYSTEMD_DISSECT_VERITY_EMBEDDED"
  unshare --mount --propagation unchanged sh -c \\
    'mount --make-rprivate /dev && mount -t devtmpfs devtmpfs /dev && systemd-sysext merge' 2>&1
  echo "merge-verity=$?"
  systemd-sysext unmerge >/dev/null 2>&1
  echo "== with SYSTEMD_DISSECT_VERITY_EMBEDDED=no"
  unshare --mount --propagation unchanged sh -c \\
    'mount --make-rprivate /dev && mount -t devtmpfs devtmpfs /dev &&
     SYSTEMD_DISSECT_VERITY_EMBEDDED=no systemd-sysext merge' 2>&1
  echo "merge=$?"
  systemd-sysext status 2>&1
  /usr/bin/btrfs --version 2>&1
  echo "btrfs=$?"
  systemctl --version | head -n 1
} >"$out"
"""


def test_systemd_sysext_merges_it_in_a_booted_container(sysext_tutorial: Tutorial) -> None:
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn (systemd-container) is not installed")
    tree = scratch("merge") / "base"
    subprocess.run(["cp", "-a", "--reflink=auto", sysext_tutorial.base, tree], check=True)
    assert not (tree / "usr/bin/btrfs").exists()
    (tree / "var/lib/extensions").mkdir(parents=True, exist_ok=True)
    shutil.copy2(sysext_tutorial.sysext, tree / "var/lib/extensions/btrfs.raw")
    write(tree / "etc/systemd/system/merge-test.service", MERGE_UNIT)
    write(tree / "usr/local/sbin/merge-test", MERGE_SCRIPT)
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "merge-test.service").symlink_to("../merge-test.service")
    # The image's own boot-time merge would race ours; leave it to the test.
    write(tree / "etc/systemd/system/systemd-sysext.service.d/test.conf", "[Unit]\nConditionPathExists=/x\n")

    binds = [f"--bind={p}" for p in [Path("/dev/loop-control"), *ensure_loop_devices()]]
    res = subprocess.run(
        ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", tree, "-b", *binds],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    log = (tree / "merge-test.log").read_text() if (tree / "merge-test.log").exists() else ""
    print(log)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "merge=0" in log, log
    assert "btrfs-progs v" in log and "btrfs=0" in log, log
    assert re.search(r"^/usr\s+btrfs\s", log, re.MULTILINE), log
    assert "systemd 252" in log, log
    # With the embedded signature in use, systemd 252 insists on dm-verity, which the container lacks: it
    # reports the image and merges nothing rather than mounting the signed image unverified.
    with_verity = log.split("== with SYSTEMD_DISSECT_VERITY_EMBEDDED=no")[0]
    assert "Merged extensions" not in with_verity, log


# ---------------------------------------------------------------------------------------------- step two


def test_tutorial_step_two_yields_initrd_and_keeps_the_extension(sysext_tutorial_step_two: Tutorial) -> None:
    step_two = sysext_tutorial_step_two  # built by `mkosi -f` (check_mkosi: exit code 0) after STEP_TWO
    assert step_two.initrd.is_file()
    assert step_two.sysext.is_file()
    assert [e.name for e in gpt.read_gpt(step_two.sysext).partitions] == [
        f"root-{ARCH}",
        f"root-{ARCH}-verity",
        f"root-{ARCH}-verity-sig",
    ]
    head = step_two.initrd.read_bytes()[:4]
    assert head == b"\x28\xb5\x2f\xfd"  # zstd
    assert "Traceback" not in step_two.stderr


def test_signature_json_matches_upstreams_shape(sysext_tutorial: Tutorial) -> None:
    sig = gpt.read_gpt(sysext_tutorial.sysext).partitions[2]
    blob = partition_bytes(sysext_tutorial.sysext, sig).rstrip(b"\0")
    obj = json.loads(blob)
    assert list(obj) == ["rootHash", "certificateFingerprint", "signature"]
    base64.b64decode(obj["signature"], validate=True)
    reference = REFERENCE / "btrfs.raw.verity-sig.json"
    if reference.exists():
        assert list(json.loads(reference.read_text())) == list(obj)

"""GPT writing, checked against util-linux (sfdisk/fdisk), gdisk (sgdisk) and systemd (id128, repart)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from mkosi.errors import MkosiError
from mkosi.formats import gpt
from mkosi.formats.gpt import MiB, Partition

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
DISK = uuid.UUID("d48a00ea-2fd1-457c-aacf-cf0ae381fa07")
REFERENCE = Path(__file__).parents[2] / "../shared/reference/upstream-mkosi-25.3-tutorial"

# Debian package that provides each tool the tests run.
PACKAGES = {
    "sfdisk": "fdisk",
    "fdisk": "fdisk",
    "sgdisk": "gdisk",
    "systemd-id128": "systemd",
    "systemd-repart": "systemd (Debian 12) / systemd-repart (Debian 13)",
}


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"{name} is needed by this test: apt-get install {PACKAGES.get(name, name)}")
    return path


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [tool(str(cmd[0])), *map(str, cmd[1:])]
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def sfdisk_json(path: Path) -> dict[str, object]:
    proc = run("sfdisk", "--json", path)
    assert proc.stderr == "", proc.stderr
    table = json.loads(proc.stdout)["partitiontable"]
    assert isinstance(table, dict)
    return table


def sgdisk_verify(path: Path) -> None:
    out = run("sgdisk", "-v", path).stdout
    assert "No problems found" in out, out


def fdisk_list(path: Path, sector_size: int) -> list[list[str]]:
    """Partition rows as fdisk reads them with the given logical sector size; no warnings allowed."""
    proc = run(
        "fdisk", "-b", str(sector_size), "-l", "-o", "Device,Start,End,Type-UUID,UUID,Attrs,Name", path
    )
    assert proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Device"))
    return [line.split(None, 6) for line in lines[header + 1 :] if line.strip()]


def sample_partitions(tmp_path: Path) -> list[Partition]:
    data = tmp_path / "root.img"
    with open(data, "wb") as f:
        f.write(b"ROOT" * 1024)
        f.seek(3 * MiB)
        f.write(b"tail" * 10)
    return [
        Partition(gpt.partition_type("esp"), "ESP", size=2 * MiB, uuid=uuid.UUID(int=1)),
        Partition(
            gpt.partition_type("root", "x86-64"),
            "root-x86-64",
            source=data,
            attributes=gpt.ATTR_GROWFS,
        ),
        Partition(
            gpt.partition_type("root-verity", "x86-64"),
            "root-x86-64-verity",
            size=64 * 1024,
            attributes=gpt.ATTR_READ_ONLY,
            source=b"\x01" * 1000,
        ),
        Partition(
            gpt.partition_type("home"),
            "a name that is exactly 36 chars long",
            size=1 * MiB,
            attributes=gpt.ATTR_NO_AUTO | gpt.ATTR_HIDDEN,
        ),
        Partition(gpt.partition_type("linux-generic"), "ünïcödé ☃", size=512 * 1024),
    ]


# ----------------------------------------------------------------------------------------------------------
# Partition types


def test_type_table_matches_systemd_id128() -> None:
    proc = run("systemd-id128", "show", "--uuid")
    theirs: dict[str, uuid.UUID] = {}
    for line in proc.stdout.splitlines()[1:]:
        name, text = line.split()
        theirs[name] = uuid.UUID(text)
    # "root", "usr", "root-secondary", … are the host's native aliases, not types of their own.
    native = {f"{p}{s}" for p in ("root", "usr") for s in ("", "-verity", "-verity-sig")}
    native |= {n for n in theirs if "-secondary" in n}
    compared = 0
    for name, value in theirs.items():
        if name in native:
            continue
        assert gpt.PARTITION_TYPES.get(name) == value, name
        compared += 1
    assert compared >= 130


def test_type_table_spot_checks() -> None:
    # Values straight from the Discoverable Partitions Specification.
    assert gpt.partition_type("root", "x86-64") == uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
    assert gpt.partition_type("root-verity", "x86-64") == uuid.UUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
    assert gpt.partition_type("root-verity-sig", "x86-64") == uuid.UUID(
        "41092b05-9fc8-4523-994f-2def0408b176"
    )
    assert gpt.partition_type("usr-verity-sig", "arm64") == uuid.UUID("c23ce4ff-44bd-4b00-b2d4-b41b3419e02a")
    assert gpt.partition_type("usr", "loongarch64") == uuid.UUID("e611c702-575c-4cbe-9a46-434fa0bf7e3f")
    assert gpt.partition_type("root", "riscv64") == uuid.UUID("72ec70a6-cf74-40e6-bd49-4bda08e8f224")
    assert gpt.partition_type("root-sparc64-verity-sig") == uuid.UUID("795cf80b-dcbf-4952-9c7b-4fd4729dfd97")
    assert gpt.partition_type("esp") == uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
    assert gpt.partition_type("xbootldr") == uuid.UUID("bc13c2ff-59e6-4262-a352-b275fd6f7172")
    assert gpt.partition_type("linux-generic") == uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
    for arch in (
        "x86-64",
        "x86",
        "arm64",
        "arm",
        "riscv64",
        "riscv32",
        "loongarch64",
        "ppc64-le",
        "ppc64",
        "ppc",
        "s390x",
        "s390",
        "ia64",
        "alpha",
        "arc",
        "parisc",
        "mips-le",
        "mips64-le",
        "tilegx",
    ):
        assert arch in gpt.ARCHITECTURES
        values = {gpt.partition_type(d, arch) for d in gpt.DESIGNATORS_PER_ARCH}
        assert len(values) == 6, arch
    assert len(set(gpt.PARTITION_TYPES.values())) == len(gpt.PARTITION_TYPES)
    assert gpt.partition_type_name(uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")) == "root-x86-64"


def test_partition_type_errors() -> None:
    literal = "11111111-2222-3333-4444-555555555555"
    assert gpt.partition_type(literal) == uuid.UUID(literal)
    with pytest.raises(MkosiError, match="needs an architecture"):
        gpt.partition_type("root-verity")
    with pytest.raises(MkosiError, match="Unknown partition type"):
        gpt.partition_type("rooot")
    with pytest.raises(MkosiError, match="architecture vax"):
        gpt.partition_type("root", "vax")


# ----------------------------------------------------------------------------------------------------------
# Deterministic UUIDs


def test_uuid_derivation_matches_repart() -> None:
    # Produced by `systemd-repart --seed=0123456789abcdef0123456789abcdef` (systemd 252) for a root-x86-64
    # partition followed by two home partitions.
    root = gpt.partition_type("root", "x86-64")
    home = gpt.partition_type("home")
    assert gpt.derive_disk_uuid(SEED) == uuid.UUID("6913f4b6-6690-4a57-a202-f1b53c56dbdf")
    assert gpt.derive_partition_uuid(SEED, root) == uuid.UUID("9e90c9c3-c7e8-44f2-bf19-9ae2689de795")
    assert gpt.derive_partition_uuid(SEED, home, 0) == uuid.UUID("c6384fca-e59b-4b73-a86f-ab8b15536288")
    assert gpt.derive_partition_uuid(SEED, home, 1) == uuid.UUID("7ae905c9-911f-4881-bb6f-8ab32d50aeeb")
    derived = gpt.derive_uuid(SEED, "anything")
    assert derived.version == 4 and derived.variant == uuid.RFC_4122
    assert gpt.derive_uuid(SEED, "anything") == derived != gpt.derive_uuid(uuid.UUID(int=2), "anything")


def test_byte_identical_to_systemd_repart(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "10-root.conf").write_text(
        "[Partition]\nType=root-x86-64\nLabel=root-x86-64\nSizeMinBytes=10M\nSizeMaxBytes=10M\nGrowFileSystem=yes\n"
    )
    for i, label in enumerate(("home", "home-2")):
        (defs / f"2{i}-home.conf").write_text(
            f"[Partition]\nType=home\nLabel={label}\nSizeMinBytes=4M\nSizeMaxBytes=4M\nGrowFileSystem=yes\n"
        )
    theirs = tmp_path / "repart.raw"
    run(
        "systemd-repart",
        "--empty=create",
        "--size=auto",
        "--dry-run=no",
        f"--seed={SEED.hex}",
        f"--definitions={defs}",
        theirs,
    )
    ours = tmp_path / "ours.raw"
    gpt.write_gpt(
        ours,
        [
            Partition(
                gpt.partition_type("root-x86-64"), "root-x86-64", size=10 * MiB, attributes=gpt.ATTR_GROWFS
            ),
            Partition(gpt.partition_type("home"), "home", size=4 * MiB, attributes=gpt.ATTR_GROWFS),
            Partition(gpt.partition_type("home"), "home-2", size=4 * MiB, attributes=gpt.ATTR_GROWFS),
        ],
        seed=SEED,
        alignment=4096,
    )
    assert ours.stat().st_size == theirs.stat().st_size
    assert ours.read_bytes() == theirs.read_bytes()


# ----------------------------------------------------------------------------------------------------------
# Writing, checked by real consumers


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_consumers_accept_and_agree(tmp_path: Path, sector_size: int) -> None:
    image = tmp_path / "disk.raw"
    parts = sample_partitions(tmp_path)
    table = gpt.write_gpt(image, parts, disk_uuid=DISK, seed=SEED, sector_size=sector_size)

    assert image.stat().st_size == table.disk_size
    assert table.disk_size % 4096 == 0
    entries_sectors = 16384 // sector_size
    assert table.last_usable_lba == table.backup_lba - entries_sectors - 1
    assert table.first_usable_lba * sector_size == MiB

    rows = fdisk_list(image, sector_size)
    assert len(rows) == len(parts)
    for row, entry in zip(rows, table.partitions):
        assert int(row[1]) == entry.first_lba and int(row[2]) == entry.last_lba
        assert uuid.UUID(row[3]) == entry.type_uuid and uuid.UUID(row[4]) == entry.uuid

    if sector_size == 512:
        sgdisk_verify(image)
        pt = sfdisk_json(image)
        assert pt["label"] == "gpt" and pt["sectorsize"] == 512
        assert uuid.UUID(str(pt["id"])) == DISK
        assert pt["firstlba"] == table.first_usable_lba and pt["lastlba"] == table.last_usable_lba
        sf_parts = pt["partitions"]
        assert isinstance(sf_parts, list) and len(sf_parts) == len(parts)
        for sp, entry, p in zip(sf_parts, table.partitions, parts):
            assert sp["start"] == entry.first_lba and sp["size"] * 512 == entry.size
            assert uuid.UUID(sp["type"]) == p.type_uuid
            assert uuid.UUID(sp["uuid"]) == entry.uuid
            assert sp.get("name", "") == p.name
            bits = sorted(b for b in range(64) if p.attributes >> b & 1)
            expected = ("GUID:" + ",".join(map(str, bits))) if bits else None
            assert sp.get("attrs") == expected


def test_layout_and_read_back(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    parts = sample_partitions(tmp_path)
    table = gpt.write_gpt(image, parts, disk_uuid=DISK, seed=SEED)
    assert gpt.read_gpt(image) == table
    assert gpt.read_gpt(image, backup=True) == table

    esp, root, verity, home, generic = table.partitions
    assert [e.number for e in table.partitions] == [1, 2, 3, 4, 5]
    assert esp.offset == MiB and esp.size == 2 * MiB and esp.uuid == uuid.UUID(int=1)
    # Every partition starts on a MiB boundary; sizes without an explicit size come from the data.
    assert all(e.offset % MiB == 0 for e in table.partitions)
    assert root.size == 3 * MiB + 4096
    assert root.uuid == gpt.derive_partition_uuid(SEED, root.type_uuid)
    assert root.attributes == gpt.ATTR_GROWFS and root.type_name == "root-x86-64"
    assert verity.size == 64 * 1024 and verity.attributes == 1 << 60
    assert home.name == "a name that is exactly 36 chars long"
    assert home.attributes == (1 << 63) | (1 << 62)
    assert generic.name == "ünïcödé ☃"

    raw = image.read_bytes()
    src = parts[1].source
    assert isinstance(src, Path)
    assert raw[root.offset : root.offset + src.stat().st_size] == src.read_bytes()
    assert raw[root.offset + src.stat().st_size : root.offset + root.size] == bytes(
        root.size - src.stat().st_size
    )
    assert raw[verity.offset : verity.offset + 1000] == b"\x01" * 1000
    assert raw[esp.offset : esp.offset + esp.size] == bytes(esp.size)
    # Protective MBR.
    assert raw[510:512] == b"\x55\xaa" and raw[446 + 4] == 0xEE


def test_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    gpt.write_gpt(a, sample_partitions(tmp_path), seed=SEED)
    gpt.write_gpt(b, sample_partitions(tmp_path), seed=SEED)
    assert a.read_bytes() == b.read_bytes()
    assert gpt.read_gpt(a).disk_uuid == gpt.derive_disk_uuid(SEED)


def test_reference_layout_of_upstream_sysext() -> None:
    """Packed like systemd-repart (4 KiB alignment), the sizes of upstream's btrfs.raw give its table."""
    sizes = [10312 * 512, 104 * 512, 32 * 512]
    types = ["root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig"]
    table = gpt.plan_gpt(
        [
            Partition(gpt.partition_type(t), t, size=s, uuid=uuid.UUID(int=i + 1))
            for i, (t, s) in enumerate(zip(types, sizes))
        ],
        disk_uuid=DISK,
        alignment=4096,
    )
    ref = (REFERENCE / "btrfs.raw.sfdisk").read_text()
    assert "first-lba: 2048" in ref and f"last-lba: {table.last_usable_lba}" in ref
    starts = [e.first_lba for e in table.partitions]
    assert starts == [2048, 12360, 12464]
    for e in table.partitions:
        assert f"start= {e.first_lba:>11}, size= {e.size // 512:>11}, type={str(e.type_uuid).upper()}" in ref


def test_sparse_output(tmp_path: Path) -> None:
    data = tmp_path / "sparse.img"
    with open(data, "wb") as f:
        f.write(b"head")
        f.seek(64 * MiB)
        f.write(b"tail")
    image = tmp_path / "disk.raw"
    table = gpt.write_gpt(image, [Partition(gpt.partition_type("home"), "home", source=data)], seed=SEED)
    entry = table.partitions[0]
    with open(image, "rb") as f:
        f.seek(entry.offset)
        assert f.read(4) == b"head"
        f.seek(entry.offset + 64 * MiB)
        assert f.read(4) == b"tail"
    assert image.stat().st_blocks * 512 < 16 * MiB, "the image should stay sparse"


def test_explicit_disk_size(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    table = gpt.write_gpt(
        image, [Partition(gpt.partition_type("swap"), "swap", size=MiB)], seed=SEED, disk_size=64 * MiB
    )
    assert image.stat().st_size == 64 * MiB
    assert table.backup_lba == 64 * MiB // 512 - 1
    sgdisk_verify(image)
    with pytest.raises(MkosiError, match="too small"):
        gpt.plan_gpt([Partition(gpt.partition_type("swap"), size=MiB)], seed=SEED, disk_size=2 * MiB)


def test_errors(tmp_path: Path) -> None:
    home = gpt.partition_type("home")
    with pytest.raises(MkosiError, match="longer than 36"):
        gpt.plan_gpt([Partition(home, "x" * 37, size=MiB)], seed=SEED)
    with pytest.raises(MkosiError, match="too small for its"):
        gpt.plan_gpt([Partition(home, size=4096, source=b"x" * 5000)], seed=SEED)
    with pytest.raises(MkosiError, match="no UUID and there is no seed"):
        gpt.plan_gpt([Partition(home, size=MiB)], disk_uuid=DISK)
    with pytest.raises(MkosiError, match="disk UUID or a seed"):
        gpt.plan_gpt([])
    with pytest.raises(MkosiError, match="sector size"):
        gpt.plan_gpt([], seed=SEED, sector_size=1024)
    with pytest.raises(MkosiError, match="Cannot read partition data"):
        gpt.plan_gpt([Partition(home, source=tmp_path / "missing")], seed=SEED)


def test_read_detects_corruption(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    gpt.write_gpt(image, sample_partitions(tmp_path), seed=SEED)
    with open(image, "r+b") as f:
        f.seek(512 + 40)  # first usable LBA, inside the header's CRC
        f.write(b"\xff")
    with pytest.raises(MkosiError, match="bad CRC32"):
        gpt.read_gpt(image)
    assert len(gpt.read_gpt(image, backup=True).partitions) == 5
    with open(image, "r+b") as f:
        f.seek(1024 + 200)  # inside the primary entry array
        f.write(b"\xff")
    with pytest.raises(MkosiError, match="bad CRC32"):
        gpt.read_gpt(image)
    os.truncate(image, 4096)
    with pytest.raises(MkosiError):
        gpt.read_gpt(image, backup=True)
    (tmp_path / "plain").write_bytes(bytes(8192))
    with pytest.raises(MkosiError, match="no GUID partition table"):
        gpt.read_gpt(tmp_path / "plain")


def test_empty_table(tmp_path: Path) -> None:
    image = tmp_path / "empty.raw"
    table = gpt.write_gpt(image, [], seed=SEED)
    assert table.partitions == ()
    sgdisk_verify(image)
    assert sfdisk_json(image)["label"] == "gpt"


def test_copy_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where copy_file_range is refused (other file system, old kernel), plain copying does the same."""
    parts = sample_partitions(tmp_path)
    fast = tmp_path / "fast.raw"
    gpt.write_gpt(fast, parts, seed=SEED)

    def refuse(*args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    slow = tmp_path / "slow.raw"
    gpt.write_gpt(slow, parts, seed=SEED)
    assert slow.read_bytes() == fast.read_bytes()

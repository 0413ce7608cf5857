"""dm-verity hash trees, checked byte for byte against `veritysetup format` and by `veritysetup verify`."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from mkosi.errors import MkosiError
from mkosi.formats import verity

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
VUUID = uuid.UUID("6a1e2f3c-1b2a-4c3d-9e8f-0123456789ab")
REFERENCE = Path(__file__).parents[2] / "../shared/reference/upstream-mkosi-25.3-tutorial"


def veritysetup(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("veritysetup") or shutil.which("veritysetup", path="/usr/sbin:/sbin")
    if exe is None:
        pytest.fail("veritysetup is needed by this test: apt-get install cryptsetup-bin")
    return subprocess.run([exe, *map(str, args)], check=check, capture_output=True, text=True)


def make_data(path: Path, blocks: int, *, block_size: int = 4096, dense: bool = True, seed: int = 0) -> None:
    """``blocks`` blocks: random (dense), or mostly holes with a few random blocks and a zeroed one."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        if dense:
            f.write(rng.randbytes(blocks * block_size))
            return
        f.truncate(blocks * block_size)
        # Data at the start and inside; the file ends in a hole.
        for b in sorted({0, blocks // 2, *(rng.randrange(blocks - 10) for _ in range(5))}):
            f.seek(b * block_size)
            f.write(rng.randbytes(block_size))
        f.seek((blocks // 3) * block_size)
        f.write(bytes(block_size))  # explicit zeros, not a hole


def reference_format(data: Path, hash_path: Path, salt: bytes, *extra: str) -> str:
    out = veritysetup(
        "format", f"--salt={salt.hex() or '-'}", f"--uuid={VUUID}", *extra, data, hash_path
    ).stdout
    m = re.search(r"Root hash:\s*([0-9a-f]+)", out)
    assert m, out
    return m.group(1)


# 1 block: no tree level; up to 128 blocks: one level; 129..16384: two; more: three.
@pytest.mark.parametrize(
    "blocks,dense",
    [
        (1, True),
        (2, True),
        (7, True),
        (128, True),
        (129, True),
        (300, True),
        (16384, False),
        (16385, False),
        (40000, False),
    ],
)
def test_identical_to_veritysetup(tmp_path: Path, blocks: int, dense: bool) -> None:
    data = tmp_path / "data"
    make_data(data, blocks, dense=dense, seed=blocks)
    salt = verity.derive_salt(SEED)
    ours, theirs = tmp_path / "ours.hash", tmp_path / "theirs.hash"

    result = verity.format_verity(data, ours, salt=salt, verity_uuid=VUUID)
    root = reference_format(data, theirs, salt)

    assert result.root_hash_hex == root
    assert ours.read_bytes() == theirs.read_bytes()
    assert result.hash_size == ours.stat().st_size == verity.verity_hash_size(blocks * 4096)
    assert result.data_blocks == blocks
    veritysetup("verify", data, ours, result.root_hash_hex)


def test_levels_grow_as_expected(tmp_path: Path) -> None:
    # Superblock block + levels: 1 block → none, 128 → 1, 129 → 2+1, 16385 → 129+2+1.
    assert verity.verity_hash_size(4096) == 4096
    assert verity.verity_hash_size(128 * 4096) == 2 * 4096
    assert verity.verity_hash_size(129 * 4096) == 4 * 4096
    assert verity.verity_hash_size(16385 * 4096) == (1 + 129 + 2 + 1) * 4096


def test_small_blocks_and_empty_salt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data(data, 1000, block_size=512)
    ours, theirs = tmp_path / "ours.hash", tmp_path / "theirs.hash"
    result = verity.format_verity(
        data, ours, salt=b"", verity_uuid=VUUID, data_block_size=512, hash_block_size=512
    )
    root = reference_format(data, theirs, b"", "--data-block-size=512", "--hash-block-size=512")
    assert result.root_hash_hex == root
    assert ours.read_bytes() == theirs.read_bytes()


def test_data_blocks_limits_the_range(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data(data, 50)
    ours, theirs = tmp_path / "ours.hash", tmp_path / "theirs.hash"
    result = verity.format_verity(data, ours, salt=b"\x42" * 7, verity_uuid=VUUID, data_blocks=33)
    root = reference_format(data, theirs, b"\x42" * 7, "--data-blocks=33")
    assert result.root_hash_hex == root and ours.read_bytes() == theirs.read_bytes()


def test_verify_rejects_a_changed_tree(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data(data, 200)
    hash_path = tmp_path / "hash"
    result = verity.format_verity(data, hash_path, salt=verity.derive_salt(SEED), verity_uuid=VUUID)
    with open(data, "r+b") as f:
        f.seek(4096 * 150 + 7)
        f.write(b"!")
    assert veritysetup("verify", data, hash_path, result.root_hash_hex, check=False).returncode != 0
    changed = verity.format_verity(data, tmp_path / "hash2", salt=verity.derive_salt(SEED), verity_uuid=VUUID)
    assert changed.root_hash != result.root_hash


def test_superblock_fields(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data(data, 3)
    salt = bytes(range(32))
    verity.format_verity(data, tmp_path / "hash", salt=salt, verity_uuid=VUUID)
    sb = (tmp_path / "hash").read_bytes()[:512]
    assert sb[:8] == b"verity\0\0"
    assert sb[8:16] == b"\x01\0\0\0\x01\0\0\0"
    assert sb[16:32] == VUUID.bytes
    assert sb[32:38] == b"sha256"
    assert int.from_bytes(sb[72:80], "little") == 3
    assert int.from_bytes(sb[80:82], "little") == 32 and sb[88:120] == salt
    dump = veritysetup("dump", tmp_path / "hash").stdout
    assert str(VUUID) in dump and salt.hex() in dump


def test_derivations_and_partition_uuids() -> None:
    salt = verity.derive_salt(SEED)
    assert len(salt) == 32 and salt == verity.derive_salt(SEED)
    assert salt != verity.derive_salt(SEED, "usr") != verity.derive_salt(uuid.UUID(int=5))
    assert verity.derive_verity_uuid(SEED) == verity.derive_verity_uuid(SEED)
    assert verity.derive_verity_uuid(SEED).version == 4

    # Upstream's sysext: the partition UUIDs are the halves of the root hash, taken as they are.
    sig = json.loads((REFERENCE / "btrfs.raw.verity-sig.json").read_bytes().rstrip(b"\0"))
    data_uuid, hash_uuid = verity.partition_uuids(bytes.fromhex(sig["rootHash"]))
    sfdisk = (REFERENCE / "btrfs.raw.sfdisk").read_text()
    assert f'uuid={str(data_uuid).upper()}, name="root-x86-64"' in sfdisk
    assert f'uuid={str(hash_uuid).upper()}, name="root-x86-64-verity"' in sfdisk


def test_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.write_bytes(b"x" * 5000)
    with pytest.raises(MkosiError, match="not a multiple"):
        verity.format_verity(odd, tmp_path / "h", salt=b"", verity_uuid=VUUID)
    with pytest.raises(MkosiError, match="smaller than"):
        verity.format_verity(odd, tmp_path / "h", salt=b"", verity_uuid=VUUID, data_blocks=2)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(MkosiError, match="empty"):
        verity.format_verity(empty, tmp_path / "h", salt=b"", verity_uuid=VUUID)
    with pytest.raises(MkosiError, match="salt"):
        verity.format_verity(odd, tmp_path / "h", salt=bytes(300), verity_uuid=VUUID, data_blocks=1)
    with pytest.raises(MkosiError, match="block size"):
        verity.format_verity(odd, tmp_path / "h", salt=b"", verity_uuid=VUUID, data_block_size=3000)
    with pytest.raises(MkosiError, match="Cannot read"):
        verity.format_verity(tmp_path / "missing", tmp_path / "h", salt=b"", verity_uuid=VUUID)


def test_parallel_hashing_matches_veritysetup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large data is hashed by several processes; the tree is the same whatever their number."""
    data = tmp_path / "data"
    rng = random.Random(7)
    blocks = 20_000  # 80 MiB: mostly holes, with random runs that straddle the workers' ranges
    with open(data, "wb") as f:
        f.truncate(blocks * 4096)
        for start in (0, 6_600, 6_667, 9_999, 13_300, 19_990):
            f.seek(start * 4096)
            f.write(rng.randbytes(min(10 * 4096, (blocks - start) * 4096)))
    salt = verity.derive_salt(SEED)
    theirs = tmp_path / "theirs.hash"
    root = reference_format(data, theirs, salt)

    forks = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    for workers in (1, 2, 3):
        forks.clear()
        ours = tmp_path / f"ours-{workers}.hash"
        result = verity.format_verity(data, ours, salt=salt, verity_uuid=VUUID, workers=workers)
        assert result.root_hash_hex == root, f"{workers} workers"
        assert ours.read_bytes() == theirs.read_bytes(), f"{workers} workers"
        assert len(forks) == workers - 1

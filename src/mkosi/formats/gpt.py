"""GUID Partition Table images: write a partition plan to a file, and read one back.

Pure and deterministic: the same partitions, sources and UUIDs give the same bytes. Knows the partition
type UUIDs of the UAPI Discoverable Partitions Specification and derives partition and disk UUIDs from a
seed the way systemd-repart does, so images built here look like the ones systemd builds.

On-disk layout written by :func:`write_gpt` (LBA = logical block of ``sector_size`` bytes)::

    LBA 0                 protective MBR (one 0xEE entry covering the disk)
    LBA 1                 primary GPT header
    LBA 2 …               primary partition entry array (128 entries of 128 bytes)
    1 MiB …               partitions, each starting on a multiple of ``alignment``
    last - entries - 1 …  backup partition entry array
    last LBA              backup GPT header

The first usable LBA is the one at 1 MiB (2048 for 512-byte sectors, 256 for 4096), as systemd-repart
and sfdisk write it; the disk is just large enough for the last partition plus the backup table, rounded
up to 4 KiB, unless an explicit size is given.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import hmac
import os
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkosi.errors import MkosiError

KiB = 1024
MiB = 1024 * KiB

SECTOR_SIZES = (512, 4096)
ENTRY_SIZE = 128
ENTRY_COUNT = 128
ENTRY_ARRAY_SIZE = ENTRY_SIZE * ENTRY_COUNT
NAME_MAX_CHARS = 36
GPT_SIGNATURE = b"EFI PART"
GPT_REVISION = 0x00010000
GPT_HEADER_SIZE = 92

# Partition attribute bits (UEFI defines 0-2, the Discoverable Partitions Specification 59-63).
ATTR_REQUIRED = 1 << 0
ATTR_NO_BLOCK_IO = 1 << 1
ATTR_LEGACY_BIOS_BOOTABLE = 1 << 2
ATTR_GROWFS = 1 << 59
ATTR_READ_ONLY = 1 << 60
ATTR_HIDDEN = 1 << 62
ATTR_NO_AUTO = 1 << 63

# Partition type UUIDs of the Discoverable Partitions Specification, named the way
# `systemd-id128 show` and repart.d's Type= name them. The per-architecture entries come in groups of
# six: root, usr, root-verity, usr-verity, root-verity-sig, usr-verity-sig.
_TYPE_TABLE = """
root-alpha                   6523f8ae-3eb1-4e2a-a05a-18b695ae656f
usr-alpha                    e18cf08c-33ec-4c0d-8246-c6c6fb3da024
root-alpha-verity            fc56d9e9-e6e5-4c06-be32-e74407ce09a5
usr-alpha-verity             8cce0d25-c0d0-4a44-bd87-46331bf1df67
root-alpha-verity-sig        d46495b7-a053-414f-80f7-700c99921ef8
usr-alpha-verity-sig         5c6e1c76-076a-457a-a0fe-f3b4cd21ce6e
root-arc                     d27f46ed-2919-4cb8-bd25-9531f3c16534
usr-arc                      7978a683-6316-4922-bbee-38bff5a2fecc
root-arc-verity              24b2d975-0f97-4521-afa1-cd531e421b8d
usr-arc-verity               fca0598c-d880-4591-8c16-4eda05c7347c
root-arc-verity-sig          143a70ba-cbd3-4f06-919f-6c05683a78bc
usr-arc-verity-sig           94f9a9a1-9971-427a-a400-50cb297f0f35
root-arm                     69dad710-2ce4-4e3c-b16c-21a1d49abed3
usr-arm                      7d0359a3-02b3-4f0a-865c-654403e70625
root-arm-verity              7386cdf2-203c-47a9-a498-f2ecce45a2d6
usr-arm-verity               c215d751-7bcd-4649-be90-6627490a4c05
root-arm-verity-sig          42b0455f-eb11-491d-98d3-56145ba9d037
usr-arm-verity-sig           d7ff812f-37d1-4902-a810-d76ba57b975a
root-arm64                   b921b045-1df0-41c3-af44-4c6f280d3fae
usr-arm64                    b0e01050-ee5f-4390-949a-9101b17104e9
root-arm64-verity            df3300ce-d69f-4c92-978c-9bfb0f38d820
usr-arm64-verity             6e11a4e7-fbca-4ded-b9e9-e1a512bb664e
root-arm64-verity-sig        6db69de6-29f4-4758-a7a5-962190f00ce3
usr-arm64-verity-sig         c23ce4ff-44bd-4b00-b2d4-b41b3419e02a
root-ia64                    993d8d3d-f80e-4225-855a-9daf8ed7ea97
usr-ia64                     4301d2a6-4e3b-4b2a-bb94-9e0b2c4225ea
root-ia64-verity             86ed10d5-b607-45bb-8957-d350f23d0571
usr-ia64-verity              6a491e03-3be7-4545-8e38-83320e0ea880
root-ia64-verity-sig         e98b36ee-32ba-4882-9b12-0ce14655f46a
usr-ia64-verity-sig          8de58bc2-2a43-460d-b14e-a76e4a17b47f
root-loongarch64             77055800-792c-4f94-b39a-98c91b762bb6
usr-loongarch64              e611c702-575c-4cbe-9a46-434fa0bf7e3f
root-loongarch64-verity      f3393b22-e9af-4613-a948-9d3bfbd0c535
usr-loongarch64-verity       f46b2c26-59ae-48f0-9106-c50ed47f673d
root-loongarch64-verity-sig  5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0
usr-loongarch64-verity-sig   b024f315-d330-444c-8461-44bbde524e99
root-m68k                    0cf191c8-3b54-433a-b715-68c6fa4086de
usr-m68k                     a639b810-a02d-44bc-b579-d23e7bffdede
root-m68k-verity             843e63a4-c1ff-476e-a8a4-1b72e399475f
usr-m68k-verity              267da076-7f71-445b-961f-f97b817dfd11
root-m68k-verity-sig         d6e4b0ae-10f8-46d9-9f36-d8fd1a14b51f
usr-m68k-verity-sig          3b935677-dd33-4d7d-8b30-e602e316499e
root-mips                    e9434544-6e2c-47cc-bae2-12d6deafb44c
usr-mips                     773b2abc-2a99-4398-8bf5-03baac40d02b
root-mips-verity             7a430799-f711-4c7e-8e5b-1d685bd48607
usr-mips-verity              6e5a1bc8-d223-49b7-bca8-37a5fcceb996
root-mips-verity-sig         bba210a2-9c5d-45ee-9e87-ff2ccbd002d0
usr-mips-verity-sig          97ae158d-f216-497b-8057-f7f905770f54
root-mips-le                 37c58c8a-d913-4156-a25f-48b1b64e07f0
usr-mips-le                  0f4868e9-9952-4706-979f-3ed3a473e947
root-mips-le-verity          d7d150d2-2a04-4a33-8f12-16651205ff7b
usr-mips-le-verity           46b98d8d-b55c-4e8f-aab3-37fca7f80752
root-mips-le-verity-sig      c919cc1f-4456-4eff-918c-f75e94525ca5
usr-mips-le-verity-sig       3e23ca0b-a4bc-4b4e-8087-5ab6a26aa8a9
root-mips64                  d113af76-80ef-41b4-bdb6-0cff4d3d4a25
usr-mips64                   57e13958-7331-4365-8e6e-35eeee17c61b
root-mips64-verity           579536f8-6a33-4055-a95a-df2d5e2c42a8
usr-mips64-verity            81cf9d90-7458-4df4-8dcf-c8a3a404f09b
root-mips64-verity-sig       43ce94d4-0f3d-4999-8250-b9deafd98e6e
usr-mips64-verity-sig        05816ce2-dd40-4ac6-a61d-37d32dc1ba7d
root-mips64-le               700bda43-7a34-4507-b179-eeb93d7a7ca3
usr-mips64-le                c97c1f32-ba06-40b4-9f22-236061b08aa8
root-mips64-le-verity        16b417f8-3e06-4f57-8dd2-9b5232f41aa6
usr-mips64-le-verity         3c3d61fe-b5f3-414d-bb71-8739a694a4ef
root-mips64-le-verity-sig    904e58ef-5c65-4a31-9c57-6af5fc7c5de7
usr-mips64-le-verity-sig     f2c2c7ee-adcc-4351-b5c6-ee9816b66e16
root-parisc                  1aacdb3b-5444-4138-bd9e-e5c2239b2346
usr-parisc                   dc4a4480-6917-4262-a4ec-db9384949f25
root-parisc-verity           d212a430-fbc5-49f9-a983-a7feef2b8d0e
usr-parisc-verity            5843d618-ec37-48d7-9f12-cea8e08768b2
root-parisc-verity-sig       15de6170-65d3-431c-916e-b0dcd8393f25
usr-parisc-verity-sig        450dd7d1-3224-45ec-9cf2-a43a346d71ee
root-ppc                     1de3f1ef-fa98-47b5-8dcd-4a860a654d78
usr-ppc                      7d14fec5-cc71-415d-9d6c-06bf0b3c3eaf
root-ppc-verity              98cfe649-1588-46dc-b2f0-add147424925
usr-ppc-verity               df765d00-270e-49e5-bc75-f47bb2118b09
root-ppc-verity-sig          1b31b5aa-add9-463a-b2ed-bd467fc857e7
usr-ppc-verity-sig           7007891d-d371-4a80-86a4-5cb875b9302e
root-ppc64                   912ade1d-a839-4913-8964-a10eee08fbd2
usr-ppc64                    2c9739e2-f068-46b3-9fd0-01c5a9afbcca
root-ppc64-verity            9225a9a3-3c19-4d89-b4f6-eeff88f17631
usr-ppc64-verity             bdb528a5-a259-475f-a87d-da53fa736a07
root-ppc64-verity-sig        f5e2c20c-45b2-4ffa-bce9-2a60737e1aaf
usr-ppc64-verity-sig         0b888863-d7f8-4d9e-9766-239fce4d58af
root-ppc64-le                c31c45e6-3f39-412e-80fb-4809c4980599
usr-ppc64-le                 15bb03af-77e7-4d4a-b12b-c0d084f7491c
root-ppc64-le-verity         906bd944-4589-4aae-a4e4-dd983917446a
usr-ppc64-le-verity          ee2b9983-21e8-4153-86d9-b6901a54d1ce
root-ppc64-le-verity-sig     d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6
usr-ppc64-le-verity-sig      c8bfbd1e-268e-4521-8bba-bf314c399557
root-riscv32                 60d5a7fe-8e7d-435c-b714-3dd8162144e1
usr-riscv32                  b933fb22-5c3f-4f91-af90-e2bb0fa50702
root-riscv32-verity          ae0253be-1167-4007-ac68-43926c14c5de
usr-riscv32-verity           cb1ee4e3-8cd0-4136-a0a4-aa61a32e8730
root-riscv32-verity-sig      3a112a75-8729-4380-b4cf-764d79934448
usr-riscv32-verity-sig       c3836a13-3137-45ba-b583-b16c50fe5eb4
root-riscv64                 72ec70a6-cf74-40e6-bd49-4bda08e8f224
usr-riscv64                  beaec34b-8442-439b-a40b-984381ed097d
root-riscv64-verity          b6ed5582-440b-4209-b8da-5ff7c419ea3d
usr-riscv64-verity           8f1056be-9b05-47c4-81d6-be53128e5b54
root-riscv64-verity-sig      efe0f087-ea8d-4469-821a-4c2a96a8386a
usr-riscv64-verity-sig       d2f9000a-7a18-453f-b5cd-4d32f77a7b32
root-s390                    08a7acea-624c-4a20-91e8-6e0fa67d23f9
usr-s390                     cd0f869b-d0fb-4ca0-b141-9ea87cc78d66
root-s390-verity             7ac63b47-b25c-463b-8df8-b4a94e6c90e1
usr-s390-verity              b663c618-e7bc-4d6d-90aa-11b756bb1797
root-s390-verity-sig         3482388e-4254-435a-a241-766a065f9960
usr-s390-verity-sig          17440e4f-a8d0-467f-a46e-3912ae6ef2c5
root-s390x                   5eead9a9-fe09-4a1e-a1d7-520d00531306
usr-s390x                    8a4f5770-50aa-4ed3-874a-99b710db6fea
root-s390x-verity            b325bfbe-c7be-4ab8-8357-139e652d2f6b
usr-s390x-verity             31741cc4-1a2a-4111-a581-e00b447d2d06
root-s390x-verity-sig        c80187a5-73a3-491a-901a-017c3fa953e9
usr-s390x-verity-sig         3f324816-667b-46ae-86ee-9b0c0c6c11b4
root-sh4                     7b8f86b1-397a-4e1c-9eb0-850983baedc4
usr-sh4                      0b6d8f08-1548-4183-a6fa-22fe95bc5422
root-sh4-verity              4a6c2f25-be67-45c5-95ac-255424f94f89
usr-sh4-verity               7dd626a2-f8a9-4e38-b8aa-8cedfef0f0ee
root-sh4-verity-sig          c6284716-c0b3-4c93-b349-a386d6bdee62
usr-sh4-verity-sig           71bbee31-fc3c-4ba4-8050-0b75ed32b466
root-sparc64                 f7b4d167-1e51-42a9-8151-ec96c2e99478
usr-sparc64                  db8ce399-787c-460a-80e3-69104c1ce375
root-sparc64-verity          4a42d3da-9a55-4973-beff-173496dee76f
usr-sparc64-verity           c94cddd2-694d-4ce1-bf7b-8b6f29bafeb1
root-sparc64-verity-sig      795cf80b-dcbf-4952-9c7b-4fd4729dfd97
usr-sparc64-verity-sig       0bebc110-9e89-4e17-9e52-6f3973889b2b
root-tilegx                  c50cdd70-3862-4cc3-90e1-809a8c93ee2c
usr-tilegx                   55497029-c7c1-44cc-aa39-815ed1558630
root-tilegx-verity           966061ec-28e4-4b2e-b4a5-1f0a825a1d84
usr-tilegx-verity            2fb4bf56-07fa-42da-8132-6b139f2026ae
root-tilegx-verity-sig       b3671439-97b0-4a53-90f7-2d5a8f3ad47b
usr-tilegx-verity-sig        4ede75e2-6ccc-4cc8-b9c7-70334b087510
root-x86                     44479540-f297-41b2-9af7-d131d5f0458a
usr-x86                      75250d76-8cc6-458e-bd66-bd47cc81a812
root-x86-verity              d13c5d3b-b5d1-422a-b29f-9454fdc89d76
usr-x86-verity               8f461b0d-14ee-4e81-9aa9-049b6fb97abd
root-x86-verity-sig          5996fc05-109c-48de-808b-23fa0830b676
usr-x86-verity-sig           974a71c0-de41-43c3-be5d-5c5ccd1ad2c0
root-x86-64                  4f68bce3-e8cd-4db1-96e7-fbcaf984b709
usr-x86-64                   8484680c-9521-48c6-9c11-b0720656f69e
root-x86-64-verity           2c7357ed-ebd2-46d9-aec1-23d437ec2bf5
usr-x86-64-verity            77ff5f63-e7b6-4633-acf4-1565b864c0e6
root-x86-64-verity-sig       41092b05-9fc8-4523-994f-2def0408b176
usr-x86-64-verity-sig        e7bb33fb-06cf-4e81-8273-e543b413e2e2
esp                          c12a7328-f81f-11d2-ba4b-00a0c93ec93b
xbootldr                     bc13c2ff-59e6-4262-a352-b275fd6f7172
swap                         0657fd6d-a4ab-43c4-84e5-0933c84b4f4f
home                         933ac7e1-2eb4-4f13-b844-0e14e2aef915
srv                          3b8f8425-20e0-4f3b-907f-1a25a76f98e8
var                          4d21b016-b534-45c2-a9fb-5c16e091fd2d
tmp                          7ec6f557-3bc5-4aca-b293-16ef5df639d1
user-home                    773f91ef-66d4-49b5-bd83-d683bf40ad16
linux-generic                0fc63daf-8483-4772-8e79-3d69d8477de4
"""

PARTITION_TYPES: dict[str, uuid.UUID] = {
    name: uuid.UUID(value) for name, value in (line.split() for line in _TYPE_TABLE.strip().splitlines())
}
_TYPE_NAMES: dict[uuid.UUID, str] = {value: name for name, value in PARTITION_TYPES.items()}

DESIGNATORS_PER_ARCH = ("root", "usr", "root-verity", "usr-verity", "root-verity-sig", "usr-verity-sig")
ARCHITECTURES: tuple[str, ...] = tuple(
    dict.fromkeys(
        name.removeprefix("root-").removesuffix("-verity-sig").removesuffix("-verity")
        for name in PARTITION_TYPES
        if name.startswith("root-")
    )
)


def partition_type(designator: str, architecture: str | None = None) -> uuid.UUID:
    """The type UUID for a designator (``root``, ``usr-verity``, ``esp``, ``home``, …).

    Per-architecture designators need ``architecture`` (``x86-64``, ``arm64``, …) unless it is already
    part of the name (``root-x86-64-verity``). A literal UUID string is accepted too.
    """
    if designator in PARTITION_TYPES:
        return PARTITION_TYPES[designator]
    if architecture is not None and designator in DESIGNATORS_PER_ARCH:
        head, _, tail = designator.partition("-")
        name = f"{head}-{architecture}" + (f"-{tail}" if tail else "")
        if name not in PARTITION_TYPES:
            raise MkosiError(f"No {designator} partition type is defined for architecture {architecture}")
        return PARTITION_TYPES[name]
    try:
        return uuid.UUID(designator)
    except ValueError:
        pass
    if designator in DESIGNATORS_PER_ARCH:
        raise MkosiError(f"Partition type {designator} needs an architecture")
    raise MkosiError(f"Unknown partition type {designator!r}")


def partition_type_name(type_uuid: uuid.UUID) -> str | None:
    """The name of a known type UUID (``root-x86-64``, ``esp``, …), or None."""
    return _TYPE_NAMES.get(type_uuid)


# ---------------------------------------------------------------------------------------------------------
# Deterministic UUIDs


def _v4(digest: bytes) -> uuid.UUID:
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


def derive_uuid(seed: uuid.UUID, data: bytes | str) -> uuid.UUID:
    """HMAC-SHA256 keyed by the seed's 16 bytes over ``data``; the first 16 bytes as a version 4 UUID.

    This is systemd's scheme; with ``data=b"disk-uuid"`` it gives the disk UUID systemd-repart picks.
    """
    message = data.encode() if isinstance(data, str) else data
    return _v4(hmac.new(seed.bytes, message, hashlib.sha256).digest())


def derive_disk_uuid(seed: uuid.UUID) -> uuid.UUID:
    """The disk (label) UUID systemd-repart --seed=SEED writes."""
    return derive_uuid(seed, b"disk-uuid")


def derive_partition_uuid(seed: uuid.UUID, type_uuid: uuid.UUID, instance: int = 0) -> uuid.UUID:
    """The partition UUID systemd-repart --seed=SEED gives the ``instance``-th (from 0) partition of a type.

    HMAC-SHA256(seed, type UUID bytes) for the first one; later ones append the instance number as a
    little-endian 64-bit integer.
    """
    data = type_uuid.bytes + (struct.pack("<Q", instance) if instance else b"")
    return derive_uuid(seed, data)


# ---------------------------------------------------------------------------------------------------------
# The plan and the result


@dataclass(frozen=True)
class Partition:
    """One partition to write.

    ``size`` is in bytes (rounded up to the sector size); None means the size of ``source`` rounded up to
    4 KiB. ``source`` is a file whose bytes are copied in, literal bytes, or None for zeros. ``uuid`` None
    means derived from the seed given to :func:`write_gpt`, as systemd-repart does.
    """

    type_uuid: uuid.UUID
    name: str = ""
    size: int | None = None
    uuid: uuid.UUID | None = None
    attributes: int = 0
    source: Path | bytes | None = None


@dataclass(frozen=True)
class GptEntry:
    """A partition as it is in (or was written to) a partition table. ``number`` counts from 1."""

    number: int
    type_uuid: uuid.UUID
    uuid: uuid.UUID
    name: str
    attributes: int
    first_lba: int
    last_lba: int
    sector_size: int

    @property
    def offset(self) -> int:
        return self.first_lba * self.sector_size

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * self.sector_size

    @property
    def type_name(self) -> str | None:
        return partition_type_name(self.type_uuid)


@dataclass(frozen=True)
class GptTable:
    disk_uuid: uuid.UUID
    sector_size: int
    first_usable_lba: int
    last_usable_lba: int
    backup_lba: int
    partitions: tuple[GptEntry, ...]

    @property
    def disk_size(self) -> int:
        return (self.backup_lba + 1) * self.sector_size


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _source_size(source: Path | bytes | None) -> int:
    if source is None:
        return 0
    if isinstance(source, bytes):
        return len(source)
    try:
        return source.stat().st_size
    except OSError as e:
        raise MkosiError(f"Cannot read partition data {source}: {e.strerror}") from e


def _encode_name(name: str) -> bytes:
    encoded = name.encode("utf-16-le")
    if len(encoded) > NAME_MAX_CHARS * 2:
        raise MkosiError(f"Partition name {name!r} is longer than {NAME_MAX_CHARS} UTF-16 characters")
    if "\0" in name:
        raise MkosiError(f"Partition name {name!r} contains a NUL character")
    return encoded.ljust(NAME_MAX_CHARS * 2, b"\0")


def _entry_array_sectors(sector_size: int) -> int:
    return _round_up(ENTRY_ARRAY_SIZE, sector_size) // sector_size


def plan_gpt(
    partitions: Sequence[Partition],
    *,
    disk_uuid: uuid.UUID | None = None,
    seed: uuid.UUID | None = None,
    sector_size: int = 512,
    alignment: int = MiB,
    disk_size: int | None = None,
) -> GptTable:
    """Place ``partitions`` on a disk without writing anything: the table :func:`write_gpt` would write.

    The first partition starts at 1 MiB (or the next multiple of ``alignment`` after it), every later
    one at the next multiple of ``alignment`` after the previous one. ``alignment`` of 4096 packs the
    partitions the way systemd-repart does. ``disk_size`` (bytes) forces the size of the disk, which must
    hold everything; by default it is the smallest that does, rounded up to 4 KiB.
    """
    if sector_size not in SECTOR_SIZES:
        raise MkosiError(f"Unsupported sector size {sector_size}, expected one of {SECTOR_SIZES}")
    if alignment <= 0 or alignment % sector_size:
        raise MkosiError(f"Partition alignment {alignment} is not a multiple of sector size {sector_size}")
    if len(partitions) > ENTRY_COUNT:
        raise MkosiError(f"Too many partitions ({len(partitions)}), a GPT holds at most {ENTRY_COUNT}")
    if disk_uuid is None:
        if seed is None:
            raise MkosiError("A GPT needs a disk UUID or a seed to derive it from")
        disk_uuid = derive_disk_uuid(seed)

    grain = max(sector_size, 4 * KiB)
    first_usable = MiB // sector_size
    offset = _round_up(MiB, alignment)
    entries: list[GptEntry] = []
    seen: dict[uuid.UUID, int] = {}
    for number, p in enumerate(partitions, start=1):
        instance = seen.get(p.type_uuid, 0)
        seen[p.type_uuid] = instance + 1
        data_size = _source_size(p.source)
        if p.size is None:
            size = _round_up(max(data_size, 1), grain)
        else:
            if p.size <= 0:
                raise MkosiError(f"Partition {number} ({p.name or p.type_uuid}) has size {p.size}")
            size = _round_up(p.size, sector_size)
        if data_size > size:
            raise MkosiError(
                f"Partition {number} ({p.name or p.type_uuid}) is {size} bytes,"
                f" too small for its {data_size} bytes of data"
            )
        if p.uuid is not None:
            part_uuid = p.uuid
        elif seed is not None:
            part_uuid = derive_partition_uuid(seed, p.type_uuid, instance)
        else:
            raise MkosiError(f"Partition {number} ({p.name or p.type_uuid}) has no UUID and there is no seed")
        _encode_name(p.name)
        if not 0 <= p.attributes < 1 << 64:
            raise MkosiError(f"Partition {number} has invalid attributes {p.attributes:#x}")
        offset = _round_up(offset, alignment)
        entries.append(
            GptEntry(
                number=number,
                type_uuid=p.type_uuid,
                uuid=part_uuid,
                name=p.name,
                attributes=p.attributes,
                first_lba=offset // sector_size,
                last_lba=(offset + size) // sector_size - 1,
                sector_size=sector_size,
            )
        )
        offset += size

    end = max([MiB] + [(e.last_lba + 1) * sector_size for e in entries])
    backup_bytes = (_entry_array_sectors(sector_size) + 1) * sector_size
    needed = _round_up(end + backup_bytes, grain)
    if disk_size is None:
        total = needed
    else:
        if disk_size % sector_size:
            raise MkosiError(f"Disk size {disk_size} is not a multiple of the sector size {sector_size}")
        if disk_size < end + backup_bytes:
            raise MkosiError(f"Disk size {disk_size} is too small for the partitions, need {needed} bytes")
        total = disk_size
    backup_lba = total // sector_size - 1
    return GptTable(
        disk_uuid=disk_uuid,
        sector_size=sector_size,
        first_usable_lba=first_usable,
        last_usable_lba=backup_lba - _entry_array_sectors(sector_size) - 1,
        backup_lba=backup_lba,
        partitions=tuple(entries),
    )


# ---------------------------------------------------------------------------------------------------------
# Serialization


def _protective_mbr(table: GptTable) -> bytes:
    sectors = min(table.backup_lba, 0xFFFFFFFF)
    entry = struct.pack("<B3sB3sII", 0x00, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, sectors)
    mbr = bytearray(512)
    mbr[446 : 446 + 16] = entry
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr).ljust(table.sector_size, b"\0")


def _entry_array(table: GptTable) -> bytes:
    array = bytearray(ENTRY_ARRAY_SIZE)
    for i, e in enumerate(table.partitions):
        array[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE] = struct.pack(
            "<16s16sQQQ72s",
            e.type_uuid.bytes_le,
            e.uuid.bytes_le,
            e.first_lba,
            e.last_lba,
            e.attributes,
            _encode_name(e.name),
        )
    return bytes(array)


def _header(table: GptTable, *, backup: bool, entries_crc: int) -> bytes:
    array_sectors = _entry_array_sectors(table.sector_size)
    my_lba, other_lba = (table.backup_lba, 1) if backup else (1, table.backup_lba)
    entries_lba = table.backup_lba - array_sectors if backup else 2

    def pack(crc: int) -> bytes:
        return struct.pack(
            "<8sIIIIQQQQ16sQIII",
            GPT_SIGNATURE,
            GPT_REVISION,
            GPT_HEADER_SIZE,
            crc,
            0,
            my_lba,
            other_lba,
            table.first_usable_lba,
            table.last_usable_lba,
            table.disk_uuid.bytes_le,
            entries_lba,
            ENTRY_COUNT,
            ENTRY_SIZE,
            entries_crc,
        )

    header = pack(zlib.crc32(pack(0)))
    return header.ljust(table.sector_size, b"\0")


def gpt_structures(table: GptTable) -> list[tuple[int, bytes]]:
    """(offset, bytes) of the protective MBR, both headers and both entry arrays of ``table``."""
    ss = table.sector_size
    array = _entry_array(table).ljust(_entry_array_sectors(ss) * ss, b"\0")
    crc = zlib.crc32(_entry_array(table))
    return [
        (0, _protective_mbr(table)),
        (ss, _header(table, backup=False, entries_crc=crc)),
        (2 * ss, array),
        ((table.backup_lba - _entry_array_sectors(ss)) * ss, array),
        (table.backup_lba * ss, _header(table, backup=True, entries_crc=crc)),
    ]


# ---------------------------------------------------------------------------------------------------------
# Copying data sparsely


def data_extents(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges of ``fd`` between ``start`` and ``size`` that may hold data; holes are left
    out.

    Falls back to one range covering everything where SEEK_DATA/SEEK_HOLE are not supported. The file
    offset of ``fd`` is moved; read with ``pread``.
    """
    pos = start
    while pos < size:
        try:
            begin = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield (pos, size)
                return
            raise
        if begin >= size:
            return
        end = min(os.lseek(fd, begin, os.SEEK_HOLE), size)
        yield (begin, end)
        pos = end


_CHUNK = 4 * MiB
_ZEROS = bytes(_CHUNK)


def _copy_range_plain(src: int, dst: int, start: int, end: int, dst_offset: int) -> None:
    pos = start
    while pos < end:
        chunk = os.pread(src, min(_CHUNK, end - pos), pos)
        if not chunk:
            raise MkosiError("Partition data shrank while it was being copied")
        if chunk != _ZEROS[: len(chunk)]:
            os.pwrite(dst, chunk, dst_offset + pos)
        pos += len(chunk)


def copy_sparse(src: int, dst: int, size: int, dst_offset: int) -> None:
    """Copy ``size`` bytes from the start of ``src`` to ``dst`` at ``dst_offset``, skipping holes and zeros.

    ``dst`` must already read as zeros there (a freshly truncated file). Uses copy_file_range (which can
    share extents on reflink-capable file systems) where the kernel allows it, sendfile between different
    file systems (e.g. from a memfd), plain reads otherwise. The file offset of ``dst`` is moved.
    """
    use_cfr = hasattr(os, "copy_file_range")
    use_sendfile = True
    for start, end in data_extents(src, size):
        pos = start
        while pos < end and use_cfr:
            try:
                n = os.copy_file_range(src, dst, end - pos, pos, dst_offset + pos)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF):
                    raise
                use_cfr = False
                break
            if n == 0:
                raise MkosiError("Partition data shrank while it was being copied")
            pos += n
        if pos < end and use_sendfile:
            os.lseek(dst, dst_offset + pos, os.SEEK_SET)
            while pos < end:
                try:
                    n = os.sendfile(dst, src, pos, end - pos)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    use_sendfile = False
                    break
                if n == 0:
                    raise MkosiError("Partition data shrank while it was being copied")
                pos += n
        if pos < end:
            _copy_range_plain(src, dst, pos, end, dst_offset)


def write_source(fd: int, source: Path | bytes | None, offset: int) -> None:
    """Write a partition's data (a file, copied sparsely, or bytes) into ``fd`` at ``offset``, which must read
    as zeros there (a freshly truncated file)."""
    if isinstance(source, bytes):
        if source.strip(b"\0"):
            os.pwrite(fd, source, offset)
        return
    if source is None:
        return
    try:
        src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MkosiError(f"Cannot read partition data {source}: {e.strerror}") from e
    try:
        copy_sparse(src, fd, os.fstat(src).st_size, offset)
    finally:
        os.close(src)


# ---------------------------------------------------------------------------------------------------------
# Writing and reading


def write_gpt(
    path: Path,
    partitions: Sequence[Partition],
    *,
    disk_uuid: uuid.UUID | None = None,
    seed: uuid.UUID | None = None,
    sector_size: int = 512,
    alignment: int = MiB,
    disk_size: int | None = None,
) -> GptTable:
    """Write a new disk image at ``path`` (replacing any file there) and return its partition table.

    See :func:`plan_gpt` for the placement rules. Partition data is copied in sparsely; everything not
    written reads as zeros (the file is sparse where the file system allows).
    """
    table = plan_gpt(
        partitions,
        disk_uuid=disk_uuid,
        seed=seed,
        sector_size=sector_size,
        alignment=alignment,
        disk_size=disk_size,
    )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise MkosiError(f"Cannot create disk image {path}: {e.strerror}") from e
    try:
        os.ftruncate(fd, table.disk_size)
        for entry, p in zip(table.partitions, partitions):
            write_source(fd, p.source, entry.offset)
        for offset, blob in gpt_structures(table):
            os.pwrite(fd, blob, offset)
    except OSError as e:
        raise MkosiError(f"Cannot write disk image {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    return table


@dataclass(frozen=True)
class _Header:
    table: GptTable
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int


def _parse_header(raw: bytes, sector_size: int, lba: int) -> _Header:
    fields = struct.unpack_from("<8sIIIIQQQQ16sQIII", raw)
    sig, _rev, hsize, crc, _res, my_lba, alt_lba, first, last, guid, entries_lba, count, esize, ecrc = fields
    if sig != GPT_SIGNATURE:
        raise MkosiError(f"No GPT header at LBA {lba}")
    if not GPT_HEADER_SIZE <= hsize <= sector_size:
        raise MkosiError(f"GPT header at LBA {lba} has invalid size {hsize}")
    check = bytearray(raw[:hsize])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != crc:
        raise MkosiError(f"GPT header at LBA {lba} has a bad CRC32")
    if my_lba != lba:
        raise MkosiError(f"GPT header at LBA {lba} claims to be at LBA {my_lba}")
    if esize < ENTRY_SIZE or esize % 8 or count == 0 or count * esize > 64 * MiB:
        raise MkosiError(f"GPT header at LBA {lba} has an invalid entry array ({count} x {esize} bytes)")
    table = GptTable(
        disk_uuid=uuid.UUID(bytes_le=guid),
        sector_size=sector_size,
        first_usable_lba=first,
        last_usable_lba=last,
        backup_lba=alt_lba if lba == 1 else lba,
        partitions=(),
    )
    return _Header(table, entries_lba, count, esize, ecrc)


def read_gpt(path: Path, *, sector_size: int | None = None, backup: bool = False) -> GptTable:
    """Parse the GPT of a disk image (the primary one, or the backup with ``backup=True``).

    The sector size is detected (512, then 4096) unless given. Headers and entry arrays are checked
    against their CRC32s; a damaged table raises :class:`MkosiError`.
    """
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            sizes = (sector_size,) if sector_size else SECTOR_SIZES
            for ss in sizes:
                f.seek(ss)
                if f.read(8) == GPT_SIGNATURE:
                    break
            else:
                raise MkosiError(f"{path} has no GUID partition table")
            lba = file_size // ss - 1 if backup else 1
            f.seek(lba * ss)
            header = _parse_header(f.read(ss), ss, lba)
            count, esize = header.entry_count, header.entry_size
            f.seek(header.entries_lba * ss)
            array = f.read(count * esize)
    except OSError as e:
        raise MkosiError(f"Cannot read {path}: {e.strerror}") from e
    if len(array) != count * esize or zlib.crc32(array) != header.entries_crc:
        raise MkosiError(f"{path}: GPT partition entry array has a bad CRC32")
    entries = []
    for i in range(count):
        raw = array[i * esize : i * esize + ENTRY_SIZE]
        type_le, uuid_le, first, last, attrs, name = struct.unpack("<16s16sQQQ72s", raw)
        if type_le == bytes(16):
            continue
        decoded = name.decode("utf-16-le", errors="replace")
        entries.append(
            GptEntry(
                number=i + 1,
                type_uuid=uuid.UUID(bytes_le=type_le),
                uuid=uuid.UUID(bytes_le=uuid_le),
                name=decoded.split("\0", 1)[0],
                attributes=attrs,
                first_lba=first,
                last_lba=last,
                sector_size=ss,
            )
        )
    return dataclasses.replace(header.table, partitions=tuple(entries))

"""``Format=disk`` (a GPT disk image, not bootable here) and the image builder the extension formats share.

:func:`build_image` turns partition definitions (:mod:`mkosi.formats.repart`) and a root directory into a
GPT image without mounting anything: each partition's file system is made from its ``CopyFiles=`` sources
(:mod:`mkosi.formats.filesystems`), verity hash trees are computed (:mod:`mkosi.formats.verity`), root
hashes are signed (:mod:`mkosi.formats.signing`) and the table is laid out by :mod:`mkosi.formats.gpt`,
partitions packed on 4 KiB boundaries from 1 MiB on, as systemd-repart packs them.

Identities, all derived from ``Seed=`` so that the same seed, tree and ``SOURCE_DATE_EPOCH`` give the same
bytes: the disk UUID and the partition UUIDs the way systemd-repart derives them; the UUIDs of a verity
data and hash partition are the two halves of the root hash; file system UUIDs and verity salts come from
the seed and the partition's type (and verity match key). Attributes: read-only (bit 60) on verity data and
hash partitions and on read-only file systems, growfs (bit 59) on writable root and usr file systems.

:func:`write_image` is the configuration side: which definitions (``RepartDirectories=``, else the
format's default layout), what ``Verity=`` makes of them and with which key, ``SplitArtifacts=`` and
``CompressOutput=``. :func:`verity_plan` and :func:`definitions_for` are also what the checks before a
build use, so that bad keys and definitions stop a build before any work.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from mkosi import distributions, log, workers
from mkosi.build.context import Context
from mkosi.config.model import ArtifactOutput, Compression, OutputFormat, Verity
from mkosi.config.typed import Config
from mkosi.errors import MkosiError
from mkosi.formats import compression, filesystems, gpt, repart, signing, verity
from mkosi.outputs.naming import compression_of, output_name, output_with_format, split_name

# ---------------------------------------------------------------------------------------------------------
# Building an image.


@dataclass(frozen=True)
class Signer:
    key: signing.SigningKey
    certificate: x509.Certificate


@dataclass(frozen=True)
class BuiltPartition:
    number: int
    type_name: str
    label: str
    uuid: uuid.UUID
    offset: int
    size: int
    attributes: int
    definition: repart.Definition
    #: the root hash this partition carries or protects (verity partitions)
    roothash: bytes | None = None
    #: the split artifact written for it, if any
    split: Path | None = None


@dataclass(frozen=True)
class ImageResult:
    path: Path
    table: gpt.GptTable
    partitions: tuple[BuiltPartition, ...]
    #: root hashes by the designator of the data partition they protect (``root``, ``usr``, ...)
    roothashes: dict[str, bytes]


@dataclass
class _Planned:
    definition: repart.Definition
    type: repart.ResolvedType
    source: Path | bytes | None = None
    size: int | None = None
    uuid: uuid.UUID | None = None
    attributes: int = 0
    roothash: bytes | None = None
    label: str = ""
    #: the file system while it is still in memory (see _Staged); verity reads it from there
    staged: _Staged | None = None


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _fs_uuid(seed: uuid.UUID, p: _Planned, instance: int) -> uuid.UUID:
    return gpt.derive_uuid(seed, b"mkosi-fs-uuid:" + p.type.uuid.bytes + instance.to_bytes(8, "little"))


#: The longest label each file system takes (longer partition labels are cut for the file system).
_LABEL_MAX = {"vfat": 11, "ext4": 16, "xfs": 12, "btrfs": 255, "erofs": 16, "squashfs": 0}


def _fs_label(fstype: str, label: str) -> str | None:
    limit = _LABEL_MAX.get(fstype, 16)
    return label[:limit] if limit else None


def _check_max(p: _Planned, size: int) -> None:
    d = p.definition
    if d.size_max is not None and size > d.size_max:
        raise MkosiError(f"{d.source}: the partition needs {size} bytes, more than SizeMaxBytes={d.size_max}")


def _pad_file(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


# ---------------------------------------------------------------------------------------------------------
# Read-only file systems of moderate size are made in memory: their tools write in small pieces, which costs
# far more on a journaling file system than on tmpfs (mkfs.erofs of 170 MB: 0.45 s to a memfd, 0.75 s to
# ext4). When the partition's place on the disk is already known (every partition before it has its size),
# a forked process copies it there in large pieces while the verity tree is computed from the memory copy;
# the copy then costs little wall time. The memfd has no name in any file system: nothing is left behind
# however the build ends.

_MEMORY_FORMATS = frozenset({"erofs", "squashfs"})
_MEMORY_MAX = 2 * 1024**3


@dataclass
class _Staged:
    fd: int
    offset: int | None = None  # where it is being copied to in the disk image
    copier: int | None = None  # pid of the process copying it

    @property
    def path(self) -> Path:
        """A path other processes (the mkfs tool) can open the memfd by."""
        return Path(f"/proc/{os.getpid()}/fd/{self.fd}")

    def start_copy(self, target: Path, offset: int) -> None:
        self.offset = offset
        size = os.fstat(self.fd).st_size
        if workers.can_fork():
            self.copier = workers.start(lambda: _copy_into(self.fd, target, offset, size))
        else:
            _copy_into(self.fd, target, offset, size)

    def finish(self) -> None:
        """Wait for the copy; raise if it failed."""
        if self.copier is not None:
            status = workers.wait(self.copier)
            self.copier = None
            if status != 0:
                raise MkosiError(f"Copying a file system into the disk image failed (wait status {status})")

    def close(self) -> None:
        if self.copier is not None:
            workers.stop(self.copier)
            self.copier = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _copy_into(src: int, target: Path, offset: int, size: int) -> None:
    dst = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        gpt.copy_sparse(src, dst, size, offset)
    finally:
        os.close(dst)


def _memory_budget() -> int:
    """How large a file system may be made in memory: a quarter of the available memory, at most 2 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return min(int(line.split()[1]) * 1024 // 4, _MEMORY_MAX)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree_exceeds(tree: Path, limit: int) -> bool:
    """Whether the files under ``tree`` (with a block per entry for metadata) take more than ``limit``."""
    total = 0
    pending = [os.fspath(tree)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            return True
        with entries:
            for entry in entries:
                total += 4096
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                if total > limit:
                    return True
    return False


def _stage_in_memory(fstype: str, tree: Path, size_min: int | None) -> _Staged | None:
    if fstype not in _MEMORY_FORMATS or not hasattr(os, "memfd_create"):
        return None
    budget = _memory_budget()
    if (size_min or 0) > budget or _tree_exceeds(tree, budget):
        return None
    try:
        return _Staged(os.memfd_create("mkosi-partition", os.MFD_CLOEXEC))
    except OSError:
        return None


def _make_filesystem(
    p: _Planned,
    index: int,
    root: Path,
    workdir: Path,
    seed: uuid.UUID,
    instance: int,
    sector_size: int,
    epoch: int | None,
) -> None:
    d = p.definition
    assert d.format is not None
    image = workdir / f"partition-{index}.{d.format}"
    # best: as small as the content allows. guess: read-only file systems are minimal anyway; writable ones
    # get filesystems' estimate of the content plus headroom, so that a root file system is not full.
    minimize = d.minimize == repart.Minimize.best or (
        d.minimize == repart.Minimize.guess and d.format in repart.READ_ONLY_FILESYSTEMS
    )
    with repart.source_tree(root, d, workdir, index, epoch) as tree:
        p.staged = _stage_in_memory(d.format, tree, d.size_min)
        try:
            filesystems.make_filesystem(
                d.format,
                tree,
                p.staged.path if p.staged else image,
                uuid=_fs_uuid(seed, p, instance),
                label=_fs_label(d.format, d.label or p.type.name),
                size=d.size_min,
                minimize=minimize,
                sector_size=sector_size,
                source_date_epoch=epoch,
            )
        except MkosiError as e:
            raise MkosiError(f"{d.source}: {e.message}", e.hint) from e
    if p.staged:
        size = _round_up(os.fstat(p.staged.fd).st_size, repart.ALIGNMENT)
        os.ftruncate(p.staged.fd, size)
        p.source = p.staged.path
    else:
        size = _round_up(image.stat().st_size, repart.ALIGNMENT)
        _pad_file(image, size)
        p.source = image
    _check_max(p, size)
    p.size = max(size, d.size_min or 0)


def _expand_split_name(p: _Planned, number: int, part_uuid: uuid.UUID) -> str:
    values = {"t": p.type.name, "T": str(p.type.uuid), "U": str(part_uuid), "n": str(number), "%": "%"}
    return re.sub(r"%(.)", lambda m: values[m.group(1)], p.definition.split_name)


def _labels(planned: list[_Planned]) -> None:
    seen: dict[str, int] = {}
    for p in planned:
        base = p.definition.label or p.type.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        p.label = base if count == 0 else f"{base}-{count + 1}"


def _attributes(p: _Planned) -> int:
    d = p.definition
    read_only = (
        d.verity in (repart.VerityRole.data, repart.VerityRole.hash)
        or d.format in repart.READ_ONLY_FILESYSTEMS
    )
    attrs = gpt.ATTR_READ_ONLY if read_only else 0
    if (
        not read_only
        and d.format in repart.GROWABLE_FILESYSTEMS
        and repart.verity_role_of_type(d.type) == "data"
    ):
        attrs |= gpt.ATTR_GROWFS
    return attrs


def build_image(
    definitions: Sequence[repart.Definition],
    root: Path,
    output: Path,
    *,
    workdir: Path,
    architecture: str,
    seed: uuid.UUID,
    sector_size: int = 512,
    source_date_epoch: int | None = None,
    mode: repart.VerityMode = repart.VerityMode.hash,
    signer: Signer | None = None,
    min_disk_size: int | None = None,
    split_prefix: str | None = None,
) -> ImageResult:
    """Write the image ``definitions`` describe, with contents from ``root``, to ``output``.

    ``root`` is rearranged while a partition's file system is made (renames, never copies where a rename
    does) and put back as it was, directory times included. ``mode`` says what happens to verity
    signature partitions (``signed`` needs ``signer``; ``defer`` leaves them zeroed); the definitions are
    expected to have gone through :func:`apply_verity_mode` already. ``min_disk_size`` grows the disk
    (free space at the end). With ``split_prefix``, every partition whose ``SplitName=`` is not ``-`` is
    also written to ``<split_prefix>.<SplitName>.raw`` in ``output``'s directory. ``workdir`` holds
    intermediate files and must be on the same file system as ``output``.
    """
    repart.check_definitions(definitions, architecture)
    workdir.mkdir(parents=True, exist_ok=True)
    planned = [_Planned(d, repart.resolve_type(d, architecture)) for d in definitions]
    try:
        return _build_image(
            planned,
            root,
            output,
            workdir=workdir,
            seed=seed,
            sector_size=sector_size,
            source_date_epoch=source_date_epoch,
            mode=mode,
            signer=signer,
            min_disk_size=min_disk_size,
            split_prefix=split_prefix,
        )
    finally:
        for p in planned:
            if p.staged:
                p.staged.close()


def _build_image(
    planned: list[_Planned],
    root: Path,
    output: Path,
    *,
    workdir: Path,
    seed: uuid.UUID,
    sector_size: int,
    source_date_epoch: int | None,
    mode: repart.VerityMode,
    signer: Signer | None,
    min_disk_size: int | None,
    split_prefix: str | None,
) -> ImageResult:
    instances: dict[uuid.UUID, int] = {}

    # File systems, in order.
    for index, p in enumerate(planned):
        instance = instances.get(p.type.uuid, 0)
        instances[p.type.uuid] = instance + 1
        d = p.definition
        if d.format:
            log.debug(f"Making the {d.format} file system of partition {index + 1} ({p.type.name})")
            _make_filesystem(p, index, root, workdir, seed, instance, sector_size, source_date_epoch)
        elif d.verity == repart.VerityRole.off:
            p.size = d.size_min if d.size_min is not None else repart.DEFAULT_EMPTY_SIZE
            _check_max(p, p.size)

    # Partitions made in memory start on their way into the disk image now if their place is known.
    image = workdir / "disk.raw"
    _place_early(planned, image, seed, sector_size)

    # Verity: hash trees, then signatures.
    groups: dict[str, dict[repart.VerityRole, _Planned]] = {}
    for p in planned:
        if p.definition.verity != repart.VerityRole.off:
            groups.setdefault(p.definition.verity_match_key or "", {})[p.definition.verity] = p
    roothashes: dict[str, bytes] = {}
    for key, group in groups.items():
        data, hashp = group[repart.VerityRole.data], group[repart.VerityRole.hash]
        assert isinstance(data.source, Path)
        hash_file = workdir / f"verity-{len(roothashes)}.hash"
        result = verity.format_verity(
            data.source,
            hash_file,
            salt=verity.derive_salt(seed, key),
            verity_uuid=verity.derive_verity_uuid(seed, key),
        )
        data_uuid, hash_uuid = verity.partition_uuids(result.root_hash)
        data.uuid = data.definition.uuid or data_uuid
        hashp.uuid = hashp.definition.uuid or hash_uuid
        data.roothash = hashp.roothash = result.root_hash
        hash_size = _round_up(result.hash_size, repart.ALIGNMENT)
        _pad_file(hash_file, hash_size)
        _check_max(hashp, hash_size)
        hashp.source = hash_file
        hashp.size = max(hash_size, hashp.definition.size_min or 0)
        designator = data.type.name.split("-", 1)[0]
        roothashes[designator] = result.root_hash
        sig = group.get(repart.VerityRole.signature)
        if sig is None:
            continue
        sig.roothash = result.root_hash
        if mode == repart.VerityMode.defer:
            blob = bytes(signing.VERITY_SIG_MIN_SIZE)
        elif signer is None:
            raise MkosiError(
                f"{sig.definition.source}: a verity signature partition needs a key and certificate",
                hint="set VerityKey= and VerityCertificate= (mkosi genkey makes both), or use Verity=hash",
            )
        else:
            blob = signing.verity_signature_partition(
                result.root_hash, signer.key, signer.certificate, embed_certificate=True
            )
        _check_max(sig, len(blob))
        sig.source = blob
        sig.size = max(len(blob), sig.definition.size_min or 0)

    for p in planned:
        p.attributes = _attributes(p)
    _labels(planned)
    partitions = [
        gpt.Partition(
            type_uuid=p.type.uuid,
            name=p.label,
            size=p.size,
            uuid=p.uuid,
            attributes=p.attributes,
            source=p.source,
        )
        for p in planned
    ]
    table = _plan(planned, partitions, seed, sector_size, min_disk_size)
    # From here on every partition carries the UUID the table gave it.
    partitions = [dataclasses.replace(p, uuid=e.uuid) for p, e in zip(partitions, table.partitions)]

    splits: dict[int, Path] = {}
    if split_prefix is not None:
        for p, entry in zip(planned, table.partitions):
            if p.definition.split_name == "-":
                continue
            target = output.parent / f"{split_prefix}.{_expand_split_name(p, entry.number, entry.uuid)}.raw"
            _write_split(p.source, target, entry.size)
            splits[entry.number] = target

    placed = {i: p.staged for i, p in enumerate(planned) if p.staged and p.staged.offset is not None}
    if placed:
        _assemble_placed(image, output, table, partitions, placed)
    else:
        _assemble(output, table, partitions, workdir)
    built = tuple(
        BuiltPartition(
            number=entry.number,
            type_name=p.type.name,
            label=entry.name,
            uuid=entry.uuid,
            offset=entry.offset,
            size=entry.size,
            attributes=entry.attributes,
            definition=p.definition,
            roothash=p.roothash,
            split=splits.get(entry.number),
        )
        for p, entry in zip(planned, table.partitions)
    )
    return ImageResult(output, table, built, roothashes)


def _plan(
    planned: list[_Planned],
    partitions: list[gpt.Partition],
    seed: uuid.UUID,
    sector_size: int,
    min_disk_size: int | None,
) -> gpt.GptTable:
    padding = [p.definition.padding_min or 0 for p in planned]
    if any(padding[:-1]):
        index = next(i for i, pad in enumerate(padding[:-1]) if pad)
        raise MkosiError(
            f"{planned[index].definition.source}: PaddingMinBytes= is only supported on the last partition"
        )
    table = gpt.plan_gpt(partitions, seed=seed, sector_size=sector_size, alignment=repart.ALIGNMENT)
    wanted = table.disk_size
    if padding and padding[-1] and table.partitions:
        last = table.partitions[-1]
        backup = table.disk_size - (table.last_usable_lba + 1) * table.sector_size
        wanted = _round_up(last.offset + last.size + padding[-1] + backup, repart.ALIGNMENT)
    if min_disk_size is not None:
        wanted = max(wanted, _round_up(min_disk_size, repart.ALIGNMENT))
    if wanted != table.disk_size:
        table = gpt.plan_gpt(
            partitions, seed=seed, sector_size=sector_size, alignment=repart.ALIGNMENT, disk_size=wanted
        )
    return table


def _write_split(source: Path | bytes | None, target: Path, size: int) -> None:
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, size)
        gpt.write_source(fd, source, 0)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# Assembling: the largest partition's file becomes the image in place (the space in front of it is
# inserted with FALLOC_FL_INSERT_RANGE, a metadata-only operation on ext4 and xfs), the rest is copied in.
# Where the file system cannot insert ranges, gpt.write_gpt copies everything. Both give the same bytes.

_FALLOC_FL_INSERT_RANGE = 0x20


def _place_early(planned: list[_Planned], image: Path, seed: uuid.UUID, sector_size: int) -> None:
    """Start copying partitions made in memory into ``image`` where every partition before them has a size."""
    image.unlink(missing_ok=True)
    prefix: list[gpt.Partition] = []
    for p in planned:
        if p.size is None:
            return
        prefix.append(gpt.Partition(type_uuid=p.type.uuid, name="", size=p.size))
        if p.staged is None:
            continue
        offset = gpt.plan_gpt(prefix, seed=seed, sector_size=sector_size, alignment=repart.ALIGNMENT)
        if not image.exists():
            image.touch(mode=0o644)
        p.staged.start_copy(image, offset.partitions[-1].offset)


def _assemble_placed(
    image: Path,
    output: Path,
    table: gpt.GptTable,
    partitions: list[gpt.Partition],
    placed: dict[int, _Staged],
) -> None:
    """Complete ``image``, into which the ``placed`` partitions (by index) are being copied, as ``output``."""
    for staged in placed.values():
        staged.finish()
    fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, table.disk_size)
        for index, (entry, p) in enumerate(zip(table.partitions, partitions)):
            if index in placed and placed[index].offset == entry.offset:
                continue
            gpt.write_source(fd, p.source, entry.offset)
        for offset, blob in gpt.gpt_structures(table):
            os.pwrite(fd, blob, offset)
    finally:
        os.close(fd)
    os.rename(image, output)


def _insert_range(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate64
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    if fallocate(fd, _FALLOC_FL_INSERT_RANGE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _assemble(output: Path, table: gpt.GptTable, partitions: list[gpt.Partition], workdir: Path) -> None:
    files = [
        (e, p)
        for e, p in zip(table.partitions, partitions)
        if isinstance(p.source, Path) and p.source.is_relative_to(workdir) and p.source.stat().st_size > 0
    ]
    if files:
        entry, anchor = max(files, key=lambda ep: os.stat(ep[1].source).st_size)  # type: ignore[arg-type]
        assert isinstance(anchor.source, Path)
        if _assemble_in_place(output, table, partitions, entry, anchor.source):
            return
    gpt.write_gpt(
        output,
        partitions,
        disk_uuid=table.disk_uuid,
        sector_size=table.sector_size,
        alignment=repart.ALIGNMENT,
        disk_size=table.disk_size,
    )


def _assemble_in_place(
    output: Path, table: gpt.GptTable, partitions: list[gpt.Partition], anchor: gpt.GptEntry, path: Path
) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if anchor.offset % os.fstatvfs(fd).f_bsize or os.fstat(fd).st_dev != os.stat(output.parent).st_dev:
            return False
        try:
            _insert_range(fd, 0, anchor.offset)
        except (OSError, AttributeError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            log.debug(f"Cannot insert ranges in {path} ({e}), copying the partitions instead")
            return False
        os.ftruncate(fd, table.disk_size)
        for entry, p in zip(table.partitions, partitions):
            if entry.number != anchor.number:
                gpt.write_source(fd, p.source, entry.offset)
        for offset, blob in gpt.gpt_structures(table):
            os.pwrite(fd, blob, offset)
    finally:
        os.close(fd)
    os.rename(path, output)
    return True


# ---------------------------------------------------------------------------------------------------------
# The configuration side.

#: The formats written by :func:`write_image`, and the default layout each uses.
IMAGE_FORMATS = {
    OutputFormat.disk: "disk",
    OutputFormat.sysext: "sysext",
    OutputFormat.confext: "confext",
    OutputFormat.portable: "portable",
}


def _where(config: Config, attr: str) -> str:
    """``file:line: `` of the assignment that set a setting (empty for defaults and the command line)."""
    origins = getattr(config, "origins", {}).get(attr) or []
    for origin in reversed(origins):
        if origin.path is not None and origin.line:
            return f"{origin}: "
    return ""


def definitions_for(config: Config) -> list[repart.Definition]:
    """``RepartDirectories=`` (``mkosi.repart/``), else the default layout of the image's format; checked."""
    kind = IMAGE_FORMATS[config.output_format]
    if config.repart_directories:
        definitions = repart.read_definitions([Path(d) for d in config.repart_directories])
    else:
        filesystem = "ext4"
        if kind == "disk":
            with contextlib.suppress(MkosiError):
                filesystem = distributions.module(config.distribution).default_filesystem()
        definitions = repart.default_definitions(kind, filesystem=filesystem)
    repart.check_definitions(definitions, config.architecture.value)
    return definitions


@dataclass(frozen=True)
class VerityPlan:
    mode: repart.VerityMode
    signer: Signer | None
    #: the definitions as the mode leaves them
    definitions: tuple[repart.Definition, ...]


def _load_signer(config: Config) -> Signer:
    for source in ("verity_key_source", "verity_certificate_source"):
        kind = getattr(config, source)
        if getattr(kind, "type", "file") != "file":
            raise MkosiError(
                f"{_where(config, source)}{_setting(source)}={kind}: only keys and certificates in files"
                " can sign verity root hashes here"
            )
    key_path, cert_path = config.verity_key, config.verity_certificate
    assert key_path is not None and cert_path is not None  # verity_plan signs only with both
    try:
        key = signing.load_private_key(key_path)
    except MkosiError as e:
        raise MkosiError(f"{_where(config, 'verity_key')}VerityKey={key_path}: {e.message}") from None
    try:
        certificate = signing.load_certificate(cert_path)
    except MkosiError as e:
        raise MkosiError(
            f"{_where(config, 'verity_certificate')}VerityCertificate={cert_path}: {e.message}"
        ) from None
    if not signing.key_matches_certificate(key, certificate):
        raise MkosiError(
            f"{_where(config, 'verity_key')}VerityKey={key_path} does not match"
            f" VerityCertificate={cert_path} (regenerate both with 'mkosi genkey')"
        )
    return Signer(key, certificate)


def _setting(attr: str) -> str:
    return "".join(word.capitalize() for word in attr.split("_"))


def verity_plan(config: Config, definitions: Sequence[repart.Definition]) -> VerityPlan:
    """What ``Verity=`` means for this image, with the signing key loaded and checked when one is needed.

    ``auto`` signs when a key and certificate are configured (``VerityKey=``/``VerityCertificate=``, by
    default ``mkosi.key``/``mkosi.crt``) and makes hash partitions only otherwise; ``signed`` needs both
    and verity partitions; ``hash`` leaves signature partitions out; ``defer`` leaves them empty;
    ``no`` leaves out all verity partitions.
    """
    setting = config.verity
    have_key = config.verity_key is not None and config.verity_certificate is not None
    if setting == Verity.disabled:
        mode = repart.VerityMode.disabled
    elif setting == Verity.hash:
        mode = repart.VerityMode.hash
    elif setting == Verity.defer:
        mode = repart.VerityMode.defer
    elif setting == Verity.signed:
        if not have_key:
            missing = " and ".join(
                name
                for name, value in (
                    ("VerityKey=", config.verity_key),
                    ("VerityCertificate=", config.verity_certificate),
                )
                if value is None
            )
            verb = "are" if " and " in missing else "is"
            raise MkosiError(
                f"{_where(config, 'verity')}Verity=signed needs a signing key, but {missing} {verb} not set"
                " (run 'mkosi genkey' to make mkosi.key and mkosi.crt)"
            )
        mode = repart.VerityMode.signed
    else:
        mode = repart.VerityMode.signed if have_key else repart.VerityMode.hash
    adjusted = repart.apply_verity_mode(definitions, mode)
    if setting == Verity.signed and not repart.has_signature(adjusted):
        raise MkosiError(
            f"{_where(config, 'verity')}Verity=signed, but the partition definitions have no"
            " Verity=signature partition"
        )
    signer = None
    if mode == repart.VerityMode.signed and repart.has_signature(adjusted):
        signer = _load_signer(config)
    return VerityPlan(mode, signer, tuple(adjusted))


def write_image(ctx: Context) -> ImageResult:
    """Write the image of ``ctx`` (disk, sysext, confext or portable) into staging and register it."""
    c = ctx.config
    plan = verity_plan(c, definitions_for(c))
    plain_name = output_with_format(c)
    plain = ctx.staging / plain_name
    split = ArtifactOutput.partitions in c.split_artifacts
    result = build_image(
        plan.definitions,
        ctx.root,
        plain,
        workdir=ctx.workspace / "repart",
        architecture=c.architecture.value,
        seed=c.seed,
        sector_size=c.sector_size or 512,
        source_date_epoch=c.source_date_epoch,
        mode=plan.mode,
        signer=plan.signer,
        min_disk_size=c.output_size,
        split_prefix=str(c.output) if split else None,
    )
    shutil.rmtree(ctx.workspace / "repart", ignore_errors=True)

    algo = compression_of(c)
    final = ctx.staging / output_name(c)
    if algo != Compression.none:
        compression.compress(plain, final, algo.value, c.compress_level)
        plain.unlink()
    ctx.artifacts[final.name] = final
    for p in result.partitions:
        if p.split is not None:
            ctx.artifacts[p.split.name] = p.split
    if ArtifactOutput.roothash in c.split_artifacts:
        for designator, roothash in result.roothashes.items():
            path = ctx.staging / split_name(c, "usrhash" if designator == "usr" else "roothash")
            path.write_text(roothash.hex() + "\n")
            ctx.artifacts[path.name] = path
    if result.roothashes:
        ctx.facts["roothash"] = next(iter(result.roothashes.values())).hex()
    verity_note = {
        repart.VerityMode.signed: "signed verity" if plan.signer else "no verity",
        repart.VerityMode.hash: "verity",
        repart.VerityMode.defer: "verity, signature deferred",
        repart.VerityMode.disabled: "no verity",
    }[plan.mode]
    if not result.roothashes:
        verity_note = "no verity"
    log.info(
        f"{final.name}: {len(result.partitions)} partition(s)"
        f" ({', '.join(p.label for p in result.partitions)}), {verity_note}"
    )
    return result


def write(ctx: Context) -> None:
    """``Format=disk``."""
    write_image(ctx)

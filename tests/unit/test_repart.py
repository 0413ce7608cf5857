"""Partition definitions (formats/repart.py), the image builder (outputs/disk.py) and the checks before and
during extension builds (build/checks.py). Images are checked by reading them back with gpt.py, verity
trees with veritysetup where it is installed, signatures with openssl's view of PKCS#7."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mkosi import keys
from mkosi.build import checks
from mkosi.config.model import Architecture, Distribution, OutputFormat, Verity
from mkosi.config.syntax import Origin
from mkosi.config.values import KeySource
from mkosi.errors import ConfigErrors, MkosiError
from mkosi.formats import gpt, repart, signing, verity
from mkosi.formats.repart import Definition, Minimize, VerityMode, VerityRole
from mkosi.outputs import disk
from mkosi.outputs.disk import Signer, build_image

SEED = uuid.UUID("0d7a9c1e-3f06-4d3b-8f9e-0a1b2c3d4e5f")
EPOCH = 1_700_000_000
MiB = 1 << 20

needs_erofs = pytest.mark.skipif(shutil.which("mkfs.erofs") is None, reason="needs mkfs.erofs (erofs-utils)")
needs_ext4 = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4 (e2fsprogs)")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------
# Reading definitions


def test_parse_every_supported_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "10-root.conf",
        """
        # a comment
        [Partition]
        Type=root
        Label=my-root
        UUID=6f0b7c4e-1234-4a5b-8c9d-0123456789ab
        Format=erofs
        CopyFiles=/usr
        CopyFiles=/opt:/srv/opt
        ExcludeFiles=/usr/share/doc/ /usr/share/man
        MakeDirectories=/proc /sys
        SizeMinBytes=64M
        SizeMaxBytes=1G
        PaddingMinBytes=1.5K
        Minimize=yes
        Verity=data
        VerityMatchKey=root
        SplitName=%t.%U
        """,
    )
    d = repart.parse_definition(path)
    assert d == Definition(
        type="root",
        label="my-root",
        uuid=uuid.UUID("6f0b7c4e-1234-4a5b-8c9d-0123456789ab"),
        format="erofs",
        copy_files=(("/usr", "/usr"), ("/opt", "/srv/opt")),
        exclude_files=("/usr/share/doc/", "/usr/share/man"),
        make_directories=("/proc", "/sys"),
        size_min=64 * MiB,
        size_max=1 << 30,
        padding_min=1536,
        minimize=Minimize.best,
        verity=VerityRole.data,
        verity_match_key="root",
        split_name="%t.%U",
        source=str(path),
    )


def test_empty_assignment_resets(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.conf", "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/a\nCopyFiles=\nCopyFiles=/b\n"
    )
    d = repart.parse_definition(path)
    assert d.copy_files == (("/b", "/b"),)
    assert (
        repart.parse_definition(write(tmp_path / "b.conf", "[Partition]\nType=swap\nLabel=x\nLabel=\n")).label
        is None
    )


def test_unsupported_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "10-root.conf", "[Partition]\nType=root\n\nEncrypt=tpm2\n")
    with pytest.raises(MkosiError) as e:
        repart.parse_definition(path)
    assert e.value.message.startswith(f"{path}:4: Encrypt= ")
    assert "\n" not in e.value.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[Partition]\nType=nonsense\n", ":2: Type=nonsense: 'nonsense' is not a known partition type"),
        ("[Partition]\nType=root\nFormat=ntfs\n", ":3: Format=ntfs"),
        ("[Partition]\nType=root\nSizeMinBytes=lots\n", ":3: SizeMinBytes=lots"),
        ("[Partition]\nType=root\nMinimize=maybe\n", ":3: Minimize=maybe"),
        ("[Partition]\nType=root\nVerity=yes\n", ":3: Verity=yes"),
        ("[Partition]\nType=root\nUUID=12\n", ":3: UUID=12"),
        ("[Partition]\nType=root\nFormat=ext4\nCopyFiles=usr\n", ":4: CopyFiles=usr"),
        ("[Partition]\nType=root\nSplitName=%q\n", ":3: SplitName=%q"),
        ("[Partition]\nType=root\nFormat=ext4\nCopyFiles=/a:/b:fsverity=copy\n", ":4: CopyFiles="),
        ("[Partition]\nType=root\n[Other]\nKey=1\n", ":4: section [Other]"),
        ("Type=root\n", ":1: setting Type=root is outside of any section"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "x.conf", text)
    with pytest.raises(MkosiError) as e:
        repart.parse_definition(path)
    assert fragment in e.value.message
    assert str(path) in e.value.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[Partition]\nLabel=x\n", "Type= is not set"),
        ("[Partition]\nType=root\nCopyFiles=/usr\n", "CopyFiles= needs Format="),
        ("[Partition]\nType=esp\nFormat=vfat\nVerity=data\n", "Verity=data needs a root or usr partition"),
        ("[Partition]\nType=root\nVerity=hash\n", "Verity=hash needs a root-verity"),
        ("[Partition]\nType=root-verity\n", "Type=root-verity needs Verity=hash"),
        ("[Partition]\nType=root-verity-sig\nVerity=hash\n", "Verity=hash needs a root-verity"),
        ("[Partition]\nType=root\nSizeMinBytes=2G\nSizeMaxBytes=1G\n", "larger than SizeMaxBytes"),
    ],
)
def test_inconsistent_definitions(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(MkosiError) as e:
        repart.parse_definition(write(tmp_path / "x.conf", text))
    assert fragment in e.value.message


def test_sizes() -> None:
    assert repart.parse_size("4096") == 4096
    assert repart.parse_size("10M") == 10 * MiB
    assert repart.parse_size("1G 512M") == 1536 * MiB
    assert repart.parse_size("0.5K") == 512
    for bad in ("", "M", "10Q", "-1", "1 0x"):
        with pytest.raises(ValueError):
            repart.parse_size(bad)


def test_definition_files_first_directory_wins_and_masking(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "20-usr.conf", "[Partition]\nType=usr\n")
    write(b / "20-usr.conf", "[Partition]\nType=home\n")
    write(b / "10-esp.conf", "[Partition]\nType=esp\n")
    write(b / "30-swap.conf", "[Partition]\nType=swap\n")
    write(b / "README", "not a definition")
    (a / "30-swap.conf").symlink_to("/dev/null")
    assert repart.definition_files([a, b]) == [b / "10-esp.conf", a / "20-usr.conf", a / "30-swap.conf"]
    types = [d.type for d in repart.read_definitions([a, b])]
    assert types == ["esp", "usr"]


def test_missing_directory_and_no_definitions(tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="does not exist"):
        repart.read_definitions([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MkosiError, match=r"No partition definitions \(\*\.conf\)"):
        repart.read_definitions([tmp_path / "empty"])


def test_verity_groups() -> None:
    data = Definition(type="root", format="erofs", verity=VerityRole.data, verity_match_key="r", source="d")
    hashp = Definition(type="root-verity", verity=VerityRole.hash, verity_match_key="r", source="h")
    sig = Definition(type="root-verity-sig", verity=VerityRole.signature, verity_match_key="r", source="s")
    repart.check_definitions([data, hashp, sig], "x86-64")
    with pytest.raises(MkosiError, match="needs a Verity=data and a Verity=hash"):
        repart.check_definitions([data, sig])
    with pytest.raises(MkosiError, match="a second Verity=data"):
        repart.check_definitions([data, data, hashp])
    usr_hash = Definition(type="usr-verity", verity=VerityRole.hash, verity_match_key="r", source="uh")
    with pytest.raises(MkosiError, match="does not protect"):
        repart.check_definitions([data, usr_hash])
    usr_sig = Definition(
        type="usr-verity-sig", verity=VerityRole.signature, verity_match_key="r", source="us"
    )
    with pytest.raises(MkosiError, match="does not sign"):
        repart.check_definitions([data, hashp, usr_sig])


def test_default_layouts() -> None:
    sysext = repart.default_definitions("sysext")
    assert [d.type for d in sysext] == ["root", "root-verity", "root-verity-sig"]
    assert sysext[0].format == "erofs" and sysext[0].minimize == Minimize.best
    assert sysext[0].copy_files == (("/usr", "/usr"), ("/opt", "/opt"))
    assert {d.verity_match_key for d in sysext} == {"root"}
    assert repart.default_definitions("confext")[0].copy_files == (("/etc", "/etc"),)
    assert repart.default_definitions("portable")[0].copy_files == (("/", "/"),)
    (root,) = repart.default_definitions("disk", filesystem="btrfs")
    assert (root.type, root.format, root.copy_files, root.verity) == (
        "root",
        "btrfs",
        (("/", "/"),),
        VerityRole.off,
    )
    with pytest.raises(MkosiError):
        repart.default_definitions("uki")
    for kind in ("disk", "sysext", "confext", "portable"):
        repart.check_definitions(repart.default_definitions(kind), "arm64")


def test_apply_verity_mode() -> None:
    sysext = repart.default_definitions("sysext")
    assert repart.apply_verity_mode(sysext, VerityMode.signed) == sysext
    assert repart.apply_verity_mode(sysext, VerityMode.defer) == sysext
    assert [d.type for d in repart.apply_verity_mode(sysext, VerityMode.hash)] == ["root", "root-verity"]
    (only,) = repart.apply_verity_mode(sysext, VerityMode.disabled)
    assert only.type == "root" and only.verity == VerityRole.off


# ---------------------------------------------------------------------------------------------------------
# Building images


@pytest.fixture(scope="module")
def signer() -> Signer:
    key, cert = keys.make_key_and_certificate("repart test", 30)
    return Signer(key, cert)


def make_root(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n" * 100)
    os.chmod(root / "usr/bin/tool", 0o755)
    (root / "usr/lib/extension-release.d").mkdir(parents=True)
    (root / "usr/lib/extension-release.d/extension-release.test").write_text("ID=debian\nVERSION_ID=12\n")
    (root / "usr/share/doc/tool").mkdir(parents=True)
    (root / "usr/share/doc/tool/copyright").write_text("free\n")
    (root / "opt/vendor").mkdir(parents=True)
    (root / "opt/vendor/data").write_bytes(os.urandom(300_000))
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("test\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: tool\n")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (EPOCH - 100, EPOCH - 100))
    os.utime(root, (EPOCH - 100, EPOCH - 100))
    return root


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            state[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, st.st_size)
    return state


def build(
    tmp: Path, root: Path, definitions: list[Definition], name: str = "image.raw", **kwargs: Any
) -> disk.ImageResult:
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    options: dict[str, Any] = {"architecture": "x86-64", "seed": SEED, "source_date_epoch": EPOCH}
    options.update(kwargs)
    return build_image(definitions, root, out / name, workdir=tmp / f"work-{name}", **options)


def extract(image: Path, entry: gpt.GptEntry, target: Path) -> Path:
    with open(image, "rb") as f, open(target, "wb") as o:
        f.seek(entry.offset)
        o.write(f.read(entry.size))
    return target


@needs_erofs
def test_sysext_layout(tmp_path: Path, signer: Signer) -> None:
    root = make_root(tmp_path / "root")
    before = tree_state(root)
    result = build(
        tmp_path, root, repart.default_definitions("sysext"), mode=VerityMode.signed, signer=signer
    )
    assert tree_state(root) == before, "the root must be put back exactly as it was"

    table = gpt.read_gpt(result.path)
    assert table.disk_uuid == gpt.derive_disk_uuid(SEED)
    names = [e.name for e in table.partitions]
    assert names == ["root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig"]
    assert [e.type_name for e in table.partitions] == names
    data, hashp, sig = table.partitions
    assert data.offset == MiB
    assert data.attributes == gpt.ATTR_READ_ONLY and hashp.attributes == gpt.ATTR_READ_ONLY
    assert sig.attributes == 0
    assert sig.size == 16 * 1024
    roothash = result.roothashes["root"]
    assert (data.uuid, hashp.uuid) == verity.partition_uuids(roothash)
    assert sig.uuid == gpt.derive_partition_uuid(SEED, sig.type_uuid)

    blob = Path(result.path).read_bytes()[sig.offset : sig.offset + sig.size]
    parsed = signing.parse_verity_signature(blob)
    assert parsed.root_hash == roothash
    assert parsed.certificate_fingerprint == signing.certificate_fingerprint(signer.certificate)
    assert blob.endswith(b"\0")

    fs = extract(result.path, data, tmp_path / "data.erofs")
    assert fs.read_bytes()[1024:1028] == b"\xe2\xe1\xf5\xe0"  # erofs magic
    if shutil.which("veritysetup"):
        hashes = extract(result.path, hashp, tmp_path / "data.verity")
        subprocess.run(["veritysetup", "verify", fs, hashes, roothash.hex()], check=True)
    if shutil.which("fsck.erofs"):
        listing = subprocess.run(
            ["dump.erofs", "--ls", "--path=/", fs], capture_output=True, text=True, check=False
        ).stdout
        if listing:
            assert "usr" in listing and "opt" in listing and "etc" not in listing and "var" not in listing


@needs_erofs
def test_reproducible_and_same_bytes_without_insert_range(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(tmp_path / "root")
    layout = repart.default_definitions("sysext")
    first = build(tmp_path, root, layout, "a.raw", mode=VerityMode.signed, signer=signer)
    second = build(tmp_path, root, layout, "b.raw", mode=VerityMode.signed, signer=signer)
    assert first.path.read_bytes() == second.path.read_bytes()

    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "not here")

    monkeypatch.setattr(disk, "_insert_range", refuse)
    copied = build(tmp_path, root, layout, "c.raw", mode=VerityMode.signed, signer=signer)
    assert copied.path.read_bytes() == first.path.read_bytes()
    other = build(tmp_path, root, layout, "d.raw", mode=VerityMode.signed, signer=signer, seed=uuid.uuid4())
    assert other.path.read_bytes() != first.path.read_bytes()


@needs_erofs
def test_memory_staging_gives_the_same_bytes(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-only file systems made in memory (placed early or copied at the end) change no byte."""
    root = make_root(tmp_path / "root")
    # The usr partition comes after a verity hash partition, whose size is only known after hashing: it
    # cannot be placed early and is written at the end; the root partition is placed while it is hashed.
    layout = [
        *repart.default_definitions("sysext"),
        Definition(type="usr", format="squashfs", copy_files=(("/usr", "/"),), source="usr.conf"),
    ]
    copies: list[int] = []
    real_start = disk._Staged.start_copy

    def counting_start(self: disk._Staged, target: Path, offset: int) -> None:
        copies.append(offset)
        real_start(self, target, offset)

    monkeypatch.setattr(disk._Staged, "start_copy", counting_start)
    staged = build(
        tmp_path, root, layout, "staged.raw", mode=VerityMode.signed, signer=signer, split_prefix="s"
    )
    assert copies == [MiB], "only the root partition can be placed before hashing"
    assert not list((tmp_path / "work-staged.raw").glob("disk.raw"))

    monkeypatch.setattr(disk, "_MEMORY_FORMATS", frozenset())
    on_disk = build(
        tmp_path, root, layout, "disk.raw", mode=VerityMode.signed, signer=signer, split_prefix="d"
    )
    assert copies == [MiB]
    assert staged.path.read_bytes() == on_disk.path.read_bytes()
    for a, b in zip(staged.partitions, on_disk.partitions):
        assert (a.split is None) == (b.split is None)
        if a.split and b.split:
            assert a.split.read_bytes() == b.split.read_bytes()
    table = gpt.read_gpt(staged.path)
    data, hashp = table.partitions[0], table.partitions[1]
    if shutil.which("veritysetup"):
        fs = extract(staged.path, data, tmp_path / "data.erofs")
        hashes = extract(staged.path, hashp, tmp_path / "data.verity")
        subprocess.run(["veritysetup", "verify", fs, hashes, staged.roothashes["root"].hex()], check=True)


@needs_erofs
def test_verity_modes(tmp_path: Path, signer: Signer) -> None:
    root = make_root(tmp_path / "root")
    layout = repart.default_definitions("sysext")
    hashed = build(tmp_path, root, repart.apply_verity_mode(layout, VerityMode.hash), "h.raw")
    assert [p.label for p in hashed.partitions] == ["root-x86-64", "root-x86-64-verity"]
    deferred = build(tmp_path, root, layout, "d.raw", mode=VerityMode.defer)
    sig = deferred.partitions[2]
    assert sig.size == 16 * 1024
    with open(deferred.path, "rb") as f:
        f.seek(sig.offset)
        assert f.read(sig.size) == bytes(sig.size)
    assert deferred.roothashes == hashed.roothashes
    plain = build(tmp_path, root, repart.apply_verity_mode(layout, VerityMode.disabled), "n.raw")
    assert [p.label for p in plain.partitions] == ["root-x86-64"] and plain.roothashes == {}
    assert plain.partitions[0].attributes == gpt.ATTR_READ_ONLY  # erofs is read-only
    with pytest.raises(MkosiError, match="needs a key and certificate"):
        build(tmp_path, root, layout, "s.raw", mode=VerityMode.signed)


@needs_erofs
def test_copy_files_exclude_make_directories_and_split(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    before = tree_state(root)
    usr = Definition(
        type="usr",
        format="erofs",
        copy_files=(("/usr", "/"),),
        exclude_files=("/usr/share/doc/",),
        make_directories=("/lib/modules",),
        minimize=Minimize.best,
        split_name="%t.%n",
        source="usr.conf",
    )
    whole = Definition(
        type="root",
        format="erofs",
        copy_files=(("/", "/"),),
        exclude_files=("/var/lib/dpkg", "/opt/"),
        make_directories=("/proc",),
        split_name="-",
        source="root.conf",
    )
    result = build(tmp_path, root, [usr, whole], split_prefix="image")
    assert tree_state(root) == before
    first, second = result.partitions
    assert first.split == tmp_path / "out/image.usr-x86-64.1.raw" and second.split is None
    split_bytes = first.split.read_bytes()
    assert len(split_bytes) == first.size
    assert split_bytes == result.path.read_bytes()[first.offset : first.offset + first.size]
    if shutil.which("fsck.erofs"):
        for entry, name in ((first, "usr.erofs"), (second, "root.erofs")):
            fs = extract(result.path, gpt.read_gpt(result.path).partitions[entry.number - 1], tmp_path / name)
            dest = tmp_path / f"x-{name}"
            proc = subprocess.run(["fsck.erofs", f"--extract={dest}", fs], capture_output=True, check=False)
            if proc.returncode != 0:
                pytest.skip("this fsck.erofs cannot extract")
        usr_tree = tmp_path / "x-usr.erofs"
        assert (usr_tree / "bin/tool").is_file() and (usr_tree / "lib/modules").is_dir()
        assert (usr_tree / "share/doc").is_dir() and not any((usr_tree / "share/doc").iterdir())
        root_tree = tmp_path / "x-root.erofs"
        assert (root_tree / "usr/share/doc/tool/copyright").is_file()
        assert not (root_tree / "var/lib/dpkg").exists() and (root_tree / "var/lib").is_dir()
        assert (root_tree / "opt").is_dir() and not any((root_tree / "opt").iterdir())
        assert (root_tree / "proc").is_dir()


@needs_ext4
def test_disk_layout(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    result = build(tmp_path, root, repart.default_definitions("disk"), min_disk_size=200 * MiB)
    table = gpt.read_gpt(result.path)
    (entry,) = table.partitions
    assert entry.name == "root-x86-64" and entry.attributes == gpt.ATTR_GROWFS
    assert entry.uuid == gpt.derive_partition_uuid(SEED, entry.type_uuid)
    assert table.disk_size == 200 * MiB
    assert entry.offset + entry.size < 200 * MiB  # OutputSize= leaves the extra space free at the end
    fs = extract(result.path, entry, tmp_path / "root.ext4")
    subprocess.run(["fsck.ext4", "-fn", fs], check=True, capture_output=True)
    if shutil.which("sfdisk"):
        dump = subprocess.run(
            ["sfdisk", "-d", result.path], capture_output=True, text=True, check=True
        ).stdout
        assert 'name="root-x86-64", attrs="GUID:59"' in dump


@needs_ext4
def test_sizes_and_padding(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    parts = [
        Definition(type="esp", size_min=3 * MiB, source="esp.conf"),
        Definition(type="swap", source="swap.conf", padding_min=5 * MiB),
    ]
    result = build(tmp_path, root, parts)
    esp, swap = gpt.read_gpt(result.path).partitions
    assert esp.size == 3 * MiB and swap.size == repart.DEFAULT_EMPTY_SIZE
    assert gpt.read_gpt(result.path).disk_size >= swap.offset + swap.size + 5 * MiB
    too_small = Definition(
        type="root", format="ext4", copy_files=(("/", "/"),), size_max=MiB, source="r.conf"
    )
    with pytest.raises(MkosiError, match="SizeMaxBytes"):
        build(tmp_path, root, [too_small], "small.raw")
    padded_first = [
        Definition(type="esp", padding_min=MiB, source="p.conf"),
        Definition(type="swap", source="s"),
    ]
    with pytest.raises(MkosiError, match="PaddingMinBytes= is only supported on the last partition"):
        build(tmp_path, root, padded_first, "pad.raw")


# ---------------------------------------------------------------------------------------------------------
# Verity= and keys, as the checks before a build see them


def pem_files(tmp: Path, name: str) -> tuple[Path, Path]:
    key, cert = keys.make_key_and_certificate(name, 30)
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def config(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "name": "ext",
        "output_format": OutputFormat.sysext,
        "architecture": Architecture.x86_64,
        "distribution": Distribution.debian,
        "repart_directories": [],
        "verity": Verity.auto,
        "verity_key": None,
        "verity_certificate": None,
        "verity_key_source": KeySource(),
        "verity_certificate_source": KeySource(),
        "origins": {},
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def plan(c: SimpleNamespace) -> disk.VerityPlan:
    return disk.verity_plan(c, disk.definitions_for(c))


def test_verity_plan_modes(tmp_path: Path) -> None:
    key, cert = pem_files(tmp_path, "good")
    assert plan(config()).mode == VerityMode.hash
    assert len(plan(config()).definitions) == 2
    signed = plan(config(verity_key=key, verity_certificate=cert))
    assert signed.mode == VerityMode.signed and signed.signer is not None
    assert plan(config(verity=Verity.hash, verity_key=key, verity_certificate=cert)).signer is None
    assert plan(config(verity=Verity.defer)).mode == VerityMode.defer
    assert len(plan(config(verity=Verity.disabled)).definitions) == 1
    # A disk has no signature partition by default: the key is not even read.
    assert (
        plan(
            config(output_format=OutputFormat.disk, verity_key=tmp_path / "x", verity_certificate=cert)
        ).signer
        is None
    )


def test_verity_plan_errors(tmp_path: Path) -> None:
    key, cert = pem_files(tmp_path, "good")
    _, other_cert = pem_files(tmp_path, "other")
    origin = {"verity": [Origin(tmp_path / "mkosi.conf", 7)]}
    with pytest.raises(MkosiError) as e:
        plan(config(verity=Verity.signed, verity_certificate=cert, origins=origin))
    assert e.value.message == (
        f"{tmp_path}/mkosi.conf:7: Verity=signed needs a signing key, but VerityKey= is not set"
        " (run 'mkosi genkey' to make mkosi.key and mkosi.crt)"
    )
    with pytest.raises(MkosiError, match="does not match VerityCertificate="):
        plan(config(verity_key=key, verity_certificate=other_cert))
    with pytest.raises(MkosiError, match="VerityKey=.*missing.key: Cannot read private key"):
        plan(config(verity_key=tmp_path / "missing.key", verity_certificate=cert))
    garbage = write(tmp_path / "garbage.key", "not a key")
    with pytest.raises(MkosiError, match="not a valid PEM or DER private key"):
        plan(config(verity_key=garbage, verity_certificate=cert))
    with pytest.raises(MkosiError, match="only keys and certificates in files"):
        plan(config(verity_key=key, verity_certificate=cert, verity_key_source=KeySource("engine", "pkcs11")))
    defs = tmp_path / "repart"
    write(defs / "10-root.conf", "[Partition]\nType=root\nFormat=ext4\nCopyFiles=/\n")
    with pytest.raises(MkosiError, match="no Verity=signature partition"):
        plan(config(verity=Verity.signed, verity_key=key, verity_certificate=cert, repart_directories=[defs]))


def test_preflight_reports_each_image_once(tmp_path: Path) -> None:
    defs = tmp_path / "repart"
    write(
        defs / "10-root.conf", "[Partition]\nType=root\nFormat=ext4\nCopyFiles=/\nSizeMinBytes=1G\nFoo=bar\n"
    )
    good = config(name="fine")
    ignored = config(name="dir", output_format=OutputFormat.directory, verity=Verity.signed)
    bad = config(name="bad", output_format=OutputFormat.disk, repart_directories=[defs])
    checks.preflight([good, ignored])
    with pytest.raises(MkosiError) as e:
        checks.preflight([good, bad, ignored])
    assert e.value.message == f"image bad: {defs}/10-root.conf:6: Foo= is not a supported partition setting"
    worse = config(name="worse", verity=Verity.signed)
    with pytest.raises(ConfigErrors) as many:
        checks.preflight([bad, worse])
    assert [err.message.split(":")[0] for err in many.value.errors] == ["image bad", "image worse"]


# ---------------------------------------------------------------------------------------------------------
# Extension checks


def test_release_mismatches() -> None:
    base = {"ID": "debian", "VERSION_ID": "12", "SYSEXT_LEVEL": "1.0"}
    assert checks.release_mismatches({"ID": "debian", "VERSION_ID": "12"}, base, "SYSEXT") == []
    assert checks.release_mismatches({"ID": "_any"}, base, "SYSEXT") == []
    assert checks.release_mismatches({"ID": "debian"}, base, "SYSEXT") == []
    assert (
        checks.release_mismatches({"ID": "debian", "SYSEXT_LEVEL": "1.0", "VERSION_ID": "11"}, base, "SYSEXT")
        == []
    )
    assert "ID=fedora" in checks.release_mismatches({"ID": "fedora"}, base, "SYSEXT")[0]
    assert (
        "VERSION_ID=13" in checks.release_mismatches({"ID": "debian", "VERSION_ID": "13"}, base, "SYSEXT")[0]
    )
    assert (
        "CONFEXT_LEVEL=2"
        in checks.release_mismatches({"ID": "debian", "CONFEXT_LEVEL": "2"}, base, "CONFEXT")[0]
    )
    assert checks.release_mismatches({}, base, "SYSEXT") == ["it has no ID="]


def test_outside_merged(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    (root / "var/log").mkdir()
    (root / "var/log/dpkg.log").write_text("log")
    (root / "etc/ld.so.cache").write_text("cache")
    (root / "lib").symlink_to("usr/lib")
    (root / "srv").mkdir()
    assert checks.outside_merged(root, ("usr", "opt")) == ["etc/hostname", "lib"]
    assert checks.outside_merged(root, ("etc",)) == ["lib", "opt/vendor/data"] + [
        p
        for p in [
            "usr/bin/tool",
            "usr/lib/extension-release.d/extension-release.test",
            "usr/share/doc/tool/copyright",
        ]
    ]


def test_reference_partition_shape() -> None:
    """The default sysext layout names and flags partitions the way upstream's btrfs.raw has them."""
    reference = (
        Path(__file__).parents[2] / "../shared/reference/upstream-mkosi-25.3-tutorial/btrfs.raw.sfdisk"
    )
    assert reference.exists(), f"{reference}: shared/ must be beside the repository"
    lines = [ln for ln in reference.read_text().splitlines() if "type=" in ln]
    want = []
    for ln in lines:
        fields = dict(f.strip().split("=", 1) for f in ln.split(":", 1)[1].split(",") if "=" in f)
        want.append((fields["name"].strip('"'), fields.get("attrs", "").strip('"')))
    got = []
    for d in repart.default_definitions("sysext"):
        t = repart.resolve_type(d, "x86-64")
        attrs = disk._attributes(disk._Planned(d, t))
        got.append((t.name, "GUID:60" if attrs == gpt.ATTR_READ_ONLY else ""))
    assert got == want
    assert json.dumps(got)

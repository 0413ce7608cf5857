"""Settings of the [Output] section: what kind of artifact is written, its name, and where it goes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from mkosi.config.model import ArtifactOutput, Compression, ManifestFormat, OutputFormat
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import (
    Boolean,
    Choice,
    DictKind,
    FeatureKind,
    Filename,
    Integer,
    ListKind,
    PathKind,
    PathRules,
    Size,
    String,
    UUIDKind,
    ValueProblem,
    enum_item,
    key_value,
    try_boolean,
)

# ---------------------------------------------------------------------------------------------------------
# Kinds with rules of their own.


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AccessMode(Integer):
    """An octal file mode up to 1777 (``0600``, ``755``)."""

    nullable: bool = True
    base: int = 8
    metavar: str = "MODE"

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueProblem(f"{text!r} is not an octal access mode (e.g. 0644)") from None
        if mode < 0 or mode > 0o1777:
            raise ValueProblem(f"access mode {text!r} is outside the range 0000 to 1777")
        return mode

    def to_text(self, value: Any) -> str:
        return "default" if value is None else f"{value:04o}"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SectorSize(Integer):
    """A power of two between 512 and 4096."""

    nullable: bool = True
    metavar: str = "BYTES"

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            return None
        try:
            size = int(text)
        except ValueError:
            raise ValueProblem(f"{text!r} is not a sector size (a number: 512, 1024, 2048 or 4096)") from None
        if size < 512 or size > 4096 or size & (size - 1):
            raise ValueProblem(f"sector size {size} is not a power of two between 512 and 4096")
        return size


#: What ``SplitArtifacts=no`` (and the default) and ``SplitArtifacts=yes`` stand for, from the time the
#: setting was a boolean.
SPLIT_ARTIFACTS_NO = (ArtifactOutput.uki, ArtifactOutput.kernel, ArtifactOutput.initrd)
SPLIT_ARTIFACTS_YES = (*SPLIT_ARTIFACTS_NO, ArtifactOutput.partitions)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ArtifactList(ListKind):
    """A list of artifacts to write next to the image; a boolean replaces the list (compatibility)."""

    def parse(self, text: str, old: Any) -> Any:
        if not text:
            # Not a reset: mkosi returns an empty list here, which appends nothing to earlier values.
            return []
        flag = try_boolean(text)
        if flag is not None:
            return list(SPLIT_ARTIFACTS_YES if flag else SPLIT_ARTIFACTS_NO)
        return super().parse(text, old)


# ---------------------------------------------------------------------------------------------------------
# Defaults.


def default_output(ns: Mapping[str, Any]) -> str:
    """Subimages are named after their image; the main image after ImageId= (or "image"), plus version."""
    image = ns.get("image")
    name = str(image) if image and image != "main" else (ns["image_id"] or "image")
    if ns["image_version"]:
        name += f"_{ns['image_version']}"
    return name


def default_output_extension(ns: Mapping[str, Any]) -> str:
    return str(ns["output_format"].extension()).removeprefix(".")


#: Formats whose artifact is compressed as a whole unless CompressOutput= says otherwise.
ZSTD_BY_DEFAULT = frozenset(
    {OutputFormat.tar, OutputFormat.cpio, OutputFormat.uki, OutputFormat.esp, OutputFormat.addon}
)


def default_compression(ns: Mapping[str, Any]) -> Compression:
    fmt = ns["output_format"]
    if fmt in ZSTD_BY_DEFAULT:
        return Compression.zstd
    if fmt == OutputFormat.oci:
        return Compression.gz
    return Compression.none


SETTINGS = [
    Setting(
        "Format",
        "Output",
        Choice(enum_type=OutputFormat, match_enabled=True, metavar="FORMAT"),
        "Kind of artifact to produce (disk image, directory, archive, extension image, UKI, ...)",
        default=OutputFormat.disk,
        short="-t",
        long="--format",
        specifier="t",
        match=True,
        attr="output_format",
    ),
    Setting(
        "ManifestFormat",
        "Output",
        ListKind(item=enum_item(ManifestFormat), metavar="FORMAT"),
        "Write manifests of the installed packages in these formats",
    ),
    Setting(
        "Output",
        "Output",
        Filename(
            nullable=False,
            hint="a name without a directory; the directory is configured with OutputDirectory=",
        ),
        "Name of the artifact inside the output directory, without extension",
        default_factory=default_output,
        depends=("image_id", "image_version"),
        short="-o",
        specifier="o",
        tools=True,
    ),
    Setting(
        "OutputExtension",
        "Output",
        Filename(nullable=False, hint="an extension without a directory", metavar="EXTENSION"),
        "File name extension of the artifact (without the compression suffix)",
        default_factory=default_output_extension,
        depends=("output_format",),
    ),
    Setting(
        "OutputSize",
        "Output",
        Size(),
        "Grow the disk image to at least this size",
    ),
    Setting(
        "CompressOutput",
        "Output",
        Choice(
            enum_type=Compression,
            yes=Compression.zstd,
            no=Compression.none,
            aliases=(("zst", "zstd"), ("gzip", "gz")),
            metavar="ALG",
        ),
        "Compress the whole artifact with this algorithm (a boolean picks zstd or none)",
        default_factory=default_compression,
        depends=("output_format",),
    ),
    Setting(
        "CompressLevel",
        "Output",
        Integer(minimum=0, what="a compression level (a non-negative integer)", metavar="LEVEL"),
        "Compression level used for the artifact and for compressed parts of it",
        default=3,
        scope=Scope.inherit,
    ),
    Setting(
        "OutputDirectory",
        "Output",
        PathKind(rules=PathRules(required=False), metavar="DIR"),
        "Directory the artifacts are written to",
        scope=Scope.universal,
        short="-O",
        long="--output-directory",
        long_aliases=("--output-dir",),
        specifier="O",
        paths=("output",),
        tools=True,
    ),
    Setting(
        "OutputMode",
        "Output",
        AccessMode(),
        "Octal access mode given to the artifacts",
        scope=Scope.universal,
    ),
    Setting(
        "ImageVersion",
        "Output",
        String(version_match=True, metavar="VERSION"),
        "Version of the image, used in its file name and in os-release",
        scope=Scope.inherit,
        specifier="v",
        paths=("version",),
        path_read_text=True,
        match=True,
    ),
    Setting(
        "ImageId",
        "Output",
        String(globs=True, metavar="ID"),
        "Identifier of the image, used in its file name and in os-release",
        scope=Scope.inherit,
        specifier="i",
        match=True,
    ),
    Setting(
        "OciLabels",
        "Output",
        DictKind(item=key_value, delimiter=" ", unescape=True),
        "Labels added to the configuration of an OCI image",
    ),
    Setting(
        "OciAnnotations",
        "Output",
        DictKind(item=key_value, delimiter=" ", unescape=True),
        "Annotations added to the manifest of an OCI image",
    ),
    Setting(
        "SplitArtifacts",
        "Output",
        ArtifactList(item=enum_item(ArtifactOutput), metavar="ARTIFACT"),
        "Also write these parts of the image as separate files next to it",
        default=list(SPLIT_ARTIFACTS_NO),
    ),
    Setting(
        "RepartDirectories",
        "Output",
        ListKind(item=PathRules().parse, metavar="PATH"),
        "Directories with systemd-repart partition definitions for the disk image",
        long="--repart-directory",
        long_aliases=("--repart-dir",),
        paths=("repart",),
    ),
    Setting(
        "SectorSize",
        "Output",
        SectorSize(),
        "Sector size of the disk image instead of systemd-repart's choice",
        scope=Scope.inherit,
    ),
    Setting(
        "Overlay",
        "Output",
        Boolean(),
        "Write only what the build changed on top of BaseTrees=",
    ),
    Setting(
        "Seed",
        "Output",
        UUIDKind(),
        "Seed from which systemd-repart derives partition UUIDs and other metadata",
        # Like the reference, one random seed per run, shared by all images of the run.
        default=uuid.uuid4(),
        paths=("seed",),
        path_read_text=True,
    ),
    Setting(
        "ElTorito",
        "Output",
        FeatureKind(),
        "Add an El Torito boot catalog so that the ESP boots from optical media",
    ),
    Setting(
        "ElToritoSystem",
        "Output",
        String(),
        "System identifier written to the ISO 9660 descriptor",
    ),
    Setting(
        "ElToritoVolume",
        "Output",
        String(),
        "Volume identifier written to the ISO 9660 descriptor",
    ),
    Setting(
        "ElToritoPublisher",
        "Output",
        String(),
        "Publisher identifier written to the ISO 9660 descriptor",
    ),
    Setting(
        "CleanScripts",
        "Output",
        ListKind(item=PathRules().parse, globs=True, metavar="PATH"),
        "Scripts run by the clean verb after removing the artifacts",
        long="--clean-script",
        paths=("clean",),
        path_globs=("clean.d/*",),
    ),
]

"""The [Output] settings, checked against the reference mkosi (refdiff.py has the machinery).

Two kinds of checks:

* static facts (section, scope, options, specifier, default paths, ...) against the fixture
  ``tests/data/settings-output.json``, written once from the reference's ``facts.json``;
* a differential test: representative assignments are parsed by our kinds and by the reference's
  ``ConfigSetting.parse`` (in a subprocess, so the two ``mkosi`` packages never meet) and the JSON
  encodings must agree; where the reference refuses a value we must raise ``ValueProblem``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import refdiff

from mkosi.config import model
from mkosi.config.settings import BY_NAME
from mkosi.config.values import ValueProblem

#: Each case is a sequence of assignments applied one after the other (the value so far is ``old``).
CASES: list[tuple[str, list[str]]] = [
    ("Format", ["disk"]),
    ("Format", ["tar"]),
    ("Format", ["oci"]),
    ("Format", ["tar", ""]),
    ("Format", [""]),
    ("Format", ["bogus"]),
    ("Format", ["DISK"]),
    ("ManifestFormat", ["json"]),
    ("ManifestFormat", ["json,changelog"]),
    ("ManifestFormat", ["json", "changelog"]),
    ("ManifestFormat", ["json", ""]),
    ("ManifestFormat", [""]),
    ("ManifestFormat", ["xml"]),
    ("Output", ["myimage"]),
    ("Output", ["my image.v2"]),
    ("Output", [""]),
    ("Output", ["a/b"]),
    ("Output", [".."]),
    ("OutputExtension", ["raw"]),
    ("OutputExtension", ["tar.zst"]),
    ("OutputExtension", [""]),
    ("OutputExtension", ["x/y"]),
    ("OutputSize", ["1G"]),
    ("OutputSize", ["1000"]),
    ("OutputSize", ["1.5M"]),
    ("OutputSize", [""]),
    ("OutputSize", ["0"]),
    ("OutputSize", ["abc"]),
    ("CompressOutput", ["zstd"]),
    ("CompressOutput", ["zst"]),
    ("CompressOutput", ["gzip"]),
    ("CompressOutput", ["gz"]),
    ("CompressOutput", ["xz"]),
    ("CompressOutput", ["lzma"]),
    ("CompressOutput", ["none"]),
    ("CompressOutput", ["yes"]),
    ("CompressOutput", ["no"]),
    ("CompressOutput", ["1"]),
    ("CompressOutput", [""]),
    ("CompressOutput", ["brotli"]),
    ("CompressOutput", ["ZSTD"]),
    ("CompressLevel", ["0"]),
    ("CompressLevel", ["19"]),
    ("CompressLevel", [""]),
    ("CompressLevel", ["-1"]),
    ("CompressLevel", ["high"]),
    ("OutputDirectory", ["out"]),
    ("OutputDirectory", ["dir"]),
    ("OutputDirectory", ["~/out"]),
    ("OutputDirectory", ["/nonexistent/out"]),
    ("OutputDirectory", [""]),
    ("OutputMode", ["0644"]),
    ("OutputMode", ["755"]),
    ("OutputMode", ["1777"]),
    ("OutputMode", ["0o600"]),
    ("OutputMode", [""]),
    ("OutputMode", ["2000"]),
    ("OutputMode", ["9"]),
    ("OutputMode", ["-1"]),
    ("OutputMode", ["rwx"]),
    ("ImageVersion", ["1.2.3"]),
    ("ImageVersion", ["1.2.3", "~rc1"]),
    ("ImageVersion", [""]),
    ("ImageId", ["myimage"]),
    ("ImageId", [""]),
    ("OciLabels", ["a=b c=d"]),
    ("OciLabels", ["a=b", "a=c"]),
    ("OciLabels", ["'x=y z' k=v"]),
    ("OciLabels", ["a=b", ""]),
    ("OciLabels", ["novalue"]),
    ("OciLabels", [""]),
    ("OciAnnotations", ["org.opencontainers.image.title=x"]),
    ("OciAnnotations", [""]),
    ("SplitArtifacts", ["yes"]),
    ("SplitArtifacts", ["no"]),
    ("SplitArtifacts", ["uki,pcrs"]),
    ("SplitArtifacts", ["kernel", "roothash os-release"]),
    ("SplitArtifacts", ["pcrs", "yes"]),
    ("SplitArtifacts", ["pcrs", ""]),
    ("SplitArtifacts", [""]),
    ("SplitArtifacts", [","]),
    ("SplitArtifacts", ["bogus"]),
    ("RepartDirectories", ["dir"]),
    ("RepartDirectories", ["dir", "dir"]),
    ("RepartDirectories", ["dir", ""]),
    ("RepartDirectories", [""]),
    ("RepartDirectories", ["missing"]),
    ("SectorSize", ["512"]),
    ("SectorSize", ["4096"]),
    ("SectorSize", [""]),
    ("SectorSize", ["1000"]),
    ("SectorSize", ["256"]),
    ("SectorSize", ["8192"]),
    ("SectorSize", ["big"]),
    ("Overlay", ["yes"]),
    ("Overlay", ["0"]),
    ("Overlay", [""]),
    ("Overlay", ["maybe"]),
    ("Seed", ["0b6d8b4e-e0c9-4d3c-8c4e-0c3a0d0bd6a5"]),
    ("Seed", ["0b6d8b4ee0c94d3c8c4e0c3a0d0bd6a5"]),
    ("Seed", [""]),
    ("Seed", ["nope"]),
    ("ElTorito", ["yes"]),
    ("ElTorito", ["auto"]),
    ("ElTorito", ["disabled"]),
    ("ElTorito", [""]),
    ("ElTorito", ["sometimes"]),
    ("ElToritoSystem", ["MKOSI"]),
    ("ElToritoSystem", [""]),
    ("ElToritoVolume", ["VOLUME 1"]),
    ("ElToritoVolume", [""]),
    ("ElToritoPublisher", ["me"]),
    ("ElToritoPublisher", [""]),
    ("CleanScripts", ["script.sh"]),
    ("CleanScripts", ["clean.d/*"]),
    ("CleanScripts", ["nomatch*"]),
    ("CleanScripts", ["script.sh", ""]),
    ("CleanScripts", [""]),
    ("CleanScripts", ["missing.sh"]),
]

#: Default factories, called with these namespaces (enum values by their value, converted on both sides).
FACTORY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("Output", {"image": "main", "image_id": None, "image_version": None}),
    ("Output", {"image": "main", "image_id": "foo", "image_version": None}),
    ("Output", {"image": "main", "image_id": "foo", "image_version": "1.2"}),
    ("Output", {"image": "main", "image_id": None, "image_version": "3"}),
    ("Output", {"image": "sub", "image_id": "foo", "image_version": None}),
    ("Output", {"image": "sub", "image_id": None, "image_version": "7"}),
    ("Output", {"image": "tools", "image_id": None, "image_version": None}),
    *(("OutputExtension", {"output_format": f.value}) for f in model.OutputFormat),
    *(("CompressOutput", {"output_format": f.value}) for f in model.OutputFormat),
]

#: Namespace entries that hold enums: the attribute name → the enum's class name (same in both packages).
FACTORY_ENUMS = {"output_format": "OutputFormat"}

#: Settings whose fixed default is random: only the kind of value is compared.
RANDOM_DEFAULTS = {"Seed"}


class TestOutput(refdiff.EffectiveValueChecks):
    SECTION = "Output"
    CASES = CASES
    FACTORY_CASES = FACTORY_CASES
    FACTORY_ENUMS = FACTORY_ENUMS
    RANDOM_DEFAULTS = RANDOM_DEFAULTS


# ---------------------------------------------------------------------------------------------------------
# Behaviour the differential test cannot show.


def test_seed_random_gives_a_fresh_uuid() -> None:
    kind = BY_NAME["Seed"].kind
    first, second = kind.parse("random", None), kind.parse("random", None)
    assert isinstance(first, uuid.UUID) and first != second


def test_output_mode_is_shown_in_octal() -> None:
    kind = BY_NAME["OutputMode"].kind
    assert kind.to_text(kind.parse("644", None)) == "0644"


def test_split_artifacts_boolean_replaces_the_list() -> None:
    kind = BY_NAME["SplitArtifacts"].kind
    value = kind.parse("pcrs", None)
    assert kind.to_json(kind.parse("no", value)) == ["uki", "kernel", "initrd"]


def test_errors_say_what_is_accepted() -> None:
    with pytest.raises(ValueProblem, match="512"):
        BY_NAME["SectorSize"].kind.parse("1000", None)
    with pytest.raises(ValueProblem, match="1777"):
        BY_NAME["OutputMode"].kind.parse("7777", None)
    with pytest.raises(ValueProblem, match="OutputDirectory"):
        BY_NAME["Output"].kind.parse("a/b", None)

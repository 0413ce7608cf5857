"""The [Output] settings, checked against the reference mkosi.

Two kinds of checks:

* static facts (section, scope, options, specifier, default paths, ...) against the fixture
  ``tests/data/settings-output.json``, written once from the reference's ``facts.json``;
* a differential test: representative assignments are parsed by our kinds and by the reference's
  ``ConfigSetting.parse`` (in a subprocess, so the two ``mkosi`` packages never meet) and the JSON
  encodings must agree; where the reference refuses a value we must raise ``ValueProblem``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mkosi.config import model
from mkosi.config.settings import BY_NAME, SETTINGS
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import ValueProblem

SECTION = "Output"
FIXTURE = Path(__file__).parent.parent / "data" / "settings-output.json"

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


# ---------------------------------------------------------------------------------------------------------
# Running the reference.

REFERENCE_HELPER = r"""
import dataclasses, json, sys
import mkosi.config as C

def plain(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v, dict_factory=C.dict_with_capitalised_keys_factory)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v

def enc(v):
    return json.loads(json.dumps(plain(v), cls=C.JsonEncoder))

req = json.load(sys.stdin)
by_name = {s.name: s for s in C.SETTINGS}
out = {"cases": [], "unset": {}, "defaults": {}, "factories": []}

for name, texts in req["cases"]:
    s = by_name[name]
    value = None
    try:
        for text in texts:
            value = s.parse(text, value)
    except (SystemExit, Exception) as e:
        out["cases"].append({"error": f"{type(e).__name__}: {e}"})
    else:
        out["cases"].append({"value": enc(value)})

for name in req["names"]:
    s = by_name[name]
    out["unset"][name] = enc(s.parse(None, None))
    if s.default_factory is not None:
        out["defaults"][name] = None
    elif s.default is not None:
        out["defaults"][name] = enc(s.default)
    else:
        out["defaults"][name] = enc(s.parse(None, None))

for name, ns in req["factories"]:
    ns = dict(ns)
    ns.setdefault("image", "main")
    ns.setdefault("directory", None)
    for key, cls in req["enums"].items():
        if ns.get(key) is not None:
            ns[key] = getattr(C, cls)(ns[key])
    out["factories"].append(enc(by_name[name].default_factory(ns)))

json.dump(out, sys.stdout)
"""


def reference_pythonpath() -> Path:
    candidates = [os.environ.get("MKOSI_REFERENCE", ""), "/opt/ref/root", "/var/tmp/mkosi-reference"]
    for root in filter(None, candidates):
        path = Path(root) / "usr/lib/python3/dist-packages"
        if (path / "mkosi/config.py").exists():
            return path
    pytest.fail(
        "the reference mkosi is needed for this test: run tools/reference-mkosi.sh "
        "(or point MKOSI_REFERENCE at a directory it unpacked)"
    )


def make_workdir(root: Path) -> None:
    """Files the path-valued cases refer to (relative to the directory both sides run in)."""
    (root / "dir").mkdir()
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "clean.d").mkdir()
    (root / "clean.d/a.sh").write_text("#!/bin/sh\n")
    (root / "clean.d/b.sh").write_text("#!/bin/sh\n")
    (root / "secret.key").write_text("key\n")
    (root / "secret.key").chmod(0o600)
    (root / "open.key").write_text("key\n")
    (root / "open.key").chmod(0o644)
    (root / "cert.crt").write_text("cert\n")


def run_reference(workdir: Path) -> dict[str, Any]:
    request = {
        "cases": CASES,
        "names": [s.name for s in section_settings()],
        "factories": FACTORY_CASES,
        "enums": FACTORY_ENUMS,
    }
    env = dict(os.environ, PYTHONPATH=str(reference_pythonpath()))
    result = subprocess.run(
        [sys.executable, "-c", REFERENCE_HELPER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("settings-output")
    make_workdir(root)
    return root


@pytest.fixture(scope="module")
def reference(workdir: Path) -> dict[str, Any]:
    return run_reference(workdir)


# ---------------------------------------------------------------------------------------------------------
# Helpers on our side.


def section_settings() -> list[Setting]:
    return [s for s in SETTINGS if s.section == SECTION]


def load_fixture() -> dict[str, dict[str, Any]]:
    rows = json.loads(FIXTURE.read_text())["settings"]
    return {row["name"]: row for row in rows}


DEFAULT = "<default>"


def effective(value: Any, nullable: bool, unset: Any) -> Any:
    """What the value becomes in the configuration: a reset either empties it or brings the default."""
    if value is not None:
        return value
    return unset if nullable else DEFAULT


def parse_ours(setting: Setting, texts: list[str]) -> Any:
    value = None
    for text in texts:
        value = setting.kind.parse(text, value)
    return value


# ---------------------------------------------------------------------------------------------------------
# Static facts.


def test_every_setting_of_the_section_is_in_the_table() -> None:
    expected = load_fixture()
    ours = {s.name for s in section_settings()}
    assert ours == set(expected)


@pytest.mark.parametrize("name", sorted(load_fixture()))
def test_static_facts(name: str) -> None:
    fact = load_fixture()[name]
    setting = BY_NAME[name]
    assert setting.name == name
    assert setting.section == fact["section"]
    assert setting.scope == Scope(fact["scope"].replace("_", "-"))
    assert setting.short == fact["short"]
    assert setting.long_option == fact["long"]
    assert list(setting.long_aliases) == fact["long_aliases"]
    assert list(setting.old_names) == fact["old_names"]
    assert setting.specifier == fact["specifier"]
    assert list(setting.paths) == fact["paths"]
    assert list(setting.path_globs) == fact["path_globs"]
    assert setting.path_read_text == fact["path_read_text"]
    assert setting.path_secret == fact["path_secret"]
    assert setting.tools == fact["tools"]
    assert setting.matchable == fact["match"]
    assert setting.kind.nullable == fact["nullable"]
    assert (setting.default_factory is not None) == fact["has_default_factory"]
    if fact["metavar"]:
        assert (setting.metavar or setting.kind.metavar) == fact["metavar"]
    assert setting.help and "\n" not in setting.help


# ---------------------------------------------------------------------------------------------------------
# Differential checks.


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{n}={'|'.join(t)}" for n, t in CASES])
def test_parse_agrees_with_reference(
    index: int, reference: dict[str, Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, texts = CASES[index]
    setting = BY_NAME[name]
    answer = reference["cases"][index]
    monkeypatch.chdir(workdir)

    if "error" in answer:
        with pytest.raises(ValueProblem):
            parse_ours(setting, texts)
        return

    nullable = load_fixture()[name]["nullable"]
    theirs = effective(answer["value"], nullable, reference["unset"][name])
    value = parse_ours(setting, texts)
    ours = effective(
        None if value is None else setting.kind.to_json(value),
        setting.kind.nullable,
        setting.kind.to_json(setting.kind.unset()),
    )
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(load_fixture()))
def test_unset_and_default_agree_with_reference(name: str, reference: dict[str, Any]) -> None:
    setting = BY_NAME[name]
    assert setting.kind.to_json(setting.kind.unset()) == reference["unset"][name]
    if setting.default_factory is not None:
        return
    default = setting.default if setting.default is not None else setting.kind.unset()
    if name in RANDOM_DEFAULTS:
        uuid.UUID(setting.kind.to_json(default))
        uuid.UUID(reference["defaults"][name])
    else:
        assert setting.kind.to_json(default) == reference["defaults"][name]


@pytest.mark.parametrize(
    "index", range(len(FACTORY_CASES)), ids=[f"{n}-{sorted(ns.items())}" for n, ns in FACTORY_CASES]
)
def test_default_factory_agrees_with_reference(index: int, reference: dict[str, Any]) -> None:
    name, ns = FACTORY_CASES[index]
    setting = BY_NAME[name]
    assert setting.default_factory is not None
    namespace: dict[str, Any] = {"image": "main", "directory": None, **ns}
    for key, cls in FACTORY_ENUMS.items():
        if namespace.get(key) is not None:
            namespace[key] = getattr(model, cls)(namespace[key])
    assert set(setting.depends) <= set(namespace)
    assert setting.kind.to_json(setting.default_factory(namespace)) == reference["factories"][index]


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

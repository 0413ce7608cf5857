"""The [Validation] settings, checked against the reference mkosi.

Two kinds of checks:

* static facts (section, scope, options, default paths, ...) against the fixture
  ``tests/data/settings-validation.json``, written once from the reference's ``facts.json``;
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

SECTION = "Validation"
FIXTURE = Path(__file__).parent.parent / "data" / "settings-validation.json"

KEYS = ("SecureBootKey", "VerityKey", "SignExpectedPcrKey")
KEY_SOURCES = ("SecureBootKeySource", "VerityKeySource", "SignExpectedPcrKeySource")
CERTIFICATES = ("SecureBootCertificate", "VerityCertificate", "SignExpectedPcrCertificate")
CERTIFICATE_SOURCES = (
    "SecureBootCertificateSource",
    "VerityCertificateSource",
    "SignExpectedPcrCertificateSource",
)

#: Each case is a sequence of assignments applied one after the other (the value so far is ``old``).
CASES: list[tuple[str, list[str]]] = [
    ("SecureBoot", ["yes"]),
    ("SecureBoot", ["no"]),
    ("SecureBoot", ["yes", ""]),
    ("SecureBoot", ["sometimes"]),
    ("SecureBootAutoEnroll", ["no"]),
    ("SecureBootAutoEnroll", [""]),
    *(
        (name, texts)
        for name in KEYS
        for texts in (
            ["secret.key"],
            ["open.key"],
            ["missing.key"],
            ["pkcs11:object=foo;type=private"],
            ["secret.key", ""],
            [""],
        )
    ),
    *(
        (name, texts)
        for name in KEY_SOURCES
        for texts in (
            ["file"],
            ["engine:pkcs11"],
            ["provider:p11-kit"],
            ["provider:"],
            [""],
            ["pkcs11"],
            ["FILE"],
        )
    ),
    *(
        (name, texts)
        for name in CERTIFICATES
        for texts in (
            ["cert.crt"],
            ["missing.crt"],
            ["pkcs11:object=foo;type=cert"],
            [""],
        )
    ),
    *(
        (name, texts)
        for name in CERTIFICATE_SOURCES
        for texts in (
            ["file"],
            ["provider:pkcs11"],
            [""],
            ["engine:pkcs11"],
            ["pkcs11"],
        )
    ),
    ("SecureBootSignTool", ["sbsign"]),
    ("SecureBootSignTool", ["systemd-sbsign"]),
    ("SecureBootSignTool", ["auto"]),
    ("SecureBootSignTool", [""]),
    ("SecureBootSignTool", ["pesign"]),
    ("Verity", ["yes"]),
    ("Verity", ["no"]),
    ("Verity", ["hash"]),
    ("Verity", ["signed"]),
    ("Verity", ["defer"]),
    ("Verity", ["auto"]),
    ("Verity", ["disabled"]),
    ("Verity", [""]),
    ("Verity", ["maybe"]),
    ("SignExpectedPcr", ["yes"]),
    ("SignExpectedPcr", ["auto"]),
    ("SignExpectedPcr", ["disabled"]),
    ("SignExpectedPcr", [""]),
    ("SignExpectedPcr", ["maybe"]),
    ("SignInitrdPCRs", ["true"]),
    ("SignInitrdPCRs", ["enabled"]),
    ("SignInitrdPCRs", [""]),
    ("SignInitrdPCRs", ["x"]),
    ("Passphrase", ["secret.key"]),
    ("Passphrase", ["missing"]),
    ("Passphrase", [""]),
    ("Passphrase", ["open.key"]),
    ("Checksum", ["yes"]),
    ("Checksum", ["off"]),
    ("Checksum", [""]),
    ("Checksum", ["x"]),
    ("Sign", ["true"]),
    ("Sign", [""]),
    ("Sign", ["x"]),
    ("Key", ["0123456789ABCDEF"]),
    ("Key", ["me@example.com"]),
    ("Key", [""]),
    ("OpenPGPTool", ["sqop"]),
    ("OpenPGPTool", ["sqop", ""]),
    ("OpenPGPTool", [""]),
]

#: Default factories, called with these namespaces (enum values by their value, converted on both sides).
FACTORY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("Checksum", {"sign": True}),
    ("Checksum", {"sign": False}),
]

#: Namespace entries that hold enums: the attribute name → the enum's class name (same in both packages).
FACTORY_ENUMS: dict[str, str] = {}

#: Settings whose fixed default is random: only the kind of value is compared.
RANDOM_DEFAULTS: set[str] = set()


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
    root = tmp_path_factory.mktemp("settings-validation")
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


def test_names_that_snake_case_badly_have_readable_attributes() -> None:
    assert BY_NAME["SignInitrdPCRs"].dest == "sign_initrd_pcrs"
    assert BY_NAME["OpenPGPTool"].dest == "openpgp_tool"


def test_secret_key_with_open_permissions_is_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    with pytest.raises(ValueProblem, match="too open"):
        BY_NAME["VerityKey"].kind.parse("open.key", None)


def test_source_errors_say_what_is_accepted() -> None:
    with pytest.raises(ValueProblem, match="provider"):
        BY_NAME["VerityCertificateSource"].kind.parse("engine:foo", None)

"""The [Validation] settings, checked against the reference mkosi (refdiff.py has the machinery).

Two kinds of checks:

* static facts (section, scope, options, default paths, ...) against the fixture
  ``tests/data/settings-validation.json``, written once from the reference's ``facts.json``;
* a differential test: representative assignments are parsed by our kinds and by the reference's
  ``ConfigSetting.parse`` (in a subprocess, so the two ``mkosi`` packages never meet) and the JSON
  encodings must agree; where the reference refuses a value we must raise ``ValueProblem``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import refdiff

from mkosi.config.settings import BY_NAME
from mkosi.config.values import ValueProblem

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


class TestValidation(refdiff.EffectiveValueChecks):
    SECTION = "Validation"
    CASES = CASES
    FACTORY_CASES = FACTORY_CASES

    def test_secret_key_with_open_permissions_is_refused(
        self, tree: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tree)
        with pytest.raises(ValueProblem, match="too open"):
            BY_NAME["VerityKey"].kind.parse("open.key", None)


# ---------------------------------------------------------------------------------------------------------
# Behaviour the differential test cannot show.


def test_names_that_snake_case_badly_have_readable_attributes() -> None:
    assert BY_NAME["SignInitrdPCRs"].dest == "sign_initrd_pcrs"
    assert BY_NAME["OpenPGPTool"].dest == "openpgp_tool"


def test_source_errors_say_what_is_accepted() -> None:
    with pytest.raises(ValueProblem, match="provider"):
        BY_NAME["VerityCertificateSource"].kind.parse("engine:foo", None)

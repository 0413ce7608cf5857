"""Settings of the [Validation] section: Secure Boot, verity, PCR signatures, checksums and signing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mkosi.config.model import SecureBootSignTool, Verity
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import (
    Boolean,
    Choice,
    FeatureKind,
    KeySource,
    PathKind,
    PathRules,
    SourceKind,
    String,
)


def key_kind() -> PathKind:
    """A private key: checked as a secret when it is a file; anything else (a PKCS#11 URI, a key name for
    an engine or provider, a file still to be generated) is kept as given."""
    return PathKind(rules=PathRules(secret=True), keep_missing=True, metavar="KEY")


def certificate_kind() -> PathKind:
    """A certificate: resolved when it is a file, otherwise kept as given."""
    return PathKind(rules=PathRules(), keep_missing=True, metavar="PATH")


def key_source_kind() -> SourceKind:
    return SourceKind(metavar="SOURCE[:ENGINE]")


def certificate_source_kind() -> SourceKind:
    return SourceKind(types=("file", "provider"), metavar="SOURCE[:PROVIDER]")


def default_checksum(ns: Mapping[str, Any]) -> bool:
    return bool(ns["sign"])


SETTINGS = [
    Setting(
        "SecureBoot",
        "Validation",
        Boolean(),
        "Sign the bootloader, kernel and UKIs for UEFI Secure Boot",
    ),
    Setting(
        "SecureBootAutoEnroll",
        "Validation",
        Boolean(),
        "Set up automatic enrollment of the Secure Boot certificate on first boot",
        default=True,
    ),
    Setting(
        "SecureBootKey",
        "Validation",
        key_kind(),
        "Private key for Secure Boot signing (a file, or a name for the key source)",
        scope=Scope.universal,
        paths=("key",),
    ),
    Setting(
        "SecureBootKeySource",
        "Validation",
        key_source_kind(),
        "Where the Secure Boot key comes from: file, engine:NAME or provider:NAME",
        default=KeySource(),
        scope=Scope.universal,
    ),
    Setting(
        "SecureBootCertificate",
        "Validation",
        certificate_kind(),
        "X.509 certificate matching the Secure Boot key",
        scope=Scope.universal,
        paths=("crt",),
    ),
    Setting(
        "SecureBootCertificateSource",
        "Validation",
        certificate_source_kind(),
        "Where the Secure Boot certificate comes from: file or provider:NAME",
        default=KeySource(),
        scope=Scope.universal,
    ),
    Setting(
        "SecureBootSignTool",
        "Validation",
        Choice(enum_type=SecureBootSignTool, metavar="TOOL"),
        "Program that signs PE binaries for Secure Boot",
        default=SecureBootSignTool.auto,
    ),
    Setting(
        "Verity",
        "Validation",
        Choice(enum_type=Verity, yes=Verity.signed, no=Verity.disabled, metavar="FEATURE"),
        "Whether verity partitions are required, signed, deferred or left out",
        default=Verity.auto,
    ),
    Setting(
        "VerityKey",
        "Validation",
        key_kind(),
        "Private key that signs the verity root hash",
        scope=Scope.universal,
        paths=("key",),
    ),
    Setting(
        "VerityKeySource",
        "Validation",
        key_source_kind(),
        "Where the verity signing key comes from: file, engine:NAME or provider:NAME",
        default=KeySource(),
        scope=Scope.universal,
    ),
    Setting(
        "VerityCertificate",
        "Validation",
        certificate_kind(),
        "X.509 certificate matching the verity signing key",
        scope=Scope.universal,
        paths=("crt",),
    ),
    Setting(
        "VerityCertificateSource",
        "Validation",
        certificate_source_kind(),
        "Where the verity certificate comes from: file or provider:NAME",
        default=KeySource(),
        scope=Scope.universal,
    ),
    Setting(
        "SignExpectedPcr",
        "Validation",
        FeatureKind(),
        "Sign the PCR values expected when booting the UKI and embed the signature in it",
    ),
    Setting(
        "SignExpectedPcrKey",
        "Validation",
        key_kind(),
        "Private key that signs the expected PCR values",
        scope=Scope.inherit,
        paths=("key",),
    ),
    Setting(
        "SignExpectedPcrKeySource",
        "Validation",
        key_source_kind(),
        "Where the PCR signing key comes from: file, engine:NAME or provider:NAME",
        default=KeySource(),
        scope=Scope.inherit,
    ),
    Setting(
        "SignExpectedPcrCertificate",
        "Validation",
        certificate_kind(),
        "X.509 certificate matching the PCR signing key",
        scope=Scope.inherit,
        paths=("crt",),
    ),
    Setting(
        "SignExpectedPcrCertificateSource",
        "Validation",
        certificate_source_kind(),
        "Where the PCR signing certificate comes from: file or provider:NAME",
        default=KeySource(),
        scope=Scope.inherit,
    ),
    Setting(
        "SignInitrdPCRs",
        "Validation",
        FeatureKind(),
        "Add a PCR policy to the UKI that only the initrd phase can satisfy",
        long="--sign-initrd-pcrs",
        attr="sign_initrd_pcrs",
    ),
    Setting(
        "Passphrase",
        "Validation",
        PathKind(rules=PathRules(required=False, secret=True)),
        "File with the passphrase for LUKS-encrypted partitions",
        paths=("passphrase",),
    ),
    Setting(
        "Checksum",
        "Validation",
        Boolean(),
        "Write a SHA256SUMS file for the artifacts",
        default_factory=default_checksum,
        depends=("sign",),
    ),
    Setting(
        "Sign",
        "Validation",
        Boolean(),
        "Sign the SHA256SUMS file with OpenPGP",
    ),
    Setting(
        "Key",
        "Validation",
        String(metavar="KEY"),
        "OpenPGP key that signs SHA256SUMS (must be in the keyring)",
    ),
    Setting(
        "OpenPGPTool",
        "Validation",
        String(nullable=False, metavar="TOOL"),
        "OpenPGP program that signs SHA256SUMS: gpg or a Stateless OpenPGP tool",
        default="gpg",
        long="--openpgp-tool",
        attr="openpgp_tool",
    ),
]

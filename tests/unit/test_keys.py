"""`mkosi genkey`: files openssl can read, a key that matches its certificate, no accidental overwrite."""

from __future__ import annotations

import datetime
import getpass
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mkosi.errors import MkosiError
from mkosi.formats import signing
from mkosi.keys import default_common_name, genkey


def openssl(*args: str | Path) -> str:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("openssl is needed by this test: apt-get install openssl")
    return subprocess.run([exe, *map(str, args)], check=True, capture_output=True, text=True).stdout


def test_genkey_writes_matching_pair(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "mkosi.key", tmp_path / "mkosi.crt"
    genkey(key_path, cert_path, "Test Signer", 30)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert cert_path.read_text().startswith("-----BEGIN CERTIFICATE-----")

    key, cert = signing.load_key_and_certificate(key_path, cert_path)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Signer"
    assert cert.issuer == cert.subject
    assert cert.version == x509.Version.v3
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=30)
    assert abs(cert.not_valid_before_utc - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(
        minutes=5
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in eku
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature

    # openssl agrees: the certificate parses, the key checks out, and both carry the same modulus.
    text = openssl("x509", "-in", cert_path, "-noout", "-text")
    assert "CN = Test Signer" in text and "Code Signing" in text
    openssl("pkey", "-in", key_path, "-check", "-noout")
    assert openssl("x509", "-in", cert_path, "-noout", "-pubkey") == openssl(
        "pkey", "-in", key_path, "-pubout"
    )
    # The key signs something the certificate verifies.
    content = tmp_path / "content"
    content.write_text("hello")
    sig = tmp_path / "sig"
    openssl(
        "smime",
        "-sign",
        "-binary",
        "-noattr",
        "-outform",
        "der",
        "-in",
        content,
        "-signer",
        cert_path,
        "-inkey",
        key_path,
        "-out",
        sig,
    )
    openssl(
        "smime",
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-noverify",
        "-content",
        content,
        "-in",
        sig,
        "-out",
        tmp_path / "out",
    )


def test_genkey_defaults(tmp_path: Path) -> None:
    genkey(tmp_path / "k", tmp_path / "c")
    cert = signing.load_certificate(tmp_path / "c")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == default_common_name() == f"mkosi of {getpass.getuser()}"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=730)


def test_genkey_keeps_existing_files(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "mkosi.key", tmp_path / "mkosi.crt"
    cert_path.write_text("precious")
    with pytest.raises(MkosiError, match="mkosi.crt already exists") as e:
        genkey(key_path, cert_path, "x", 1)
    assert e.value.hint is not None and "-f" in e.value.hint
    assert not key_path.exists() and cert_path.read_text() == "precious"

    key_path.write_text("old key")
    cert_path.unlink()
    with pytest.raises(MkosiError, match="mkosi.key already exists"):
        genkey(key_path, cert_path, "x", 1)
    assert key_path.read_text() == "old key" and not cert_path.exists()


def test_genkey_force_overwrites(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "mkosi.key", tmp_path / "mkosi.crt"
    key_path.write_text("old key")
    key_path.chmod(0o644)
    cert_path.write_text("old cert")
    genkey(key_path, cert_path, "new", 10, force=True)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    signing.load_key_and_certificate(key_path, cert_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mkosi.crt", "mkosi.key"]  # no temp files left


def test_genkey_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(MkosiError, match="at least one day"):
        genkey(tmp_path / "k", tmp_path / "c", "x", 0)
    assert not (tmp_path / "k").exists()

"""``mkosi genkey``: a key and self-signed certificate for Secure Boot, verity and sysext signing."""

from __future__ import annotations

import datetime
import getpass
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mkosi.errors import MkosiError

KEY_BITS = 2048
DEFAULT_VALID_DAYS = 730


def default_common_name() -> str:
    """``mkosi of <user>``, the default subject of generated certificates."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"mkosi of {user}"


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_key_and_certificate(
    common_name: str,
    valid_days: int,
    *,
    now: datetime.datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new RSA key and a self-signed certificate for it, valid from ``now`` for ``valid_days`` days.

    Extensions: not a CA, digital signature only, extended key usage code signing, subject key
    identifier. That suits UEFI Secure Boot (sbsign, shim's MOK), the kernel's keyrings (verity
    signatures) and systemd's /etc/verity.d.
    """
    if valid_days <= 0:
        raise MkosiError(f"A certificate must be valid for at least one day, not {valid_days}")
    if not common_name:
        raise MkosiError("The certificate's common name must not be empty")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    start = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder.sign(key, hashes.SHA256())


def genkey(
    key_path: Path,
    cert_path: Path,
    common_name: str | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    force: bool = False,
) -> None:
    """Write a new RSA 2048 private key (PEM PKCS#8, mode 0600) and self-signed certificate (PEM).

    Existing files are kept unless ``force``: then nothing is written and MkosiError says so.
    """
    if not force:
        for path in (key_path, cert_path):
            if path.exists() or path.is_symlink():
                raise MkosiError(
                    f"{path} already exists",
                    hint="use -f/--force to overwrite it, or remove it first",
                )
    key, certificate = make_key_and_certificate(common_name or default_common_name(), valid_days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        _write_atomically(key_path, key_pem, 0o600)
        _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as e:
        raise MkosiError(f"Cannot write {e.filename or key_path}: {e.strerror}") from e

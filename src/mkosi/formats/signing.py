"""X.509 keys and certificates, PKCS#7 signatures, and the verity signature partition.

The signature over a verity root hash is what the kernel (dm-verity's root_hash_sig_key_desc) and
systemd check: a detached PKCS#7 (CMS SignedData) signature, DER encoded, over the root hash as lower-case
hex text, without signed attributes. Certificates are left out by default (the verifier already holds the
trusted certificate); systemd-repart embeds the signer's certificate, which ``embed_certificate=True``
reproduces.

A verity signature partition holds a compact JSON object::

    {"rootHash":"<hex>","certificateFingerprint":"<sha256 of DER cert, hex>","signature":"<base64>"}

padded with NUL bytes (systemd-repart makes these partitions 16 KiB).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from mkosi.errors import MkosiError

VERITY_SIG_BLOCK = 4096
VERITY_SIG_MIN_SIZE = 16 * 1024

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MkosiError(f"Cannot read {what} {path}: {e.strerror}") from e


def load_private_key(path: Path) -> SigningKey:
    """Load an unencrypted PEM (or DER) private key; RSA and EC keys can sign PKCS#7."""
    data = _read(path, "private key")
    try:
        if b"-----BEGIN" in data:
            key: Any = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError as e:
        raise MkosiError(f"Private key {path} is encrypted", hint="use a key without a passphrase") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise MkosiError(f"Private key {path} is not a valid PEM or DER private key") from e
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise MkosiError(f"Private key {path} is a {type(key).__name__}, only RSA and EC keys can sign")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Load a PEM (or DER) X.509 certificate."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise MkosiError(f"Certificate {path} is not a valid PEM or DER X.509 certificate") from e


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def key_matches_certificate(key: SigningKey, certificate: x509.Certificate) -> bool:
    return _public_der(key.public_key()) == _public_der(certificate.public_key())


def load_key_and_certificate(key_path: Path, cert_path: Path) -> tuple[SigningKey, x509.Certificate]:
    """Load both, and check that the key is the certificate's."""
    key = load_private_key(key_path)
    certificate = load_certificate(cert_path)
    if not key_matches_certificate(key, certificate):
        raise MkosiError(
            f"Key {key_path} does not match certificate {cert_path}",
            hint="regenerate both with 'mkosi genkey', or point to the certificate belonging to the key",
        )
    return key, certificate


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (what systemd calls the certificate fingerprint)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def sign_pkcs7(
    data: bytes,
    key: SigningKey,
    certificate: x509.Certificate,
    *,
    embed_certificate: bool = False,
) -> bytes:
    """A detached, DER-encoded PKCS#7 signature over ``data``: SHA-256, no signed attributes, binary content.

    Deterministic for RSA keys (PKCS#1 v1.5 padding); EC signatures differ run to run.
    """
    options = [
        pkcs7.PKCS7Options.DetachedSignature,
        pkcs7.PKCS7Options.NoAttributes,
        pkcs7.PKCS7Options.Binary,
    ]
    if not embed_certificate:
        options.append(pkcs7.PKCS7Options.NoCerts)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(certificate, key, hashes.SHA256())
    return builder.sign(serialization.Encoding.DER, options)


def verity_signature_json(root_hash: bytes, certificate: x509.Certificate, signature: bytes) -> bytes:
    """The JSON object of a verity signature partition, compact and without padding."""
    obj = {
        "rootHash": root_hash.hex(),
        "certificateFingerprint": certificate_fingerprint(certificate),
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def pad_verity_signature(blob: bytes, *, min_size: int = VERITY_SIG_MIN_SIZE) -> bytes:
    """NUL-pad to a multiple of 4 KiB, at least ``min_size``, leaving at least one NUL at the end."""
    size = max(min_size, -(-(len(blob) + 1) // VERITY_SIG_BLOCK) * VERITY_SIG_BLOCK)
    return blob.ljust(size, b"\0")


def verity_signature_partition(
    root_hash: bytes,
    key: SigningKey,
    certificate: x509.Certificate,
    *,
    min_size: int = VERITY_SIG_MIN_SIZE,
    embed_certificate: bool = False,
) -> bytes:
    """Sign the hex root hash and return the padded contents of the verity signature partition."""
    signature = sign_pkcs7(root_hash.hex().encode(), key, certificate, embed_certificate=embed_certificate)
    return pad_verity_signature(verity_signature_json(root_hash, certificate, signature), min_size=min_size)


@dataclass(frozen=True)
class VeritySignature:
    root_hash: bytes
    certificate_fingerprint: str | None
    signature: bytes


def parse_verity_signature(blob: bytes) -> VeritySignature:
    """Read back the contents of a verity signature partition (trailing NULs allowed)."""
    text = blob.split(b"\0", 1)[0]
    try:
        obj = json.loads(text)
        root_hash = bytes.fromhex(obj["rootHash"])
        signature = base64.b64decode(obj["signature"], validate=True)
        fingerprint = obj.get("certificateFingerprint")
    except (ValueError, KeyError, TypeError) as e:
        raise MkosiError(f"Not a valid verity signature object: {e}") from e
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise MkosiError("Not a valid verity signature object: certificateFingerprint is not a string")
    return VeritySignature(root_hash=root_hash, certificate_fingerprint=fingerprint, signature=signature)

"""PKCS#7 signatures and verity signature partitions, checked with openssl."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from mkosi.errors import MkosiError
from mkosi.formats import signing

ROOT_HASH = bytes.fromhex("7cff06d63ca8a7cac0e598167d159c37c026ff5a17ed4a1ef0a56b038b0833d8")
REFERENCE = Path(__file__).parents[2] / "../shared/reference/upstream-mkosi-25.3-tutorial"


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("openssl is needed by this test: apt-get install openssl")
    return subprocess.run([exe, *map(str, args)], check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A key and certificate made by openssl itself, so loading is checked against an independent producer."""
    d = tmp_path_factory.mktemp("keys")
    key, cert = d / "key.pem", d / "cert.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        "/CN=signing test",
        "-days",
        "2",
    )
    return key, cert


@pytest.fixture(scope="module")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("other")
    key, cert = d / "key.pem", d / "cert.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        "/CN=other",
        "-days",
        "2",
    )
    return key, cert


def test_load_and_mismatch(keypair: tuple[Path, Path], other_keypair: tuple[Path, Path]) -> None:
    key, cert = signing.load_key_and_certificate(*keypair)
    assert signing.key_matches_certificate(key, cert)
    ec_key, ec_cert = signing.load_key_and_certificate(*other_keypair)
    assert not signing.key_matches_certificate(key, ec_cert)
    with pytest.raises(MkosiError, match=r"Key .*key\.pem does not match certificate .*cert\.pem"):
        signing.load_key_and_certificate(keypair[0], other_keypair[1])


def test_unreadable_inputs(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    with pytest.raises(MkosiError, match="Cannot read private key"):
        signing.load_private_key(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(MkosiError, match="not a valid"):
        signing.load_private_key(garbage)
    with pytest.raises(MkosiError, match="not a valid"):
        signing.load_certificate(garbage)
    with pytest.raises(MkosiError, match="not a valid"):
        signing.load_certificate(keypair[0])  # a key is no certificate
    encrypted = tmp_path / "encrypted.pem"
    key = signing.load_private_key(keypair[0])
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(MkosiError, match="encrypted"):
        signing.load_private_key(encrypted)
    # DER works too.
    der = tmp_path / "cert.der"
    der.write_bytes(signing.load_certificate(keypair[1]).public_bytes(serialization.Encoding.DER))
    assert signing.load_certificate(der) == signing.load_certificate(keypair[1])


def test_signature_verifies_and_is_minimal(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, cert = signing.load_key_and_certificate(*keypair)
    content = tmp_path / "content"
    content.write_bytes(ROOT_HASH.hex().encode())
    sig = tmp_path / "sig"
    sig.write_bytes(signing.sign_pkcs7(content.read_bytes(), key, cert))

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
        "-certfile",
        keypair[1],
        "-out",
        tmp_path / "out",
    )
    openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-noverify",
        "-content",
        content,
        "-in",
        sig,
        "-certfile",
        keypair[1],
        "-out",
        tmp_path / "out",
    )
    # No certificates inside: without -certfile there is nothing to verify against.
    assert openssl("pkcs7", "-inform", "der", "-in", sig, "-print_certs").stdout.strip() == ""
    assert (
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
            check=False,
        ).returncode
        != 0
    )
    printed = openssl("cms", "-cmsout", "-print", "-inform", "der", "-in", sig).stdout
    assert "eContent: <ABSENT>" in printed  # detached
    assert printed.count("<ABSENT>") >= 5  # eContent, certificates, crls, signedAttrs, unsignedAttrs
    for field in ("certificates", "signedAttrs"):
        after = printed.split(f"{field}:", 1)[1].lstrip()
        assert after.startswith("<ABSENT>"), field

    # A different content does not verify.
    content.write_bytes(ROOT_HASH.hex().upper().encode())
    assert (
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
            "-certfile",
            keypair[1],
            "-out",
            tmp_path / "out",
            check=False,
        ).returncode
        != 0
    )


@pytest.mark.parametrize("embed", [False, True])
def test_signature_identical_to_openssl_smime(
    tmp_path: Path, keypair: tuple[Path, Path], embed: bool
) -> None:
    """PKCS7_sign(DETACHED|NOATTR|BINARY) is what systemd-repart calls; RSA signatures are deterministic."""
    key, cert = signing.load_key_and_certificate(*keypair)
    content = tmp_path / "content"
    content.write_bytes(ROOT_HASH.hex().encode())
    ref = tmp_path / "ref.sig"
    openssl(
        "smime",
        "-sign",
        "-binary",
        "-noattr",
        *([] if embed else ["-nocerts"]),
        "-md",
        "sha256",
        "-outform",
        "der",
        "-in",
        content,
        "-signer",
        keypair[1],
        "-inkey",
        keypair[0],
        "-out",
        ref,
    )
    ours = signing.sign_pkcs7(content.read_bytes(), key, cert, embed_certificate=embed)
    assert ours == ref.read_bytes()


def test_verity_signature_partition(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, cert = signing.load_key_and_certificate(*keypair)
    blob = signing.verity_signature_partition(ROOT_HASH, key, cert)
    assert len(blob) == 16384 and len(blob) % 4096 == 0
    text = blob.rstrip(b"\0")
    assert blob[len(text) :] == bytes(len(blob) - len(text))
    obj = json.loads(text)
    assert list(obj) == ["rootHash", "certificateFingerprint", "signature"]
    assert b" " not in text  # compact, like systemd's JSON
    assert obj["rootHash"] == ROOT_HASH.hex()
    der = cert.public_bytes(serialization.Encoding.DER)
    assert obj["certificateFingerprint"] == hashlib.sha256(der).hexdigest()
    fp = openssl("x509", "-in", keypair[1], "-noout", "-fingerprint", "-sha256").stdout
    assert fp.strip().split("=", 1)[1].replace(":", "").lower() == obj["certificateFingerprint"]

    content, sig = tmp_path / "content", tmp_path / "sig"
    content.write_text(obj["rootHash"])
    sig.write_bytes(base64.b64decode(obj["signature"]))
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
        "-certfile",
        keypair[1],
        "-out",
        tmp_path / "out",
    )

    parsed = signing.parse_verity_signature(blob)
    assert parsed.root_hash == ROOT_HASH and parsed.signature == sig.read_bytes()
    assert parsed.certificate_fingerprint == obj["certificateFingerprint"]
    assert signing.verity_signature_partition(ROOT_HASH, key, cert) == blob  # deterministic


def test_reference_json_shape() -> None:
    """Upstream's signature partition has the same keys in the same order and the same compact layout."""
    raw = (REFERENCE / "btrfs.raw.verity-sig.json").read_bytes().rstrip(b"\0")
    obj = json.loads(raw)
    assert list(obj) == ["rootHash", "certificateFingerprint", "signature"]
    assert json.dumps(obj, separators=(",", ":")).encode() == raw
    parsed = signing.parse_verity_signature(raw + bytes(100))
    assert parsed.root_hash == ROOT_HASH
    # Upstream embeds its certificate; its fingerprint is the one named in the JSON.
    p7 = pkcs7.load_der_pkcs7_certificates(parsed.signature)
    assert [c.fingerprint(hashes.SHA256()).hex() for c in p7] == [obj["certificateFingerprint"]]


def test_padding() -> None:
    assert len(signing.pad_verity_signature(b"x" * 100)) == 16384
    assert len(signing.pad_verity_signature(b"x" * 16384)) == 20480  # always at least one NUL
    assert len(signing.pad_verity_signature(b"x" * 100, min_size=0)) == 4096
    with pytest.raises(MkosiError):
        signing.parse_verity_signature(b"{}")
    with pytest.raises(MkosiError):
        signing.parse_verity_signature(b'{"rootHash":"zz","signature":""}')


def test_ec_keys_sign_too(tmp_path: Path, other_keypair: tuple[Path, Path]) -> None:
    key, cert = signing.load_key_and_certificate(*other_keypair)
    content, sig = tmp_path / "content", tmp_path / "sig"
    content.write_bytes(b"abc")
    sig.write_bytes(signing.sign_pkcs7(b"abc", key, cert))
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
        "-certfile",
        other_keypair[1],
        "-out",
        tmp_path / "out",
    )
    assert isinstance(cert, x509.Certificate)

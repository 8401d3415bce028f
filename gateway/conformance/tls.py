"""A development certificate authority and server certificates signed by it, for serving Client ID Metadata
Documents over https on loopback (the conformance suite's ``--cimd-serve-on``, the local stack's document host).

DEVELOPMENT ONLY: the CA key sits next to its certificate, unencrypted. A gateway trusts such a CA only when it
is told to (``DCR_CIMD__CA_FILE``), and fetches from a loopback origin only when it is listed as a development
origin (``DCR_CIMD__DEVELOPMENT_ORIGINS``).

Files in ``directory``: ``ca.pem`` / ``ca-key.pem`` (created once, then reused, so a gateway configured with the
CA keeps trusting every later server certificate) and ``server.pem`` / ``server-key.pem`` (made again when the
hosts change). RFC 5280 profile: the CA has ``basicConstraints cA=TRUE`` and ``keyCertSign``; the server
certificate names every host as a ``subjectAltName`` (DNS name or IP address; RFC 6125 section 6.4: no CN
matching) and carries ``extendedKeyUsage serverAuth``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
_VALIDITY = datetime.timedelta(days=825)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


def development_ca(directory: Path) -> tuple[Path, Path]:
    """``(ca.pem, ca-key.pem)`` in ``directory``: created on first use, reused afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dcr-gateway development CA (DEVELOPMENT ONLY)")])
    start = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def server_certificate(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path]:
    """``(server.pem, server-key.pem)`` in ``directory`` for ``hosts`` (DNS names or IP literals), signed by
    :func:`development_ca` of the same directory; reused while it names the same hosts."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    ca_cert_path, ca_key_path = development_ca(directory)
    cert_path, key_path = directory / SERVER_FILE, directory / SERVER_KEY_FILE
    wanted = [_alt_name(host) for host in hosts]
    if cert_path.exists() and key_path.exists():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            names = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            names = None
        ca = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        if names is not None and set(names) == set(wanted) and existing.issuer == ca.subject:
            return cert_path, key_path
    ca = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca_key_path} is not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path

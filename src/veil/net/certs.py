"""Federation CA and party certificates for mutual TLS between parties.

A federation shares one CA. Each party gets a key pair and a certificate whose
subject CN is its party name and whose SAN holds the party name (as a DNS name)
plus any extra hosts or IP addresses it is reached at. The gRPC transport checks
both ends against the CA and the expected party name, so a certificate from
another CA, or one issued to another party, is refused before any data flows.

Keys are EC P-256 (``cryptography``, OpenSSL underneath). Private keys are written
0600 through a temporary file and an atomic rename; their bytes never appear in a
log or a repr.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veil.errors import ConfigError
from veil.fileio import write_atomic

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
PARTY_DAYS = 825
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class TlsFiles:
    """Where one party's TLS material lives: the federation CA, its cert and its key."""

    ca_cert: Path
    cert: Path
    key: Path


def check_party_name(party: str, field: str = "party") -> str:
    """Return ``party`` if it can be a certificate name, else raise ConfigError."""
    if not isinstance(party, str) or not _NAME_RE.match(party):
        raise ConfigError(
            field,
            f"'{party}' cannot be used as a party name in a certificate",
            "use 1-63 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return party


def init_ca(ca_dir: Path, name: str = "veil-federation", days: int = 3650) -> Path:
    """Create a federation CA in ``ca_dir`` (ca.crt, ca.key); return the cert path.

    Refuses to overwrite an existing CA: re-issuing would orphan every party cert.
    """
    ca_dir = Path(ca_dir)
    if not name or not name.isprintable():
        raise ConfigError("name", f"'{name}' is not a usable CA name", "give a printable name")
    if days <= 0:
        raise ConfigError("days", f"{days} is not a positive number of days", "use e.g. 3650")
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    for p in (cert_path, key_path):
        if p.exists():
            raise ConfigError(
                "ca_dir",
                f"{p} already exists; refusing to overwrite a federation CA",
                "use another directory, or delete the old CA on purpose first",
            )
    ca_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def issue_party(ca_dir: Path, party: str, out_dir: Path, hosts: Sequence[str] = ()) -> TlsFiles:
    """Issue ``party`` a certificate from the CA in ``ca_dir``; write it under ``out_dir``.

    Writes ``{party}.crt``, ``{party}.key`` (0600) and a copy of ``ca.crt``. ``hosts``
    are extra DNS names or IP addresses the party is reached at (SAN entries).
    """
    check_party_name(party)
    if f"{party}.crt" == CA_CERT:
        raise ConfigError("party", f"'{party}' would clash with the CA's file name {CA_CERT}")
    ca_cert, ca_key = load_ca(Path(ca_dir))
    sans: list[x509.GeneralName] = [x509.DNSName(party)]
    for h in hosts:
        sans.append(_san(h))
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=PARTY_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(out_dir / CA_CERT, out_dir / f"{party}.crt", out_dir / f"{party}.key")
    _write_private(files.key, _key_pem(key))
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


def throwaway_federation(parties: Sequence[str], workdir: Path) -> dict[str, TlsFiles]:
    """A fresh CA under ``workdir/ca`` and a loopback certificate for each party.

    For ``veil run`` and tests: each party's cert also names ``localhost`` and
    ``127.0.0.1``. Delete ``workdir`` when the run is over.
    """
    if len(set(parties)) != len(parties) or not parties:
        raise ConfigError("parties", f"{list(parties)} must be a non-empty list of unique names")
    workdir = Path(workdir)
    init_ca(workdir / "ca", name="veil-throwaway")
    return {
        p: issue_party(workdir / "ca", p, workdir / p, hosts=("localhost", "127.0.0.1"))
        for p in parties
    }


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read the CA cert and key from ``ca_dir``; ConfigError if missing or unusable."""
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    if not cert_path.is_file() or not key_path.is_file():
        raise ConfigError(
            "ca_dir",
            f"no federation CA in {ca_dir} (expected {CA_CERT} and {CA_KEY})",
            "create one with 'veil ca init DIR'",
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError("ca_dir", f"cannot read the CA in {ca_dir}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("ca_dir", f"the CA key in {ca_dir} is not an EC key")
    return cert, key


def own_certificate_problem(tls: TlsFiles, party: str) -> str | None:
    """What is wrong with ``party``'s own certificate, seen from its own files, or None.

    ``certificate not issued by the federation CA`` (not signed by the CA in
    ``tls.ca_cert``) or ``certificate issued to 'bank', not 'partner'``. Used to name
    the cause when a peer refuses us; unreadable files count as no finding.
    """
    try:
        ca = x509.load_pem_x509_certificate(Path(tls.ca_cert).read_bytes())
        cert = x509.load_pem_x509_certificate(Path(tls.cert).read_bytes())
    except (OSError, ValueError):
        return None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "certificate not issued by the federation CA"
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(cns[0].value) if cns else ""
    if name != party:
        return f"certificate issued to '{name}', not '{party}'"
    return None


def cert_party_name(cert_pem: bytes) -> str:
    """The party name (subject CN) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.match(r"^[A-Za-z0-9*]([A-Za-z0-9_.-]{0,252})$", host):
        raise ConfigError("hosts", f"'{host}' is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)

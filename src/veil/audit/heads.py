"""Signed tree heads (RFC 9162 section 4.10 in spirit) and their verification.

A head says "my log had ``size`` entries with root ``root`` at ``time``", signed with
the node's federation key (EC P-256 from :mod:`veil.net.certs`; Ed25519 also
accepted). Partners keep each other's heads (witnessing), so a node that later
rewrites or truncates its log, even one that re-signs with its own key, cannot
produce a consistency proof from a head a partner still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from veil.audit.canonical import canonical_json
from veil.audit.events import SCHEMAS, EventKind, check_payload, parse_time
from veil.errors import ConfigError, VeilError

HEAD_VERSION = "veil-audit-head/1"


class AuditError(VeilError):
    """The log, a head or a proof does not check out: evidence of tampering or a bad file."""


SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class NodeKey:
    """What a node signs its heads with: its name (cert CN), private key and certificate."""

    name: str
    key: SigningKey
    cert: x509.Certificate

    def __repr__(self) -> str:  # never show the key
        return f"NodeKey(name={self.name!r})"


@dataclass(frozen=True)
class SignedHead:
    """A tree head of ``node``'s log, signed by ``node``."""

    node: str
    size: int
    root: bytes
    time: str
    signature: bytes

    def message(self) -> bytes:
        """The canonical bytes the signature covers."""
        return head_message(self.node, self.size, self.root, self.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "head") -> SignedHead:
        """Parse and type-check a head; ConfigError naming the bad field."""
        fields = {k: v for k, v in SCHEMAS[EventKind.HEAD_WITNESSED].items() if k != "cert"}
        if not isinstance(d, Mapping):
            raise ConfigError(where, "is not an object")
        body = {k: d[k] for k in fields if k in d}
        if set(d) - set(fields) - {"cert", "type"}:
            raise ConfigError(where, f"has unknown fields {sorted(set(d) - set(fields))}")
        check_payload(EventKind.HEAD_WITNESSED, {**body, "cert": _DUMMY_PEM}, where)
        return cls(
            node=body["node"],
            size=body["size"],
            root=bytes.fromhex(body["root"]),
            time=body["time"],
            signature=bytes.fromhex(body["signature"]),
        )


_DUMMY_PEM = "-----BEGIN CERTIFICATE-----"


def head_message(node: str, size: int, root: bytes, time: str) -> bytes:
    return canonical_json(
        {"v": HEAD_VERSION, "node": node, "size": size, "root": root.hex(), "time": time}
    )


def load_node_key(cert_path: Path, key_path: Path) -> NodeKey:
    """Read a node's certificate and private key (as ``veil ca issue`` writes them)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError("cert/key", f"cannot read {cert_path} / {key_path}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError("key", f"{key_path} is neither an EC nor an Ed25519 key")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError("key", f"{key_path} does not belong to {cert_path}")
    return NodeKey(cert_name(cert), key, cert)


def cert_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def load_cert(data: bytes | str | x509.Certificate, field: str = "cert") -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode("ascii") if isinstance(data, str) else data
    try:
        return x509.load_pem_x509_certificate(raw)
    except ValueError as e:
        raise ConfigError(field, f"is not a PEM certificate: {e}") from None


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sign(key: NodeKey, size: int, root: bytes, time: str) -> SignedHead:
    """A head over (size, root, time) signed with ``key``."""
    msg = head_message(key.name, size, root, time)
    if isinstance(key.key, ec.EllipticCurvePrivateKey):
        sig = key.key.sign(msg, ec.ECDSA(hashes.SHA256()))
    else:
        sig = key.key.sign(msg)
    return SignedHead(key.name, size, root, time, sig)


def verify_head(
    head: SignedHead,
    cert: bytes | str | x509.Certificate,
    ca: bytes | str | x509.Certificate,
) -> None:
    """Raise AuditError unless ``head`` is signed by ``cert``, which ``ca`` issued to ``head.node``.

    Checks the CA's signature on the certificate, the certificate's name and validity
    at the head's time, and the head's signature.
    """
    c, root_ca = load_cert(cert), load_cert(ca, "ca")
    try:
        c.verify_directly_issued_by(root_ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuditError(f"the certificate of {cert_name(c)!r} was not issued by the CA") from None
    if cert_name(c) != head.node:
        raise AuditError(f"head claims node {head.node!r} but is signed by {cert_name(c)!r}")
    t = parse_time(head.time)
    if not c.not_valid_before_utc <= t <= c.not_valid_after_utc:
        raise AuditError(f"head of {head.node!r} at {head.time} is outside its cert's validity")
    pub = c.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(head.signature, head.message(), ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(head.signature, head.message())
        else:
            raise AuditError(f"{head.node!r} has a key type audit heads do not use")
    except InvalidSignature:
        raise AuditError(
            f"bad signature on the head of {head.node!r} (size {head.size}, {head.time})"
        ) from None

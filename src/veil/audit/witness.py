"""Witnessing: nodes keep each other's signed heads, so a rewritten past is caught.

At the end of a job the participating nodes exchange their latest signed heads
(the node service carries them over the peer channel). Each checks the partner's
head (:func:`verify_head`) and records it as a ``head.witnessed`` entry of its own
log (:func:`record_witness`). Later, anyone holding such a head asks the partner's
log to prove it is an extension of it (:func:`check_witness`: an RFC 9162
consistency proof). A node that truncated or rewrote its log and re-signed it with
its own key cannot: the proof fails, or the log is now shorter than the head.

On the wire (the node's peer channel) a head travels as :func:`head_message`; the
receiver checks it with :func:`accept_head`, which takes the sender's name from the
authenticated channel, never from the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cryptography import x509
from sqlalchemy import Connection, select

from veil.audit.events import Event, EventKind
from veil.audit.heads import AuditError, SignedHead, cert_name, cert_pem, load_cert, verify_head
from veil.audit.merkle import EMPTY_ROOT, verify_consistency
from veil.audit.store import AuditLog, entries_table
from veil.errors import ConfigError, ProtocolError

WIRE_KIND = "audit.head"  # the peer message that carries a signed head


def record_witness(
    conn: Connection,
    partner_head: SignedHead,
    cert: bytes | str | x509.Certificate,
    ca: bytes | str | x509.Certificate,
    *,
    job: str | None = None,
) -> int:
    """Verify a partner's head and record it in our log (in the caller's transaction)."""
    c = load_cert(cert)
    verify_head(partner_head, c, ca)
    payload = {**partner_head.to_dict(), "cert": cert_pem(c)}
    ev = Event(EventKind.HEAD_WITNESSED, f"peer:{cert_name(c)}", payload, job=job)
    return AuditLog(conn.engine).append(conn, ev)


def head_message(head: SignedHead, cert: bytes | str | x509.Certificate) -> dict[str, object]:
    """A signed head and the certificate that verifies it, as a peer message body."""
    return {"head": head.to_dict(), "cert": cert_pem(load_cert(cert))}


def accept_head(
    conn: Connection,
    msg: Mapping[str, object],
    sender: str,
    ca: bytes | str | x509.Certificate,
    *,
    job: str | None = None,
) -> int:
    """Check a partner's :func:`head_message` and record it in our log; return its seq.

    ``sender`` is the partner's name from its verified TLS certificate: a head of any
    other node is refused. ProtocolError for a malformed message, AuditError for a head
    that does not verify (wrong CA, wrong name, bad signature).
    """
    raw, cert = msg.get("head"), msg.get("cert")
    if not isinstance(raw, Mapping) or not isinstance(cert, str):
        raise ProtocolError(f"{WIRE_KIND}: needs a head object and a PEM cert string")
    try:
        head = SignedHead.from_dict(raw, f"{WIRE_KIND}.head")
    except ConfigError as e:
        raise ProtocolError(f"{WIRE_KIND}: {e}") from None
    if head.node != sender:
        raise ProtocolError(f"{WIRE_KIND}: {sender!r} sent a head of {head.node!r}")
    return record_witness(conn, head, cert, ca, job=job)


def witnessed_heads(conn: Connection, node: str | None = None) -> list[tuple[int, SignedHead]]:
    """(seq, head) of every partner head recorded in this log, optionally of one ``node``."""
    q = select(entries_table.c.seq, entries_table.c.entry).where(
        entries_table.c.kind == EventKind.HEAD_WITNESSED.value
    )
    out: list[tuple[int, SignedHead]] = []
    for r in conn.execute(q.order_by(entries_table.c.seq)):
        payload = json.loads(bytes(r.entry))["payload"]
        head = SignedHead.from_dict(payload)
        if node is None or head.node == node:
            out.append((int(r.seq), head))
    return out


def check_consistency(old: SignedHead, new: SignedHead, proof: Sequence[bytes]) -> None:
    """Raise AuditError unless ``proof`` shows ``new``'s log extends ``old``'s (same node)."""
    if old.node != new.node:
        raise AuditError(f"heads of two nodes ({old.node!r}, {new.node!r}) cannot be compared")
    if new.size < old.size:
        raise AuditError(
            f"{old.node!r}'s log was truncated: a head of size {old.size} signed at {old.time} "
            f"was witnessed, the log now has {new.size} entries"
        )
    if old.size == 0:
        if old.root != EMPTY_ROOT:
            raise AuditError(f"the witnessed head of {old.node!r} of size 0 has a non-empty root")
        return
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise AuditError(
            f"{old.node!r}'s log was rewritten: its first {old.size} entries no longer match "
            f"the head signed at {old.time} that a partner witnessed"
        )


def check_witness(conn: Connection, witnessed: SignedHead) -> None:
    """Raise AuditError unless this log now extends ``witnessed`` (our head a partner holds)."""
    log = AuditLog(conn.engine)
    size, root = log.current(conn)
    current = SignedHead(witnessed.node, size, root, witnessed.time, b"")
    proof = log.consistency_proof(conn, witnessed.size, size) if 0 < witnessed.size <= size else []
    check_consistency(witnessed, current, proof)


def locate_rewrite(conn: Connection, witnessed: Sequence[SignedHead]) -> tuple[int, int] | None:
    """Bracket a rewrite: (last witnessed size still consistent, first inconsistent size).

    The entries that were changed or removed lie in ``[first, second)``. None when every
    witnessed head is still consistent with the log.
    """
    good = 0
    for head in sorted(witnessed, key=lambda h: h.size):
        try:
            check_witness(conn, head)
        except AuditError:
            return good, head.size
        good = head.size
    return None

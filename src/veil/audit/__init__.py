"""Tamper-evident audit trail of a Veil node (project issue #19).

Every event of the node (:class:`EventKind`, :class:`Event`) becomes an entry in
canonical JSON (RFC 8785) and a leaf of an RFC 9162 (Certificate Transparency 2.0)
Merkle tree kept in the node's database (:class:`AuditLog`, tables in
:data:`audit_metadata`), appended in the same transaction as the state change it
records. The node signs tree heads with its federation key and partners witness
each other's heads.

What the log proves: that the entries an auditor sees are exactly the entries the
node committed to when it signed its heads, in that order, with none removed,
edited, reordered or inserted since (inclusion and consistency proofs); and, through
the heads partners witnessed, that the node did not rewrite or truncate its history
after a partner saw it, even by re-signing with its own key.

What it does not prove: that the node recorded every event truthfully in the first
place (a dishonest node can omit or invent events as they happen); anything about
entries after the last head a partner or auditor saw (the node can rewrite its
unwitnessed tail and re-sign it); or time beyond the node's own clock. A database
administrator can rewrite entries since the last signed head without detection
by the log alone; heads are signed after each job event batch to keep that window small.
"""

from veil.audit.canonical import canonical_json
from veil.audit.events import Event, EventKind
from veil.audit.export import export_log, verify_export
from veil.audit.heads import AuditError, NodeKey, SignedHead, load_node_key, verify_head
from veil.audit.store import AuditLog, audit_metadata, configure_sqlite, sign_head
from veil.audit.verify import Finding, Report, verify_log
from veil.audit.witness import (
    WIRE_KIND,
    accept_head,
    check_consistency,
    check_witness,
    head_message,
    locate_rewrite,
    record_witness,
    witnessed_heads,
)

__all__ = [
    "WIRE_KIND",
    "AuditError",
    "AuditLog",
    "Event",
    "EventKind",
    "Finding",
    "NodeKey",
    "Report",
    "SignedHead",
    "accept_head",
    "audit_metadata",
    "canonical_json",
    "check_consistency",
    "check_witness",
    "configure_sqlite",
    "export_log",
    "head_message",
    "load_node_key",
    "locate_rewrite",
    "record_witness",
    "sign_head",
    "verify_export",
    "verify_head",
    "verify_log",
    "witnessed_heads",
]

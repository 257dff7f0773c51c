"""The audit log's tables (veil.audit owns their schema; created here, beside the node's)."""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the audit tables and the empty log's state row."""
    from veil.audit import AuditLog, audit_metadata

    conn = op.get_bind()
    audit_metadata.create_all(conn)
    AuditLog.initialise(conn)


def downgrade() -> None:
    """Drop the audit tables."""
    from veil.audit import audit_metadata

    audit_metadata.drop_all(op.get_bind())

"""Alembic migrations of the node database (``veil.node.sqlstore.migrate`` runs them)."""

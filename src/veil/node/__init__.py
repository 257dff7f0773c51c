"""Veil nodes: long-running services that agree on cross-node jobs and run them.

Each organisation runs one node (``veil node start DIR``). Nodes talk mutual-TLS
gRPC to each other (:mod:`veil.node.peer`); operators talk to their own node's
FastAPI (:mod:`veil.node.api`) with role-bearing tokens. Datasets are registered by
name; a job proposed by one node runs only once every party's node approved the same
job file hash, each by its policy or an approver; then every node runs its own
party's ``veil run`` worker unchanged (:mod:`veil.node.launch`). State lives behind
:class:`veil.node.store.Store` (SQLite or PostgreSQL through SQLAlchemy + Alembic).
"""

"""Making a node folder and its tokens: ``veil node init`` and ``veil node token``.

A token is 32 random bytes (``secrets``) shown once; the database keeps only its
SHA-256, so a leaked database grants nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path

from veil.errors import ConfigError
from veil.fileio import write_atomic
from veil.net.certs import check_party_name, issue_party
from veil.node.config import CONFIG, TLS_DIR, TOKEN_FILE, NodeConfig, render, split_address
from veil.node.model import Event, Role
from veil.node.sqlstore import SqlStore
from veil.node.store import Store


def token_digest(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(store: Store, role: Role | str, actor: str = "user:cli") -> str:
    """A new bearer token with ``role``; returns the token (stored only as its hash)."""
    try:
        r = Role(role)
    except ValueError:
        raise ConfigError(
            "--role", f"unknown role '{role}'", "use one of " + ", ".join(x.value for x in Role)
        ) from None
    token = "veil_" + secrets.token_urlsafe(32)
    with store.change(Event("token.issued", actor=actor, detail={"role": r.value})) as tx:
        tx.add_token(token_digest(token), r)
    return token


def open_store(cfg: NodeConfig) -> Store:
    """The node's database (migrated to the newest schema)."""
    from veil.node.auditmap import AuditSink

    tls = cfg.tls
    return SqlStore(cfg.database_url, sink=lambda e: AuditSink(e, (tls.cert, tls.key)))


def _certificate(ca_dir: Path, name: str, out: Path, hosts: list[str]) -> None:
    """Issue the node's certificate from a CA folder (``veil ca init``), or take the one
    ``veil ca issue NAME --out DIR`` made (a site that does not hold the CA's key)."""
    files = [ca_dir / "ca.crt", ca_dir / f"{name}.crt", ca_dir / f"{name}.key"]
    if (ca_dir / "ca.key").is_file() or not all(f.is_file() for f in files):
        issue_party(ca_dir, name, out, hosts=hosts)
        return
    for f in files:
        write_atomic(out / f.name, f.read_bytes(), mode=0o600 if f.suffix == ".key" else 0o644)


def init_node(
    node_dir: str | Path,
    *,
    name: str,
    ca_dir: str | Path,
    peer_listen: str = "127.0.0.1:7400",
    api: str = "127.0.0.1:7500",
    peers: Mapping[str, str] | None = None,
    database: str = "",
) -> NodeConfig:
    """Write ``DIR/node.toml``, the node's certificate and an admin token; make the database."""
    d = Path(node_dir).resolve()
    check_party_name(name, "--name")
    if (d / CONFIG).exists():
        raise ConfigError("DIR", f"{d} already holds a node", "choose an empty folder")
    host, _ = split_address(peer_listen, "--peer-listen")
    split_address(api, "--api")
    for p, a in (peers or {}).items():
        check_party_name(p, "--peer")
        split_address(a, f"--peer {p}")
        if p == name:
            raise ConfigError("--peer", f"'{p}' is this node's own name", "list the other nodes")
    d.mkdir(parents=True, exist_ok=True)
    hosts = sorted({host, "localhost", "127.0.0.1"} - {"0.0.0.0", "::"})
    _certificate(Path(ca_dir), name, d / TLS_DIR, hosts)
    cfg = NodeConfig(
        dir=d,
        name=name,
        peer_listen=peer_listen,
        api=api,
        database=database,
        peers=dict(peers or {}),
    )
    store = open_store(cfg)
    try:
        with store.change(Event("node.init", actor="user:cli", detail={"name": name})):
            pass
        token = issue_token(store, Role.ADMIN)
    finally:
        store.close()
    write_atomic(d / TOKEN_FILE, token + "\n", mode=0o600)
    write_atomic(d / CONFIG, render(cfg))
    return cfg

"""Where a node keeps its database and keys: the folder ``veil node init`` made.

``--node DIR`` reads ``DIR/node.toml`` through the node's own reader
(:func:`veil.node.config.load_config`): the database URL under ``[node]`` (default:
``DIR/node.db``) and the TLS files in ``DIR/tls/`` (``NAME.crt``, ``NAME.key``,
``ca.crt``), so the audit commands see exactly the database and key the node uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veil.errors import ConfigError


@dataclass(frozen=True)
class NodeFiles:
    dir: Path
    database: str
    cert: Path | None
    key: Path | None
    ca: Path | None


def read_node_dir(node_dir: Path) -> NodeFiles:
    """The database URL and TLS files of the node in ``node_dir``."""
    from veil.node.config import load_config

    d = Path(node_dir)
    if not d.is_dir():
        raise ConfigError("--node", f"{d} is not a directory", "pass the node's directory")
    cfg = load_config(d)
    tls = cfg.tls

    def existing(p: Path) -> Path | None:
        return p if p.is_file() else None

    return NodeFiles(
        cfg.dir, cfg.database_url, existing(tls.cert), existing(tls.key), existing(tls.ca_cert)
    )

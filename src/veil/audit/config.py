"""Where a node keeps its database and keys: ``DIR/node.toml``.

Until the node service defines its own layout, ``--node DIR`` reads these keys of
``DIR/node.toml`` (every one optional; relative paths are relative to DIR)::

    database = "sqlite:///node.db"     # SQLAlchemy URL; default sqlite:///DIR/node.db
    cert = "bank.crt"                  # the node's certificate (signs tree heads)
    key = "bank.key"                   # its private key
    ca = "ca.crt"                      # the federation CA

All reading is in :func:`read_node_dir`, so aligning with the node is one change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from veil.errors import ConfigError

NODE_TOML = "node.toml"


@dataclass(frozen=True)
class NodeFiles:
    dir: Path
    database: str
    cert: Path | None
    key: Path | None
    ca: Path | None


def _sqlite_url(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str((base / rest).resolve())
    return url


def read_node_dir(node_dir: Path) -> NodeFiles:
    """Read ``node_dir/node.toml`` (missing file: all defaults)."""
    d = Path(node_dir)
    if not d.is_dir():
        raise ConfigError("--node", f"{d} is not a directory", "pass the node's directory")
    conf: dict[str, object] = {}
    path = d / NODE_TOML
    if path.is_file():
        try:
            conf = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(str(path), f"is not valid TOML: {e}") from None
    for k, v in conf.items():
        if k in ("database", "cert", "key", "ca") and not isinstance(v, str):
            raise ConfigError(f"{path}:{k}", f"must be a string, not {type(v).__name__}")

    def opt(k: str) -> Path | None:
        v = conf.get(k)
        return (d / v).resolve() if isinstance(v, str) else None

    db = conf.get("database")
    url = _sqlite_url(db, d) if isinstance(db, str) else f"sqlite:///{(d / 'node.db').resolve()}"
    return NodeFiles(d, url, opt("cert"), opt("key"), opt("ca"))

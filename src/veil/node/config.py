"""``DIR/node.toml``: who this node is, where it listens, its peers and its policy.

Written by ``veil node init``; the ``[[policy.approve]]`` rules are edited by hand::

    [node]
    name = "bureau"
    peer_listen = "127.0.0.1:7401"
    api = "127.0.0.1:7501"
    database = "sqlite:////srv/bureau/node.db"
    peer_timeout = 30.0
    heartbeat = 1.0
    job_nice = 10                 # optional: job processes run this much nicer than the node
    engine = "ray://10.0.0.5:10001"  # optional: this node's jobs run their kernels on its
                                     # own Ray cluster (default "local"); never the partner's

    [peers]
    bank = "127.0.0.1:7400"

    [[policy.approve]]            # approve a proposal without a person when all match
    partners = ["bank"]           # who proposed it
    steps = ["psi", "binning"]    # every step kind of the job
    datasets = ["bureau_credit"]  # the dataset this node gives
    columns = ["limit", "age"]    # optional: the columns of it the job may use
    recipients = ["bank"]         # optional: parties that may receive outputs
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.engine.spec import LOCAL, parse_engine
from veil.errors import ConfigError
from veil.net.certs import TlsFiles, check_party_name

CONFIG = "node.toml"
TOKEN_FILE = "admin.token"
TLS_DIR = "tls"
DEFAULT_PEER = "127.0.0.1:7400"
DEFAULT_API = "127.0.0.1:7500"


@dataclass(frozen=True)
class Rule:
    """One auto-approve rule; a proposal is approved when it matches a rule fully."""

    partners: tuple[str, ...]
    steps: tuple[str, ...]
    datasets: tuple[str, ...]
    columns: tuple[str, ...] | None = None  # None: any column
    recipients: tuple[str, ...] | None = None  # None: any party of the job


@dataclass(frozen=True)
class NodeConfig:
    """A parsed ``node.toml`` and the folder it lives in."""

    dir: Path
    name: str
    peer_listen: str = DEFAULT_PEER
    api: str = DEFAULT_API
    database: str = ""
    peers: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    peer_timeout: float = 30.0
    heartbeat: float = 1.0
    job_nice: int = 10  # job processes yield the CPU to the node (API, peer endpoint)
    engine: str | None = None  # where this node's jobs run their kernels (None: local)

    @property
    def tls(self) -> TlsFiles:
        """This node's certificate, key and the federation CA."""
        d = self.dir / TLS_DIR
        return TlsFiles(d / "ca.crt", d / f"{self.name}.crt", d / f"{self.name}.key")

    @property
    def database_url(self) -> str:
        """The database URL (default: a SQLite file in the node folder)."""
        return self.database or f"sqlite:///{(self.dir / 'node.db').resolve()}"

    @property
    def peer_host(self) -> str:
        """The host part of ``peer_listen``."""
        return split_address(self.peer_listen, "peer_listen")[0]

    def peer_address(self, party: str) -> str:
        """Where ``party``'s node listens, or a ConfigError naming the fix."""
        if party == self.name:
            return self.peer_listen
        if party not in self.peers:
            raise ConfigError(
                "peers", f"node '{self.name}' has no peer '{party}'", f"add {party} = HOST:PORT"
            )
        return self.peers[party]


def split_address(addr: str, field_name: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or a ConfigError."""
    host, _, port = str(addr).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(field_name, f"'{addr}' is not HOST:PORT", "e.g. 127.0.0.1:7400")
    return host, int(port)


def _strs(raw: Any, field_name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(field_name, "must be a list of strings", 'e.g. ["bank"]')
    return tuple(raw)


def _rule(raw: Any, i: int) -> Rule:
    f = f"policy.approve[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f, "must be a table", "see veil.node.config")
    allowed = {"partners", "steps", "datasets", "columns", "recipients"}
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{f}.{k}", "unknown key", "use " + ", ".join(sorted(allowed)))
    for k in ("partners", "steps", "datasets"):
        if k not in raw:
            raise ConfigError(f"{f}.{k}", "missing", "every rule names partners, steps, datasets")
    cols, rec = raw.get("columns"), raw.get("recipients")
    return Rule(
        partners=_strs(raw["partners"], f"{f}.partners"),
        steps=_strs(raw["steps"], f"{f}.steps"),
        datasets=_strs(raw["datasets"], f"{f}.datasets"),
        columns=None if cols is None else _strs(cols, f"{f}.columns"),
        recipients=None if rec is None else _strs(rec, f"{f}.recipients"),
    )


def load_config(node_dir: str | Path) -> NodeConfig:
    """Read ``DIR/node.toml``."""
    d = Path(node_dir).resolve()
    path = d / CONFIG
    if not path.is_file():
        raise ConfigError("--node", f"no {CONFIG} in {d}", "create one with 'veil node init DIR'")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(CONFIG, f"cannot parse {path}: {e}", "fix the TOML syntax") from None
    node = raw.get("node")
    if not isinstance(node, dict) or not isinstance(node.get("name"), str):
        raise ConfigError(f"{CONFIG} [node].name", "missing", 'add name = "bank" under [node]')
    peers = raw.get("peers", {})
    if not isinstance(peers, dict) or not all(isinstance(v, str) for v in peers.values()):
        raise ConfigError(f"{CONFIG} [peers]", "must map names to HOST:PORT", 'bank = "h:7400"')
    for p, a in peers.items():
        check_party_name(p, f"peers.{p}")
        split_address(a, f"peers.{p}")
    policy = raw.get("policy", {})
    rules = policy.get("approve", []) if isinstance(policy, dict) else None
    if not isinstance(rules, list):
        raise ConfigError("policy.approve", "must be an array of tables", "use [[policy.approve]]")
    cfg = NodeConfig(
        dir=d,
        name=check_party_name(node["name"], "node.name"),
        peer_listen=str(node.get("peer_listen", DEFAULT_PEER)),
        api=str(node.get("api", DEFAULT_API)),
        database=str(node.get("database", "")),
        peers=dict(peers),
        rules=tuple(_rule(r, i) for i, r in enumerate(rules)),
        peer_timeout=float(node.get("peer_timeout", 30.0)),
        heartbeat=float(node.get("heartbeat", 1.0)),
        job_nice=_nice(node.get("job_nice", 10)),
        engine=_engine(node.get("engine")),
    )
    split_address(cfg.peer_listen, "node.peer_listen")
    split_address(cfg.api, "node.api")
    if cfg.peer_timeout <= 0 or cfg.heartbeat <= 0:
        raise ConfigError("node.peer_timeout", "must be positive", "e.g. peer_timeout = 30")
    return cfg


def _nice(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 19:
        raise ConfigError("node.job_nice", f"{v!r} is not 0..19", "e.g. job_nice = 10")
    return v


def _engine(v: Any) -> str | None:
    """``local`` (None) or a ``ray://HOST:PORT`` URL, normalised (veil.engine.spec)."""
    spec = parse_engine(v, "node.engine")
    return None if spec.kind == LOCAL else spec.url


def _q(s: str) -> str:
    return json.dumps(s)  # a TOML basic string for the ASCII values we write


def render(cfg: NodeConfig) -> str:
    """The TOML text of ``cfg`` (rules included)."""
    lines = [
        "[node]",
        f"name = {_q(cfg.name)}",
        f"peer_listen = {_q(cfg.peer_listen)}",
        f"api = {_q(cfg.api)}",
    ]
    if cfg.database:
        lines.append(f"database = {_q(cfg.database)}")
    lines += [f"peer_timeout = {cfg.peer_timeout}", f"heartbeat = {cfg.heartbeat}"]
    if cfg.job_nice != NodeConfig.job_nice:
        lines.append(f"job_nice = {cfg.job_nice}")
    if cfg.engine is not None:
        lines.append(f"engine = {_q(cfg.engine)}")
    lines += ["", "[peers]"]
    lines += [f"{p} = {_q(a)}" for p, a in sorted(cfg.peers.items())]
    lines += ["", "# The default policy approves nothing: add [[policy.approve]] rules (see docs)."]
    for r in cfg.rules:
        lines += ["", "[[policy.approve]]"]
        for k in ("partners", "steps", "datasets", "columns", "recipients"):
            v = getattr(r, k)
            if v is not None:
                lines.append(f"{k} = [{', '.join(_q(x) for x in v)}]")
    return "\n".join(lines) + "\n"

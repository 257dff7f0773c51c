"""In-process nodes for tests: a NodeService with its mTLS gRPC peer server and link."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from veil.node.admin import init_node, open_store
from veil.node.config import CONFIG, load_config
from veil.node.datasets import add_dataset
from veil.node.launch import ProcessLauncher
from veil.node.peer import GrpcLink, Heartbeats, PeerServer
from veil.node.relay import Relay
from veil.node.service import NodeService

from .conftest import addresses, table


class InProc:
    """One node in this process (no API server; job processes only if ``launch``)."""

    def __init__(self, node_dir: Path, launch: bool = False) -> None:
        self.cfg = load_config(node_dir)
        self.store = open_store(self.cfg)
        self.link = GrpcLink(self.cfg)
        self.relay = Relay(self.cfg.name, self.store.job)
        self.launcher = ProcessLauncher(self.relay) if launch else None
        self.service = NodeService(self.cfg, self.store, self.link, self.launcher)
        self.server = PeerServer(self.cfg, self.service.handle, self.relay)
        self.heartbeats: Heartbeats | None = None

    def close(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.stop()
        if self.launcher is not None:
            self.launcher.close()
        self.relay.close_all()
        self.server.stop()
        self.link.close()
        self.store.close()


def make_nodes(
    tmp: Path,
    ca: Path,
    names: Sequence[str],
    policy: dict[str, str] | None = None,
    databases: dict[str, str] | None = None,
    **node: Any,
) -> dict[str, Path]:
    """Node folders for ``names`` (each peers with all others), a dataset each
    (``<name>_data``; the first node's has the label), extra TOML per node in ``policy``."""
    addrs = addresses(list(names))
    dirs = {}
    for i, n in enumerate(names):
        peers = {m: addrs[m][0] for m in names if m != n}
        d = tmp / n
        db = (databases or {}).get(n, "")
        init_node(
            d, name=n, ca_dir=ca, peer_listen=addrs[n][0], api=addrs[n][1], peers=peers, database=db
        )
        text = (d / CONFIG).read_text()
        for k, v in node.items():
            text = re.sub(rf"(?m)^{k} = .*$", f"{k} = {v}", text)
        (d / CONFIG).write_text(text + (policy or {}).get(n, ""))
        cfg = load_config(d)
        store = open_store(cfg)
        try:
            csv = table(tmp / "data" / f"{n}.csv", 60, start=10 * i, label=i == 0, seed=i)
            label = "y" if i == 0 else None
            add_dataset(store, cfg, f"{n}_data", csv, id_col="id", label_col=label)
        finally:
            store.close()
        dirs[n] = d
    return dirs


@contextmanager
def running(dirs: dict[str, Path], launch: bool = False) -> Iterator[dict[str, InProc]]:
    """Start an in-process node per folder (with job processes if ``launch``); close
    them all afterwards."""
    nodes: dict[str, InProc] = {}
    try:
        for n, d in dirs.items():
            nodes[n] = InProc(d, launch)
        yield nodes
    finally:
        for x in nodes.values():
            x.close()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``cond`` until true; AssertionError after ``timeout`` seconds (never hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_text(parties: Sequence[str], steps: str = "  - psi: {}\n") -> str:
    """A node job over each party's ``<name>_data``."""
    lines = ["name: node-test", "parties:"]
    lines += [f"  {p}: {{dataset: {p}_data}}" for p in parties]
    return "\n".join(lines) + "\nsteps:\n" + steps

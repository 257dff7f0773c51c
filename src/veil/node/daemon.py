"""``veil node start DIR``: the peer endpoint, the operator API, heartbeats, jobs.

Runs in the foreground until SIGINT or SIGTERM, then stops cleanly: running jobs
are stopped and marked failed (their peers are told), servers close, the database
is released. On start, jobs this node was running when it went away fail with
"node restarted" and the peers are told.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from veil.node.admin import open_store
from veil.node.api import create_app
from veil.node.config import NodeConfig, load_config, split_address
from veil.node.launch import ProcessLauncher
from veil.node.model import JobState
from veil.node.peer import GrpcLink, Heartbeats, PeerServer
from veil.node.relay import Relay
from veil.node.service import NodeService

log = logging.getLogger(__name__)
STOPPED = "node stopped"


class Node:
    """A started node (servers, heartbeats); :meth:`close` stops everything."""

    def __init__(self, cfg: NodeConfig) -> None:
        import uvicorn

        self.cfg = cfg
        self.store = open_store(cfg)
        self.link = GrpcLink(cfg)
        self.relay = Relay(cfg.name, self.store.job)
        self.launcher = ProcessLauncher(self.relay)
        self.service = NodeService(cfg, self.store, self.link, self.launcher)
        self.server = PeerServer(cfg, self.service.handle, self.relay)
        self.heartbeats = Heartbeats(self.service, self.link, self.server)
        self.service.recover()
        self.heartbeats.start()
        app = create_app(self.service, self.heartbeats.peers)
        host, port = split_address(cfg.api, "node.api")
        self.api = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        )
        self._api_thread = threading.Thread(target=self.api.run, daemon=True, name="api")
        self._api_thread.start()

    def wait_ready(self, timeout: float = 20.0) -> bool:
        """True once the API accepts connections."""
        done = threading.Event()

        def poll() -> None:
            while not self.api.started and self._api_thread.is_alive():
                if done.wait(0.05):
                    return
            done.set()

        threading.Thread(target=poll, daemon=True).start()
        done.wait(timeout)
        return bool(self.api.started)

    def close(self) -> None:
        """Stop jobs, heartbeats and servers; release the database."""
        for job in self.store.jobs():
            if job.state in (JobState.APPROVED, JobState.RUNNING):
                self.service.fail(job.id, f"party '{self.cfg.name}': {STOPPED}")
        self.launcher.close()
        self.relay.close_all()
        self.heartbeats.stop()
        self.api.should_exit = True
        self._api_thread.join(10.0)
        self.server.stop()
        self.link.close()
        self.store.close()


def start_node(node_dir: str | Path) -> int:
    """Run the node in DIR until SIGINT or SIGTERM."""
    cfg = load_config(node_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old: dict[int, Any] = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        node = Node(cfg)
        try:
            if not node.wait_ready():
                log.error("node %s: the API did not start on %s", cfg.name, cfg.api)
                return 1
            print(
                f"node {cfg.name}: peers on {cfg.peer_listen}, API on http://{cfg.api}/docs",
                flush=True,
            )
            while not stop.wait(0.5):
                pass
        finally:
            node.close()
        print(f"node {cfg.name}: stopped", flush=True)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)

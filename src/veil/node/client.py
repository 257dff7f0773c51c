"""The CLI's way to a node: its API address and a token, found in the node folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from veil.errors import ConfigError, NetworkError, VeilError
from veil.node.config import TOKEN_FILE, load_config

TOKEN_ENV = "VEIL_NODE_TOKEN"


class ApiError(VeilError):
    """The node answered with an error (its one-line reason)."""


class Client:
    """A small httpx client for one node's API."""

    def __init__(
        self, node_dir: str | Path, token: str | None = None, timeout: float = 60.0
    ) -> None:
        import httpx

        cfg = load_config(node_dir)
        if token is None:
            token = os.environ.get(TOKEN_ENV)
        if token is None:
            f = cfg.dir / TOKEN_FILE
            if not f.is_file():
                raise ConfigError("--token", f"no {TOKEN_FILE} in {cfg.dir}", f"set {TOKEN_ENV}")
            token = f.read_text(encoding="utf-8").strip()
        self.name = cfg.name
        self.base = f"http://{cfg.api}/v1"
        self._http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def request(self, method: str, path: str, json: Any = None) -> Any:
        """One API call; raises ApiError with the node's reason on failure."""
        import httpx

        try:
            r = self._http.request(method, path, json=json)
        except httpx.HTTPError as e:
            raise NetworkError(
                f"node '{self.name}' API at {self.base} is not reachable ({e}); "
                "is 'veil node start' running?"
            ) from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise ApiError(f"node '{self.name}' refused ({r.status_code}): {detail}")
        return r.json()

    def close(self) -> None:
        """Close the HTTP connection."""
        self._http.close()

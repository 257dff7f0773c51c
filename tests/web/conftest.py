"""Fixtures of the dashboard tests: two running nodes and one headless Chromium.

The nodes (``bank`` holds the label; ``bureau``'s policy approves every job bank
proposes, bank's policy approves nothing) run in this process for a test module
with their real API, peer servers and job processes. The browser is
Debian's ``chromium`` driven by Playwright (never ``playwright install``). Where
it is missing the browser tests skip, except under ``VEIL_REQUIRE_BROWSER=1``
(scripts/test sets it in CI), where they fail. Screenshots go to
``test-artifacts/web/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.require import unavailable
from veil.net.certs import init_ca
from veil.node.admin import issue_token
from veil.node.config import load_config
from veil.node.model import Role

from ..node.nodes import make_nodes, wait_for

CHROMIUM = os.environ.get("VEIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
STEPS = "tests.jobs.fake_steps,tests.web.fake_model"
FINAL = {"succeeded", "failed", "rejected", "cancelled"}
BUREAU_POLICY = """
[[policy.approve]]
partners = ["bank"]
steps = ["*"]
datasets = ["bureau_data"]
"""


@dataclass
class Fed:
    """The running nodes, their API base URLs and a token per role per node."""

    nodes: dict[str, Any]
    base: dict[str, str]
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def call(self, node: str, role: str, method: str, path: str, body: object = None) -> Any:
        r = httpx.request(
            method,
            f"{self.base[node]}/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[node][role]}"},
            timeout=30.0,
        )
        assert r.status_code < 400, (r.status_code, r.text)
        return r.json()

    def submit(self, node: str, steps: str) -> str:
        lines = ["name: web-" + node, "parties:"]
        lines += [f"  {p}: {{dataset: {p}_data}}" for p in ("bank", "bureau")]
        text = "\n".join(lines) + "\nsteps:\n" + steps
        job_id: str = self.call(node, "operator", "POST", "/jobs", {"text": text})["id"]
        return job_id

    def wait(self, node: str, job_id: str, states: set[str], timeout: float = 60.0) -> str:
        seen: list[str] = []

        def done() -> bool:
            seen.append(self.call(node, "auditor", "GET", f"/jobs/{job_id}")["state"])
            return seen[-1] in states

        wait_for(done, timeout, f"job {job_id} on {node} to reach {states}")
        return seen[-1]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    """bank and bureau as running nodes (API, peers, job processes), shared by a module's
    tests (module scope: ``VEIL_STEP_MODULES`` is restored after it)."""
    from veil.node.daemon import Node

    tmp = tmp_path_factory.mktemp("web")
    old = os.environ.get("VEIL_STEP_MODULES")
    os.environ["VEIL_STEP_MODULES"] = STEPS  # the job processes and this process's API
    ca = tmp / "ca"
    init_ca(ca)
    dirs = make_nodes(tmp, ca, ["bank", "bureau"], {"bureau": BUREAU_POLICY})
    nodes: dict[str, Any] = {}
    try:
        for n, d in dirs.items():
            nodes[n] = Node(load_config(d))
            assert nodes[n].wait_ready(), f"node {n}'s API did not start"
        f = Fed(nodes, {n: f"http://{x.cfg.api}" for n, x in nodes.items()})
        for n, x in nodes.items():
            f.tokens[n] = {r.value: issue_token(x.store, r) for r in Role if r != Role.ADMIN}
        wait_for(
            lambda: all(p["alive"] for p in f.call("bank", "auditor", "GET", "/peers")),
            30,
            "bank to see bureau alive",
        )
        yield f
    finally:
        for x in nodes.values():
            x.close()
        if old is None:
            os.environ.pop("VEIL_STEP_MODULES", None)
        else:
            os.environ["VEIL_STEP_MODULES"] = old


@pytest.fixture(scope="module")
def jobs(fed: Fed) -> dict[str, str]:
    """Jobs submitted once, together, so they run while the first tests look at others:
    ``fail`` (bureau's second step raises) and ``model`` (scores, then the real evaluate)."""
    return {
        "fail": fed.submit("bank", "  - _echo: {}\n  - _fail: {party: bureau}\n"),
        "model": fed.submit("bank", "  - _scores: {}\n  - evaluate: {label_holder: bank}\n"),
    }


def _no_browser(reason: str) -> None:
    unavailable("Chromium", "VEIL_REQUIRE_BROWSER", reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[dev]')")
        return
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _no_browser(f"no {CHROMIUM} (apt-get install chromium)")
        return
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Viewer:
    """A browser tab logged in to one node with one role; every request it made."""

    page: Any
    origin: str
    requests: list[str]
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.origin + path)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fetch_status(self, path: str) -> int:
        """The HTTP status of a GET the page itself makes with its token."""
        status: int = self.page.evaluate(
            """async (path) => {
                const tok = sessionStorage.getItem("veil.token." + document.body.dataset.node);
                const r = await fetch(path, {headers: {Authorization: "Bearer " + tok}});
                return r.status;
            }""",
            path,
        )
        return status


@pytest.fixture
def viewer(browser: Any, fed: Fed) -> Iterator[Any]:
    """``viewer(node, role)``: a fresh browser context in Tokyo time, logged in."""
    made: list[Any] = []
    viewers: list[Viewer] = []

    def make(node: str, role: str) -> Viewer:
        ctx = browser.new_context(
            viewport={"width": 1280, "height": 860}, timezone_id="Asia/Tokyo", locale="en-US"
        )
        made.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        v = Viewer(page, fed.base[node], [])
        page.on("request", lambda r: v.requests.append(r.url))
        page.on("pageerror", lambda e: v.errors.append(str(e)))
        v.goto("/ui/login")
        page.fill("#token", fed.tokens[node][role])
        page.press("#token", "Enter")
        page.wait_for_url(lambda u: "/ui/login" not in u)
        page.wait_for_selector("#whoami:has-text('role')")
        viewers.append(v)
        return v

    yield make
    for ctx in made:
        ctx.close()
    for v in viewers:  # the page makes no request outside its node
        outside = [u for u in v.requests if not u.startswith(v.origin + "/")]
        assert not outside, f"requests outside the node {v.origin}: {outside}"
        assert not v.errors, f"script errors on {v.origin}: {v.errors}"

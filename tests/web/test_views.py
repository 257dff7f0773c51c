"""The dashboard without a browser: its pages and assets, the JSON views it reads,
and the rule that every API call of a page is in the OpenAPI schema and reachable
by the CLI too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from veil.net.certs import init_ca
from veil.node.admin import init_node, issue_token, open_store
from veil.node.api import create_app
from veil.node.api_report import MAX_POINTS, model_report
from veil.node.config import CONFIG
from veil.node.datasets import add_dataset
from veil.node.model import Role
from veil.node.service import NodeService
from veil.web import PAGES
from veil.web.pages import HERE

from ..node.conftest import table

RULE = """
[[policy.approve]]
partners = ["bureau"]
steps = ["psi"]
datasets = ["bank_data"]
"""
JOB = (
    "name: j\nparties:\n  bank: {dataset: bank_data}\n  bureau: {dataset: b}\nsteps:\n  - psi: {}\n"
)


class NoLink:
    def call(self, party: str, msg: dict[str, object], timeout: float) -> dict[str, object]:
        return {"ok": True}


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    init_ca(d)
    return d


@pytest.fixture
def node(tmp_path: Path, ca: Path) -> Iterator[tuple[TestClient, dict[str, str], NodeService]]:
    d = tmp_path / "n"
    init_node(d, name="bank", ca_dir=ca, peers={"bureau": "127.0.0.1:1"})
    (d / CONFIG).write_text((d / CONFIG).read_text() + RULE)
    from veil.node.config import load_config

    cfg = load_config(d)
    store = open_store(cfg)
    csv = table(tmp_path / "b.csv", 30, label=True)
    add_dataset(store, cfg, "bank_data", csv, id_col="id", label_col="y")
    tokens = {r.value: issue_token(store, r) for r in Role if r != Role.ADMIN}
    service = NodeService(cfg, store, NoLink())
    yield TestClient(create_app(service)), tokens, service
    store.close()


def _h(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def test_pages_and_assets_are_served_from_the_node_only(
    node: tuple[TestClient, dict[str, str], NodeService],
) -> None:
    c, _, _ = node
    for name, (path, title, _) in PAGES.items():
        r = c.get(path.replace("{job_id}", "abc"))
        assert r.status_code == 200, name
        assert f"<title>{title} · Veil node bank</title>" in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert ref.startswith(("/ui/", "#", "data:")), (name, ref)
            if ref.startswith("/ui/static/"):
                assert c.get(ref).status_code == 200, ref
    assert c.get("/", follow_redirects=False).headers["location"] == "/ui/jobs"
    for f in (HERE / "static").iterdir():  # no URL outside the node in any asset
        urls = re.findall(r"https?://[^\s\"'`)]+", f.read_text())
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (f.name, urls)  # a namespace name
    assert not any(p.startswith("/ui") for p in c.get("/openapi.json").json()["paths"])


def _page_calls() -> set[tuple[str, str]]:
    """Every (method, path) the dashboard's script calls, path in OpenAPI form."""
    js = (HERE / "static" / "app.js").read_text()
    assert not re.search(r'(?:get|api)\([^)]*["`]\s*\+', js), "write API paths as one template"
    calls = set()
    pat = r'(?:get|api\("(GET|POST)",)\s*\(?\s*[`"](/[^`"]*)[`"]'
    for method, raw in re.findall(pat, js):
        path = re.sub(r"\$\{[^}]+\}", "{job_id}", raw.split("?")[0])
        calls.add((method or "GET", "/v1" + path))
    return calls


def _cli_calls(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> set[tuple[str, str]]:
    """Every (method, path) the ``veil`` CLI's node, dataset and job commands request."""
    from veil import cli
    from veil.node import cli as node_cli

    seen: set[tuple[str, str]] = set()

    class Recorder:
        def __init__(self, *a: object, **k: object) -> None:
            pass

        def request(self, method: str, path: str, json: object = None) -> Any:
            seen.add((method, "/v1" + re.sub(r"/jobs/J(?=/|$)", "/jobs/{job_id}", path)))
            return {"id": "J", "state": "ok"}

    monkeypatch.setattr(node_cli, "Client", Recorder)
    job = tmp / "j.yaml"
    job.write_text(JOB)
    n = ["--node", str(tmp)]
    cmds = [["job", "submit", *n, str(job)], ["job", "list", *n, "--json"]]
    cmds += [["dataset", "list", *n, "--json"]]
    cmds += [["node", a, str(tmp), "--json"] for a in ("peers", *node_cli.NODE_VIEWS)]
    for action in ("status", "logs", "outputs", "approve", "cancel", *node_cli.JOB_VIEWS):
        cmds.append(["job", action, *n, "J", "--json"])
    cmds.append(["job", "reject", *n, "J", "--reason", "no", "--json"])
    for argv in cmds:
        assert cli.main(argv) == 0, argv
    return seen


def test_every_page_call_is_in_openapi_and_the_cli(
    node: tuple[TestClient, dict[str, str], NodeService],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    c, _, _ = node
    calls = _page_calls()
    assert len(calls) >= 14, calls  # the regex found the script's calls
    schema = c.get("/openapi.json").json()["paths"]
    for method, path in calls:
        assert method.lower() in schema.get(path, {}), f"{method} {path} is not in OpenAPI"
    missing = calls - _cli_calls(monkeypatch, tmp_path)
    assert not missing, f"the CLI cannot reach {missing}"


def test_views_follow_roles_and_policy(
    node: tuple[TestClient, dict[str, str], NodeService],
) -> None:
    c, tok, service = node
    who = c.get("/v1/whoami", headers=_h(tok["auditor"])).json()
    assert (who["node"], who["role"]) == ("bank", "auditor")
    # bureau proposes a job that rule 1 approves, and one that needs a person
    for jid, text in (("j1", JOB), ("j2", JOB.replace("psi: {}", "_echo: {}"))):
        from veil.node.jobfile import job_sha256

        msg = {"kind": "propose", "job_id": jid, "text": text, "sha256": job_sha256(text)}
        assert service.handle("bureau", msg) == {"ok": True}
    from ..node.nodes import wait_for

    wait_for(lambda: service.status("j1")["parties"]["bank"]["vote"] == "approved")
    p1 = c.get("/v1/jobs/j1/proposal", headers=_h(tok["approver"])).json()
    assert p1["decision"]["by_policy"] and p1["decision"]["rule"]["rule"] == 1
    assert p1["parties"]["bank"]["columns"] == ["x0", "x1"]
    psi = {"index": 0, "kind": "psi", "params": {}, "receivers": ["bank", "bureau"]}
    assert p1["steps"] == [psi]
    p2 = c.get("/v1/jobs/j2/proposal", headers=_h(tok["auditor"])).json()
    assert p2["decision"]["vote"] == "pending" and p2["decision"]["rule"] is None
    assert p2["decision"]["policy"] == "step '_echo' is not allowed by policy for partner 'bureau'"
    assert c.get("/v1/policy", headers=_h(tok["approver"])).json()[0]["datasets"] == ["bank_data"]
    for path in ("/v1/jobs/j1/report", "/v1/jobs/j1/log", "/v1/jobs/j1/model"):
        assert c.get(path, headers=_h(tok["auditor"])).status_code == 403, path
        assert c.get(path, headers=_h(tok["operator"])).status_code == 200, path
    assert c.get("/v1/audit/verify", headers=_h(tok["operator"])).status_code == 403
    v = c.get("/v1/audit/verify", headers=_h(tok["auditor"])).json()
    assert v["ok"] and v["verified_up_to"] == v["size"] > 0 and v["first_failure"] is None
    evs = c.get("/v1/events?limit=3", headers=_h(tok["auditor"])).json()
    assert len(evs) == 3 and evs[-1]["at"] >= evs[0]["at"]
    parties = c.get("/v1/jobs/j1/parties", headers=_h(tok["auditor"])).json()
    assert parties["bank"]["ok"] and parties["bureau"] == {"ok": False, "error": "no answer"}


def test_audit_status_names_the_first_failing_entry(
    node: tuple[TestClient, dict[str, str], NodeService],
) -> None:
    from sqlalchemy import select, update

    from veil.audit.store import entries_table as t

    c, tok, service = node
    engine = service.store.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        seqs = [r.seq for r in conn.execute(select(t.c.seq).order_by(t.c.seq))]
        data = conn.execute(select(t.c.entry).where(t.c.seq == seqs[-1])).scalar_one()
        forged = bytes(data).replace(b'"', b"'", 1)
        conn.execute(update(t).where(t.c.seq == seqs[-1]).values(entry=forged))
    v = c.get("/v1/audit/verify", headers=_h(tok["auditor"])).json()
    assert not v["ok"] and v["verified_up_to"] is None
    assert v["first_failure"]["seq"] == seqs[-1], v


def test_model_report_sends_curves_not_rows(tmp_path: Path) -> None:
    from veil.ml.report import write_report

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 900)
    s = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.2, 900))))
    mine = tmp_path / "bank"
    mine.mkdir()
    write_report(mine, {"train": (y[:600], s[:600]), "test": (y[600:], s[600:])})
    ids = [f"cust{i:05d}" for i in range(900)]
    sets = ["train"] * 600 + ["test"] * 300
    pd.DataFrame({"id": ids, "score": s, "label": y, "set": sets}).to_csv(
        mine / "predictions.csv", index=False
    )
    m = model_report(tmp_path, "bank")
    assert m["label_holder"] and set(m["curves"]) == {"train", "test"}
    roc = m["curves"]["train"]["roc"]
    assert len(roc) <= MAX_POINTS and roc[0][:2] == [0.0, 0.0] and roc[-1][:2] == [1.0, 1.0]
    assert m["sets"]["test"]["auc"] > 0.7
    text = json.dumps(m)
    assert "cust0" not in text  # no id (curve thresholds are score values: the holder's own)
    other = model_report(tmp_path, "bureau")
    assert not other["label_holder"] and other["curves"] == {} and other["sets"] == {}

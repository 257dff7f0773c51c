"""The operator API: tokens and roles (401/403), datasets, jobs, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from veil.node.admin import init_node, issue_token, open_store
from veil.node.api import create_app
from veil.node.model import Role
from veil.node.service import NodeService

from .conftest import table


class NoLink:
    def call(self, party: str, msg: dict[str, object], timeout: float) -> dict[str, object]:
        return {"ok": True}


@pytest.fixture
def api(tmp_path: Path, ca: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    cfg = init_node(tmp_path / "n", name="bank", ca_dir=ca, peers={"bureau": "127.0.0.1:1"})
    store = open_store(cfg)
    tokens = {r.value: issue_token(store, r) for r in (Role.OPERATOR, Role.APPROVER, Role.AUDITOR)}
    tokens["admin"] = (cfg.dir / "admin.token").read_text().strip()
    client = TestClient(create_app(NodeService(cfg, store, NoLink())))
    yield client, tokens, tmp_path
    store.close()


def _h(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


JOB = "name: j\nparties:\n  bank: {dataset: bank}\n  bureau: {dataset: b}\nsteps:\n  - psi: {}\n"


def test_no_or_unknown_token_is_401(api: tuple[TestClient, dict[str, str], Path]) -> None:
    c, _, _ = api
    r = c.get("/v1/jobs")
    assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
    r = c.get("/v1/jobs", headers=_h("veil_forged"))
    assert r.status_code == 401 and r.json()["detail"] == "unknown token"
    assert c.get("/v1/health").status_code == 200
    service = c.app.state.service  # type: ignore[attr-defined]
    ev = [(e.kind, e.actor, e.detail["status"]) for e in service.store.events()[-2:]]
    assert ev == [("auth.failed", "user:anonymous", 401)] * 2


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("auditor", "GET", "/v1/datasets", None),
        ("auditor", "POST", "/v1/jobs", {"text": JOB}),
        ("auditor", "GET", "/v1/jobs/x/outputs", None),
        ("approver", "POST", "/v1/datasets", {"name": "a", "path": "/x", "id": "id"}),
        ("approver", "POST", "/v1/jobs/x/cancel", None),
        ("operator", "POST", "/v1/jobs/x/approve", None),
        ("operator", "POST", "/v1/jobs/x/reject", {"reason": "no"}),
        ("auditor", "POST", "/v1/jobs/x/approve", None),
    ],
)
def test_wrong_role_is_403(
    api: tuple[TestClient, dict[str, str], Path], role: str, method: str, path: str, body: object
) -> None:
    c, tokens, _ = api
    r = c.request(method, path, json=body, headers=_h(tokens[role]))
    assert r.status_code == 403
    assert r.json()["detail"].startswith(f"role '{role}' may not do this")
    last = c.app.state.service.store.events()[-1]  # type: ignore[attr-defined]
    assert last.kind == "auth.failed" and last.actor.startswith(f"user:{role}-")


def test_roles_do_their_work(api: tuple[TestClient, dict[str, str], Path]) -> None:
    c, tokens, tmp = api
    csv = table(tmp / "bank.csv", 20, label=True)
    body = {"name": "bank", "path": str(csv), "id": "id", "label": "y"}
    r = c.post("/v1/datasets", json=body, headers=_h(tokens["operator"]))
    assert r.status_code == 201 and r.json()["rows"] == 20 and "path" not in r.json()
    r = c.post("/v1/datasets", json=body, headers=_h(tokens["operator"]))
    assert r.status_code == 400 and "exists" in r.json()["detail"]
    r = c.post("/v1/jobs", json={"text": JOB}, headers=_h(tokens["operator"]))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "proposed" and job["parties"]["bank"]["vote"] == "approved"
    for role in ("auditor", "approver", "operator", "admin"):
        assert c.get(f"/v1/jobs/{job['id']}", headers=_h(tokens[role])).status_code == 200
    ev = c.get(f"/v1/jobs/{job['id']}/events", headers=_h(tokens["auditor"])).json()
    assert [e["kind"] for e in ev] == ["job.submitted"]
    assert c.get("/v1/jobs/nope", headers=_h(tokens["auditor"])).status_code == 404
    r = c.post(f"/v1/jobs/{job['id']}/approve", headers=_h(tokens["approver"]))
    assert r.status_code == 409  # the initiator's own vote is already in
    r = c.post(f"/v1/jobs/{job['id']}/cancel", headers=_h(tokens["operator"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"


def test_openapi_docs_are_served(api: tuple[TestClient, dict[str, str], Path]) -> None:
    c, _, _ = api
    assert c.get("/docs").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    assert "/v1/jobs/{job_id}/approve" in paths and "/v1/datasets" in paths


def test_a_bad_job_file_is_400_with_the_field(api: tuple[TestClient, dict[str, str], Path]) -> None:
    c, tokens, tmp = api
    csv = table(tmp / "bank.csv", 20, label=True)
    body = {"name": "bank", "path": str(csv), "id": "id", "label": "y"}
    assert c.post("/v1/datasets", json=body, headers=_h(tokens["operator"])).status_code == 201
    cases = {
        JOB.replace("psi", "pis"): "steps[0]: unknown step 'pis' -- did you mean 'psi'?",
        JOB.replace("{dataset: bank}", "{data: bank.csv, id: id}"): "parties.bank: a node job",
        JOB.replace("{dataset: bank}", "{dataset: nope}"): "no dataset 'nope' on node 'bank'",
        JOB.replace("bank:", "other:"): "this node ('bank') is not a party of the job",
        JOB.replace("bureau:", "ghost:"): "node 'bank' has no peer 'ghost'",
    }
    for text, why in cases.items():
        r = c.post("/v1/jobs", json={"text": text}, headers=_h(tokens["operator"]))
        assert r.status_code == 400 and why in r.json()["detail"], (why, r.json())
    assert c.get("/v1/jobs", headers=_h(tokens["operator"])).json() == []

"""The operator API: FastAPI, OpenAPI at ``/docs``, bearer tokens with roles.

Routers only parse, authorise and call the service functions the CLI uses too.
Roles: ``operator`` (datasets, submit, cancel, outputs), ``approver`` (approve,
reject), ``auditor`` (read-only: jobs and events, never data); ``admin`` has all.
The read-only views for people are in :mod:`veil.node.api_views`; the dashboard
(:mod:`veil.web`, under ``/ui``) is mounted on the same app and calls only these.
No token or an unknown one: 401. A known token without the role: 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from veil.errors import ConfigError, NetworkError, VeilError
from veil.node.admin import token_digest
from veil.node.api_views import add_views
from veil.node.datasets import add_dataset
from veil.node.model import Event, Role
from veil.node.service import Conflict, NodeService, NotFound, outputs_dir
from veil.web import mount_dashboard

_bearer = HTTPBearer(auto_error=False)
Peers = Callable[[], list[dict[str, Any]]]


class DatasetIn(BaseModel):
    """A file on the node's machine to register."""

    name: str
    path: str
    id: str
    label: str | None = None


class JobIn(BaseModel):
    """A cross-node job file (YAML text)."""

    text: str


class RejectIn(BaseModel):
    """Why the approver rejects the job."""

    reason: str


def _refuse(service: NodeService, code: int, why: str, actor: str) -> NoReturn:
    """Record the refused call (an event, like every state change) and answer it."""
    with service.store.change(Event("auth.failed", None, actor, {"status": code, "reason": why})):
        pass
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    raise HTTPException(code, why, headers)


def _auth(service: NodeService, roles: tuple[Role, ...]) -> Callable[..., str]:
    def check(
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
            _refuse(service, 401, "missing bearer token", "user:anonymous")
        role = service.store.token_role(token_digest(cred.credentials))
        if role is None:
            _refuse(service, 401, "unknown token", "user:anonymous")
        actor = f"user:{role.value}-{token_digest(cred.credentials)[:8]}"
        if role != Role.ADMIN and role not in roles:
            need = " or ".join(r.value for r in roles)
            _refuse(service, 403, f"role '{role.value}' may not do this (needs {need})", actor)
        return actor

    return check


def create_app(service: NodeService, peers: Peers | None = None) -> FastAPI:
    """The API of one node."""
    app = FastAPI(title=f"Veil node {service.name}", version="1")
    app.state.service = service
    operator = Depends(_auth(service, (Role.OPERATOR,)))
    approver = Depends(_auth(service, (Role.APPROVER,)))
    reader = Depends(_auth(service, (Role.OPERATOR, Role.APPROVER, Role.AUDITOR)))
    r = APIRouter(prefix="/v1")

    @r.get("/health")
    def health() -> dict[str, Any]:
        return {"name": service.name, "ok": True}

    @r.get("/datasets")
    def list_datasets(actor: str = operator) -> list[dict[str, Any]]:
        return [d.public() for d in service.store.datasets()]

    @r.post("/datasets", status_code=201)
    def post_dataset(body: DatasetIn, actor: str = operator) -> dict[str, Any]:
        ds = add_dataset(
            service.store,
            service.cfg,
            body.name,
            body.path,
            id_col=body.id,
            label_col=body.label,
            actor=actor,
        )
        return ds.public()

    @r.get("/jobs")
    def list_jobs(actor: str = reader) -> list[dict[str, Any]]:
        return [
            {
                "id": j.id,
                "name": j.name,
                "initiator": j.initiator,
                "state": j.state.value,
                "error": j.error,
                "created": j.created,
            }
            for j in service.store.jobs()
        ]

    @r.post("/jobs", status_code=201)
    def submit(body: JobIn, actor: str = operator) -> dict[str, Any]:
        return service.status(service.submit(body.text, actor).id)

    @r.get("/jobs/{job_id}")
    def status(job_id: str, actor: str = reader) -> dict[str, Any]:
        return service.status(job_id)

    @r.get("/jobs/{job_id}/events")
    def events(job_id: str, actor: str = reader) -> list[dict[str, Any]]:
        service.job(job_id)
        return [
            {"at": e.at, "kind": e.kind, "actor": e.actor, "detail": e.detail}
            for e in service.store.events(job_id)
        ]

    @r.post("/jobs/{job_id}/approve")
    def approve(job_id: str, actor: str = approver) -> dict[str, Any]:
        return service.status(service.approve(job_id, actor).id)

    @r.post("/jobs/{job_id}/reject")
    def reject(job_id: str, body: RejectIn, actor: str = approver) -> dict[str, Any]:
        return service.status(service.reject(job_id, body.reason, actor).id)

    @r.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str, actor: str = operator) -> dict[str, Any]:
        return service.status(service.cancel(job_id, actor).id)

    @r.get("/jobs/{job_id}/outputs")
    def outputs(job_id: str, actor: str = operator) -> dict[str, Any]:
        service.job(job_id)
        return {
            "dir": str(outputs_dir(service.cfg, job_id) / "out"),
            "files": [
                {"name": a.name, "sha256": a.sha256, "size": a.size, "path": a.path}
                for a in service.store.artifacts(job_id)
            ],
        }

    @r.get("/peers")
    def list_peers(actor: str = reader) -> list[dict[str, Any]]:
        return peers() if peers is not None else []

    add_views(r, service, lambda names: _auth(service, tuple(Role(n) for n in names)))
    app.include_router(r)
    mount_dashboard(app, service.name)
    for exc, code in (
        (NotFound, 404),
        (Conflict, 409),
        (ConfigError, 400),
        (NetworkError, 502),
        (VeilError, 500),
    ):
        app.add_exception_handler(exc, _handler(code))
    return app


def _handler(code: int) -> Callable[[Request, Exception], Any]:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle

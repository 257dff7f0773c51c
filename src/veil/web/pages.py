"""The dashboard's pages and assets on the node's FastAPI app (``/ui``).

Every page is the same layout with one ``data-page`` name; ``static/app.js``
fills it from the JSON API. Pages carry a Content-Security-Policy that allows
only this node (``'self'``), so a page cannot load or send anything elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# page name -> (path, title, roles that can use it; the API enforces them anyway)
PAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "login": ("/ui/login", "Log in", ()),
    "jobs": ("/ui/jobs", "Jobs", ("operator", "approver", "auditor")),
    "job": ("/ui/jobs/{job_id}", "Job", ("operator", "approver", "auditor")),
    "model": ("/ui/jobs/{job_id}/model", "Model report", ("operator",)),
    "approvals": ("/ui/approvals", "Approvals", ("approver",)),
    "datasets": ("/ui/datasets", "Datasets", ("operator",)),
    "peers": ("/ui/peers", "Peers", ("operator", "approver", "auditor")),
    "audit": ("/ui/audit", "Audit", ("auditor",)),
}
NAV = ("jobs", "approvals", "datasets", "peers", "audit")


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
    )


def mount_dashboard(app: FastAPI, node: str) -> None:
    """Serve the pages under ``/ui`` and the assets under ``/ui/static`` (not in OpenAPI)."""
    env = _env()
    tmpl = env.get_template("page.html")
    nav = [(PAGES[n][0], PAGES[n][1], n, " ".join(PAGES[n][2])) for n in NAV]

    def render(page: str, job_id: str = "") -> HTMLResponse:
        _, title, roles = PAGES[page]
        html = tmpl.render(
            node=node, page=page, title=title, roles=" ".join(roles), job_id=job_id, nav=nav
        )
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    def page_route(page: str) -> None:
        path = PAGES[page][0]
        if "{job_id}" in path:

            def with_job(job_id: str, request: Request) -> HTMLResponse:
                return render(page, job_id)

            app.add_api_route(path, with_job, methods=["GET"], include_in_schema=False)
        else:

            def plain(request: Request) -> HTMLResponse:
                return render(page)

            app.add_api_route(path, plain, methods=["GET"], include_in_schema=False)

    for page in PAGES:
        page_route(page)

    def home() -> RedirectResponse:
        return RedirectResponse("/ui/jobs")

    app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui", home, methods=["GET"], include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

"""The node's web dashboard: jobs, approvals, datasets, peers, model reports, audit.

Served by the node's own FastAPI app under ``/ui`` (:func:`mount_dashboard`); no
separate server and nothing from the internet: the Jinja2 templates, the script,
the style sheet and the SVG charts all ship inside this package. Pages are shells
rendered on the server; their data comes from the node's JSON API (``/v1``, in the
OpenAPI schema and reachable by the CLI) with the bearer token the viewer logged in
with, so each page shows only what that token's role may read.
"""

from veil.web.pages import PAGES, mount_dashboard

__all__ = ["PAGES", "mount_dashboard"]

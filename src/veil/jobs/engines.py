"""Which engine a party runs its data-parallel kernels on: ``local`` or ``ray://HOST:PORT``.

The engine is chosen by each party for itself (``veil run --party P --engine URL``, or
the ``engine:`` entry of that party in the job file) and never by a partner: it changes
where this party's work runs, not what crosses the wire, and it is not part of what the
parties compare before a job (:class:`veil.jobs.handshake.JobSummary`).

The engines live in :mod:`veil.engine`, the layer below jobs; importing it imports
neither Ray nor anything that starts a thread, so a local run loads nothing of Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from veil.engine import install
from veil.engine.spec import LOCAL, RAY_SCHEME, EngineSpec, parse_engine

__all__ = ["LOCAL", "RAY_SCHEME", "EngineSpec", "installed_engine", "parse_engine"]


@contextlib.contextmanager
def installed_engine(url: str | None) -> Iterator[None]:
    """Run the body with ``url``'s engine as this process's engine (HE batches, PSI
    kernels); ``local`` or None changes nothing."""
    spec = parse_engine(url)
    if spec.kind == LOCAL:
        yield
        return
    with install(spec.url):
        yield

"""Fixtures shared by every test package: a real PostgreSQL server.

``postgres_url`` starts one PostgreSQL for the whole session (Debian's ``postgresql``
package: ``initdb`` in a temporary directory, ``pg_ctl start`` on a free loopback
port, socket in that directory; as root it runs as the ``postgres`` user, since
PostgreSQL refuses root) and yields a ``postgresql+psycopg://`` URL. Where it cannot
start, tests that use it are skipped with the reason, except under
``VEIL_REQUIRE_POSTGRES=1`` (scripts/test sets it in CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.require import unavailable


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    unavailable("PostgreSQL", "VEIL_REQUIRE_POSTGRES", reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A running throwaway PostgreSQL server's SQLAlchemy URL (user postgres, trust auth)."""
    bindir = _pg_bin()
    if bindir is None:
        _unavailable("no initdb found (apt-get install postgresql)")
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the psycopg driver is not installed")
        return
    tmp = Path(tempfile.mkdtemp(prefix="veil-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root and no runuser to drop to the postgres user")
        prefix = [str(runuser), "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres", "postgres")
    data, port = tmp / "data", _free_port()
    log = tmp / "server.log"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *cmd], check=False, capture_output=True, text=True, timeout=120
        )

    started = False
    try:
        r = run(
            str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        if r.returncode != 0:
            _unavailable(f"initdb failed: {r.stderr.strip()[-300:]}")
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
        r = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "start")
        if r.returncode != 0:
            tail = log.read_text()[-300:] if log.exists() else r.stderr
            _unavailable(f"pg_ctl start failed: {tail.strip()}")
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A fresh empty database on the session's server, dropped after the test."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

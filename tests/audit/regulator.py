"""What a regulator does after a cross-node job: export each node's log, verify offline.

Used by the three-node end-to-end test (tests/node/test_credit3.py) on the nodes it
ran, so the audit trail is checked on a real job without a second three-node run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd

from tests.node.procs import veil
from veil.audit import witnessed_heads
from veil.audit.config import read_node_dir
from veil.audit.store import configure_sqlite


def _held(node_dir: Path, job_id: str) -> set[str]:
    """Nodes whose head ``node_dir``'s log recorded at the end of ``job_id``."""
    from sqlalchemy import create_engine

    engine = configure_sqlite(create_engine(read_node_dir(node_dir).database))
    try:
        with engine.connect() as c:
            return {h.node for seq, h in witnessed_heads(c)}
    finally:
        engine.dispose()


def export_and_verify(dirs: dict[str, Path], job_id: str, tmp: Path, data: dict[str, Path]) -> str:
    """Export every node's log, verify them offline together; check what the listing says."""
    names = sorted(dirs)
    deadline = time.monotonic() + 30
    while any(_held(dirs[n], job_id) != set(names) - {n} for n in names):
        assert time.monotonic() < deadline, {n: _held(dirs[n], job_id) for n in names}
        time.sleep(0.3)
    offline = tmp / "regulator"  # only the exports and the CA certificate
    offline.mkdir()
    shutil.copy(dirs[names[0]] / "tls" / "ca.crt", offline / "ca.crt")
    files = []
    for n in names:
        out = offline / f"{n}.jsonl"
        r = veil("audit", "export", "--node", str(dirs[n]), "--out", str(out))
        assert "(complete)" in r.stdout, r.stdout
        files.append(str(out))
    r = veil("audit", "verify", *files, "--ca", str(offline / "ca.crt"), "--job", job_id)
    text = r.stdout
    for f in files:
        assert f"{f}: OK:" in text, text
    assert f"the {len(names)} logs agree on job {job_id}" in text, text
    assert "DISAGREE" not in text
    blocks = _blocks(text)
    for n in names:
        block = blocks[n]
        cols = ", ".join(pd.read_csv(data[n], nrows=1).columns)
        assert f"dataset {n}_credit (" in block and f"columns {cols}" in block, block
        assert "status ok" in block and block.count("=approve") == len(names), block
        for peer in set(names) - {n}:
            line = next(x for x in block.splitlines() if f"bytes with {peer}:" in x)
            sent, got = (int(x.split()[-1]) for x in line.split(":", 1)[1].split(","))
            assert sent > 0 and got > 0, line
        assert "witnessed heads of: " + ", ".join(sorted(set(names) - {n})) in block
    assert "output bank/" in blocks["bank"], blocks["bank"]
    return text


def _blocks(text: str) -> dict[str, str]:
    """The per-node blocks of the job listing."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("    ") and ": job hash" in line:
            cur = out.setdefault(line.split(":")[0].strip(), [])
        if cur is not None:
            cur.append(line)
    return {k: "\n".join(v) for k, v in out.items()}

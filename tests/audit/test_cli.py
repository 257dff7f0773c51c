"""``veil audit`` verify / export / prove, on a node directory and offline on an export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete

from tests.audit.conftest import Fed, job_events, node_dir
from tests.audit.test_merkle import ref_mth, ref_path
from veil.audit import AuditLog, load_node_key, record_witness
from veil.audit.merkle import leaf_hash, verify_inclusion
from veil.audit.store import entries_table, heads_table
from veil.cli import main


def make_node(tmp: Path, fed: Fed, party: str, jobs: int = 3) -> tuple[Path, AuditLog]:
    """A ``veil node init`` folder whose log holds ``jobs`` jobs, a signed head after each."""
    nd = node_dir(tmp, fed, party)
    for j in range(jobs):
        with nd.log.engine.begin() as c:
            nd.log.append_many(c, job_events(f"job-{j}"))
            nd.log.sign_head(c, nd.key)
    return nd.dir, nd.log


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_verify_node_and_locate_an_edit(
    tmp_path: Path, fed: Fed, capsys: pytest.CaptureFixture[str]
) -> None:
    d, log = make_node(tmp_path, fed, "bank")
    rc, out = run(capsys, "audit", "verify", "--node", str(d))
    assert rc == 0 and out.startswith("OK: 33 entries, 3 signed heads"), out
    with log.engine.begin() as c:
        c.execute(delete(entries_table).where(entries_table.c.seq == 7))
    rc, out = run(capsys, "audit", "verify", "--node", str(d))
    assert rc == 1 and "first problem: entry 7: [sequence]" in out and "deleted" in out, out


def test_export_and_offline_verify(
    tmp_path: Path, fed: Fed, capsys: pytest.CaptureFixture[str]
) -> None:
    d, log = make_node(tmp_path, fed, "bank")
    with log.engine.begin() as c:  # an unsigned tail: the export signs a head over it
        log.append_many(c, job_events("job-3"))
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    ca = str(d / "tls" / "ca.crt")
    rc, out = run(capsys, "audit", "export", "--node", str(d), "--out", str(full))
    assert rc == 0 and "exported 44 entries (complete)" in out, out
    rc, out = run(capsys, "audit", "export", "--node", str(d), "--out", str(part), "--job", "job-1")
    assert rc == 0 and "exported 11 entries (partial)" in out, out
    for f in (full, part):
        rc, out = run(capsys, "audit", "verify", str(f), "--ca", ca)
        assert rc == 0 and out.startswith("OK"), out

    # tamper with the files: one byte of one entry, then a forged signature
    lines = part.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if '"seq":15' in ln)
    lines[i] = lines[i].replace("123456", "123457")
    (tmp_path / "edited.jsonl").write_text("\n".join(lines) + "\n")
    rc, out = run(capsys, "audit", "verify", str(tmp_path / "edited.jsonl"), "--ca", ca)
    assert rc == 1 and "first problem: entry 15: [inclusion proof]" in out, out
    lines = full.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if '"seq":18,' in ln)
    lines[i] = lines[i].replace('\\"rows\\":1000', '\\"rows\\":9')
    assert '\\"rows\\":9,' in lines[i]
    (tmp_path / "edited2.jsonl").write_text("\n".join(lines) + "\n")
    rc, out = run(capsys, "audit", "verify", str(tmp_path / "edited2.jsonl"), "--ca", ca)
    assert rc == 1 and "[signed head] entries 11..21" in out, out

    # another federation's CA does not vouch for this node
    other = tmp_path / "otherca"
    assert main(["ca", "init", str(other)]) == 0
    rc, out = run(capsys, "audit", "verify", str(full), "--ca", str(other / "ca.crt"))
    assert rc == 1 and "head signature" in out, out


def test_partner_export_catches_a_rewritten_history(
    tmp_path: Path, fed: Fed, capsys: pytest.CaptureFixture[str]
) -> None:
    bank, blog = make_node(tmp_path, fed, "bank")
    telco, tlog = make_node(tmp_path, fed, "telco", jobs=1)
    with blog.engine.connect() as c:
        head = blog.heads(c)[-1]
    with tlog.engine.begin() as c:
        record_witness(c, head, (bank / "tls" / "bank.crt").read_bytes(), fed.ca, job="job-2")
        tlog.sign_head(c, load_node_key(telco / "tls" / "telco.crt", telco / "tls" / "telco.key"))
    # bank truncates its log to 22 entries and re-signs with its own key
    with blog.engine.begin() as c:
        c.execute(delete(entries_table).where(entries_table.c.seq >= 22))
        c.execute(delete(heads_table).where(heads_table.c.size > 22))
    from tests.audit.test_store import rewrite_all, stored

    rewrite_all(blog.engine, stored(blog.engine))
    with blog.engine.begin() as c:
        blog.sign_head(c, load_node_key(bank / "tls" / "bank.crt", bank / "tls" / "bank.key"))
    ca = str(bank / "tls" / "ca.crt")
    b_out, t_out = tmp_path / "bank.jsonl", tmp_path / "telco.jsonl"
    assert run(capsys, "audit", "export", "--node", str(bank), "--out", str(b_out))[0] == 0
    assert run(capsys, "audit", "export", "--node", str(telco), "--out", str(t_out))[0] == 0
    rc, out = run(capsys, "audit", "verify", str(b_out), "--ca", ca)
    assert rc == 0, out  # alone, the re-signed log looks fine
    rc, out = run(capsys, "audit", "verify", str(t_out), "--ca", ca)
    assert rc == 0 and "1 witnessed heads" in out, out
    rc, out = run(capsys, "audit", "verify", str(b_out), "--ca", ca, "--witness", str(t_out))
    assert rc == 1 and "first problem: entry 22: [witnessed head]" in out, out
    assert "truncated" in out
    rc, out = run(capsys, "audit", "verify", "--node", str(bank), "--witness", str(t_out))
    assert rc == 1 and "[witnessed head]" in out, out


def test_prove_prints_a_checkable_inclusion_proof(
    tmp_path: Path, fed: Fed, capsys: pytest.CaptureFixture[str]
) -> None:
    d, log = make_node(tmp_path, fed, "bank", jobs=2)
    rc, out = run(capsys, "audit", "prove", "--node", str(d), "5")
    assert rc == 0
    p = json.loads(out)
    from tests.audit.test_store import stored

    entries = stored(log.engine)
    assert p["size"] == 22 and p["signed_head"]["size"] == 22
    assert [bytes.fromhex(x) for x in p["path"]] == ref_path(5, entries)
    assert bytes.fromhex(p["root"]) == ref_mth(entries)
    path = [bytes.fromhex(x) for x in p["path"]]
    assert verify_inclusion(leaf_hash(entries[5]), 5, 22, path, ref_mth(entries))
    rc, out = run(capsys, "audit", "prove", "--node", str(d), "99")
    assert rc == 2 and "seq" in out


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "audit", "verify", "--node", str(tmp_path / "nope"))
    assert rc == 2 and "is not a directory" in out
    (tmp_path / "x.jsonl").write_text("not json\n")
    rc, out = run(capsys, "audit", "verify", str(tmp_path / "x.jsonl"))
    assert rc == 2 and "--ca" in out
    with pytest.raises(SystemExit):
        main(["audit", "export", "--node", str(tmp_path)])  # --out missing: argparse

"""``veil node init`` and tokens; ``veil dataset add``."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509

from veil.cli import main
from veil.errors import ConfigError
from veil.node.admin import init_node, issue_token, open_store, token_digest
from veil.node.config import load_config
from veil.node.datasets import add_dataset
from veil.node.model import Role

from .conftest import table


def test_init_writes_config_cert_and_a_hashed_admin_token(tmp_path: Path, ca: Path) -> None:
    rc = main(
        [
            "node",
            "init",
            str(tmp_path / "bank"),
            "--name",
            "bank",
            "--ca",
            str(ca),
            "--peer-listen",
            "127.0.0.1:7411",
            "--api",
            "127.0.0.1:7511",
            "--peer",
            "bureau=127.0.0.1:7412",
        ]
    )
    assert rc == 0
    cfg = load_config(tmp_path / "bank")
    assert (cfg.name, cfg.peer_listen, cfg.api) == ("bank", "127.0.0.1:7411", "127.0.0.1:7511")
    assert cfg.peers == {"bureau": "127.0.0.1:7412"} and cfg.rules == ()
    cert = x509.load_pem_x509_certificate(cfg.tls.cert.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=bank"
    tok = (tmp_path / "bank" / "admin.token").read_text().strip()
    assert stat.S_IMODE((tmp_path / "bank" / "admin.token").stat().st_mode) == 0o600
    store = open_store(cfg)
    try:
        assert store.token_role(token_digest(tok)) == Role.ADMIN
        assert tok.encode() not in (tmp_path / "bank" / "node.db").read_bytes()
        assert [e.kind for e in store.events()] == ["node.init", "token.issued"]
    finally:
        store.close()


def test_init_refuses_bad_input(tmp_path: Path, ca: Path) -> None:
    init_node(tmp_path / "n", name="bank", ca_dir=ca)
    with pytest.raises(ConfigError, match="already holds a node"):
        init_node(tmp_path / "n", name="bank", ca_dir=ca)
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        init_node(tmp_path / "m", name="bank", ca_dir=ca, peer_listen="nope")
    with pytest.raises(ConfigError, match="no federation CA"):
        init_node(tmp_path / "k", name="bank", ca_dir=tmp_path / "none")


def test_tokens_have_roles(tmp_path: Path, ca: Path) -> None:
    cfg = init_node(tmp_path / "n", name="bank", ca_dir=ca)
    store = open_store(cfg)
    try:
        t = issue_token(store, "auditor")
        assert store.token_role(token_digest(t)) == Role.AUDITOR
        with pytest.raises(ConfigError, match="unknown role 'root'"):
            issue_token(store, "root")
    finally:
        store.close()


def test_dataset_add_records_schema_rows_and_hash(tmp_path: Path, ca: Path) -> None:
    cfg = init_node(tmp_path / "n", name="bank", ca_dir=ca)
    csv = table(tmp_path / "bank.csv", 30, label=True)
    pq = tmp_path / "bank.parquet"
    pd.read_csv(csv).to_parquet(pq)
    store = open_store(cfg)
    try:
        d = add_dataset(store, cfg, "bank_csv", csv, id_col="id", label_col="y")
        assert (d.rows, d.columns, d.format) == (30, ("id", "y", "x0", "x1"), "csv")
        assert Path(d.path).read_bytes() == csv.read_bytes() and d.sha256 in d.path
        p = add_dataset(store, cfg, "bank_pq", pq, id_col="id")
        assert (p.rows, p.format, p.label_col) == (30, "parquet", None)
        assert "path" not in d.public()
        with pytest.raises(ConfigError, match="no column 'ID'"):
            add_dataset(store, cfg, "x", csv, id_col="ID")
        with pytest.raises(ConfigError, match="exists"):
            add_dataset(store, cfg, "bank_csv", csv, id_col="id")
        with pytest.raises(ConfigError, match="neither CSV nor Parquet"):
            (tmp_path / "a.txt").write_text("id\n1\n")
            add_dataset(store, cfg, "y", tmp_path / "a.txt", id_col="id")
        assert [x.name for x in store.datasets()] == ["bank_csv", "bank_pq"]
    finally:
        store.close()


def test_policy_rules_are_checked(tmp_path: Path, ca: Path) -> None:
    cfg = init_node(tmp_path / "n", name="bank", ca_dir=ca)
    toml = cfg.dir / "node.toml"
    base = toml.read_text()
    good = '[[policy.approve]]\npartners = ["a"]\nsteps = ["psi"]\ndatasets = ["d"]\n'
    toml.write_text(base + good + 'columns = ["x"]\n')
    (rule,) = load_config(cfg.dir).rules
    assert rule.columns == ("x",) and rule.recipients is None
    for extra, why in (
        ('colums = ["x"]\n', r"policy.approve\[0\].colums: unknown key"),
        ("recipients = 3\n", "must be a list of strings"),
    ):
        toml.write_text(base + good + extra)
        with pytest.raises(ConfigError, match=why):
            load_config(cfg.dir)
    toml.write_text(base + '[[policy.approve]]\npartners = ["a"]\n')
    with pytest.raises(ConfigError, match=r"policy.approve\[0\].steps: missing"):
        load_config(cfg.dir)
    toml.write_text(base.replace("[peers]", "[peers]\nbad = 'nope'"))
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        load_config(cfg.dir)


def test_init_takes_a_certificate_issued_elsewhere(tmp_path: Path, ca: Path) -> None:
    """A site without the CA's key inits its node from 'veil ca issue NAME --out DIR'."""
    from veil.net.certs import issue_party

    issued = tmp_path / "bureau-tls"
    issue_party(ca, "bureau", issued)
    cfg = init_node(tmp_path / "node", name="bureau", ca_dir=issued)
    for f in ("ca.crt", "bureau.crt", "bureau.key"):
        assert (cfg.dir / "tls" / f).read_bytes() == (issued / f).read_bytes()
    assert (cfg.dir / "tls" / "bureau.key").stat().st_mode & 0o777 == 0o600

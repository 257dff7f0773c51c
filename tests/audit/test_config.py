"""``--node DIR``: reading DIR/node.toml, and the PostgreSQL fixture's skip-or-fail rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest as root_conftest
from tests.audit.conftest import Fed
from veil.audit.config import read_node_dir
from veil.cli import main
from veil.errors import ConfigError


def test_reads_the_folder_veil_node_init_made(tmp_path: Path, fed: Fed) -> None:
    d = tmp_path / "bank"
    assert main(["node", "init", str(d), "--name", "bank", "--ca", str(fed.ca_dir)]) == 0
    f = read_node_dir(d)
    assert f.database == f"sqlite:///{d.resolve() / 'node.db'}"
    tls = d.resolve() / "tls"
    assert (f.cert, f.key, f.ca) == (tls / "bank.crt", tls / "bank.key", tls / "ca.crt")
    text = (d / "node.toml").read_text()
    (d / "node.toml").write_text(
        text.replace("[node]\n", '[node]\ndatabase = "postgresql+psycopg://u@h/db"\n')
    )
    assert read_node_dir(d).database == "postgresql+psycopg://u@h/db"


def test_not_a_node_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        read_node_dir(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"no node\.toml"):
        read_node_dir(tmp_path)
    (tmp_path / "node.toml").write_text("database = \n")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_node_dir(tmp_path)
    (tmp_path / "node.toml").write_text('database = "sqlite:///x.db"\n')  # the old flat layout
    with pytest.raises(ConfigError, match=r"\[node\].name"):
        read_node_dir(tmp_path)


def test_missing_postgres_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="VEIL_REQUIRE_POSTGRES"):
        root_conftest._unavailable("no initdb")
    monkeypatch.delenv("VEIL_REQUIRE_POSTGRES")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: no initdb"):
        root_conftest._unavailable("no initdb")

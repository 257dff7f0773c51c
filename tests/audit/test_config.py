"""``--node DIR``: reading DIR/node.toml, and the PostgreSQL fixture's skip-or-fail rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest as root_conftest
from veil.audit.config import read_node_dir
from veil.errors import ConfigError


def test_defaults_without_node_toml(tmp_path: Path) -> None:
    f = read_node_dir(tmp_path)
    assert f.database == f"sqlite:///{tmp_path.resolve() / 'node.db'}"
    assert f.cert is None and f.key is None and f.ca is None


def test_relative_paths_are_relative_to_the_node_dir(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text(
        'database = "sqlite:///data/audit.db"\ncert = "tls/n.crt"\nkey = "/abs/n.key"\n'
    )
    f = read_node_dir(tmp_path)
    assert f.database == f"sqlite:///{tmp_path.resolve() / 'data' / 'audit.db'}"
    assert f.cert == tmp_path.resolve() / "tls" / "n.crt"
    assert f.key == Path("/abs/n.key")
    (tmp_path / "node.toml").write_text('database = "postgresql+psycopg://u@h/db"\n')
    assert read_node_dir(tmp_path).database == "postgresql+psycopg://u@h/db"


def test_bad_node_toml(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text("database = [1]\n")
    with pytest.raises(ConfigError, match="must be a string"):
        read_node_dir(tmp_path)
    (tmp_path / "node.toml").write_text("database = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_node_dir(tmp_path)


def test_missing_postgres_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="VEIL_REQUIRE_POSTGRES"):
        root_conftest._unavailable("no initdb")
    monkeypatch.delenv("VEIL_REQUIRE_POSTGRES")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: no initdb"):
        root_conftest._unavailable("no initdb")

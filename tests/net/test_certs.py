"""Federation CA and party certificates, through the ``veil ca`` command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from veil.cli import main
from veil.errors import ConfigError
from veil.net.certs import TlsFiles, init_ca, issue_party, throwaway_federation


def _load(p: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(p.read_bytes())


def test_ca_init_and_issue_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, out = tmp_path / "ca", tmp_path / "bank"
    assert main(["ca", "init", str(ca)]) == 0
    rc = main(["ca", "issue", "bank", "--ca", str(ca), "--out", str(out), "--host", "10.1.2.3"])
    assert rc == 0 and "bank.crt" in capsys.readouterr().out
    cert, ca_cert = _load(out / "bank.crt"), _load(ca / "ca.crt")
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bank"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bank"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (out / "ca.crt").read_bytes() == (ca / "ca.crt").read_bytes()
    for key in (ca / "ca.key", out / "bank.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_cli_refuses_to_overwrite_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", str(tmp_path)]) == 0
    before = (tmp_path / "ca.key").read_bytes()
    assert main(["ca", "init", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "ca.key").read_bytes() == before


def test_cli_bad_input_exits_nonzero_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ca", "issue", "bank", "--ca", str(tmp_path / "none"), "--out", "x"]) == 2
    assert "veil ca init" in capsys.readouterr().err
    main(["ca", "init", str(tmp_path / "ca")])
    out = str(tmp_path / "o")
    assert main(["ca", "issue", "bad name", "--ca", str(tmp_path / "ca"), "--out", out]) == 2
    assert "party name" in capsys.readouterr().err
    assert (
        main(["ca", "issue", "b", "--ca", str(tmp_path / "ca"), "--out", out, "--host", "a b"]) == 2
    )
    assert "hosts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["ca", "issue", "bank"])  # --ca and --out are required
    assert e.value.code != 0


def test_throwaway_federation_and_repr_has_no_key_material(tmp_path: Path) -> None:
    tls = throwaway_federation(["a", "b"], tmp_path)
    assert set(tls) == {"a", "b"}
    assert isinstance(tls["a"], TlsFiles)
    key_pem = tls["a"].key.read_text()
    assert "PRIVATE KEY" in key_pem and key_pem.splitlines()[1] not in repr(tls)
    ca = _load(tmp_path / "ca" / "ca.crt")
    _load(tls["b"].cert).verify_directly_issued_by(ca)
    with pytest.raises(ConfigError, match="parties"):
        throwaway_federation(["a", "a"], tmp_path / "again")


def test_api_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="days"):
        init_ca(tmp_path / "x", days=0)
    init_ca(tmp_path / "ca")
    with pytest.raises(ConfigError, match="party"):
        issue_party(tmp_path / "ca", "", tmp_path / "o")
    with pytest.raises(ConfigError, match="clash"):
        issue_party(tmp_path / "ca", "ca", tmp_path / "o")

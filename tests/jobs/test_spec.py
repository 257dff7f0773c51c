"""Job file validation: each mistake gives one clear line naming the field, exit
code 2, and no output folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.jobs.conftest import write_job
from veil.cli import main
from veil.errors import ConfigError
from veil.jobs import load_job


def run_cli(job: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", str(job), "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err


def assert_rejected(job: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    out = job.parent / "out"
    code, err = run_cli(job, out, capsys)
    assert code == 2
    assert err.startswith("veil: error: ")
    assert err.count("\n") == 1, err  # one line, no traceback
    for n in needles:
        assert n in err, err
    assert not out.exists()


def test_valid_job_parses(jobdir: Path) -> None:
    spec = load_job(write_job(jobdir, [{"psi": {"result_to": ["bank"]}}]))
    assert spec.name == "test-job"
    assert spec.party_names == ("bank", "partner")
    assert spec.party("bank").label == "y" and spec.party("partner").label is None
    assert spec.party("bank").data == (jobdir / "bank.csv").resolve()
    (step,) = spec.steps
    assert step.name == "psi" and step.params["result_to"] == ["bank"]
    assert step.params["batch_size"] == 4096


def test_psi_result_to_defaults_to_all(jobdir: Path) -> None:
    spec = load_job(write_job(jobdir, ["psi"]))
    assert spec.steps[0].params["result_to"] == ["bank", "partner"]


def test_unknown_step(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, [{"pis": {}}])
    assert_rejected(job, capsys, "steps[0]: unknown step 'pis'", "did you mean 'psi'")


def test_unknown_party_in_result_to(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, [{"psi": {"result_to": ["bnak", "partner"]}}])
    assert_rejected(
        job, capsys, "steps[0].psi.result_to: unknown party 'bnak'", "use one of bank, partner"
    )


def test_unknown_step_parameter(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, [{"psi": {"reslt_to": ["bank"]}}])
    assert_rejected(job, capsys, "steps[0].psi.reslt_to: unknown parameter", "result_to")


def test_missing_data_file(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    (jobdir / "partner.csv").unlink()
    assert_rejected(job, capsys, "parties.partner.data: no such file", "partner.csv")


def test_missing_id_column(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    df = pd.read_csv(jobdir / "partner.csv").rename(columns={"id": "cust"})
    df.to_csv(jobdir / "partner.csv", index=False)
    assert_rejected(job, capsys, "parties.partner.id: no column 'id' in partner.csv")


def test_missing_label_column(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    pd.read_csv(jobdir / "bank.csv").drop(columns=["y"]).to_csv(jobdir / "bank.csv", index=False)
    assert_rejected(job, capsys, "parties.bank.label: no column 'y' in bank.csv")


def test_null_ids(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    df = pd.read_csv(jobdir / "bank.csv", dtype={"id": str})
    df.loc[[3, 7], "id"] = None
    df.to_csv(jobdir / "bank.csv", index=False)
    assert_rejected(job, capsys, "parties.bank.id: 2 empty id(s), first at data row 4")


def test_bad_yaml(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    job.write_text("name: x\nparties: {bank: [unclosed\n")
    assert_rejected(job, capsys, "job: job.yaml is not valid YAML at line")


def test_unknown_top_level_key(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"], stpes=["psi"])
    assert_rejected(job, capsys, "job.stpes: unknown key", "did you mean 'steps'")


def test_missing_job_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_rejected(tmp_path / "nope.yaml", capsys, "no job file at")


def test_psi_with_three_parties_is_ecdh_only(jobdir: Path) -> None:
    job = write_job(jobdir, ["psi"])
    spec = load_job(job)
    (jobdir / "third.csv").write_bytes((jobdir / "bank.csv").read_bytes())
    third = {**{p.name: {"data": p.data.name, "id": "id"} for p in spec.parties}}
    third["third"] = {"data": "third.csv", "id": "id"}
    assert len(load_job(write_job(jobdir, ["psi"], parties=third)).parties) == 3
    with pytest.raises(ConfigError, match=r"steps\[0\]\.psi\.protocol: kkrt PSI runs between two"):
        load_job(write_job(jobdir, [{"psi": {"protocol": "kkrt"}}], parties=third))


def test_parquet_data(jobdir: Path) -> None:
    job = write_job(jobdir, ["psi"])
    pd.read_csv(jobdir / "bank.csv").to_parquet(jobdir / "bank.parquet")
    parties = {
        "bank": {"data": "bank.parquet", "id": "id", "label": "y"},
        "partner": {"data": "partner.csv", "id": "id"},
    }
    spec = load_job(write_job(jobdir, ["psi"], parties=parties))
    assert spec.party("bank").data.suffix == ".parquet"
    assert job.exists()


def test_federation_party_needs_certificates(
    jobdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(jobdir, ["psi"])
    out = jobdir / "out"
    code = main(["run", str(job), "--out", str(out), "--party", "bank", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--ca/--cert/--key: a federation party needs its certificates" in err
    code = main(["run", str(job), "--out", str(out), "--address", "bank=h:1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--party: missing" in err
    assert not out.exists()


def test_unknown_local_party(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    f = jobdir / "f.pem"
    f.write_text("x")
    tls = ["--ca", str(f), "--cert", str(f), "--key", str(f)]
    out = jobdir / "o"
    code = main(["run", str(job), "--out", str(out), "--party", "bnak", *tls])
    err = capsys.readouterr().err
    assert code == 2 and "--party: 'bnak' is not in the job -- use one of bank, partner" in err
    code = main(["run", str(job), "--out", str(out), "--party", "bank", *tls])
    err = capsys.readouterr().err
    assert code == 2 and "--address: no address for bank, partner" in err


@pytest.mark.parametrize(
    ("name", "problem"), [("ca", "'ca' is reserved"), ("1bank", "bad party name")]
)
def test_bad_party_names(jobdir: Path, name: str, problem: str) -> None:
    parties = {
        name: {"data": "bank.csv", "id": "id"},
        "partner": {"data": "partner.csv", "id": "id"},
    }
    with pytest.raises(ConfigError, match=f"parties.{name}: {problem}"):
        load_job(write_job(jobdir, ["psi"], parties=parties))


def test_load_frame_reads_ids_as_text_from_csv_and_parquet(jobdir: Path) -> None:
    from veil.jobs.spec import load_frame

    jobdir.mkdir(parents=True)
    pd.DataFrame({"id": ["007", "42"], "y": [0, 1]}).to_csv(jobdir / "b.csv", index=False)
    pd.DataFrame({"id": [7, 42], "x": [0.5, 1.5]}).to_parquet(jobdir / "p.parquet")
    parties = {
        "bank": {"data": "b.csv", "id": "id", "label": "y"},
        "partner": {"data": "p.parquet", "id": "id"},
    }
    spec = load_job(write_job(jobdir, ["psi"], parties=parties))
    assert list(load_frame(spec.party("bank"))["id"]) == ["007", "42"]  # leading zeros kept
    partner = load_frame(spec.party("partner"))
    assert list(partner["id"]) == ["7", "42"] and list(partner["x"]) == [0.5, 1.5]


def test_unsupported_or_unreadable_data(jobdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(jobdir, ["psi"])
    (jobdir / "partner.xlsx").write_bytes(b"PK")
    job.write_text(job.read_text().replace("partner.csv", "partner.xlsx"))
    assert_rejected(job, capsys, "parties.partner.data: 'partner.xlsx' is neither CSV nor Parquet")
    (jobdir / "partner.parquet").write_bytes(b"not parquet")
    job.write_text(job.read_text().replace("partner.xlsx", "partner.parquet"))
    assert_rejected(job, capsys, "parties.partner.data: cannot read", "readable CSV")

"""``veil psi --interconnect``: two CLI parties (plaintext and mutual TLS), bad input,
and the CLI against SecretFlow's peer."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.protocols.ic_helpers import expected_rows, free_port, make_sets
from tests.sf_peer import read_ids, start_sf
from veil.cli import main
from veil.net.certs import throwaway_federation


def write_csv(path: Path, ids: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "id", "score"])
        for i, x in enumerate(ids):
            w.writerow([f"n{i}", x, i * 7])


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def run_two(argvs: list[list[str]]) -> list[int]:
    codes = [-1, -1]

    def work(r: int) -> None:
        codes[r] = main(argvs[r])

    ths = [threading.Thread(target=work, args=(r,), daemon=True) for r in (0, 1)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    return codes


def argv(tmp: Path, r: int, addrs: list[str], *extra: str) -> list[str]:
    return [
        "psi", "--interconnect", "--rank", str(r), "--listen", addrs[r], "--peer", addrs[1 - r],
        "--data", str(tmp / f"in{r}.csv"), "--id", "id", "--out", str(tmp / f"out{r}.csv"),
        "--timeout", "20", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("secure", [True, False])
def test_two_cli_parties(tmp_path: Path, secure: bool, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = make_sets(200, 150, 60)
    write_csv(tmp_path / "in0.csv", a)
    write_csv(tmp_path / "in1.csv", b)
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    if secure:
        pki = throwaway_federation(["bank-a", "bank-b"], tmp_path / "pki")
        extras = [
            ["--ca", str(t.ca_cert), "--cert", str(t.cert), "--key", str(t.key),
             "--name", me, "--peer-name", other]
            for t, me, other in [(pki["bank-a"], "bank-a", "bank-b"),
                                 (pki["bank-b"], "bank-b", "bank-a")]
        ]  # fmt: skip
    else:
        extras = [["--insecure"], ["--insecure"]]
    codes = run_two([argv(tmp_path, r, addrs, *extras[r]) for r in (0, 1)])
    assert codes == [0, 0]
    assert ("--insecure" in capsys.readouterr().err) is not secure
    for r, (mine, theirs) in enumerate([(a, b), (b, a)]):
        rows = read_csv(tmp_path / f"out{r}.csv")
        assert rows[0] == ["name", "id", "score"]
        want = [[f"n{i}", mine[i], str(i * 7)] for i in expected_rows(mine, theirs)]
        assert rows[1:] == want


def test_result_to_one_rank_writes_only_there(tmp_path: Path) -> None:
    a, b = make_sets(30, 30, 10)
    write_csv(tmp_path / "in0.csv", a)
    write_csv(tmp_path / "in1.csv", b)
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    more = ["--insecure", "--result-to-rank", "1"]
    assert run_two([argv(tmp_path, r, addrs, *more) for r in (0, 1)]) == [0, 0]
    assert not (tmp_path / "out0.csv").exists()
    assert len(read_csv(tmp_path / "out1.csv")) == 1 + len(expected_rows(b, a))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--id", "nope"], "--id: no column 'nope'"),
        ([], "--ca --cert --key"),
        (["--insecure", "--curve", "sm2"], "curve"),
        (["--insecure", "--rank", "3"], "rank"),
        (["--insecure", "--listen", "nowhere"], "HOST:PORT"),
    ],
)
def test_bad_input_is_named(
    tmp_path: Path, change: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "in0.csv", ["x"])
    args = argv(tmp_path, 0, ["127.0.0.1:1", "127.0.0.1:2"]) + change
    assert main(args) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.interop
@pytest.mark.parametrize("rank", [0, 1])
def test_cli_against_secretflow(tmp_path: Path, rank: int) -> None:
    a, b = make_sets(2000, 1500, 700, seed=5, tricky=False)
    write_csv(tmp_path / f"in{rank}.csv", a)
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    sf = start_sf(tmp_path, 1 - rank, addrs[1 - rank], addrs[rank], b)
    code = main(argv(tmp_path, rank, addrs, "--insecure", "--timeout", "60"))
    rc, log = sf.wait()
    assert code == 0 and rc == 0, log[-2000:]
    rows = read_csv(tmp_path / f"out{rank}.csv")[1:]
    assert [r[1] for r in rows] == [a[i] for i in expected_rows(a, b)]
    assert Counter(read_ids(sf.out)) == Counter(b[i] for i in expected_rows(b, a))

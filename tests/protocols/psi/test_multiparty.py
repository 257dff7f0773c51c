"""Multi-party ECDH-PSI: correctness for 3 and 5 parties (unicode, duplicates, empty
intersections, memory and gRPC), result routing, the recorded wire (no party can
compute a pairwise intersection), bad input, and N = 2 going to the two-party protocol."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.jobs.conftest import write_table
from tests.protocols.psi.test_ecdh import TRANSPORTS, plain_forms
from tests.wire_check import Recorder, assert_no_leak
from veil.codec import decode
from veil.crypto import ecc, ristretto
from veil.errors import ConfigError, ProtocolError
from veil.jobs import RunOptions, load_job, run_job
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, PsiResult, multiparty, run_psi
from veil.protocols.psi.batches import hash_points, match_in_order

NAMES5 = ["bank", "bureau", "telco", "insurer", "retailer"]


def run_n(
    sets: dict[str, Sequence[str]],
    result_to: Sequence[str] | None = None,
    transport: str = "memory",
    tap: Any = None,
    **kw: Any,
) -> dict[str, PsiResult]:
    params = PsiParams(result_to=tuple(result_to or sets), **kw)
    return run_parties(
        {p: (lambda s, p=p: run_psi(s, sets[p], params)) for p in sets},
        transport=transport,
        tap=tap,
        timeout=60,
    )


def check(
    out: dict[str, PsiResult], sets: dict[str, Sequence[str]], result_to: Sequence[str]
) -> None:
    """Receivers get exactly the first occurrences of the ids all parties hold, all in the
    same order; the others get nothing; everyone knows the set sizes only."""
    common = set.intersection(*(set(v) for v in sets.values()))
    orders = []
    for p, ids in sets.items():
        res = out[p]
        assert res.n_input == len(ids) and res.n_distinct == len(set(ids))
        assert res.peer_n_distinct == min(len(set(v)) for q, v in sets.items() if q != p)
        if p not in result_to:
            assert res.indices is None and res.size is None
            continue
        assert res.indices is not None and res.size == len(common)
        got = [ids[i] for i in res.indices]
        assert set(got) == common and len(got) == len(common)
        first: dict[str, int] = {}
        for i, x in enumerate(ids):
            first.setdefault(x, i)
        assert all(first[ids[i]] == i for i in res.indices)
        orders.append(got)
    assert all(o == orders[0] for o in orders), "receivers must share one order"


def make_sets(
    names: Sequence[str], common: int, own: int, pair: int, seed: int
) -> dict[str, list[str]]:
    """``common`` ids everybody holds, ``own`` per party, ``pair`` shared by each pair of
    neighbours only (pairwise intersections larger than the common one), shuffled, with
    duplicates and non-ASCII ids."""
    rng = random.Random(seed)
    shared = [f"客户-{rng.getrandbits(48):x}-Ω" for _ in range(common)]
    sets: dict[str, list[str]] = {p: list(shared) for p in names}
    for i, p in enumerate(names):
        sets[p] += [f"{p}-only-{j}-é" for j in range(own)]
        q = names[(i + 1) % len(names)]
        both = [f"{p}+{q}-{j}" for j in range(pair)]
        sets[p] += both
        sets[q] += both
    for ids in sets.values():
        ids.extend(ids[: len(ids) // 10])  # duplicates
        rng.shuffle(ids)
    return sets


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("n", [3, 5])
def test_n_parties_unicode_duplicates(n: int, transport: str) -> None:
    sets = make_sets(NAMES5[:n], common=40, own=25, pair=15, seed=n)
    out = run_n(sets, transport=transport, batch_size=16)
    check(out, sets, list(sets))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("n", [3, 5])
def test_empty_intersection_and_empty_sets(n: int, transport: str) -> None:
    sets = make_sets(NAMES5[:n], common=0, own=10, pair=8, seed=10 + n)
    check(run_n(sets, transport=transport, batch_size=7), sets, list(sets))
    sets[NAMES5[1]] = []
    check(run_n(sets, transport=transport), sets, list(sets))


@pytest.mark.parametrize(
    "result_to",
    [("bank",), ("telco",), ("bureau", "telco"), ("bank", "telco")],
)
def test_any_subset_receives(result_to: tuple[str, ...]) -> None:
    sets = make_sets(NAMES5[:3], common=30, own=12, pair=9, seed=3)
    check(run_n(sets, result_to=result_to), sets, result_to)


def test_unequal_batches_and_threads() -> None:
    sets = make_sets(NAMES5[:4], common=50, own=40, pair=11, seed=4)
    names = list(sets)
    params = {
        p: PsiParams(tuple(names), batch_size=5 + 17 * i, threads=1 + i % 2)
        for i, p in enumerate(names)
    }
    out = run_parties({p: (lambda s, p=p: run_psi(s, sets[p], params[p])) for p in names})
    check(out, sets, names)


def test_two_parties_run_the_two_party_protocol() -> None:
    sets = make_sets(NAMES5[:2], common=20, own=5, pair=0, seed=5)
    rec = Recorder()
    out = run_n(sets, tap=rec)
    check(out, sets, list(sets))
    tags = {f.key.split(":")[0].split("/")[-1] for f in rec.frames}
    assert tags == {"hello", "enc", "dual"}  # ecdh's vocabulary, not multiparty's
    assert decode(rec.frames[0].payload)["protocol"] == "ecdh"


def test_bad_input() -> None:
    sets = make_sets(NAMES5[:3], common=5, own=2, pair=1, seed=6)
    with pytest.raises(ConfigError, match="kkrt runs between two parties"):
        run_n(sets, protocol=Protocol.KKRT)
    with pytest.raises(ConfigError, match="ristretto255"):
        run_n(sets, suite=ecc.HASH_AS_X)
    with pytest.raises(ConfigError, match="'carol' is not a party"):
        run_n(sets, result_to=("bank", "carol"))
    with pytest.raises(ConfigError, match="result_to"):
        run_parties(
            {p: (lambda s, p=p: run_psi(s, sets[p], PsiParams((p,)))) for p in sets},
            timeout=20,
        )


def test_batch_helpers() -> None:
    """hash_points matches the suite's hash over thread chunks; match_in_order finds each
    target in the target order and refuses one that matches no own value."""
    items = [f"id-{i}-é".encode() for i in range(70)]
    with ecc.ScalarMultiplier(3) as mul:
        got = hash_points(mul, items, chunk=8)
    assert got.tobytes() == b"".join(ecc.hash_to_points(items))
    own = got.tobytes()
    pick = [41, 3, 69, 0]
    assert match_in_order(own, b"".join(own[32 * i : 32 * i + 32] for i in pick)).tolist() == pick
    assert match_in_order(own, b"").tolist() == []
    with pytest.raises(ProtocolError, match=r"result\.values"):
        match_in_order(own, ristretto.base_mult(ristretto.random_scalars(1)))
    with pytest.raises(ProtocolError, match=r"result\.values"):
        match_in_order(b"", own[:32])


def _refused(seed: int, liar: Callable[[Session], None], match: str) -> None:
    """Three parties, the last running ``liar`` in place of the protocol: the honest
    ones stop with a ProtocolError matching ``match``."""
    sets = make_sets(NAMES5[:3], common=5, own=2, pair=1, seed=seed)
    params = PsiParams(tuple(sets))
    targets: dict[str, Any] = {p: (lambda s, p=p: run_psi(s, sets[p], params)) for p in sets}
    targets[NAMES5[2]] = liar
    with pytest.raises(ProtocolError, match=match):
        run_parties(targets, timeout=20)


def test_malformed_pool_is_a_protocol_error() -> None:
    first = NAMES5[0]

    def liar(s: Session) -> None:
        hello = s.recv(first, multiparty.Tag.HELLO)
        for peer in s.peers():
            s.send(peer, multiparty.Tag.HELLO, hello | {"n": 3})
        key = s.recv(NAMES5[1], multiparty.Tag.KEY)  # the last link of the key chain
        for peer in s.peers():
            s.send(peer, multiparty.Tag.KEY, key)
        s.send(first, multiparty.Tag.POOL, b"\x01" * 65)
        s.recv(first, "never", timeout=5)

    _refused(7, liar, r"^pool: 65 bytes, expected 192")


def test_identity_joint_key_is_refused() -> None:
    """A joint key Y that is the identity would encrypt every id as (r G, H(x)), in
    clear: the parties refuse it (and any encoding that is not a point) as the last
    party's KEY message."""
    first = NAMES5[0]

    def liar(s: Session) -> None:
        hello = s.recv(first, multiparty.Tag.HELLO)
        for peer in s.peers():
            s.send(peer, multiparty.Tag.HELLO, hello)
        s.recv(NAMES5[1], multiparty.Tag.KEY)
        for peer in s.peers():
            s.send(peer, multiparty.Tag.KEY, bytes(32))  # the identity's encoding
        s.recv(first, "never", timeout=5)

    _refused(11, liar, "not a valid ristretto255 element")


# -- the recorded wire -------------------------------------------------------------------


def _tag(key: str) -> str:
    return key.split(":", maxsplit=1)[0].rsplit("/", maxsplit=1)[-1]


def _chunks(value: Any) -> list[bytes]:
    """Every 32-byte piece of every bytes value in a decoded frame."""
    if isinstance(value, dict):
        return [c for v in value.values() for c in _chunks(v)]
    if isinstance(value, bytes) and len(value) % 32 == 0:
        return [value[i : i + 32] for i in range(0, len(value), 32)]
    return []


def test_no_party_can_compute_a_pairwise_intersection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every frame of a three-party run whose pairwise intersections are larger
    than the common one, with every party's secrets, and check what each party can
    compute from what it receives.

    An id x held by two parties becomes comparable when some party holds two values of
    the form S*H(x) for the same exponent set S taken from the parties' blinding keys
    (w_j, and U's u), one traceable to each holder. So we list every such
    "deterministic form" S*H(x), for every subset S of the keys and every id, and then:

    1. No frame carries a deterministic form of any id outside the common set (the
       ElGamal ciphertexts and the ring values are masked by randomness a receiver does
       not hold: r, and the ring owner's sigma). Common ids appear only in COMMON and
       RESULT, which carry nothing else.
    2. A ciphertext reaching P_j is (A, Q + y_j...y_{N-1} A) (the key is the product of
       the shares). With its own share y_P, P can compute B - y_P A; for every party but
       the last mixer D this matches no deterministic form (later parties' shares remain
       on it), and the KEY values (multiples of G) match none either (check 1).
    3. D can decrypt the pool: it gets W*H(x) for every pooled id (W: the product of
       the mixers' w_j; D adds no blinding, it would only hide the values from D
       itself). These are deterministic forms of everybody's ids, so D must hold no
       id-labelled value under W (nor under W*w_D): the only labelled value D receives
       is RESULT, under W*u, and u belongs to U != D; its ring output is masked by its
       own sigma_D (under W*u too once unmasked). Other receivers' rings skip D. So D
       can count multiplicities (the histogram the module docstring lists) but cannot
       tie a pooled value to an id or to the party that holds it.
    4. No raw id, digest or hashed point crosses the wire (wire_check and plain forms).
    """
    names = NAMES5[:3]
    sets = make_sets(names, common=6, own=4, pair=5, seed=8)
    keys: dict[str, multiparty.Keys] = {}
    real_new_keys = multiparty.new_keys

    def recording() -> multiparty.Keys:
        k = real_new_keys()
        keys[threading.current_thread().name.removeprefix("party-")] = k
        return k

    monkeypatch.setattr(multiparty, "new_keys", recording)
    rec = Recorder()
    out = run_n(sets, tap=rec, batch_size=8)
    check(out, sets, names)
    d, u = names[-1], names[0]  # all receive: D is the last party, U the first

    universe = sorted({x for v in sets.values() for x in v})
    common = set.intersection(*(set(v) for v in sets.values()))
    hashed = dict(zip(universe, ecc.hash_to_points([x.encode() for x in universe]), strict=True))
    exps = [(f"w_{p}", keys[p].w) for p in names] + [("u", keys[u].u)]
    forms: dict[bytes, tuple[str, frozenset[str]]] = {}
    for r in range(len(exps) + 1):
        for subset in itertools.combinations(exps, r):
            e = (1).to_bytes(32, "little")
            for _, k in subset:
                e = ristretto.scalar_mul(e, k)
            label = frozenset(name for name, _ in subset)
            for x, h in hashed.items():
                forms[ristretto.scalar_mult(e, h)] = (x, label)

    labelled_at_d: set[frozenset[str]] = set()
    for f in rec.frames:
        tag, to = _tag(f.key), names[f.dst]
        value = decode(f.payload)
        for c in _chunks(value):
            if c in forms:
                x, label = forms[c]
                assert x in common and tag in {"common", "result"}, (f.key, x, sorted(label))
                if to == d:
                    labelled_at_d.add(label)
        if tag in {"pool", "mix"}:
            cts = np.frombuffer(value, dtype=np.uint8).reshape(-1, 64)
            a, b = cts[:, :32].tobytes(), cts[:, 32:].tobytes()
            stripped = ristretto.sub(b, ristretto.scalar_mult(keys[to].y, a))
            pieces = [stripped[i : i + 32] for i in range(0, len(stripped), 32)]
            if to != d:
                assert not any(p in forms for p in pieces), f.key
            else:
                pool = [forms[p] for p in pieces]  # each one a deterministic form
                assert {lbl for _, lbl in pool} == {frozenset(f"w_{p}" for p in names[:-1])}
    mixers = frozenset(f"w_{p}" for p in names[:-1])
    assert labelled_at_d == {mixers | {"u"}}, labelled_at_d  # RESULT only
    assert not labelled_at_d & {mixers, mixers | {f"w_{d}"}}
    rings_at_d = {f.key.split(":")[0] for f in rec.frames if f.dst == len(names) - 1}
    rings_at_d = {k for k in rings_at_d if k.endswith("/ring")}
    assert rings_at_d == {f"root.ring{len(names) - 1}/ring"}, rings_at_d  # its own only

    assert_no_leak(rec.frames, {"ids": universe, "hashed ids": list(hashed.values())})
    wire = b"\x00".join(f.payload for f in rec.frames)
    for x in universe:
        for h in plain_forms(x):
            for i in range(0, len(h) - 7, 4):
                assert h[i : i + 8] not in wire, f"a piece of a plain hash of {x!r} crossed"


@pytest.mark.slow
def test_2e4_ids_three_parties_over_grpc() -> None:
    rng = random.Random(9)
    common = [f"c{rng.getrandbits(64):x}" for _ in range(8_000)]
    sets = {p: common + [f"{p}{i}" for i in range(12_000)] for p in NAMES5[:3]}
    check(run_n(sets, transport="grpc"), sets, list(sets))


# -- the job step with three parties ------------------------------------------------------


def _three_party_job(folder: Path, steps: list[Any], rows: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (p, ids) in enumerate(rows.items()):
        write_table(folder / f"{p}.csv", ids, label=p == "bank", seed=i)
    parties = {p: {"data": f"{p}.csv", "id": "id"} for p in rows}
    parties["bank"]["label"] = "y"
    job = {"name": "three", "parties": parties, "steps": steps}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def test_job_step_with_three_parties(tmp_path: Path) -> None:
    common = [f"cust-{i:03d}" for i in range(60)]
    rows = {
        "bank": [*common, "b1", "bt", *common[:3]],
        "bureau": ["u1", *reversed(common), "bt"],
        "telco": [*common[::2], "t1", *common[1::2], "b1"],
    }
    job = _three_party_job(tmp_path, [{"psi": {}}], rows)
    res = run_job(load_job(job), tmp_path / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    got = {p: pd.read_csv(tmp_path / "out" / p / "psi.csv", dtype={"id": str}) for p in rows}
    assert sorted(got["bank"]["id"]) == common  # "bt", "b1": held by two parties only
    assert list(got["bank"]["id"]) == list(got["bureau"]["id"]) == list(got["telco"]["id"])
    assert res.report["steps"][0]["outputs"]["intersection_size"] == 60


@pytest.mark.parametrize(
    ("params", "field"),
    [({"protocol": "kkrt"}, "protocol"), ({"interconnect": True}, "interconnect")],
)
def test_job_step_two_party_protocols_refuse_three(
    tmp_path: Path, params: dict[str, Any], field: str
) -> None:
    job = _three_party_job(tmp_path, [{"psi": params}], {p: ["a"] for p in NAMES5[:3]})
    with pytest.raises(ConfigError, match=rf"steps\[0\]\.psi\.{field}: .* between two parties"):
        load_job(job)


def test_job_step_party_without_rows_is_refused_before_psi(tmp_path: Path) -> None:
    """A data file with no rows is refused by the parties' data check, before any
    party connects, whether or not that party receives the result."""
    rows = {"bank": ["a", "b"], "bureau": ["a"], "telco": []}
    for params in ({}, {"result_to": ["bank"]}):
        job = _three_party_job(tmp_path, [{"psi": params}], rows)
        with pytest.raises(ConfigError, match=r"parties\.telco\.data: 'telco\.csv' has no rows"):
            run_job(load_job(job), tmp_path / "out", RunOptions(timeout=60))
        assert not (tmp_path / "out").exists()


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _auc(report: dict[str, Any]) -> float:
    ev = next(s for s in report["steps"] if s["name"] == "evaluate")
    return float(ev["outputs"]["auc_test"])


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two whole jobs with 2048-bit OU keys
def test_three_party_example_runs_and_beats_two_parties(tmp_path: Path) -> None:
    """``examples/credit_risk_3party.yaml`` end to end, and the same job without the
    telco: the joint model of all three is at least as good (AUC on each run's test
    split) as the bank with the bureau alone."""
    three = load_job(EXAMPLES / "credit_risk_3party.yaml")
    assert [p.name for p in three.parties] == ["bank", "bureau", "telco"]
    res3 = run_job(three, tmp_path / "three", RunOptions(timeout=600))
    assert res3.ok, res3.error
    assert res3.report["steps"][0]["outputs"]["intersection_size"] == 25_500

    spec = yaml.safe_load((EXAMPLES / "credit_risk_3party.yaml").read_text())
    del spec["parties"]["telco"]
    spec["steps"][0]["psi"]["result_to"] = ["bank", "bureau"]
    for p in spec["parties"].values():
        p["data"] = str(EXAMPLES / p["data"])
    two_file = tmp_path / "two.yaml"
    two_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    res2 = run_job(load_job(two_file), tmp_path / "two", RunOptions(timeout=600))
    assert res2.ok, res2.error
    assert _auc(res3.report) >= _auc(res2.report), (_auc(res3.report), _auc(res2.report))

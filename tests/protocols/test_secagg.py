"""Secure aggregation: the sum is right, dropouts are survived or abort, the wire is clean."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from scipy import stats

from tests.wire_check import Recorder, assert_no_leak
from veil import codec
from veil.errors import ConfigError, ProtocolError
from veil.net import Session, run_parties
from veil.protocols.secagg import (
    AGGREGATOR,
    RoundAborted,
    SecAggParams,
    Tag,
    aggregate,
    contribute,
    finish,
    make_plan,
    run_aggregator,
    run_client,
    setup_aggregator,
    setup_client,
)
from veil.protocols.secagg import messages as m
from veil.protocols.secagg.masks import DEFAULT_FRAC_BITS

AGG = "hub"
DEFAULT = SecAggParams()
PRECISION = 2.0 ** -(DEFAULT_FRAC_BITS + 1)  # per coordinate and contribution


class _Dropped(Exception):
    """Raised inside a bank that leaves the round (caught by its target)."""


class DroppingSession:
    """A bank's session that goes silent when it is about to send ``stop`` (a bank
    that crashed or lost its link at that point of the round)."""

    def __init__(self, inner: Session, stop: Tag) -> None:
        self._inner, self._stop = inner, stop

    def send(self, to: str, tag: str, value: Any) -> None:
        if tag == self._stop:
            raise _Dropped
        self._inner.send(to, tag, value)

    def sub(self, name: str) -> DroppingSession:
        return DroppingSession(self._inner.sub(name), self._stop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _round(
    xs: dict[str, np.ndarray],
    *,
    params: SecAggParams = DEFAULT,
    own: np.ndarray | None = None,
    drop: dict[str, Tag] | None = None,
    transport: str = "memory",
    tap: Any = None,
) -> dict[str, Any]:
    dim = len(next(iter(xs.values())))
    drop = drop or {}

    def bank(name: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            sess: Any = DroppingSession(s, drop[name]) if name in drop else s
            try:
                return run_client(sess, xs[name], params)
            except _Dropped:
                return "dropped"
            except RoundAborted as e:
                return e

        return run

    targets: dict[str, Callable[[Session], Any]] = {n: bank(n) for n in xs}
    targets[AGG] = lambda s: run_aggregator(s, dim, params, own=own)
    return run_parties(
        targets,
        parties=[AGG, *xs],
        roles={AGGREGATOR: AGG},
        transport=transport,
        timeout=30,
        tap=tap,
    )


def _banks(n: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"bank{i}": rng.normal(scale=3.0, size=dim) for i in range(n)}


@pytest.mark.parametrize("transport", ["memory", "grpc"])
def test_sum_equals_the_plain_sum_to_the_stated_precision(transport: str) -> None:
    xs = _banks(3, 500)
    out = _round(xs, transport=transport)
    agg = out[AGG]
    plain = sum(xs.values())
    assert np.abs(agg.total - plain).max() <= 3 * PRECISION
    assert agg.survivors == tuple(sorted(xs)) and agg.dropped == ()
    assert all(out[b].survivors == 3 for b in xs)


def test_aggregator_that_is_a_bank_adds_its_own_vector() -> None:
    xs = _banks(3, 50, seed=1)
    own = np.linspace(-1, 1, 50)
    agg = _round(xs, own=own)[AGG]
    assert np.abs(agg.total - (sum(xs.values()) + own)).max() <= 4 * PRECISION


def test_secagg_plus_sparse_graph_still_sums_everything() -> None:
    xs = _banks(14, 64, seed=2)
    plan = make_plan(list(xs), SecAggParams(neighbours=4))
    assert all(len(nb) == 4 for nb in plan.graph.values())
    assert all(c in plan.graph[v] for c in xs for v in plan.graph[c])  # undirected
    assert plan.threshold == 3 and plan.max_drops == 2
    out = _round(xs, params=SecAggParams(neighbours=4))
    assert np.abs(out[AGG].total - sum(xs.values())).max() <= 14 * PRECISION
    assert {out[b].neighbours for b in xs} == {4}


@pytest.mark.parametrize(
    "dropped",
    [["bank1"], ["bank1", "bank3"]],
    ids=["one", "two"],
)
def test_banks_dropping_after_the_share_phase_leave_the_right_sum(dropped: list[str]) -> None:
    xs = _banks(5, 200, seed=3)
    params = SecAggParams(phase_timeout=1.5)
    out = _round(xs, params=params, drop=dict.fromkeys(dropped, Tag.MASKED))
    agg = out[AGG]
    survivors = [b for b in xs if b not in dropped]
    assert agg.survivors == tuple(survivors) and agg.dropped == tuple(dropped)
    want = sum(xs[b] for b in survivors)
    assert np.abs(agg.total - want).max() <= 5 * PRECISION
    for b in dropped:
        assert out[b] == "dropped"
    for b in survivors:
        assert out[b].survivors == len(survivors)


def test_a_bank_dropping_while_unmasking_is_still_unmasked() -> None:
    xs = _banks(5, 100, seed=4)
    out = _round(xs, params=SecAggParams(phase_timeout=1.5), drop={"bank2": Tag.REVEAL})
    agg = out[AGG]
    # bank2's masked update arrived, so it is in the sum; its seed comes from shares.
    assert agg.survivors == tuple(xs) and agg.dropped == ("bank2",)
    assert np.abs(agg.total - sum(xs.values())).max() <= 5 * PRECISION


def test_more_drops_than_the_threshold_abort_the_round_everywhere() -> None:
    xs = _banks(5, 100, seed=5)
    drop = dict.fromkeys(["bank0", "bank2", "bank4"], Tag.MASKED)
    with pytest.raises(RoundAborted, match=r"3 of 5 banks dropped .* at most 2 may"):
        _round(xs, params=SecAggParams(phase_timeout=1.0), drop=drop)


def test_survivors_are_told_why_the_round_aborted() -> None:
    xs = _banks(5, 20, seed=6)
    params = SecAggParams(phase_timeout=1.0, dropout_threshold=1)
    drop = dict.fromkeys(["bank0", "bank2"], Tag.MASKED)
    results: dict[str, Any] = {}

    def keep(name: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            sess: Any = DroppingSession(s, drop[name]) if name in drop else s
            try:
                results[name] = run_client(sess, xs[name], params)
            except (_Dropped, RoundAborted) as e:
                results[name] = e

        return run

    def agg(s: Session) -> None:
        try:
            run_aggregator(s, 20, params)
        except RoundAborted as e:
            results[AGG] = e

    run_parties({AGG: agg, **{n: keep(n) for n in xs}}, parties=[AGG, *xs], roles={AGGREGATOR: AGG})
    assert isinstance(results[AGG], RoundAborted)
    for b in ("bank1", "bank3", "bank4"):
        assert isinstance(results[b], RoundAborted)
        assert "dropout_threshold" in str(results[b]) and "nothing was aggregated" in str(
            results[b]
        )


def test_masked_update_looks_uniform_to_the_aggregator() -> None:
    # A highly structured update (all equal) must still be indistinguishable from
    # uniform ring elements once masked.
    dim = 4000
    xs = {f"bank{i}": np.full(dim, 1.25) for i in range(3)}
    rec = Recorder()
    _round(xs, tap=rec)
    seen = [f.payload for f in rec.frames if f"/{Tag.MASKED}:" in f.key]
    assert len(seen) == 3
    y = m.Masked.unpack(codec.decode(seen[0]), dim).y
    u = (y >> np.uint64(11)).astype(np.float64) / 2.0**53  # top 53 bits as [0, 1)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    counts = np.bincount(y.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3
    # The unmasked encoding of the same update is, of course, far from uniform.
    plain = np.full(dim, int(1.25 * 2**DEFAULT_FRAC_BITS), dtype=np.uint64)
    assert stats.chisquare(np.bincount(plain.view(np.uint8), minlength=256)).pvalue < 1e-9


@pytest.mark.parametrize("transport", ["memory", "grpc"])
def test_no_update_crosses_the_wire(transport: str) -> None:
    xs = _banks(4, 300, seed=7)
    rec = Recorder()
    _round(xs, tap=rec, transport=transport)
    secrets_ = {f"update {b}": x for b, x in xs.items()}
    secrets_["update sum"] = sum(xs.values())
    secrets_ |= {f"quantised {b}": np.rint(x * 2**DEFAULT_FRAC_BITS) for b, x in xs.items()}
    assert_no_leak(rec.frames, secrets_)


def test_plan_rejects_unsafe_or_impossible_options() -> None:
    with pytest.raises(ConfigError, match="at least two distinct banks"):
        make_plan(["a"], SecAggParams())
    with pytest.raises(ConfigError, match=r"dropout_threshold.*use 0..2"):
        make_plan([f"b{i}" for i in range(5)], SecAggParams(dropout_threshold=3))
    with pytest.raises(ConfigError, match="neighbours"):
        make_plan([f"b{i}" for i in range(9)], SecAggParams(neighbours=3))
    plan = make_plan([f"b{i}" for i in range(100)], SecAggParams())
    assert {len(v) for v in plan.graph.values()} == {18}  # 2*ceil(log2 100) + 4


def test_banks_with_different_precision_stop_with_a_clear_error() -> None:
    xs = _banks(3, 10)

    def bank(name: str) -> Callable[[Session], Any]:
        return lambda s: run_client(s, xs[name], SecAggParams(frac_bits=16))

    with pytest.raises(ConfigError, match="fractional bits"):
        run_parties(
            {AGG: lambda s: run_aggregator(s, 10), **{n: bank(n) for n in xs}},
            parties=[AGG, *xs],
            roles={AGGREGATOR: AGG},
            timeout=10,
        )


@pytest.mark.parametrize(
    ("unpack", "value", "where"),
    [
        (m.Keys.unpack, {"enc": b"x" * 32}, "keys.masks: missing"),
        (m.Keys.unpack, {"enc": b"x" * 31, "masks": [b"y" * 32]}, "keys.enc"),
        (
            lambda v: m.Keys.unpack(v, Tag.KEYS, 2),
            {"enc": b"x" * 32, "masks": [b"y" * 32]},
            "keys.masks",
        ),
        (m.Keys.unpack, [1, 2], "keys: expected a mapping"),
        (m.Unmask.unpack, {"dropped": ["a"], "survivors": ["a"], "abort": ""}, "unmask.dropped"),
        (m.Unmask.unpack, {"dropped": "a", "survivors": [], "abort": ""}, "unmask.dropped"),
        (m.Reveal.unpack, {"mask_keys": {"a": b""}, "seeds": {"a": b""}}, "reveal.seeds"),
        (m.Reveal.unpack, {"mask_keys": {"a": 3}, "seeds": {}}, r"reveal.mask_keys\[a\]"),
        (m.Result.unpack, {"survivors": True, "abort": ""}, "result.survivors"),
        (lambda v: m.Masked.unpack(v, 4), {"y": np.zeros(4, np.int64)}, "masked.y"),
        (lambda v: m.Masked.unpack(v, 4), {"y": np.zeros(3, np.uint64)}, "masked.y"),
        (lambda v: m.Shares.unpack(v, Tag.SHARES), {"boxes": {}}, "shares.abort: missing"),
    ],
)
def test_malformed_messages_name_the_tag_and_field(
    unpack: Callable[[Any], Any], value: Any, where: str
) -> None:
    with pytest.raises(ProtocolError, match=where):
        unpack(value)


def test_setup_with_no_majority_threshold_is_refused_by_the_bank() -> None:
    setup = m.Setup(1, {"b": 2, "c": 3, "d": 4}, 2, 1, DEFAULT_FRAC_BITS, 4).pack()
    xs: Sequence[float] = [0.0] * 5

    def fake_aggregator(s: Session) -> None:
        s.send("bank", Tag.SETUP, setup)

    with pytest.raises(ProtocolError, match=r"setup\.threshold: 2 of 4 is no majority"):
        run_parties(
            {AGG: fake_aggregator, "bank": lambda s: run_client(s, xs)},
            parties=[AGG, "bank"],
            roles={AGGREGATOR: AGG},
            timeout=10,
        )


def test_one_setup_serves_many_sums_with_fresh_masks_and_lasting_dropouts() -> None:
    """Keys for four sums made at once; bank1 drops in sum 1 (before its masked vector),
    bank3 in sum 2 after it (before revealing): every sum is right, a dropped bank takes
    no further part, and the same vector is masked differently in every sum."""
    xs = _banks(5, 60, seed=8)
    params = SecAggParams(phase_timeout=1.0)
    drop_at = {"bank1": (1, Tag.MASKED), "bank3": (2, Tag.REVEAL)}
    seen: dict[str, list[np.ndarray]] = {b: [] for b in xs}

    def bank(name: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            keys = setup_client(s, 4, params)
            for j in range(4):
                sess: Any = s
                if name in drop_at and drop_at[name][0] == j:
                    sess = DroppingSession(s, drop_at[name][1])
                try:
                    contribute(sess, keys, xs[name] * (j + 1))
                except _Dropped:
                    return "dropped"
            return "done"

        return run

    def agg(s: Session) -> list[Any]:
        st = setup_aggregator(s, 4, params)
        sums = [aggregate(s, st, 60) for _ in range(4)]
        finish(st)
        return sums

    def tap(src: int, dst: int, key: str, payload: bytes) -> None:
        if f"/{Tag.MASKED}:" in key and names[src] == "bank0":
            seen["bank0"].append(m.Masked.unpack(codec.decode(payload), 60).y)

    names = [AGG, *xs]
    out = run_parties(
        {AGG: agg, **{b: bank(b) for b in xs}}, parties=names, roles={AGGREGATOR: AGG}, tap=tap
    )
    res = out[AGG]
    in_sum = [list(xs), ["bank0", "bank2", "bank3", "bank4"], ["bank0", "bank2", "bank3", "bank4"],
              ["bank0", "bank2", "bank4"]]  # fmt: skip
    for j, r in enumerate(res):
        assert list(r.survivors) == in_sum[j]
        want = sum(xs[b] for b in in_sum[j]) * (j + 1)
        assert np.abs(r.total - want).max() <= 5 * (j + 1) * PRECISION
    assert res[-1].dropped == ("bank1", "bank3")
    assert out["bank1"] == out["bank3"] == "dropped" and out["bank0"] == "done"
    # bank0's masked vectors: 4 sums, pairwise different (x scaled, masks fresh).
    ys = seen["bank0"]
    assert len(ys) == 4
    assert len({y.tobytes() for y in ys}) == 4
    assert not np.array_equal(ys[1] - ys[0], ys[2] - ys[1])  # masks do not repeat


def test_more_contributions_than_planned_sums_are_refused() -> None:
    xs = _banks(3, 5)

    def bank(name: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            keys = setup_client(s, 1)
            contribute(s, keys, xs[name])
            contribute(s, keys, xs[name])

        return run

    def agg(s: Session) -> Any:
        st = setup_aggregator(s, 1)
        return aggregate(s, st, 5)

    with pytest.raises(ConfigError, match="made for 1 sums"):
        run_parties(
            {AGG: agg, **{b: bank(b) for b in xs}}, parties=[AGG, *xs], roles={AGGREGATOR: AGG}
        )


def test_masks_made_in_advance_are_used_only_when_they_fit() -> None:
    """Each sum's masks are made while the previous one is unmasked, for the size the
    bank announces; a wrong guess, or none, is made again on the spot. Without RESULT
    (``confirm=False``) the bank learns nothing more, and the sums are right."""
    xs = _banks(3, 6, seed=9)
    dims = [6, 6, 4, 4]
    hints = [6, 5, None, None]  # right, wrong (sum 2 has 4 values), none (4 = dim)
    ready: dict[str, list[Any]] = {b: [] for b in xs}

    def bank(name: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            keys = setup_client(s, 4)
            got = []
            for j, d in enumerate(dims):
                res = contribute(s, keys, xs[name][:d] * (j + 1), next_dim=hints[j], confirm=False)
                got.append(res.survivors)
                ready[name].append(None if keys.ready is None else keys.ready[:2])
                assert keys.sending is not None
                keys.sending.wait()
                keys.sending = None
            return got

        return run

    def agg(s: Session) -> list[Any]:
        st = setup_aggregator(s, 4)
        sums = [aggregate(s, st, d, confirm=False) for d in dims]
        assert st.pending is None and st.waiting == tuple(xs)
        return sums

    out = run_parties(
        {AGG: agg, **{b: bank(b) for b in xs}}, parties=[AGG, *xs], roles={AGGREGATOR: AGG}
    )
    for j, (d, r) in enumerate(zip(dims, out[AGG], strict=True)):
        want = sum(x[:d] for x in xs.values()) * (j + 1)
        assert np.abs(r.total - want).max() <= 3 * (j + 1) * PRECISION
    for b in xs:
        assert out[b] == [None] * 4
        assert ready[b] == [(1, 6), (2, 5), (3, 4), None]  # the last sum has no next

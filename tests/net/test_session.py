"""Session semantics, run over every transport (in-memory and mutual-TLS gRPC)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from veil.errors import ConfigError, PeerAborted, PeerTimeout
from veil.net import Session, run_parties
from veil.net.local import local_transports
from veil.net.memory import MemoryHub


def test_send_recv_roundtrip_and_tag_counters(transport: str) -> None:
    def alice(s: Session) -> list[int]:
        for i in range(3):
            s.send("bob", "batch", i)
        return [s.recv("bob", "reply") for _ in range(3)]

    def bob(s: Session) -> None:
        got = [s.recv("alice", "batch") for _ in range(3)]
        for g in reversed(got):
            s.send("alice", "reply", g * 10)

    out = run_parties({"alice": alice, "bob": bob}, transport=transport)
    assert out["alice"] == [20, 10, 0]


def test_out_of_order_tags_and_scopes(transport: str) -> None:
    def alice(s: Session) -> None:
        s.sub("r2").send("bob", "x", "second")
        s.sub("r1").send("bob", "x", "first")

    def bob(s: Session) -> tuple[str, str]:
        return s.sub("r1").recv("alice", "x"), s.sub("r2").recv("alice", "x")

    out = run_parties({"alice": alice, "bob": bob}, transport=transport)
    assert out["bob"] == ("first", "second")


def test_three_parties_all_pairs(transport: str) -> None:
    names = ["a", "b", "c"]

    def role(s: Session) -> dict[str, str]:
        for p in s.peers():
            s.send(p, "hi", f"{s.me}->{p}")
        return {p: s.recv(p, "hi") for p in s.peers()}

    out = run_parties({n: role for n in names}, transport=transport)
    assert out["b"] == {"a": "a->b", "c": "c->b"}


def test_keys_follow_interconnection_convention(transport: str) -> None:
    keys: list[str] = []
    with local_transports(transport, ["a", "b"], tap=lambda s, d, k, p: keys.append(k)) as ts:
        a = Session(ts[0], ["a", "b"], "a")
        b = Session(ts[1], ["a", "b"], "b")
        a.send("b", "enc", np.arange(3))
        a.sub("psi").send("b", "enc", 1)
        assert keys == ["root/enc:P2P-1:0->1", "root.psi/enc:P2P-1:0->1"]
        assert b.recv("a", "enc").tolist() == [0, 1, 2]
        assert b.sub("psi").recv("a", "enc") == 1
        assert ts[0].stats.totals().messages_sent == 2
        assert ts[1].stats.totals().messages_received == 2


def test_recv_timeout_names_peer_and_tag(transport: str) -> None:
    with local_transports(transport, ["bank", "partner"]) as ts:
        s = Session(ts[0], ["bank", "partner"], "bank", timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(PeerTimeout, match=r"root/hello.*peer partner"):
            s.recv("partner", "hello")
        assert time.monotonic() - t0 < 2


def test_failing_party_aborts_the_others(transport: str) -> None:
    def alice(s: Session) -> None:
        raise RuntimeError("disk full")

    def bob(s: Session) -> None:
        s.recv("alice", "never", timeout=30)

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="disk full"):
        run_parties({"alice": alice, "bob": bob}, transport=transport)
    assert time.monotonic() - t0 < 5


def test_peer_aborted_is_raised_on_waiters(transport: str) -> None:
    with local_transports(transport, ["a", "b"]) as ts:
        s = Session(ts[1], ["a", "b"], "b")
        ts[0].abort("boom")
        with pytest.raises(PeerAborted, match="boom"):
            s.recv("a", "x", timeout=5)


def test_unknown_party_and_role_are_config_errors() -> None:
    hub = MemoryHub(2)
    with pytest.raises(ConfigError, match="carol"):
        Session(hub.transport(0), ["a", "b"], "carol")
    s = Session(hub.transport(0), ["a", "b"], "a", {"sender": "a"})
    with pytest.raises(ConfigError, match="receiver"):
        s.party_of("receiver")
    with pytest.raises(ConfigError, match="zed"):
        s.send("zed", "t", 1)


def test_abort_says_who_failed_in_which_step_over_every_transport(transport: str) -> None:
    with local_transports(transport, ["a", "b"]) as ts:
        s = Session(ts[1], ["a", "b"], "b")
        ts[0].abort("ValueError: boom", step="1 'psi'")
        t0 = time.monotonic()
        with pytest.raises(PeerAborted, match=r"^a failed in step 1 'psi': ValueError: boom$"):
            s.recv("a", "x", timeout=30)
        with pytest.raises(PeerAborted, match="a failed in step 1 'psi'"):
            s.send("a", "x", 1)
        assert time.monotonic() - t0 < 1


def test_among_runs_a_protocol_without_a_party_keeping_wire_ranks() -> None:
    """``among``: the protocol sees only the named parties (PSI without a data-less
    dealer), messages still reach each party at its job rank."""

    def member(s: Session) -> str:
        sub = s.among(["a", "c"])
        assert sub.parties == ["a", "c"] and sub.peers() == [p for p in "ac" if p != s.me]
        with pytest.raises(ConfigError, match="unknown party 'b'"):
            sub.send("b", "x", 1)
        other = sub.peers()[0]
        sub.send(other, "hello", s.me)
        return str(sub.recv(other, "hello"))

    out = run_parties({"a": member, "b": lambda s: "sat out", "c": member})
    assert out == {"a": "c", "b": "sat out", "c": "a"}

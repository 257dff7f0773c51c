"""Posting messages without waiting for acknowledgements: the reply still comes, and a
send that fails stops the wait for the reply at once with the send's own error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from veil.net import Session, run_parties
from veil.protocols.secagg import broadcast, post, recv_after


class _Broken(Exception):
    pass


class _FailingSession:
    """A session whose sends of ``tag`` fail (a link that broke)."""

    def __init__(self, inner: Session, tag: str) -> None:
        self._inner, self._tag = inner, tag

    def send(self, to: str, tag: str, value: Any) -> None:
        if tag == self._tag:
            raise _Broken(f"link to {to} broke")
        self._inner.send(to, tag, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_posted_message_gets_its_reply() -> None:
    def asker(s: Session) -> Any:
        return recv_after(post(s, {"b": {"q": 1}}, "ask"), s, "b", "answer")

    def answerer(s: Session) -> None:
        q = s.recv("a", "ask")
        s.send("a", "answer", {"a": q["q"] + 1})

    out = run_parties({"a": asker, "b": answerer}, timeout=10)
    assert out["a"] == {"a": 2}


def test_a_failed_post_ends_the_wait_for_the_reply_at_once() -> None:
    took: dict[str, float] = {}

    def asker(s: Session) -> str:
        t0 = time.monotonic()
        sess: Any = _FailingSession(s, "ask")
        try:
            recv_after(post(sess, {"b": 1}, "ask"), sess, "b", "answer")
        except _Broken as e:  # the send's own error, not a timeout
            took["a"] = time.monotonic() - t0
            return str(e)
        return "no error"

    def answerer(s: Session) -> None:
        return None

    out = run_parties({"a": asker, "b": answerer}, timeout=30)
    assert out["a"] == "link to b broke"
    assert took["a"] < 5  # not the session's 30 s


def test_broadcast_sends_to_all_and_raises_the_first_error_after_all_ended() -> None:
    def hub(s: Session) -> str:
        broadcast(s, {p: {"to": p} for p in ("b", "c", "d")}, "m")
        sess: Any = _FailingSession(s, "m2")
        with pytest.raises(_Broken):
            broadcast(sess, {p: 1 for p in ("b", "c", "d")}, "m2")
        s.send("b", "done", 1)
        return "ok"

    def spoke(name: str) -> Any:
        def run(s: Session) -> Any:
            got = s.recv("hub", "m")
            if name == "b":
                s.recv("hub", "done")
            return got

        return run

    out = run_parties(
        {"hub": hub, **{p: spoke(p) for p in ("b", "c", "d")}},
        parties=["hub", "b", "c", "d"],
        timeout=10,
    )
    assert [out[p] for p in ("b", "c", "d")] == [{"to": "b"}, {"to": "c"}, {"to": "d"}]

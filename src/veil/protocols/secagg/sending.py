r"""Sending without waiting for acknowledgements, for secure aggregation and FedAvg.

A network send returns only once the peer has acknowledged it. On a round's critical
path that acknowledgement is not needed: the peer's reply proves the message arrived,
and on a busy machine the acknowledgement can come milliseconds after the reply is
ready. So a party :func:`post`\ s its messages (a few threads kept for the process
send them) and waits for the reply with :func:`recv_after`, which still raises the
send's own error if it failed. :func:`broadcast` sends to many parties at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from veil.errors import NetworkError
from veil.net.session import Session
from veil.net.transport import Mailbox

_SENDERS = 16  # most sends in flight at once


class _Senders:
    """The sending threads: made once per process on first use and kept (starting
    threads for every broadcast costs a millisecond or more on a busy machine)."""

    _pool: ThreadPoolExecutor | None = None
    _lock = threading.Lock()

    @classmethod
    def pool(cls) -> ThreadPoolExecutor:
        with cls._lock:
            if cls._pool is None:
                cls._pool = ThreadPoolExecutor(_SENDERS, "secagg-send")
            return cls._pool


class Posted:
    """Sends under way (see :func:`post`)."""

    def __init__(self, jobs: Sequence[Future[None]]) -> None:
        self._jobs = list(jobs)

    def wait(self) -> None:
        """Wait until every send has ended; raise the first error, if any."""
        jobs, self._jobs = self._jobs, []
        error: BaseException | None = None
        for job in jobs:
            try:
                job.result()
            except BaseException as e:  # the first one is raised below
                error = error or e
        if error is not None:
            raise error


def post(session: Session, messages: Mapping[str, object], tag: str) -> Posted:
    """Start sending ``messages[party]`` to each party in the background.

    If a send fails, this party's waits on that peer stop at once (with a
    NetworkError; :func:`recv_after` and :meth:`Posted.wait` raise the send's own)."""
    pool = _Senders.pool()
    return Posted([pool.submit(_send, session, p, tag, v) for p, v in messages.items()])


def recv_after(sending: Posted, session: Session, frm: str, tag: str) -> object:
    """``session.recv(frm, tag)``: the reply to what ``sending`` sends. Raises the
    send's error if it failed."""
    try:
        value = session.recv(frm, tag)
    except BaseException:
        sending.wait()
        raise
    sending.wait()
    return value


def broadcast(session: Session, messages: Mapping[str, object], tag: str) -> None:
    """Send ``messages[party]`` to each party, concurrently (n sends one after the other
    would cost n round trips); the first error is raised once every send has ended."""
    items = list(messages.items())
    if not items:
        return
    (first, value), rest = items[0], post(session, dict(items[1:]), tag)
    try:
        session.send(first, tag, value)  # this thread sends one of them itself
    except BaseException:
        with contextlib.suppress(BaseException):
            rest.wait()
        raise
    rest.wait()


def _send(session: Session, party: str, tag: str, value: object) -> None:
    try:
        session.send(party, tag, value)
    except BaseException as e:
        box = getattr(session.transport, "mailbox", None)
        if isinstance(box, Mailbox) and party in session.parties:
            why = NetworkError(f"sending '{tag}' to {party} failed: {e}")
            box.abort(session.parties.index(party), why)
        raise

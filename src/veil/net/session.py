"""The session a role function receives: who it is, who plays which role, and
``send``/``recv`` of Python values under scoped tags.

A tag is a protocol's own name for a message (members of the protocol's ``Tag``
enum). The session turns ``(scope, tag)`` into the wire key
``{scope}/{tag}:P2P-{n}:{src}->{dst}``, where ``n`` counts messages per key
prefix and direction, so a tag may be sent many times (one per batch) and each
send is a distinct key. ``sub("round3")`` gives a session whose tags are
namespaced under the current scope, as FATE's ``ctx.sub_ctx`` does.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from veil import codec
from veil.errors import ConfigError, PeerAborted
from veil.net.transport import Mailbox, Transport, describe_abort

ProgressFn = Callable[[str, float], None]


class _Counters:
    """Per-(channel, src, dst) message counters shared by a session and its subs."""

    def __init__(self) -> None:
        self._n: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()

    def next(self, channel: str, src: int, dst: int) -> int:
        with self._lock:
            k = (channel, src, dst)
            self._n[k] = self._n.get(k, 0) + 1
            return self._n[k]


class Session:
    """One party's view of a running protocol.

    ``parties`` is the job's party list (index = wire rank); ``roles`` maps the
    protocol's role names to party names.
    """

    def __init__(
        self,
        transport: Transport,
        parties: Sequence[str],
        me: str,
        roles: Mapping[str, str] | None = None,
        *,
        scope: str = "root",
        timeout: float = 120.0,
        progress: ProgressFn | None = None,
        _counters: _Counters | None = None,
        _wire: Sequence[str] | None = None,
    ) -> None:
        self._wire = list(_wire if _wire is not None else parties)  # wire ranks: the job's
        if not set(parties) <= set(self._wire):
            raise ConfigError("parties", f"{list(parties)} are not all in {self._wire}")
        if me not in parties:
            raise ConfigError("party", f"'{me}' is not one of the job's parties {list(parties)}")
        if len(set(parties)) != len(parties):
            raise ConfigError("parties", "party names must be unique")
        self.transport = transport
        self.parties = list(parties)
        self.me = me
        self.rank = self._wire.index(me)
        self.roles = dict(roles or {})
        for role, party in self.roles.items():
            if party not in self.parties:
                raise ConfigError(f"roles.{role}", f"party '{party}' is not in the job")
        self.scope = scope
        self.timeout = timeout
        self._progress = progress
        self._counters = _counters or _Counters()

    # -- who is who -------------------------------------------------------
    def party_of(self, role: str) -> str:
        """The party that plays ``role`` in this protocol."""
        try:
            return self.roles[role]
        except KeyError:
            raise ConfigError("roles", f"no party plays role '{role}'") from None

    def peers(self) -> list[str]:
        """Every party but this one, in rank order."""
        return [p for p in self.parties if p != self.me]

    def _rank(self, party: str) -> int:
        if party not in self.parties:
            raise ConfigError("party", f"unknown party '{party}'")
        return self._wire.index(party)

    # -- messages ---------------------------------------------------------
    def key(self, tag: str, src: int, dst: int) -> str:
        """The next wire key for ``tag`` from ``src`` to ``dst`` (advances the counter)."""
        channel = f"{self.scope}/{tag}"
        n = self._counters.next(channel, src, dst)
        return f"{channel}:P2P-{n}:{src}->{dst}"

    def send(self, to: str, tag: str, value: object) -> None:
        """Encode ``value`` (see :mod:`veil.codec`) and send it to party ``to``."""
        dst = self._rank(to)
        if dst == self.rank:
            raise ConfigError("send", "a party cannot send to itself")
        box: Mailbox | None = getattr(self.transport, "mailbox", None)
        failed = None if box is None else box.aborted(dst)
        if failed is not None:  # nothing more goes to a party that failed
            raise PeerAborted(describe_abort(to, *failed))
        self.transport.send(dst, self.key(str(tag), self.rank, dst), codec.encode(value))

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Any:
        """Wait for the next ``tag`` message from party ``frm`` and decode it."""
        src = self._rank(frm)
        key = self.key(str(tag), src, self.rank)
        data = self.transport.recv(src, key, timeout or self.timeout, peer_name=frm)
        return codec.decode(data)

    def sub(self, name: str) -> Session:
        """A session whose tags live under ``{scope}.{name}``."""
        return Session(
            self.transport,
            self.parties,
            self.me,
            self.roles,
            scope=f"{self.scope}.{name}",
            timeout=self.timeout,
            progress=self._progress,
            _counters=self._counters,
            _wire=self._wire,
        )

    def with_roles(self, roles: Mapping[str, str]) -> Session:
        """The same session with another role binding (for a nested protocol)."""
        return Session(
            self.transport,
            self.parties,
            self.me,
            roles,
            scope=self.scope,
            timeout=self.timeout,
            progress=self._progress,
            _counters=self._counters,
            _wire=self._wire,
        )

    def among(self, parties: Sequence[str]) -> Session:
        """The same session for a protocol that only ``parties`` (this one included) run,
        e.g. PSI without a party that holds no data: ``parties`` and ``peers()`` list
        only them; wire ranks stay the job's."""
        keep = [p for p in self._wire if p in set(parties)]
        return Session(
            self.transport,
            keep,
            self.me,
            {r: p for r, p in self.roles.items() if p in keep},
            scope=self.scope,
            timeout=self.timeout,
            progress=self._progress,
            _counters=self._counters,
            _wire=self._wire,
        )

    # -- utilities --------------------------------------------------------
    @staticmethod
    def random_bytes(n: int) -> bytes:
        """Cryptographically secure random bytes (the OS generator via ``secrets``)."""
        return secrets.token_bytes(n)

    def progress(self, what: str, fraction: float) -> None:
        """Report progress of the current step (0..1) to whoever displays it."""
        if self._progress is not None:
            self._progress(what, min(max(fraction, 0.0), 1.0))

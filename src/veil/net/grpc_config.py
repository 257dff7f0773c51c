"""Configuration of the mutual-TLS gRPC transport: who is where, with which certificates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from veil.errors import ConfigError
from veil.net.certs import TlsFiles, check_party_name

GiB = 1 << 30

MAX_MESSAGE_BYTES = 16 * GiB
"""Default cap on one value from a peer (the announced length of a chunked push).

The largest values Veil's jobs send carry one ciphertext per row in one message: fed
binning's encrypted labels (measured with a tap over the ML tests: 7,680,146 bytes for
30,000 rows under 1024-bit test keys, i.e. 256 bytes, one ciphertext, per row) and
full-batch LR residuals (``batch_size: 0``). At 10**7 rows that is 10**7 x 512 bytes =
5.1 GB with 2048-bit Paillier (2.6 GB with OU), 10.2 GB with 4096-bit Paillier: 16 GiB
fits them with room to spare. Everything else measured is batched (SecureBoost
gradients in 4096-row messages, PSI in ``batch_size`` batches, KKRT in 2**16-value
messages, LR in ``batch_size`` rows) or per feature/bin: 2 MB at most in the tests."""

MAX_HELD_BYTES = MAX_MESSAGE_BYTES + 4 * GiB
"""Default cap on what one peer may have buffered here at once: chunks of values still
arriving plus values not yet taken by the protocol (a largest value and 4 GiB more)."""

MAX_PENDING_MESSAGES = 64
"""Default cap on one peer's chunked values half received at once. A sender pushes a
chunked value to the end before its next one on the same thread; Veil's parties send
from a handful of threads."""

MAX_HELD_MESSAGES = 1 << 17
"""Default cap on one peer's values received and not yet taken (131,072). The most a real
job queues is a PSI or SecureBoost peer running ahead by a whole stage: at 10**7 rows in
4096-row batches, about 2,500 messages per message kind; 2**17 leaves room for batches
down to about 300 rows."""


JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
JOB_METADATA = "veil-job"  # a relayed push names its job (sender -> the peer's node)
PEER_METADATA = "veil-peer"  # the node names the verified sender (node -> its job's party)


@dataclass(frozen=True)
class GrpcConfig:
    """Where the parties are and how this one talks to them.

    ``names[r]`` is rank r's party name (and certificate name); ``addresses[r]`` is
    its ``host:port``; we listen on ``listen`` or ``addresses[rank]``.

    ``job``: set when the parties' traffic travels through their nodes' peer endpoints
    (:mod:`veil.node`), multiplexed by job id: every push names the job (gRPC metadata
    ``veil-job``) and goes to the peer's node, and ``listen`` is a ``unix:`` socket in a
    private folder that only this party's node reaches. The node checks each caller's
    certificate and relays its pushes with the caller's party name (metadata
    ``veil-peer``), which the receiver then checks as it checks a certificate.

    Receive limits, per peer (a peer that breaks one is refused with RESOURCE_EXHAUSTED
    naming the limit, and our waits on it raise :class:`~veil.errors.ProtocolError`):
    ``max_message_bytes`` for one value, ``max_pending_messages`` chunked values half
    received, ``max_held_messages`` values received and not yet taken, and
    ``max_held_bytes`` for all of that together. The defaults (module constants) fit
    real jobs at 10**7 rows; see their docstrings.
    """

    rank: int
    names: Sequence[str]
    addresses: Sequence[str]
    tls: TlsFiles | None
    insecure: bool = False
    chunk_size: int = 1 << 20
    connect_timeout: float = 60.0
    listen: str | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_pending_messages: int = MAX_PENDING_MESSAGES
    max_held_messages: int = MAX_HELD_MESSAGES
    max_held_bytes: int = MAX_HELD_BYTES
    job: str | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        n = len(self.names)
        if n < 2:
            raise ConfigError("names", "a transport needs at least two parties")
        if len(self.addresses) != n:
            raise ConfigError(
                "addresses", f"{len(self.addresses)} addresses for {n} parties", "give one each"
            )
        if len(set(self.names)) != n:
            raise ConfigError("names", f"party names must be unique, got {list(self.names)}")
        for i, name in enumerate(self.names):
            check_party_name(name, f"names[{i}]")
        if not 0 <= self.rank < n:
            raise ConfigError("rank", f"{self.rank} is not in 0..{n - 1}")
        spots = [(f"addresses[{i}]", a) for i, a in enumerate(self.addresses)]
        if self.job is not None:
            if not JOB_ID.match(self.job):
                raise ConfigError("job", f"'{self.job}' is not a job id", "letters, digits, -_.")
            if not str(self.listen or "").startswith("unix:"):
                raise ConfigError(
                    "listen", "a relayed job listens on a unix: socket", "e.g. unix:/tmp/j/s"
                )
        elif str(self.listen or "").startswith("unix:"):
            raise ConfigError("listen", "a unix: socket is only for a relayed job", "set job")
        listen = [("listen", self.listen)] if self.listen and self.job is None else []
        for field, a in [*spots, *listen]:
            m = re.match(r"^\S+:(\d{1,5})$", str(a))
            if not m or not 0 < int(m.group(1)) < 65536:
                raise ConfigError(field, f"'{a}' is not host:port", "e.g. 10.0.0.5:9443")
        if self.tls is not None and self.insecure:
            raise ConfigError("insecure", "set together with tls", "drop one of the two")
        if self.tls is None and not self.insecure:
            raise ConfigError(
                "tls", "no certificates given", "pass TlsFiles (see 'veil ca'), or insecure=True"
            )
        if self.tls is not None:
            for f in ("ca_cert", "cert", "key"):
                p = Path(getattr(self.tls, f))
                if not p.is_file():
                    raise ConfigError(f"tls.{f}", f"{p} does not exist", "see 'veil ca issue'")
        if self.chunk_size < 1024:
            raise ConfigError("chunk_size", f"{self.chunk_size} is too small", "use >= 1024")
        if self.connect_timeout <= 0:
            raise ConfigError("connect_timeout", "must be positive")
        for field in (
            "max_message_bytes",
            "max_pending_messages",
            "max_held_messages",
            "max_held_bytes",
        ):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(field, f"must be an int >= 1, got {v!r}")
        if self.max_held_bytes < self.max_message_bytes:
            raise ConfigError(
                "max_held_bytes",
                f"{self.max_held_bytes} is below max_message_bytes={self.max_message_bytes}",
                "a peer must be able to have one largest value buffered",
            )

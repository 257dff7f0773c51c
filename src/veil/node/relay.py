"""Jobs' protocol traffic over the node's peer endpoint, multiplexed by job id.

A job's workers speak the interconnection wire (``ReceiverService/Push``,
:mod:`veil.net.grpc_transport`). In a node they push to the *peer's node*: the same
mutual-TLS gRPC port as the control messages, each push naming its job in the
``veil-job`` metadata (:class:`veil.net.grpc_config.GrpcConfig` ``job``). The node
relays it to its own worker of that job over a Unix socket in a private folder
(mode 0700, made by :meth:`Relay.open`), so no job opens a port of its own.

Isolation: before relaying, the node checks that the caller's verified certificate
names a party of that job (a peer cannot reach a job it is not a party of, and an
unknown job id is refused), that the push's ``sender_rank`` is the caller's own rank
in the job (nobody speaks for another party), and it hands the worker the caller's
name (``veil-peer``), which the worker checks against the rank again. Each job has
its own socket, found by its id only, so a push for job A never reaches job B.
A job that is not started here yet answers UNAVAILABLE (the sender retries); one that
ended answers "Connection refused", as a stopped worker's port did, so the sender's
transport sees the party gone within a second (abort, heartbeats and ``peer_timeout``
behave as they did with a port per job).

Each socket folder holds ``node.pid``, the node process's id. A node that was killed
(``kill -9``) cannot remove its folders; the next node started by the same user removes
every ``veil-job-*`` folder whose node process is gone (:func:`sweep_stale`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc

from veil.net.grpc_config import JOB_METADATA, PEER_METADATA
from veil.net.proto import link_pb2
from veil.node.model import Job

log = logging.getLogger(__name__)
PUSH_SERVICE = "org.interconnection.link.ReceiverService"
PUSH_METHOD = f"/{PUSH_SERVICE}/Push"
MAX_FRAME = 64 << 20  # a chunk (1 MiB by default) and its envelope, with room to spare
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_FRAME),
    ("grpc.max_send_message_length", MAX_FRAME),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def _ident(b: bytes) -> bytes:
    return b


_PREFIX = "veil-job-"
_PID_FILE = "node.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep_stale(tmp: Path | None = None) -> list[Path]:
    """Remove this user's job socket folders left by nodes that are no longer running.

    A folder is stale when its ``node.pid`` names a process that is gone, or when it has
    no ``node.pid`` and no socket (a folder made just before a crash). Returns what it
    removed. Folders of running nodes (this one included) and other users' are kept.
    """
    removed: list[Path] = []
    root = tmp if tmp is not None else Path(tempfile.gettempdir())
    uid = os.getuid()
    for folder in root.glob(f"{_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != uid:
                continue
            pid_file = folder / _PID_FILE
            if pid_file.exists():
                text = pid_file.read_text().strip()
                if text.isdigit() and _alive(int(text)):
                    continue
            elif (folder / "push.sock").exists():
                continue  # no pid file but a socket: not ours to judge
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d job socket folder(s) left by stopped nodes", len(removed))
    return removed


@dataclass
class _Route:
    names: tuple[str, ...]  # the job's parties in wire-rank order (sorted)
    folder: Path
    socket: str
    channel: grpc.Channel | None = None
    stub: Any = None
    up: bool = False  # the worker has taken a push (so UNAVAILABLE now means it stopped)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self) -> Any:
        with self.lock:
            if self.stub is None:
                self.channel = grpc.insecure_channel(self.socket, options=CHANNEL_OPTIONS)
                self.stub = self.channel.unary_unary(
                    PUSH_METHOD, request_serializer=_ident, response_deserializer=_ident
                )
            return self.stub


class Relay:
    """This node's running jobs by id: where each one's worker listens."""

    def __init__(self, name: str, job: Callable[[str], Job | None]) -> None:
        self.name = name
        self._job = job
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        sweep_stale()

    def open(self, job_id: str, parties: Sequence[str]) -> str:
        """A private ``unix:`` socket address for the job's worker; pushes go there."""
        folder = Path(tempfile.mkdtemp(prefix=_PREFIX))  # 0700: only this user
        (folder / _PID_FILE).write_text(f"{os.getpid()}\n")
        socket = f"unix:{folder / 'push.sock'}"
        with self._lock:
            self._routes[job_id] = _Route(tuple(sorted(parties)), folder, socket)
        return socket

    def close(self, job_id: str) -> None:
        """The job's worker has ended: refuse its pushes from now on."""
        with self._lock:
            route = self._routes.pop(job_id, None)
        if route is not None:
            with route.lock:
                if route.channel is not None:
                    route.channel.close()
            shutil.rmtree(route.folder, ignore_errors=True)

    def running(self) -> list[str]:
        """Ids of the jobs whose workers are reachable through this relay."""
        with self._lock:
            return sorted(self._routes)

    def push(self, sender: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Relay one push from party ``sender`` (its certificate's name) to its job."""
        job_id = ""
        for k, v in context.invocation_metadata():
            if k == JOB_METADATA:
                job_id = str(v)
        if not job_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a push must name its job")
        with self._lock:
            route = self._routes.get(job_id)
        if route is None:
            self._not_here(sender, job_id, context)
        if sender not in route.names:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"node '{self.name}': '{sender}' is not a party of job '{job_id}'",
            )
        try:
            rank = int(link_pb2.PushRequest.FromString(request).sender_rank)
        except Exception:  # protobuf's DecodeError and friends
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed push")
        if not 0 <= rank < len(route.names) or route.names[rank] != sender:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"node '{self.name}': '{sender}' pushes as rank {rank} in job '{job_id}'",
            )
        left = context.time_remaining()
        try:
            answer: bytes = route.call()(
                request,
                timeout=None if left is None else max(left, 0.1),
                metadata=((PEER_METADATA, sender),),
            )
        except grpc.RpcError as e:
            code, detail = e.code(), str(e.details())
            if code == grpc.StatusCode.UNAVAILABLE:
                gone = route.up or job_id not in self.running()
                detail = (
                    f"the party of job '{job_id}' on node '{self.name}' has stopped: "
                    "Connection refused"
                    if gone
                    else f"job '{job_id}' is starting on node '{self.name}'"
                )
            _abort(context, code, detail)
        route.up = True
        return answer

    def _not_here(self, sender: str, job_id: str, context: grpc.ServicerContext) -> NoReturn:
        job = self._job(job_id)
        if job is None or sender not in job.parties:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"node '{self.name}' has no job '{job_id}' with party '{sender}'",
            )
        if job.state.final:
            _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"job '{job_id}' is {job.state.value} on node '{self.name}': Connection refused",
            )
        _abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            f"job '{job_id}' is not started on node '{self.name}' yet",
        )

    def close_all(self) -> None:
        """Forget every route (the node is stopping)."""
        for j in self.running():
            self.close(j)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, detail: str) -> NoReturn:
    context.abort(code, detail)
    raise AssertionError("context.abort returned")  # it raises

"""The node's service functions: what the API routers and the peer endpoint call.

One :class:`NodeService` per running node. Operators register datasets and submit
jobs; a submitted job is proposed (text + SHA-256) to every other party's node;
each node checks it against its policy and votes; votes go to every party. When
every party approved the same hash, each node starts its own party's worker
(:mod:`veil.node.launch`). Every state change is one :meth:`Store.change` with its
event. Messages between nodes go through a :class:`Link` (mutual-TLS gRPC in a
real node, direct calls in tests).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from veil.errors import ConfigError, NetworkError, VeilError
from veil.node.config import NodeConfig
from veil.node.jobfile import NodeJob, check_steps, parse_node_job, party_info
from veil.node.model import POLICY, Dataset, Event, Job, JobState, StepState, Vote, VoteState
from veil.node.store import Store

log = logging.getLogger(__name__)
RESTARTED = "node restarted"


class Link(Protocol):
    """Sends one control message to a party's node and returns its answer."""

    def call(self, party: str, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Deliver ``msg``; raise NetworkError if the node cannot be reached."""


class Launcher(Protocol):
    """Starts and stops this node's worker for a job."""

    def start(self, service: NodeService, job: Job) -> None:
        """Run this party's role of ``job`` (returns at once)."""

    def stop(self, job_id: str) -> None:
        """Stop the job's worker if it runs (returns within seconds)."""


class NotFound(VeilError):
    """An unknown job or dataset (the API answers 404)."""


class Conflict(VeilError):
    """The job is not in a state that allows this (the API answers 409)."""


class NodeService:
    """A node's jobs, votes and datasets over a :class:`Store`."""

    def __init__(
        self, cfg: NodeConfig, store: Store, link: Link, launcher: Launcher | None = None
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.link = link
        self.launcher = launcher
        self.lock = threading.RLock()
        self.on_change: Callable[[str], None] | None = None
        self.early: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # votes before proposals

    @property
    def name(self) -> str:
        """This node's party name."""
        return self.cfg.name

    @property
    def me(self) -> str:
        """This node as an event actor."""
        return f"node:{self.name}"

    def actor_of(self, actor: str) -> str:
        """The event actor of a decision (``policy`` decisions are the node's)."""
        return self.me if actor == POLICY else actor

    # -- reads ---------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """The job or NotFound."""
        j = self.store.job(job_id)
        if j is None:
            raise NotFound(f"no job '{job_id}' on node '{self.name}'")
        return j

    def status(self, job_id: str) -> dict[str, Any]:
        """Each party's vote, each step's state, and the job's state."""
        j = self.job(job_id)
        votes = {
            v.party: {"vote": v.state.value, "reason": v.reason} for v in self.store.votes(j.id)
        }
        for p in j.parties:
            votes.setdefault(p, {"vote": VoteState.PENDING.value, "reason": "no answer yet"})
        return {
            "id": j.id,
            "name": j.name,
            "initiator": j.initiator,
            "sha256": j.sha256,
            "state": j.state.value,
            "error": j.error,
            "parties": votes,
            "steps": [
                {
                    "index": s.index,
                    "name": s.name,
                    "state": s.state,
                    "progress": s.progress,
                    "seconds": s.seconds,
                    "bytes": s.bytes,
                }
                for s in self.store.steps(j.id)
            ],
            "created": j.created,
            "updated": j.updated,
        }

    # -- state changes -------------------------------------------------------
    def set_state(
        self, job: Job, state: JobState, kind: str, actor: str, error: str | None = None, **d: Any
    ) -> Job:
        """Change the job's state: one transaction with its event."""
        new = replace(job, state=state, error=error, updated=time.time())
        detail = {"state": state.value, **({"error": error} if error else {}), **d}
        with self.store.change(Event(kind, job.id, actor, detail)) as tx:
            tx.put_job(new)
        if self.on_change is not None:
            self.on_change(job.id)
        _audit_hook(self, new)
        return new

    def submit(self, text: str, actor: str) -> Job:
        """Record a job from this node and propose it to every other party."""
        nj = parse_node_job(text)
        check_steps(nj)
        if self.name not in nj.parties:
            raise ConfigError(
                "parties",
                f"this node ('{self.name}') is not a party of the job",
                f"name this node's party '{self.name}'",
            )
        ds = self.my_dataset(nj)
        for p in nj.parties:
            if p != self.name:
                self.cfg.peer_address(p)
        job = Job(uuid.uuid4().hex[:16], nj.name, self.name, nj.sha256, text, nj.parties)
        vote = Vote(
            job.id,
            self.name,
            VoteState.APPROVED,
            nj.sha256,
            f"submitted by {actor}",
            self._info(ds),
        )
        with self.store.change(
            Event("job.submitted", job.id, actor, {"sha256": nj.sha256, "initiator": self.name})
        ) as tx:
            tx.put_job(job)
            tx.put_vote(vote)
            for i, (kind, _) in enumerate(nj.steps):
                tx.put_step(StepState(job.id, i, kind))
        msg = {"kind": "propose", "job_id": job.id, "text": text, "sha256": nj.sha256}
        for p in nj.parties:
            if p == self.name:
                continue
            try:
                ans = self.link.call(p, msg, self.cfg.peer_timeout)
            except NetworkError as e:
                ans = {"ok": False, "error": str(e)}
            if not ans.get("ok"):
                self.fail(job.id, f"cannot propose to party '{p}': {ans.get('error')}")
                return self.job(job.id)
        self.broadcast(job, {"kind": "vote", **self.vote_msg(vote)})
        return self.job(job.id)

    def my_dataset(self, nj: NodeJob) -> Dataset:
        """The dataset this node gives to ``nj``, or a ConfigError naming it."""
        name = nj.datasets[self.name]
        ds = self.store.dataset(name)
        if ds is None:
            raise ConfigError(
                f"parties.{self.name}.dataset",
                f"no dataset '{name}' on node '{self.name}'",
                "register it with 'veil dataset add'",
            )
        return ds

    def _info(self, ds: Dataset) -> dict[str, Any]:
        return party_info(ds)

    @staticmethod
    def vote_msg(v: Vote) -> dict[str, Any]:
        """A vote as a peer message."""
        return {
            "job_id": v.job_id,
            "party": v.party,
            "state": v.state.value,
            "sha256": v.sha256,
            "reason": v.reason,
            "info": v.info,
        }

    def broadcast(self, job: Job, msg: dict[str, Any]) -> list[str]:
        """Send to every other party; returns the parties that could not be reached."""
        missed = []
        for p in job.parties:
            if p != self.name:
                try:
                    self.link.call(p, msg, min(self.cfg.peer_timeout, 10.0))
                except NetworkError as e:
                    log.warning("node %s: %s not told about %s: %s", self.name, p, msg["kind"], e)
                    missed.append(p)
        return missed

    def approve(self, job_id: str, actor: str) -> Job:
        """This node approves the job (by policy or by an approver)."""
        with self.lock:
            job = self.job(job_id)
            self._check_open(job)
            nj = parse_node_job(job.text)
            ds = self.my_dataset(nj)
            v = Vote(
                job_id,
                self.name,
                VoteState.APPROVED,
                job.sha256,
                f"approved by {actor}",
                self._info(ds),
            )
            with self.store.change(
                Event(
                    "vote.approved",
                    job_id,
                    self.actor_of(actor),
                    {"party": self.name, "sha256": job.sha256, "by": actor},
                )
            ) as tx:
                tx.put_vote(v)
        self.broadcast(job, {"kind": "vote", **self.vote_msg(v)})
        self.maybe_start(job_id)
        return self.job(job_id)

    def reject(self, job_id: str, reason: str, actor: str) -> Job:
        """This node rejects the job; every party's node marks it rejected."""
        with self.lock:
            job = self.job(job_id)
            self._check_open(job)
            v = Vote(job_id, self.name, VoteState.REJECTED, job.sha256, reason)
            detail = {"party": self.name, "sha256": job.sha256, "reason": reason, "by": actor}
            ev = Event("vote.rejected", job_id, self.actor_of(actor), detail)
            with self.store.change(ev) as tx:
                tx.put_vote(v)
            job = self.set_state(
                job,
                JobState.REJECTED,
                "job.rejected",
                self.actor_of(actor),
                f"party '{self.name}' rejected the job: {reason}",
            )
        self.broadcast(job, {"kind": "vote", **self.vote_msg(v)})
        return job

    def _check_open(self, job: Job) -> None:
        if job.state != JobState.PROPOSED:
            raise Conflict(f"job '{job.id}' is {job.state.value}; only a proposed job takes votes")
        mine = [v for v in self.store.votes(job.id) if v.party == self.name]
        if mine and mine[0].state != VoteState.PENDING:
            raise Conflict(f"node '{self.name}' already {mine[0].state.value} job '{job.id}'")

    def maybe_start(self, job_id: str) -> None:
        """Start the job here once every party approved this job file's hash."""
        with self.lock:
            job = self.job(job_id)
            votes = {v.party: v for v in self.store.votes(job_id)}
            ready = all(
                p in votes
                and votes[p].state == VoteState.APPROVED
                and votes[p].sha256 == job.sha256
                for p in job.parties
            )
            if job.state != JobState.PROPOSED or not ready:
                return
            job = self.set_state(job, JobState.APPROVED, "job.approved", self.me)
        if self.launcher is not None:
            self.launcher.start(self, job)

    def open_with(self, party: str, proposed: bool = False) -> list[str]:
        """Jobs with ``party`` that are not over here (a peer's heartbeat asks); only
        those still waiting for votes if ``proposed``."""
        return [
            j.id
            for j in self.store.jobs()
            if party in j.parties
            and not j.state.final
            and (not proposed or j.state == JobState.PROPOSED)
        ]

    def sync(self, peer: str, open_there: list[str], proposed: list[str] | None = None) -> None:
        """Re-send what ``peer`` may have missed about the jobs it still has open.

        A job over here gets its final message again; one still waiting for votes there
        (``proposed``; all open ones if not given) our vote. Both are idempotent at the
        peer, so a message lost while it was unreachable is never lost.
        """
        waiting = set(open_there if proposed is None else proposed)
        for job_id in open_there:
            job = self.store.job(str(job_id))
            if job is None or peer not in job.parties:
                continue
            if job.state == JobState.CANCELLED:
                msg: dict[str, Any] = {"kind": "cancel", "job_id": job.id, "reason": job.error}
            elif job.state == JobState.FAILED:
                msg = {"kind": "fail", "job_id": job.id, "reason": job.error or ""}
            elif job_id in waiting:
                mine = {v.party: v for v in self.store.votes(job.id)}.get(self.name)
                if mine is None or mine.state == VoteState.PENDING:
                    continue
                msg = {"kind": "vote", **self.vote_msg(mine)}
            else:
                continue  # running on both sides: nothing to re-send
            try:
                self.link.call(peer, msg, min(self.cfg.peer_timeout, 10.0))
            except NetworkError as e:
                log.info("node %s: sync of %s with %s failed: %s", self.name, job.id, peer, e)

    def infos(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Each party's vote info (id/label column names)."""
        return {v.party: v.info for v in self.store.votes(job_id)}

    def cancel(self, job_id: str, actor: str) -> Job:
        """Stop the job on every party's node."""
        job = self.job(job_id)
        if job.state.final:
            raise Conflict(f"job '{job_id}' is already {job.state.value}")
        job = self._end(
            job_id,
            JobState.CANCELLED,
            f"cancelled by {actor} on node '{self.name}'",
            actor,
            "job.cancelled",
        )
        self.broadcast(job, {"kind": "cancel", "job_id": job_id, "reason": job.error or ""})
        return job

    def fail(self, job_id: str, error: str, actor: str = "", tell: bool = True) -> Job:
        """Mark the job failed here (stopping its worker) and tell the other parties."""
        job = self._end(job_id, JobState.FAILED, error, actor or self.me, "job.failed")
        if tell and job.error == error:
            self.broadcast(job, {"kind": "fail", "job_id": job_id, "reason": error})
        return job

    def _end(self, job_id: str, state: JobState, error: str, actor: str, kind: str) -> Job:
        with self.lock:
            job = self.job(job_id)
            if job.state.final:
                return job
            job = self.set_state(job, state, kind, actor, error)
        if self.launcher is not None:
            self.launcher.stop(job_id)
        return job

    def finished(self, job_id: str, ok: bool, error: str | None) -> None:
        """This node's worker ended (called by the launcher)."""
        job = self.job(job_id)
        if job.state.final:
            return
        if ok:
            self.set_state(job, JobState.SUCCEEDED, "job.succeeded", self.me)
        else:
            self.fail(job_id, error or "the worker failed", actor=self.me)

    def handle(self, sender: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Dispatch one control message from party ``sender``'s node (:mod:`veil.node.inbox`)."""
        from veil.node.inbox import handle

        return handle(self, sender, msg)

    def recover(self) -> list[str]:
        """After a restart: jobs that were approved or running here fail ("node restarted")."""
        failed = []
        for job in self.store.jobs():
            if job.state in (JobState.APPROVED, JobState.RUNNING):
                self.fail(job.id, f"party '{self.name}': {RESTARTED}", actor=self.me)
                failed.append(job.id)
        return failed


def _audit_hook(svc: NodeService, job: Job) -> None:
    """The audit trail's hook after each job state change (dataset access, witnessing)."""
    from veil.node.auditmap import job_changed

    job_changed(svc, job)


def outputs_dir(cfg: NodeConfig, job_id: str) -> Path:
    """Where a job's published outputs live on this node."""
    return cfg.dir / "jobs" / job_id

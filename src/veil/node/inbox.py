"""Control messages from other nodes: proposals, votes, cancels and failures.

:func:`handle` is what the peer endpoint calls with the sender's party name (taken
from its verified certificate). A malformed message gets a one-line error answer,
never an exception across the wire.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from veil.errors import VeilError
from veil.node.jobfile import parse_node_job
from veil.node.model import POLICY, Dataset, Event, Job, JobState, StepState, Vote, VoteState
from veil.node.policy import evaluate

if TYPE_CHECKING:
    from veil.node.service import NodeService


def handle(svc: NodeService, sender: str, msg: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one control message from party ``sender``'s node."""
    kind = msg.get("kind")
    try:
        if kind == "propose":
            return on_propose(svc, sender, msg)
        if kind == "vote":
            return on_vote(svc, sender, msg)
        if kind == "cancel":
            return on_end(svc, sender, msg, JobState.CANCELLED)
        if kind == "fail":
            return on_end(svc, sender, msg, JobState.FAILED)
        if kind == "heartbeat":
            return {
                "ok": True,
                "name": svc.name,
                "time": time.time(),
                "open": svc.open_with(sender),
                "proposed": svc.open_with(sender, proposed=True),
            }
        if kind == "status":
            return {"ok": True, "status": svc.status(str(msg["job_id"]))}
        if kind == "audit.head":  # a partner's signed tree head at a job's end (witnessing)
            from veil.node.auditmap import receive_head

            return receive_head(svc, sender, msg)
    except (KeyError, ValueError, TypeError) as e:
        return {"ok": False, "error": f"malformed '{kind}' message: {type(e).__name__} {e}"}
    except VeilError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": False, "error": f"unknown message kind '{kind}'"}


def on_propose(svc: NodeService, sender: str, msg: dict[str, Any]) -> dict[str, Any]:
    """A partner proposes a job: check it, record it, vote by policy."""
    text, sha, job_id = str(msg["text"]), str(msg["sha256"]), str(msg["job_id"])
    with svc.lock:
        if svc.store.job(job_id) is not None:
            return {"ok": True}
        nj = parse_node_job(text)
        job = Job(job_id, nj.name, sender, nj.sha256, text, nj.parties)
        reason: str | None
        ds: Dataset | None = None
        if nj.sha256 != sha:
            reason = f"job file hash mismatch: got {nj.sha256[:12]}, proposal says {sha[:12]}"
        elif sender not in nj.parties or svc.name not in nj.parties:
            reason = f"party '{sender}' or '{svc.name}' is not in the job"
        else:
            ds = svc.store.dataset(nj.datasets[svc.name])
            reason = (
                f"no dataset '{nj.datasets[svc.name]}' on node '{svc.name}'" if ds is None else None
            )
        ev = Event("job.proposed", job_id, f"peer:{sender}", {"sha256": sha, "initiator": sender})
        with svc.store.change(ev) as tx:
            tx.put_job(job)
            for i, (kind, _) in enumerate(nj.steps):
                tx.put_step(StepState(job_id, i, kind))
        if reason is not None:
            threading.Thread(target=svc.reject, args=(job_id, reason, POLICY), daemon=True).start()
        elif (why := evaluate(svc.cfg.rules, nj, sender, svc.name, _some(ds))) is None:
            threading.Thread(target=svc.approve, args=(job_id, POLICY), daemon=True).start()
        else:
            v = Vote(
                job_id,
                svc.name,
                VoteState.PENDING,
                nj.sha256,
                f"waiting for an approver: {why}",
            )
            with svc.store.change(
                Event("vote.pending", job_id, svc.me, {"party": svc.name, "reason": why})
            ) as tx:
                tx.put_vote(v)
            threading.Thread(
                target=svc.broadcast,
                args=(job, {"kind": "vote", **svc.vote_msg(v)}),
                daemon=True,
            ).start()
        early = svc.early.pop(job_id, [])
    for s, m in early:
        on_vote(svc, s, m)
    return {"ok": True}


def on_vote(svc: NodeService, sender: str, msg: dict[str, Any]) -> dict[str, Any]:
    """A party's vote arrives."""
    job_id = str(msg["job_id"])
    if msg.get("party") != sender:
        return {"ok": False, "error": f"'{sender}' cannot vote for '{msg.get('party')}'"}
    with svc.lock:
        job = svc.store.job(job_id)
        if job is None:  # a third party voted before the proposal reached us
            svc.early.setdefault(job_id, []).append((sender, msg))
            return {"ok": True}
        if sender not in job.parties:
            return {"ok": False, "error": f"party '{sender}' is not in job '{job_id}'"}
        v = Vote(
            job_id,
            sender,
            VoteState(str(msg["state"])),
            str(msg["sha256"]),
            str(msg.get("reason", "")),
            dict(msg.get("info") or {}),
        )
        old = {o.party: o for o in svc.store.votes(job_id)}.get(sender)
        if old is not None and (old.state, old.sha256) == (v.state, v.sha256):
            return {"ok": True}  # a repeat (the sender re-sends until it knows we have it)
        with svc.store.change(
            Event(
                f"vote.{v.state.value}",
                job_id,
                f"peer:{sender}",
                {"party": sender, "sha256": v.sha256, "reason": v.reason},
            )
        ) as tx:
            tx.put_vote(v)
        if job.state.final:
            return {"ok": True}
        if v.state == VoteState.APPROVED and v.sha256 != job.sha256:
            svc.fail(
                job_id,
                f"job file hash mismatch: party '{sender}' approved "
                f"{v.sha256[:12]}, this node has {job.sha256[:12]}",
                actor=f"peer:{sender}",
            )
        elif v.state == VoteState.REJECTED and job.state == JobState.PROPOSED:
            svc.set_state(
                job,
                JobState.REJECTED,
                "job.rejected",
                f"peer:{sender}",
                f"party '{sender}' rejected the job: {v.reason}",
            )
    svc.maybe_start(job_id)
    return {"ok": True}


def on_end(svc: NodeService, sender: str, msg: dict[str, Any], state: JobState) -> dict[str, Any]:
    """A party's node cancelled or failed the job."""
    job = svc.store.job(str(msg["job_id"]))
    if job is None or sender not in job.parties:
        return {"ok": False, "error": "unknown job"}
    reason = str(msg.get("reason", ""))
    if state == JobState.FAILED and not reason.startswith("party '"):
        reason = f"party '{sender}': {reason}"
    kind = "job.cancelled" if state == JobState.CANCELLED else "job.failed"
    svc._end(job.id, state, reason, f"peer:{sender}", kind)
    return {"ok": True}


def _some(ds: Dataset | None) -> Dataset:
    assert ds is not None
    return ds

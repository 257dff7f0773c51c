"""Job traffic over the nodes' peer endpoints, multiplexed by job id (veil.node.relay)."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pandas as pd
import psutil
import pytest

from veil.net.grpc_config import JOB_METADATA
from veil.net.proto import link_pb2
from veil.node.admin import open_store
from veil.node.config import load_config
from veil.node.datasets import add_dataset
from veil.node.model import JobState
from veil.node.relay import sweep_stale

from .conftest import table
from .nodes import make_nodes, running, wait_for

AUTO = """
[[policy.approve]]
partners = ["bank"]
steps = ["psi"]
datasets = ["bureau_data", "bureau_b"]
"""


@pytest.fixture(autouse=True)
def _fake_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_STEP_MODULES", "tests.jobs.fake_steps")  # the _hang step (workers)
    importlib.import_module("tests.jobs.fake_steps")  # and here, where the job is checked


def _job(name: str, bank: str, bureau: str) -> str:
    return (
        f"name: {name}\nparties:\n  bank: {{dataset: {bank}}}\n  bureau: {{dataset: {bureau}}}\n"
        "steps:\n  - psi: {}\n"
    )


def _listening(pids: set[int]) -> tuple[set[tuple[int, int]], set[str]]:
    """(pid, TCP port) and unix socket paths that these processes listen on."""
    tcp, unix = set(), set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for c in proc.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    tcp.add((pid, c.laddr.port))
            for c in proc.net_connections(kind="unix"):
                if c.laddr:
                    unix.add(str(c.laddr))
    return tcp, unix


def test_two_concurrent_jobs_between_the_same_nodes_do_not_cross(tmp_path: Path, ca: Path) -> None:
    dirs = make_nodes(tmp_path, ca, ["bank", "bureau"], {"bureau": AUTO})
    for name, start in (("bank", 200), ("bureau", 230)):  # a second pair: c230..c259 shared
        cfg = load_config(dirs[name])
        store = open_store(cfg)
        try:
            csv = table(tmp_path / "data" / f"{name}_b.csv", 60, start=start, seed=7)
            add_dataset(store, cfg, f"{name}_b", csv, id_col="id")
        finally:
            store.close()
    me = psutil.Process()
    with running(dirs, launch=True) as n:
        ports_before = {c.laddr.port for c in me.net_connections("tcp") if c.status == "LISTEN"}
        a = n["bank"].service.submit(_job("job-a", "bank_data", "bureau_data"), "user:op")
        b = n["bank"].service.submit(_job("job-b", "bank_b", "bureau_b"), "user:op")
        tcp: set[tuple[int, int]] = set()
        unix: set[str] = set()

        def ours() -> set[int]:  # this test's job processes and workers (by their folders)
            found = set()
            for c in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if str(tmp_path) in " ".join(c.cmdline()):
                        found.add(c.pid)
            return found

        def over() -> bool:
            t, u = _listening(ours())
            tcp.update(t)
            unix.update(u)
            return all(
                (j := x.store.job(i)) is not None and j.state.final
                for x in n.values()
                for i in (a.id, b.id)
            )

        wait_for(over, 120.0, "both jobs to end on both nodes")
        for x in n.values():
            for j in (a, b):
                got = x.store.job(j.id)
                assert got is not None and got.state == JobState.SUCCEEDED, got
        # no job process listened on a TCP port; each job's workers listened on a unix socket
        assert tcp == set()
        assert len({u for u in unix if "veil-job-" in u}) >= 2, unix
        ports_after = {c.laddr.port for c in me.net_connections("tcp") if c.status == "LISTEN"}
        assert ports_after == ports_before  # the nodes' own two peer ports, nothing added
        for job, ids in ((a, range(10, 60)), (b, range(230, 260))):
            out = n["bank"].cfg.dir / "jobs" / job.id / "out" / "bank" / "psi.csv"
            got_ids = sorted(pd.read_csv(out, dtype={"id": str})["id"])
            assert got_ids == sorted(f"c{i}" for i in ids), job.name
        assert n["bank"].relay.running() == [] and n["bureau"].relay.running() == []


def _push(
    node_dir: Path, as_party: str, target: str, job_id: str | None, rank: int
) -> grpc.RpcError:
    """Push one value to ``target``'s peer endpoint with ``as_party``'s certificate."""
    cfg = load_config(node_dir)
    tls = cfg.tls
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(tls.ca_cert).read_bytes(),
        private_key=Path(tls.key).read_bytes(),
        certificate_chain=Path(tls.cert).read_bytes(),
    )
    opts = [("grpc.ssl_target_name_override", target)]
    with grpc.secure_channel(cfg.peer_address(target), creds, options=opts) as ch:
        stub = ch.unary_unary(
            "/org.interconnection.link.ReceiverService/Push",
            request_serializer=link_pb2.PushRequest.SerializeToString,
            response_deserializer=link_pb2.PushResponse.FromString,
        )
        req = link_pb2.PushRequest(sender_rank=rank, key="x", value=b"injected")
        md = () if job_id is None else ((JOB_METADATA, job_id),)
        with pytest.raises(grpc.RpcError) as e:
            stub(req, timeout=10.0, metadata=md)
    return e.value


def test_a_peer_cannot_push_into_a_job_it_is_not_a_party_of(tmp_path: Path, ca: Path) -> None:
    hang = "  - _hang: {}\n"
    names = ["bank", "bureau", "telco"]
    policy = AUTO.replace('["psi"]', '["_hang"]')
    dirs = make_nodes(tmp_path, ca, names, {"bureau": policy})
    text = (
        "name: t\nparties:\n  bank: {dataset: bank_data}\n  bureau: {dataset: bureau_data}\n"
        f"steps:\n{hang}"
    )
    with running(dirs, launch=True) as n:
        job = n["bank"].service.submit(text, "user:op")
        wait_for(lambda: n["bureau"].relay.running() == [job.id], 60.0, "the job to run")
        # telco is bureau's peer but not a party of the job: refused, never relayed
        e = _push(dirs["telco"], "telco", "bureau", job.id, 0)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"'telco' is not a party of job '{job.id}'" in str(e.details())
        # bank is a party, but may not speak as bureau's rank (names sorted: bank 0, bureau 1)
        e = _push(dirs["bank"], "bank", "bureau", job.id, 1)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "pushes as rank 1" in str(e.details())
        # an unknown job id and a push naming no job
        e = _push(dirs["bank"], "bank", "bureau", "nosuchjob", 0)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "has no job 'nosuchjob'" in str(e.details())
        e = _push(dirs["bank"], "bank", "bureau", None, 0)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        time.sleep(0.5)
        j = n["bureau"].store.job(job.id)
        assert j is not None and j.state == JobState.RUNNING  # nothing reached the worker
        n["bank"].service.cancel(job.id, "user:op")
        for x in ("bank", "bureau"):
            wait_for(
                lambda x=x: (j := n[x].store.job(job.id)) is not None and j.state.final,
                20.0,
                "cancelled",
            )
        e = _push(dirs["bank"], "bank", "bureau", job.id, 0)  # an ended job refuses, as a port
        assert e.code() == grpc.StatusCode.UNAVAILABLE and "Connection refused" in str(e.details())


def test_a_relayed_transport_listens_only_on_a_unix_socket(tmp_path: Path, ca: Path) -> None:
    from veil.errors import ConfigError
    from veil.net.certs import issue_party
    from veil.net.grpc_config import GrpcConfig

    tls = issue_party(ca, "bank", tmp_path / "tls")
    base = {"rank": 0, "names": ["bank", "bureau"], "addresses": ["h:1", "h:2"], "tls": tls}
    GrpcConfig(**base, job="j1", listen=f"unix:{tmp_path}/s").validate()
    with pytest.raises(ConfigError, match="listen: a relayed job listens on a unix: socket"):
        GrpcConfig(**base, job="j1", listen="127.0.0.1:5000").validate()
    with pytest.raises(ConfigError, match="listen: a unix: socket is only for a relayed job"):
        GrpcConfig(**base, listen=f"unix:{tmp_path}/s").validate()
    with pytest.raises(ConfigError, match="job: 'a b' is not a job id"):
        GrpcConfig(**base, job="a b", listen=f"unix:{tmp_path}/s").validate()


def test_socket_folders_of_stopped_nodes_are_swept(tmp_path: Path) -> None:
    """A node killed with -9 leaves its job folders; the next node removes them, and only them."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / "veil-job-dead"
    dead.mkdir()
    (dead / "node.pid").write_text(f"{gone.pid}\n")
    (dead / "push.sock").write_text("")
    crashed_early = tmp_path / "veil-job-early"  # made just before a crash: no pid, no socket
    crashed_early.mkdir()
    live = tmp_path / "veil-job-live"
    live.mkdir()
    (live / "node.pid").write_text(f"{os.getpid()}\n")
    unknown = tmp_path / "veil-job-old"  # a socket but no pid file: not ours to judge
    unknown.mkdir()
    (unknown / "push.sock").write_text("")
    other = tmp_path / "not-a-job"
    other.mkdir()

    removed = sweep_stale(tmp_path)

    assert sorted(p.name for p in removed) == ["veil-job-dead", "veil-job-early"]
    assert not dead.exists() and not crashed_early.exists()
    assert live.exists() and unknown.exists() and other.exists()

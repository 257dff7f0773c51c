"""Interconnection-mode ECDH-PSI vs native Veil PSI, side by side in one run.

Both modes: two parties as OS processes (this script re-invoked with ``party``) over
loopback mutual-TLS gRPC (``GrpcTransport``, throw-away federation CA), the same ids,
both parties learn the result, each round running native and interconnect in the
opposite order to the round before, so machine load hits both alike. Timed: the
protocol call only (``run_psi`` / ``run_interconnect_psi``, including the
interconnection handshake and FIN). Reported: medians over ``--repeat`` of the slower
party's wall time and of both parties' CPU time, and their ratio.

With ``--secretflow [VENV]`` it also runs, for context, Veil (rank 0, interconnect, plain
gRPC since the peer has no TLS) against SecretFlow's peer, and SecretFlow against
itself (its own ``bucket_psi`` time, from the peer's report), alternating which of the
two goes first. VENV defaults to /tmp/sfpeer, as shared/interop/README.md builds it;
the peer script is ``--sf-peer-script`` (default $VEIL_SF_PEER_SCRIPT, else
shared/interop/secretflow_psi_peer.py beside the repository).

    python benchmarks/interconnect_psi.py --n 100000 --m 100000 --repeat 3
    python benchmarks/interconnect_psi.py --n 100000 --m 100000 --secretflow
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import SF_INTEROP_VENV, add_order_args, in_order, need, peer_python, shared_dir

HERE = Path(__file__).resolve()
NAMES = ["party0", "party1"]


def make_ids(n: int, m: int, common: int, rank: int) -> list[str]:
    if rank == 0:
        return [f"cust-{i:010d}" for i in range(n)]
    return [f"cust-{i:010d}" for i in range(n - common, n - common + m)]


def cmd_party(a: argparse.Namespace) -> None:
    """One party of one run; writes wall/CPU/bytes/intersection to --out."""
    from veil.net import certs
    from veil.net.grpc_transport import GrpcConfig, GrpcTransport
    from veil.net.session import Session
    from veil.protocols.interconnect import IcPsiOptions, run_interconnect_psi
    from veil.protocols.psi import PsiParams, run_psi

    spec = json.loads(Path(a.spec).read_text())
    r = a.rank
    ids = make_ids(spec["n"], spec["m"], spec["common"], r)
    tls = certs.TlsFiles(**spec["tls"][NAMES[r]]) if spec.get("tls") else None
    cfg = GrpcConfig(r, NAMES, spec["addresses"], tls, insecure=tls is None)
    t = GrpcTransport(cfg)
    try:
        c0, t0 = os.times(), time.perf_counter()
        if spec["mode"] == "native":
            s = Session(t, NAMES, NAMES[r], timeout=600)
            res = run_psi(s, ids, PsiParams(result_to=tuple(NAMES)))
            size = res.size
        else:
            o = IcPsiOptions(rank=r, result_to_rank=-1, timeout=600, connect_timeout=120)
            ic = run_interconnect_psi(t, ids, o)
            size = None if ic.indices is None else len(ic.indices)
        wall = time.perf_counter() - t0
        c1 = os.times()
        traffic = t.stats.totals()
    finally:
        t.close()
    Path(a.out).write_text(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
                "intersection": size,
                "bytes_sent": traffic.bytes_sent,
            }
        )
    )


def _spawn_party(rank: int, spec_file: Path, out: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(HERE), "party", "--rank", str(rank)]
    return subprocess.Popen([*args, "--spec", str(spec_file), "--out", str(out)])


def run_veil_pair(mode: str, n: int, m: int, common: int, tls: bool) -> dict[str, Any]:
    from veil.net import certs
    from veil.net.grpc_transport import free_port

    with tempfile.TemporaryDirectory() as d:
        wd = Path(d)
        spec: dict[str, Any] = {"mode": mode, "n": n, "m": m, "common": common}
        spec["addresses"] = [f"127.0.0.1:{free_port()}" for _ in NAMES]
        if tls:
            fed = certs.throwaway_federation(NAMES, wd / "pki")
            spec["tls"] = {p: {k: str(v) for k, v in vars(f).items()} for p, f in fed.items()}
        (wd / "spec.json").write_text(json.dumps(spec))
        outs = [wd / f"p{r}.json" for r in (0, 1)]
        procs = [_spawn_party(r, wd / "spec.json", outs[r]) for r in (0, 1)]
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise SystemExit(f"{mode}: a party exited with status {p.returncode}")
        res = [json.loads(o.read_text()) for o in outs]
    assert res[0]["intersection"] == res[1]["intersection"] == common, res
    return {
        "wall_s": max(x["wall_s"] for x in res),
        "cpu_s": sum(x["cpu_s"] for x in res),
        "bytes": sum(x["bytes_sent"] for x in res),
    }


def _write_ids(path: Path, ids: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id"])
        w.writerows([x] for x in ids)


def run_with_sf(
    python: Path, script: Path, n: int, m: int, common: int, *, veil: bool
) -> dict[str, Any]:
    """Veil (rank 0) vs SecretFlow (rank 1), or SecretFlow vs SecretFlow."""
    from veil.net.grpc_transport import GrpcConfig, GrpcTransport, free_port
    from veil.protocols.interconnect import IcPsiOptions, run_interconnect_psi

    with tempfile.TemporaryDirectory() as d:
        wd = Path(d)
        addrs = [f"127.0.0.1:{free_port()}" for _ in NAMES]
        procs, reports = [], []
        for r in (0, 1) if not veil else (1,):
            _write_ids(wd / f"in{r}.csv", make_ids(n, m, common, r))
            reports.append(wd / f"rep{r}.json")
            cmd = [str(python), str(script), "--rank", str(r)]
            cmd += ["--self", addrs[r], "--peer", addrs[1 - r], "--in", str(wd / f"in{r}.csv")]
            cmd += ["--out", str(wd / f"out{r}.csv"), "--report", str(reports[-1])]
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        wall = None
        if veil:
            t = GrpcTransport(GrpcConfig(0, NAMES, addrs, None, insecure=True))
            try:
                t0 = time.perf_counter()
                o = IcPsiOptions(rank=0, timeout=600, connect_timeout=120)
                res = run_interconnect_psi(t, make_ids(n, m, common, 0), o)
                wall = time.perf_counter() - t0
                assert res.indices is not None and len(res.indices) == common
            finally:
                t.close()
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise SystemExit("the SecretFlow peer failed")
        sf = [json.loads(x.read_text()) for x in reports]
    return {
        "wall_s": wall if veil else max(x["psi_seconds"] for x in sf),
        "sf_psi_s": sf[-1]["psi_seconds"],
    }


def cmd_compare(a: argparse.Namespace) -> None:
    common = int(min(a.n, a.m) * a.overlap)
    runs: dict[str, list[dict[str, Any]]] = {"native": [], "interconnect": []}
    sf: tuple[Path, Path] | None = None
    if a.secretflow:
        runs |= {"veil_vs_secretflow": [], "secretflow_vs_secretflow": []}
        script = Path(a.sf_peer_script) if a.sf_peer_script else default_sf_script()
        how = "pass --sf-peer-script or set VEIL_SF_PEER_SCRIPT"
        sf = (peer_python(a.secretflow, "SecretFlow", "shared/interop/README.md"),
              need(script, "the SecretFlow interop peer", how))  # fmt: skip
    for i in range(a.repeat):
        # native vs interconnect: both Veil; "first" picks who starts round 0
        for mode in in_order(i, a.first, ["native"], ["interconnect"]):
            runs[mode].append(run_veil_pair(mode, a.n, a.m, common, tls=True))
            print(json.dumps({"run": i, "mode": mode, **runs[mode][-1]}), flush=True)
        if sf is not None:
            for k in in_order(i, a.first, ["veil_vs_secretflow"], ["secretflow_vs_secretflow"]):
                veil = k == "veil_vs_secretflow"
                runs[k].append(run_with_sf(*sf, a.n, a.m, common, veil=veil))
                print(json.dumps({"run": i, "mode": k, **runs[k][-1]}), flush=True)
    med = {
        k: {f: round(statistics.median(r[f] for r in v), 2) for f in v[0] if r_ok(v, f)}
        for k, v in runs.items()
    }
    summary = {
        "bench": "interconnect_psi",
        "n": a.n,
        "m": a.m,
        "common": common,
        "repeat": a.repeat,
        "medians": med,
        "wall_ratio_interconnect_over_native": round(
            med["interconnect"]["wall_s"] / med["native"]["wall_s"], 3
        ),
        "cpu_ratio_interconnect_over_native": round(
            med["interconnect"]["cpu_s"] / med["native"]["cpu_s"], 3
        ),
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(summary), flush=True)


def default_sf_script() -> Path:
    return shared_dir() / "interop" / "secretflow_psi_peer.py"


def r_ok(v: list[dict[str, Any]], f: str) -> bool:
    return all(isinstance(r.get(f), int | float) for r in v)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("party")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--secretflow",
        nargs="?",
        default="",
        const=SF_INTEROP_VENV,
        metavar="VENV",
        help=f"also run against SecretFlow's interop peer (venv default {SF_INTEROP_VENV})",
    )
    ap.add_argument("--sf-peer-script", default=os.environ.get("VEIL_SF_PEER_SCRIPT", ""))
    add_order_args(ap)
    a = ap.parse_args()
    if a.cmd == "party":
        cmd_party(a)
    else:
        cmd_compare(a)


if __name__ == "__main__":
    main()

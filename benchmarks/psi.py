"""PSI benchmarks: Veil at 1e6 ids per party over mutual-TLS gRPC (two or more parties),
Veil vs FATE 2.2 at 1e5, and Veil's RR22 vs SecretFlow's RR22 at 1e5 to 1e7.

``--protocol ecdh`` (default), ``kkrt`` or ``rr22`` picks Veil's protocol, ``--suite`` the ECDH
suite (``ristretto255``, the default, or ``curve25519-hash-as-x``); ``--parties 3``
runs the multi-party ECDH-PSI (every party holds ``--n`` ids, ``--overlap`` of them
shared by all). FATE always runs ECDH-PSI.

Each Veil party runs in its own OS process (this script re-invoked with ``party``),
talking over loopback mutual-TLS gRPC with a throw-away federation CA. Times are of
the protocol (``run_psi``), not of start-up or data generation; peak RSS is the
party process's ``ru_maxrss``. Results are printed as JSON lines.

    python benchmarks/psi.py rate                      # raw X25519 / ristretto255 rates
    python benchmarks/psi.py scale --n 1000000 --m 1000000 --overlap 0.5
    python benchmarks/psi.py scale --parties 3 --n 100000 --overlap 0.5
    python benchmarks/psi.py three --n 100000 --repeat 2   # 3 parties beside 2, alternating
    python benchmarks/psi.py three --n 100000 --repeat 3 --no-two \
        --secretflow /tmp/mpc-sf-venv/bin/python          # beside SecretFlow's ECDH 3PC
    python benchmarks/psi.py sfcheck --secretflow /tmp/mpc-sf-venv/bin/python [--no-barrier]
    python benchmarks/psi.py ops --n 5000                  # 3 parties: CPU per libsodium call
    python benchmarks/psi.py fate --fate-python VENV/bin/python --repeat 3 [--protocol kkrt]
    python benchmarks/psi.py secretflow --sizes 100000,1000000 --repeat 3 [--also kkrt]

SecretFlow: ``secretflow`` runs SecretFlow's RR22 (spu 0.9.4 ``spu.psi``, its party
script ``<peers>/secretflow/sf_psi_party.py``, one process per party over brpc
loopback, CSV in and out) and Veil's rr22 (and ``--also`` protocols; one process per
party over mutual-TLS gRPC, ids read from the same CSVs before the clock starts)
alternately, ``--overlap`` of the ids common, both parties receiving the result.

FATE: set it up as ``<shared>/peers/README.md`` says (``<shared>`` is the ``shared``
folder beside this repository, or ``--shared``); ``--fate-dir`` is the copy of
``peers/fate`` its ``make_data.py`` wrote ``data/`` into (default
``<shared>/peers/fate``), ``--fate-python`` its venv's python (or ``$VEIL_FATE_PYTHON``).
Veil and FATE alternate which runs first in each repetition, so neither always gets the
quieter half of a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _bench import PEERS_DIR, SF_VENV, add_order_args, in_order, need, peer_python

from veil.crypto import ecc
from veil.protocols.psi import Protocol

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
SHARED = REPO.parent / "shared"  # the shared folder beside the repository
SUITES = {s.name: s for s in (ecc.RISTRETTO255, ecc.HASH_AS_X)}


# -- raw primitive rate ------------------------------------------------------------------


def mult_rate(
    threads: int, ops: int = 20_000, suite: ecc.Suite = ecc.HASH_AS_X
) -> tuple[float, float]:
    """Scalar multiplications of ``suite`` (libsodium) with ``threads`` threads: per wall
    second, and per CPU second of this process (the latter hardly depends on load)."""
    k = ecc.new_scalar(suite)
    pts = ecc.hash_to_points([str(i).encode() for i in range(ops)], suite)
    with ecc.ScalarMultiplier(threads, suite) as mul:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, ops, 4096):
            mul(k, pts[i : i + 4096])
        return ops / (time.perf_counter() - t0), ops / (time.process_time() - c0)


def cmd_rate(_: argparse.Namespace) -> dict[str, Any]:
    n = ecc.default_threads()
    out: dict[str, Any] = {"bench": "scalar_mult_rate", "loadavg_1min": os.getloadavg()[0]}
    for name, suite in SUITES.items():
        one, many = mult_rate(1, suite=suite), mult_rate(n, suite=suite)
        out[name] = {
            "ops_per_s_1_thread": round(one[0]),
            f"ops_per_s_{n}_threads": round(many[0]),
            "ops_per_cpu_s": round(one[1]),
        }
    return out


# -- one party in its own process --------------------------------------------------------


def load_ids(spec: dict[str, Any], rank: int) -> Iterable[str]:
    """The party's ids: synthetic (n, m, overlap) or a CSV's ``id`` column. For rr22 the
    CSV is streamed (Arrow's CSV reader, 256 KiB blocks) as :class:`IdChunks`: the party
    reads it during the PSI call, as SecretFlow does, and never holds all its ids."""
    if "csv" in spec:
        path = spec["csv"][rank]
        if spec.get("protocol") == "rr22":
            import pyarrow as pa
            from pyarrow import csv as pacsv

            from veil.protocols.psi.ecdh import IdChunks

            pa.set_memory_pool(pa.system_memory_pool())  # freed blocks go back to malloc
            conv = pacsv.ConvertOptions(include_columns=["id"], column_types={"id": pa.string()})
            # small blocks, one thread: 4 MiB blocks left ~200 MB of freed reader memory
            read = pacsv.ReadOptions(block_size=1 << 18, use_threads=False)
            reader = pacsv.open_csv(path, read_options=read, convert_options=conv)
            return IdChunks(batch.column(0).to_pylist() for batch in reader)
        import pandas as pd

        return list(pd.read_csv(path, usecols=["id"], dtype={"id": str})["id"])
    size = spec["n"] if rank == 0 else spec["m"]
    common = spec["common"]  # held by every party; the rest only by this one
    return [f"cust-{i:010d}" for i in range(common)] + [
        f"p{rank}-{i:010d}" for i in range(size - common)
    ]


def cmd_party(a: argparse.Namespace) -> None:
    """Run one party of a PSI over mutual-TLS gRPC and write its measurements to --out."""
    from veil.net import certs
    from veil.net.grpc_transport import GrpcConfig, GrpcTransport
    from veil.net.session import Session
    from veil.protocols.psi import PsiParams, run_psi

    spec = json.loads(Path(a.spec).read_text())
    names = spec["names"]
    me = names[a.rank]
    ids = load_ids(spec, a.rank)
    tls = certs.TlsFiles(**spec["tls"][me])
    cfg = GrpcConfig(rank=a.rank, names=names, addresses=spec["addresses"], tls=tls)
    transport = GrpcTransport(cfg)
    try:
        session = Session(transport, names, me, timeout=600)
        params = PsiParams(
            result_to=tuple(spec["result_to"]),
            batch_size=spec["batch_size"],
            protocol=Protocol(spec.get("protocol", "ecdh")),
            suite=SUITES[spec.get("suite", "ristretto255")],
        )
        c0, t0 = os.times(), time.perf_counter()
        res = run_psi(session, ids, params)
        wall = time.perf_counter() - t0
        c1 = os.times()
        traffic = transport.stats.totals()
    finally:
        transport.close()
    out = {
        "party": me,
        "n_input": res.n_input,
        "intersection": res.size,
        "wall_s": round(wall, 2),
        "cpu_s": round((c1.user - c0.user) + (c1.system - c0.system), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes_sent": traffic.bytes_sent,
        "bytes_received": traffic.bytes_received,
    }
    Path(a.out).write_text(json.dumps(out))


def run_veil_pair(spec: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    """Start both parties as OS processes over loopback mutual-TLS gRPC; their results."""
    from veil.net import certs
    from veil.net.grpc_transport import free_port

    names = spec["names"]
    tls = certs.throwaway_federation(names, workdir / "pki")
    spec = spec | {
        "addresses": [f"127.0.0.1:{free_port()}" for _ in names],
        "tls": {p: {k: str(v) for k, v in vars(t).items()} for p, t in tls.items()},
    }
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    outs = [workdir / f"party{r}.json" for r in range(len(names))]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE),
                "party",
                "--rank",
                str(r),
                "--spec",
                str(spec_file),
                "--out",
                str(outs[r]),
            ]
        )
        for r in range(len(names))
    ]
    for p in procs:
        if p.wait(timeout=7200) != 0:
            for q in procs:
                q.kill()
            raise SystemExit(f"a party exited with status {p.returncode}")
    return [json.loads(o.read_text()) for o in outs]


def run_memory_pair(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Fallback: both parties as threads of this process over the in-memory transport
    (they share one GIL and one RSS; used only when the gRPC transport is unavailable)."""
    from veil.net import run_parties
    from veil.net.session import Session
    from veil.protocols.psi import PsiParams, PsiResult, run_psi

    names = spec["names"]
    ids = {p: load_ids(spec, r) for r, p in enumerate(names)}
    params = PsiParams(
        result_to=tuple(spec["result_to"]),
        batch_size=spec["batch_size"],
        protocol=Protocol(spec.get("protocol", "ecdh")),
        suite=SUITES[spec.get("suite", "ristretto255")],
    )
    walls: dict[str, float] = {}

    def party(name: str) -> Any:
        def fn(s: Session) -> PsiResult:
            t0 = time.perf_counter()
            res = run_psi(s, ids[name], params)
            walls[name] = round(time.perf_counter() - t0, 2)
            return res

        return fn

    c0 = os.times()
    out = run_parties({p: party(p) for p in names}, timeout=600)
    c1 = os.times()
    rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    cpu = round((c1.user - c0.user) + (c1.system - c0.system), 2)
    return [
        {
            "party": p,
            "transport": "memory (one process)",
            "n_input": out[p].n_input,
            "intersection": out[p].size,
            "wall_s": walls[p],
            "cpu_s": cpu,  # of the whole process: both parties
            "peak_rss_mb": rss,  # of the whole process: both parties
        }
        for p in names
    ]


def run_pair(spec: dict[str, Any], transport: str) -> list[dict[str, Any]]:
    if transport == "memory":
        return run_memory_pair(spec)
    with tempfile.TemporaryDirectory() as d:
        return run_veil_pair(spec, Path(d))


def cmd_scale(a: argparse.Namespace) -> dict[str, Any]:
    rate = cmd_rate(a)
    names = ["bank", "partner"] if a.parties == 2 else [f"p{i}" for i in range(a.parties)]
    m = a.m if a.parties == 2 and a.m is not None else a.n
    spec = {
        "names": names,
        "n": a.n,
        "m": m,
        "common": int(min(a.n, m) * a.overlap),
        "result_to": names,
        "batch_size": a.batch_size,
        "protocol": a.protocol,
        "suite": a.suite,
    }
    runs = []
    for _ in range(a.repeat):
        parties = run_pair(spec, a.transport)
        assert all(p["intersection"] == spec["common"] for p in parties), parties
        runs.append(parties)
    walls = [max(p["wall_s"] for p in r) for r in runs]
    return {
        "bench": "psi_scale",
        "protocol": a.protocol,
        "suite": a.suite,
        "parties": a.parties,
        "transport": a.transport,
        "n": a.n,
        "m": m,
        "intersection": spec["common"],
        "wall_s_median": statistics.median(walls),
        "wall_s_runs": walls,
        "items_per_s": round((a.n + m * (a.parties - 1)) / statistics.median(walls)),
        "peak_rss_mb_max": {
            p["party"]: max(r[i]["peak_rss_mb"] for r in runs) for i, p in enumerate(runs[0])
        },
        "runs": runs,
        "scalar_mult": rate,
    }


# -- three parties beside two -------------------------------------------------------------


def party_summary(parties: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures per party: wall (the slowest party), CPU, MB sent, peak RSS."""
    return {
        "wall_s": max(p["wall_s"] for p in parties),
        "cpu_s": [p["cpu_s"] for p in parties],
        "mb_sent": [
            round(p["bytes_sent"] / 1e6, 1) if "bytes_sent" in p else None for p in parties
        ],
        "mb_received": [
            round(p["bytes_received"] / 1e6, 1) if "bytes_received" in p else None for p in parties
        ],
        "peak_rss_mb": [p["peak_rss_mb"] for p in parties],
    }


def write_id_csvs(spec: dict[str, Any], folder: Path) -> list[Path]:
    """Each party's ids (:func:`load_ids`) as a one-column CSV, for SecretFlow."""
    paths = []
    for r in range(len(spec["names"])):
        path = folder / f"ids{r}.csv"
        path.write_text("id\n" + "\n".join(load_ids(spec, r)) + "\n")
        paths.append(path)
    return paths


def run_secretflow(
    python: str,
    csvs: list[Path],
    workdir: Path,
    *,
    protocol: str,
    curve: str,
    timeout: float,
    no_barrier: bool = False,
) -> list[dict[str, Any]]:
    """SecretFlow's PSI (``sf_psi_party.py``, one process per party over brpc loopback);
    each party's JSON line, or ``{"error": ...}`` for a party that failed or timed out."""
    from veil.net.grpc_transport import free_port

    ports = ",".join(str(free_port()) for _ in csvs)
    cmd = [python, str(HERE.parent / "sf_psi_party.py"), "--ports", ports]
    cmd += ["--protocol", protocol, "--curve", curve] + (["--no-barrier"] if no_barrier else [])
    procs = [
        subprocess.Popen(
            [*cmd, "--rank", str(r), "--input", str(c), "--output", str(workdir / f"out{r}.csv")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for r, c in enumerate(csvs)
    ]
    deadline, outs = time.monotonic() + timeout, []
    for r, proc in enumerate(procs):
        try:
            stdout, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            stdout = ""
        lines = [ln for ln in stdout.splitlines() if ln.startswith('{"party"')]
        outs.append(json.loads(lines[-1]) if lines else {"party": f"p{r}", "error": "no result"})
    return outs


def cmd_three(a: argparse.Namespace) -> dict[str, Any]:
    """Multi-party ECDH-PSI (``--parties``, default 3) beside two-party ECDH at the same
    ids per party and overlap, and beside SecretFlow's three-party ECDH-PSI with
    ``--secretflow PYTHON``: run alternately (each first in turn) on one machine."""
    kinds = ([] if a.no_veil else [f"veil{a.parties}"]) + ([] if a.no_two else ["veil2"])
    kinds += ["secretflow3"] if a.secretflow else []
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    order = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            seq = kinds if i % 2 == 0 else kinds[::-1]
            order.append(seq)
            for kind in seq:
                t, load = time.strftime("%H:%M:%S", time.gmtime()), os.getloadavg()[0]
                c = 2 if kind == "veil2" else a.parties
                names = ["bank", "partner"] if c == 2 else [f"p{j}" for j in range(c)]
                spec = {
                    "names": names,
                    "n": a.n,
                    "m": a.n,
                    "common": int(a.n * a.overlap),
                    "result_to": names,
                    "batch_size": a.batch_size,
                    "protocol": "ecdh",
                    "suite": "ristretto255",
                }
                if kind == "secretflow3":
                    folder = Path(tmp) / f"sf{i}"
                    folder.mkdir()
                    parties = run_secretflow(
                        a.secretflow,
                        write_id_csvs(spec, folder),
                        folder,
                        protocol="PROTOCOL_ECDH_3PC",
                        curve=a.sf_curve,
                        timeout=a.sf_timeout,
                    )
                else:
                    parties = run_pair(spec, a.transport)
                ok = all(p.get("intersection") == spec["common"] for p in parties)
                assert ok or kind == "secretflow3", parties
                summary = party_summary(parties) if ok else {"failed": parties}
                runs[kind].append(summary | {"started_utc": t, "loadavg_1min": load})
                print(json.dumps({"kind": kind} | runs[kind][-1]), file=sys.stderr, flush=True)
    done = {k: [r for r in v if "failed" not in r] for k, v in runs.items()}
    return {
        "bench": "psi_three_party",
        "n_per_party": a.n,
        "overlap": a.overlap,
        "transport": a.transport,
        "run_order": order,
        "loadavg": os.getloadavg(),
        "median_wall_s": {
            k: statistics.median(r["wall_s"] for r in v) for k, v in done.items() if v
        },
        "median_cpu_s_per_party": {
            k: [statistics.median(r["cpu_s"][j] for r in v) for j in range(len(v[0]["cpu_s"]))]
            for k, v in done.items()
            if v
        },
        "median_max_cpu_s": {
            k: statistics.median(max(r["cpu_s"]) for r in v) for k, v in done.items() if v
        },
        "runs": runs,
    }


def cmd_sfcheck(a: argparse.Namespace) -> dict[str, Any]:
    """Launch SecretFlow's three-party ECDH-PSI ``--launches`` times on small sets and count
    the launches that finish (``--no-barrier``: as the old harness launched it)."""
    spec = {"names": ["p0", "p1", "p2"], "n": a.n, "m": a.n, "common": a.n // 2}
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        csvs = write_id_csvs(spec, Path(tmp))
        for i in range(a.launches):
            t0 = time.perf_counter()
            parties = run_secretflow(
                a.secretflow,
                csvs,
                Path(tmp),
                protocol="PROTOCOL_ECDH_3PC",
                curve="CURVE_25519",
                timeout=a.sf_timeout,
                no_barrier=a.no_barrier,
            )
            ok = all(p.get("intersection") == spec["common"] for p in parties)
            outcomes.append({"launch": i, "ok": ok, "s": round(time.perf_counter() - t0, 1)})
    return {
        "bench": "secretflow_3pc_launches",
        "barrier": not a.no_barrier,
        "n_per_party": a.n,
        "finished": sum(o["ok"] for o in outcomes),
        "launches": a.launches,
        "timeout_s": a.sf_timeout,
        "loadavg": os.getloadavg(),
        "outcomes": outcomes,
    }


def cmd_ops(a: argparse.Namespace) -> dict[str, Any]:
    """Where a multi-party run's CPU goes: every ``veil.crypto.ristretto`` batch call is
    wrapped to count its elements and its thread CPU time (memory transport, one
    process, ``--threads`` per party)."""
    import threading

    from veil.crypto import ristretto
    from veil.net import run_parties
    from veil.protocols.psi import PsiParams, run_psi

    secs: dict[str, float] = {}
    elems: dict[str, int] = {}
    lock = threading.Lock()

    def wrap(name: str) -> None:
        f = getattr(ristretto, name)

        def g(*args: Any) -> Any:
            t = time.thread_time()
            out = f(*args)
            with lock:
                secs[name] = secs.get(name, 0.0) + time.thread_time() - t
                last = args[-1] if args else b""
                elems[name] = elems.get(name, 0) + (
                    len(last) // 32 if isinstance(last, bytes) else 1
                )
            return out

        setattr(ristretto, name, g)

    for name in ("from_hash", "scalar_mult", "scalars_mult", "base_mult", "add", "sub"):
        wrap(name)
    names = [f"p{i}" for i in range(a.parties)]
    spec = {"n": a.n, "m": a.n, "common": a.n // 2}
    ids = {p: load_ids(spec, r) for r, p in enumerate(names)}
    params = PsiParams(tuple(names), threads=a.threads)
    c0 = os.times()
    out = run_parties({p: (lambda s, p=p: run_psi(s, ids[p], params)) for p in names}, timeout=600)
    c1 = os.times()
    assert all(r.size == spec["common"] for r in out.values())
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "bench": "psi_multiparty_ops",
        "n_per_party": a.n,
        "process_cpu_s": round(cpu, 2),
        "us_per_id_per_party": round(cpu / a.parties / a.n * 1e6),
        "in_libsodium_share": round(sum(secs.values()) / cpu, 3),
        "calls": {k: {"cpu_s": round(v, 2), "elements": elems[k]} for k, v in secs.items()},
    }


# -- side by side with FATE 2.2 ---------------------------------------------------------


def run_fate(fate_python: str, fate_dir: Path, dataset: str) -> float:
    """FATE's ECDH-PSI fit time in seconds: its own measurement around ``psi_run``, the
    slower of its two roles. (Its CPU time is not reported: the launcher's workers are
    not waited for, so RUSAGE_CHILDREN misses them.)"""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "psi.json"
        cmd = [fate_python, "psi_launcher.py", "--parties", "guest:9999", "host:10000"]
        cmd += ["--log_level", "WARNING", "--data_dir", str(fate_dir / "fate_data")]
        cmd += ["--dataset", dataset, "--out", str(out)]
        proc = subprocess.run(
            cmd, check=False, cwd=fate_dir, capture_output=True, text=True, timeout=1800
        )
        found = re.findall(r"psi_time=([0-9.]+)s", proc.stdout + proc.stderr)
        if not found:
            raise SystemExit(f"FATE run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return max(float(x) for x in found)


def csv_spec(a: argparse.Namespace, dataset: str, fate_dir: Path) -> dict[str, Any]:
    data = fate_dir / "data"
    return {
        "names": ["guest", "host"],
        "csv": [str(data / f"{dataset}_guest.csv"), str(data / f"{dataset}_host.csv")],
        "result_to": ["guest", "host"],
        "batch_size": a.batch_size,
        "protocol": a.protocol,
        "suite": a.suite,
    }


def fate_python(a: argparse.Namespace) -> str:
    """The FATE venv's python: ``--fate-python`` or ``$VEIL_FATE_PYTHON``."""
    py = a.fate_python or os.environ.get("VEIL_FATE_PYTHON")
    if not py or not Path(py).exists():
        raise SystemExit(
            "give FATE's python with --fate-python or VEIL_FATE_PYTHON "
            f"(set it up as {a.shared}/peers/README.md says)"
        )
    return py


def cmd_fate(a: argparse.Namespace) -> dict[str, Any]:
    fate_dir = Path(a.fate_dir or Path(a.shared) / "peers" / "fate")
    py = fate_python(a)
    veil_s: list[float] = []
    fate_s: list[float] = []
    veil_cpu: list[float] = []
    sizes = set()
    order: list[str] = []
    parties: list[dict[str, Any]] = []
    for i in range(a.repeat):  # interleaved, each first in turn: both see the same load
        for who in ("veil", "fate") if i % 2 == 0 else ("fate", "veil"):
            if who == "fate":
                fate_s.append(run_fate(py, fate_dir, a.dataset))
                continue
            parties = run_pair(csv_spec(a, a.dataset, fate_dir), a.transport)
            sizes.update(p["intersection"] for p in parties)
            veil_s.append(max(p["wall_s"] for p in parties))
            veil_cpu.append(max(p["cpu_s"] for p in parties))
        order.append("veil first" if i % 2 == 0 else "fate first")
    v, f = statistics.median(veil_s), statistics.median(fate_s)
    return {
        "bench": "psi_vs_fate",
        "veil_protocol": a.protocol,
        "veil_suite": a.suite,
        "transport": a.transport,
        "run_order": order,
        "dataset": a.dataset,
        "intersection": sorted(sizes),
        "veil_s_median": v,
        "fate_s_median": f,
        "speedup_wall": round(f / v, 2),
        "pair_ratios": [round(fs / vs, 2) for vs, fs in zip(veil_s, fate_s, strict=True)],
        "veil_s_runs": veil_s,
        "fate_s_runs": fate_s,
        "veil_cpu_s_per_party_runs": veil_cpu,
        "veil_last_run": parties,
        "scalar_mult": cmd_rate(a),
    }


# -- side by side with SecretFlow's RR22 ------------------------------------------------


def write_pair_csvs(n: int, overlap: float, workdir: Path) -> tuple[list[str], int]:
    """Two CSVs with an ``id`` column, ``n`` ids each, ``overlap`` of them common."""
    common = int(n * overlap)
    paths = []
    for rank in (0, 1):
        path = workdir / f"ids_{n}_{rank}.csv"
        with path.open("w") as f:
            f.write("id\n")
            for lo in range(0, n, 1 << 20):
                hi = min(lo + (1 << 20), n)
                f.write(
                    "".join(
                        f"cust-{i:010d}\n" if i < common else f"p{rank}-{i:010d}\n"
                        for i in range(lo, hi)
                    )
                )
        paths.append(str(path))
    return paths, common


def run_sf_pair(py: Path, script: Path, csvs: list[str], workdir: Path) -> list[dict[str, Any]]:
    """SecretFlow's two parties as OS processes over brpc loopback; their JSON lines."""
    from veil.net.grpc_transport import free_port

    ports = f"{free_port()},{free_port()}"
    cmds = [
        [str(py), str(script), "--rank", str(r), "--ports", ports, "--protocol", "PROTOCOL_RR22"]
        for r in (0, 1)
    ]
    for r, cmd in enumerate(cmds):
        cmd += ["--input", csvs[r], "--output", str(workdir / f"sf_out{r}.csv")]
    procs = [
        subprocess.Popen(
            cmds[r],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=workdir,
        )
        for r in (0, 1)
    ]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            for q in procs:
                q.kill()
            raise SystemExit(f"a SecretFlow party failed (status {p.returncode}):\n{out[-2000:]}")
        j = json.loads(lines[-1])
        outs.append(
            {
                "party": f"p{j['rank']}",
                "intersection": j["intersection"],
                "wall_s": j["psi_wall_s"],
                "cpu_s": j["cpu_s"],
                "peak_rss_mb": j["ru_maxrss_mb"],
            }
        )
    return outs


def cmd_secretflow(a: argparse.Namespace) -> dict[str, Any]:
    py = peer_python(a.sf_venv, "SecretFlow")
    script = need(
        Path(a.peers) / "secretflow" / "sf_psi_party.py",
        "SecretFlow's PSI party script",
        "copy shared/peers to --peers as shared/peers/README.md says",
    )
    systems = ["veil-rr22", *(f"veil-{p}" for p in a.also)]
    sizes = []
    for n in (int(x) for x in a.sizes.split(",")):
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            csvs, common = write_pair_csvs(n, a.overlap, work)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in [*systems, "secretflow"]}
            order = []
            for i in range(a.repeat):
                seq = in_order(i, a.first, systems, ["secretflow"])
                order.append(seq)
                for who in seq:
                    started = time.strftime("%H:%M:%S", time.gmtime())
                    if who == "secretflow":
                        parties = run_sf_pair(py, script, csvs, work)
                    else:
                        spec = {
                            "names": ["bank", "partner"],
                            "csv": csvs,
                            "result_to": ["bank", "partner"],
                            "batch_size": 4096,
                            "protocol": who.removeprefix("veil-"),
                            "suite": "ristretto255",
                        }
                        parties = run_pair(spec, "grpc")
                    assert all(p["intersection"] == common for p in parties), (who, parties)
                    runs[who].append(party_summary(parties) | {"started_utc": started})
            sizes.append(_sf_summary(n, common, runs, order))
        print(json.dumps(sizes[-1]), flush=True)
    return {"bench": "psi_vs_secretflow_rr22", "overlap": a.overlap, "sizes": sizes}


def _sf_summary(
    n: int, common: int, runs: dict[str, list[dict[str, Any]]], order: list[list[str]]
) -> dict[str, Any]:
    sf = [r["wall_s"] for r in runs["secretflow"]]
    out: dict[str, Any] = {
        "n_per_party": n,
        "intersection": common,
        "loadavg": os.getloadavg(),
        "run_order": order,
    }
    for who, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        out[who] = {
            "wall_s_median": statistics.median(walls),
            "max_cpu_s_median": statistics.median(max(r["cpu_s"]) for r in rs),
            "peak_rss_mb_max": [max(r["peak_rss_mb"][i] for r in rs) for i in (0, 1)],
            "runs": rs,
        }
        if who != "secretflow":
            ratios = [s / v for s, v in zip(sf, walls, strict=True)]
            out[who]["sf_over_veil_median_of_pairs"] = round(statistics.median(ratios), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rate")
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=1_000_000)
    s.add_argument("--m", type=int, default=None, help="the second party's ids (default --n)")
    s.add_argument("--overlap", type=float, default=0.5)
    s.add_argument("--batch-size", type=int, default=4096)
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--transport", choices=["grpc", "memory"], default="grpc")
    s.add_argument("--protocol", choices=[p.value for p in Protocol], default="ecdh")
    s.add_argument("--suite", choices=list(SUITES), default="ristretto255")
    s.add_argument("--parties", type=int, default=2, help="3 or more: multi-party ECDH-PSI")
    t = sub.add_parser("three", help="multi-party ECDH-PSI beside two-party ECDH")
    t.add_argument("--n", type=int, default=100_000, help="ids per party")
    t.add_argument("--parties", type=int, default=3)
    t.add_argument("--overlap", type=float, default=0.5, help="share held by every party")
    t.add_argument("--batch-size", type=int, default=4096)
    t.add_argument("--repeat", type=int, default=1)
    t.add_argument("--transport", choices=["grpc", "memory"], default="grpc")
    t.add_argument("--no-two", action="store_true", help="skip the two-party run")
    t.add_argument("--no-veil", action="store_true", help="skip Veil's multi-party run")
    t.add_argument("--secretflow", help="SecretFlow's python (spu 0.9.4): its ECDH 3PC too")
    t.add_argument("--sf-curve", default="CURVE_25519")
    t.add_argument("--sf-timeout", type=float, default=3600)
    c = sub.add_parser("sfcheck", help="launch SecretFlow's ECDH 3PC repeatedly, count finishes")
    c.add_argument("--secretflow", required=True, help="SecretFlow's python (spu 0.9.4)")
    c.add_argument("--n", type=int, default=1500)
    c.add_argument("--launches", type=int, default=10)
    c.add_argument("--sf-timeout", type=float, default=40)
    c.add_argument("--no-barrier", action="store_true", help="as the old harness launched it")
    o = sub.add_parser("ops", help="multi-party PSI: CPU per libsodium batch function")
    o.add_argument("--n", type=int, default=5000, help="ids per party")
    o.add_argument("--parties", type=int, default=3)
    o.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("fate")
    f.add_argument("--dataset", default="psi_100k")
    f.add_argument("--fate-python", help="FATE venv's python (or $VEIL_FATE_PYTHON)")
    f.add_argument("--fate-dir", help="peers/fate copy with data/ (default <shared>/peers/fate)")
    f.add_argument("--shared", default=str(SHARED), help="the shared folder (default ../shared)")
    f.add_argument("--suite", choices=list(SUITES), default="ristretto255")
    f.add_argument("--batch-size", type=int, default=4096)
    f.add_argument("--repeat", type=int, default=3)
    f.add_argument("--transport", choices=["grpc", "memory"], default="grpc")
    f.add_argument("--protocol", choices=[p.value for p in Protocol], default="ecdh")
    g = sub.add_parser("secretflow", help="Veil's rr22 beside SecretFlow's RR22, alternating")
    g.add_argument("--sizes", default="100000,1000000", help="ids per party, comma-separated")
    g.add_argument("--overlap", type=float, default=0.8)
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--also", nargs="*", default=[], choices=["kkrt", "ecdh"], help="more Veil")
    g.add_argument("--sf-venv", default=SF_VENV, help=f"SecretFlow's venv (default {SF_VENV})")
    g.add_argument("--peers", default=PEERS_DIR, help=f"peers copy (default {PEERS_DIR})")
    add_order_args(g)
    p = sub.add_parser("party")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "party":
        cmd_party(a)
        return
    result = {
        "rate": cmd_rate,
        "scale": cmd_scale,
        "three": cmd_three,
        "sfcheck": cmd_sfcheck,
        "ops": cmd_ops,
        "fate": cmd_fate,
        "secretflow": cmd_secretflow,
    }[a.cmd](a)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""One SecretFlow PSI party (spu 0.9.4: ``spu.psi.psi_execute`` over brpc loopback), run
with SecretFlow's own Python by ``benchmarks/psi.py three --secretflow``; prints one
JSON line (wall and CPU of ``psi_execute``, which reads and writes its CSVs; peak RSS).

Why it waits at a barrier after ``create_brpc``: that call runs yacl's ``ConnectToMesh``
and the legacy ``BucketPsi`` behind ``psi_execute`` runs it again in ``Init``. Both rounds
send the same message key (``connect_<rank>``, sequence 0), so a party that finishes
round one early can deliver its round-two message while a slower party is still
waiting in round one; the two collide, one is lost, and the slow party waits in
``ConnectToMesh`` for the whole receive timeout. That was the "hang in ConnectToMesh"
seen in 4 of 5 three-party launches on a loaded machine. A barrier between the rounds
lets nobody start round two before everybody has finished round one.

    PY=/tmp/mpc-sf-venv/bin/python
    $PY benchmarks/sf_psi_party.py --rank 0 --ports 61530,61531,61532 \
        --input a.csv --output out0.csv --protocol PROTOCOL_ECDH_3PC   # and ranks 1, 2
"""

import argparse
import json
import os
import resource
import time


def main() -> None:
    from spu import psi
    from spu.libspu import link

    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--ports", required=True, help="one loopback port per party")
    ap.add_argument("--input", required=True, help="CSV with an 'id' column")
    ap.add_argument("--output", required=True)
    ap.add_argument("--protocol", default="PROTOCOL_ECDH_3PC")
    ap.add_argument("--curve", default="CURVE_25519")
    ap.add_argument("--no-barrier", action="store_true", help="reproduce the hang")
    a = ap.parse_args()
    desc = link.Desc()
    desc.id = "veil-psi-bench"
    desc.recv_timeout_ms = 3600 * 1000
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 500
    for r, port in enumerate(a.ports.split(",")):
        desc.add_party(f"p{r}", f"127.0.0.1:{port}")
    t_link = time.perf_counter()
    lctx = link.create_brpc(desc, a.rank)
    if not a.no_barrier:  # see the module docstring: nobody starts ConnectToMesh 2 early
        lctx.barrier()
    link_s = time.perf_counter() - t_link
    cfg = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=psi.parse_protocol(a.protocol),
            receiver_rank=0,
            broadcast_result=True,
            ecdh_params=psi.EcdhParams(curve=psi.parse_curve_type(a.curve)),
        ),
        input_params=psi.InputParams(
            type=psi.SourceType.SOURCE_TYPE_FILE_CSV,
            path=a.input,
            selected_keys=["id"],
            keys_unique=True,
        ),
        output_params=psi.OutputParams(
            type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=a.output, disable_alignment=True
        ),
        join_conf=psi.ResultJoinConfig(
            type=psi.ResultJoinType.JOIN_TYPE_INNER_JOIN, left_side_rank=0
        ),
    )
    c0, t0 = os.times(), time.perf_counter()
    rep = psi.psi_execute(cfg, lctx)
    wall = time.perf_counter() - t0
    c1 = os.times()
    lctx.stop_link()
    out = {
        "party": f"p{a.rank}",
        "protocol": a.protocol,
        "curve": a.curve,
        "n_input": rep.original_count,
        "intersection": rep.intersection_count,
        "link_setup_s": round(link_s, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(c1.user - c0.user + c1.system - c0.system, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

"""Throughput and latency of the gRPC transport over loopback, two OS processes.

    python benchmarks/grpc_link.py [--mb 100] [--repeat 5] [--small 500]

Rank 0 (this process) sends; rank 1 (a spawned process) receives and acknowledges.
Runs the same measurements over mutual TLS and, side by side as the baseline, over
the same transport without TLS (``insecure=True``), and reports medians.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from veil.net.certs import TlsFiles, throwaway_federation
from veil.net.grpc_transport import GrpcConfig, GrpcTransport, free_port

NAMES = ["sender", "receiver"]


def _cfg(rank: int, addrs: Sequence[str], tls: TlsFiles | None) -> GrpcConfig:
    return GrpcConfig(rank=rank, names=NAMES, addresses=addrs, tls=tls, insecure=tls is None)


def _receiver(addrs: list[str], tls: TlsFiles | None) -> None:
    t = GrpcTransport(_cfg(1, addrs, tls))
    i = 0
    while True:
        i += 1
        data = t.recv(0, f"b:P2P-{i}:0->1", 600)
        if data == b"stop":
            break
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t.send(0, f"b:P2P-{i}:1->0", f"{len(data)} {time.process_time()} {rss}".encode())
    t.close()


def _run(tls: dict[str, TlsFiles] | None, mb: int, repeat: int, small: int) -> dict[str, float]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in NAMES]
    mine, theirs = (tls["sender"], tls["receiver"]) if tls else (None, None)
    proc = mp.get_context("spawn").Process(target=_receiver, args=(addrs, theirs))
    proc.start()
    t = GrpcTransport(_cfg(0, addrs, mine))
    i = 0

    peak = {"receiver_rss_mb": 0.0}

    def roundtrip(payload: bytes) -> float:
        """Send, wait for the ack; return the receiver's CPU seconds so far."""
        nonlocal i
        i += 1
        t.send(1, f"b:P2P-{i}:0->1", payload)
        n, cpu, rss = t.recv(1, f"b:P2P-{i}:1->0", 600).split()
        assert int(n) == len(payload)
        peak["receiver_rss_mb"] = int(rss) / 1024
        return float(cpu)

    rcpu = roundtrip(b"warm-up")
    payload = os.urandom(mb << 20)
    big_s, big_cpu, recv_cpu = [], [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        rcpu0, rcpu = rcpu, roundtrip(payload)
        big_s.append(time.perf_counter() - t0)
        big_cpu.append(time.process_time() - c0)
        recv_cpu.append(rcpu - rcpu0)
    lat = []
    for _ in range(small):
        t0 = time.perf_counter()
        roundtrip(b"x" * 32)
        lat.append(time.perf_counter() - t0)
    i += 1
    t.send(1, f"b:P2P-{i}:0->1", b"stop")
    proc.join(60)
    t.close()
    med = statistics.median(big_s)
    return {
        "MB/s": mb * 1.048576 / med,
        "big_s": med,
        "sender_cpu_s": statistics.median(big_cpu),
        "receiver_cpu_s": statistics.median(recv_cpu),
        "rtt_ms": statistics.median(lat) * 1e3,
        "rtt_p90_ms": sorted(lat)[int(0.9 * len(lat))] * 1e3,
        "sender_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100, help="size of the big message in MiB")
    ap.add_argument("--repeat", type=int, default=5, help="big messages per mode")
    ap.add_argument("--small", type=int, default=500, help="small round trips per mode")
    ap.add_argument("--no-baseline", action="store_true", help="mTLS only, skip insecure")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tls = throwaway_federation(NAMES, Path(tmp))
        res = {"mTLS": _run(tls, a.mb, a.repeat, a.small)}
        if not a.no_baseline:
            res["insecure"] = _run(None, a.mb, a.repeat, a.small)
    print(f"{a.mb} MiB message x{a.repeat}, {a.small} small round trips (medians)")
    for mode, r in res.items():
        print(
            f"{mode:9s} {r['MB/s']:7.1f} MB/s  ({r['big_s']:.2f} s, "
            f"CPU sender {r['sender_cpu_s']:.2f} s receiver {r['receiver_cpu_s']:.2f} s)"
            f"  small-message round trip {r['rtt_ms']:.2f} ms (p90 {r['rtt_p90_ms']:.2f} ms)"
            f"  peak RSS sender {r['sender_rss_mb']:.0f} MB receiver {r['receiver_rss_mb']:.0f} MB"
        )
    if "insecure" not in res:
        return
    m, b = res["mTLS"], res["insecure"]
    print(
        f"mTLS / insecure: throughput x{m['MB/s'] / b['MB/s']:.2f}, "
        f"rtt x{m['rtt_ms'] / b['rtt_ms']:.2f}"
    )


if __name__ == "__main__":
    main()

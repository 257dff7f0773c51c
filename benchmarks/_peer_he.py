"""Peer HE timings, run inside the peer's own venv by benchmarks/paillier.py (needs numpy).

    python _peer_he.py heu-zpaillier|heu-ou|fate-paillier BITS N REPEATS ROWS COLS

Prints one JSON line: {op: {"wall_per_s", "cpu_per_s", "wall_s"}}. CPU time counts all
threads of this process (HEU runs its own thread pool).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def measure(fn: Callable[[], Any], ops: int, repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    w, c = statistics.median(walls), statistics.median(cpus)
    return {"wall_per_s": ops / w, "cpu_per_s": ops / max(c, 1e-9), "wall_s": w}


def heu(schema: str, bits: int, n: int, *sizes: int) -> dict[str, Any]:
    repeats, rows, cols = sizes
    from heu import numpy as hnp
    from heu import phe

    kind = phe.SchemaType.ZPaillier if schema == "zpaillier" else phe.SchemaType.OU
    kit = hnp.setup(kind, bits)
    enc = kit.float_encoder()
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    pt = kit.array(x, enc)
    encryptor, decryptor, ev = kit.encryptor(), kit.decryptor(), kit.evaluator()
    res: dict[str, Any] = {}
    res["encrypt"] = measure(lambda: encryptor.encrypt(pt), n, repeats)
    c = encryptor.encrypt(pt)
    c2 = encryptor.encrypt(kit.array(x[::-1].copy(), enc))
    res["decrypt"] = measure(lambda: decryptor.decrypt(c), n, repeats)
    res["ct+ct"] = measure(lambda: ev.add(c, c2), n, repeats)
    s = kit.array(np.full(n, 0.731), enc)
    res["ct*scalar"] = measure(lambda: ev.mul(c, s), n, repeats)
    d = encryptor.encrypt(kit.array(rng.normal(size=rows), enc))
    X = kit.array(rng.normal(size=(rows, cols)), enc)
    res["matvec"] = measure(lambda: ev.matmul(d, X), rows * cols, 1)
    return res


def fate(bits: int, n: int, repeats: int, rows: int, cols: int) -> dict[str, Any]:
    from fate_utils import paillier as fp

    sk, pk, coder = fp.keygen(bits)
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    encoded = coder.encode_f64_vec(x)
    res: dict[str, Any] = {}
    res["encrypt"] = measure(lambda: pk.encrypt_encoded(encoded, obfuscate=True), n, repeats)
    c = pk.encrypt_encoded(encoded, obfuscate=True)
    c2 = pk.encrypt_encoded(coder.encode_f64_vec(x[::-1].copy()), obfuscate=True)
    res["decrypt"] = measure(lambda: coder.decode_f64_vec(sk.decrypt_to_encoded(c)), n, repeats)
    res["ct+ct"] = measure(lambda: c.add(pk, c2), n, repeats)
    s = coder.encode_f64(0.731)
    res["ct*scalar"] = measure(lambda: c.mul_scalar(pk, s), n, repeats)
    d = pk.encrypt_encoded(coder.encode_f64_vec(rng.normal(size=rows)), obfuscate=True)
    X = coder.encode_f64_vec(rng.normal(size=rows * cols))
    res["matvec"] = measure(lambda: d.matmul(pk, X, [1, rows], [rows, cols]), rows * cols, 1)
    return res


def main() -> None:
    lib, bits, n, repeats, rows, cols = sys.argv[1], *map(int, sys.argv[2:7])
    if lib == "heu-zpaillier":
        out = heu("zpaillier", bits, n, repeats, rows, cols)
    elif lib == "heu-ou":
        out = heu("ou", bits, n, repeats, rows, cols)
    elif lib == "fate-paillier":
        out = fate(bits, n, repeats, rows, cols)
    else:
        raise SystemExit(f"unknown peer {lib}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

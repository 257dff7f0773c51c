"""Wire compatibility with SecretFlow's own link layer (yacl, spu 0.9.1b0).

Needs the peer venv (``VEIL_SF_PEER``, see ``tests/sf_peer.py``). SecretFlow pushes its
mesh-connect key and its first PSI batch CHUNKED (payload limit forced down to 20 kB);
Veil must reassemble it, and SecretFlow must accept Veil's push.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sf_peer import sf_peer_venv
from veil.net.grpc_transport import GrpcConfig, GrpcTransport, free_port

pytestmark = pytest.mark.interop


def test_secretflow_link_talks_to_veil(tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("id\n" + "".join(f"u{i}\n" for i in range(5000)))
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    cfg = GrpcConfig(rank=0, names=["veil", "sf"], addresses=addrs, tls=None, insecure=True)
    py, script = sf_peer_venv()
    t = GrpcTransport(cfg)
    cmd = [str(py), str(script), "--rank", "1", "--self", addrs[1]]
    cmd += ["--peer", addrs[0], "--in", str(ids), "--out", str(tmp_path / "out.csv")]
    cmd += ["--no-handshake", "--http-max-payload-size", "20000", "--fin-timeout", "1"]
    with open(tmp_path / "sf.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        t.connect(timeout=90)  # mesh handshake; yacl's key is "connect_1\x01\x020"
        batch = t.recv(1, "root:P2P-1:1->0", 60)  # first EcdhPsiCipherBatch, 4096 points
        assert len(batch) > 4096 * 32
        assert t.receiver.frames > len(batch) // 20000  # it came CHUNKED
        assert t.receiver.largest_frame <= 20000
    finally:
        proc.kill()
        proc.wait()
        t.close()

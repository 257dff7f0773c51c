"""The wire-leak helper catches each planted encoding of a secret and passes clean traffic."""

from __future__ import annotations

import hashlib
import secrets as pysecrets
import struct
from typing import Any

import numpy as np
import pytest

from tests.wire_check import Frame, Recorder, assert_no_leak
from veil.codec import IntArray, encode
from veil.net.memory import MemoryHub

RNG = np.random.default_rng(7)
N = 400
INCOME = np.round(RNG.lognormal(10, 0.5, N), 2)  # distinctive floats
AGE = RNG.integers(18, 80, N)  # small ints: caught only as runs
LABELS = RNG.integers(0, 2, N)  # balanced 0/1
RESID = RNG.normal(0, 1, N)
IDS = [f"cust-{i:06d}" for i in range(N)]
SECRETS: dict[str, Any] = {
    "feature income": INCOME,
    "feature age": AGE,
    "labels": LABELS,
    "residuals": RESID,
    "ids": IDS,
}


def frames_of(*values: Any, key: str = "k") -> list[Frame]:
    return [Frame(0, 1, f"{key}{i}", encode(v)) for i, v in enumerate(values)]


def leaks(*values: Any, **opts: Any) -> str:
    with pytest.raises(AssertionError) as e:
        assert_no_leak(frames_of(*values), SECRETS, **opts)
    return str(e.value)


def clean_values() -> list[Any]:
    """What honest protocols send: ciphertexts, masked values, points, public counts."""
    rng = np.random.default_rng(99)
    n_bits = 2048
    return [
        IntArray([pysecrets.randbits(n_bits) for _ in range(N)], n_bits // 8),
        RESID + rng.normal(0, 1e6, N),  # masked floats
        (INCOME * 1.0001 + rng.normal(0, 1e3, N)).astype(np.float32),
        {"counts": np.bincount(AGE // 10).astype(np.int64), "n": N, "bins": [0, 1, 2, 3]},
        [pysecrets.token_bytes(32) for _ in range(200)],  # ECDH points / OPRF outputs
        rng.integers(0, 2, 20).astype(bool),  # a short public bit vector
        rng.integers(0, 2, 3000).astype(np.int8),  # a long random one
        pysecrets.token_bytes(50_000),
        {"tag": "grad", "round": 3, "shape": [N, 4]},
    ]


# ----------------------------------------------------------------------- planted leaks


def test_whole_column_as_float64_array() -> None:
    msg = leaks({"x": INCOME.copy()})
    assert "'feature income'" in msg and "'k0'" in msg and "0->1" in msg


def test_column_as_float32() -> None:
    assert "'feature income'" in leaks(INCOME.astype(np.float32))
    assert "'residuals'" in leaks(RESID.astype(np.float32))


def test_float32_rounding_sent_as_float64() -> None:
    assert "'residuals'" in leaks(RESID.astype(np.float32).astype(np.float64).tolist())


def test_labels_as_int8() -> None:
    msg = leaks(LABELS.astype(np.int8))
    assert "'labels'" in msg and "consecutive values" in msg


def test_labels_as_bool_array() -> None:
    assert "'labels'" in leaks(LABELS.astype(bool))


def test_labels_as_raw_bytes() -> None:
    assert "'labels'" in leaks(b"hdr" + LABELS.astype(np.uint8).tobytes())


def test_small_int_feature_as_int8_run() -> None:
    assert "'feature age'" in leaks(AGE[100:140].astype(np.int8))


def test_column_as_python_list_tagged_per_value() -> None:
    assert "'residuals'" in leaks(RESID.tolist())
    assert "'labels'" in leaks([int(v) for v in LABELS])


def test_column_inside_a_dict_value() -> None:
    assert "'feature income'" in leaks({"meta": {"g": INCOME.tolist(), "h": "x"}})


def test_column_in_a_table() -> None:
    table = np.column_stack([RNG.normal(size=N), LABELS])
    assert "'labels'" in leaks(table)
    rows = [[float(a), int(b)] for a, b in zip(RNG.normal(size=N), LABELS, strict=True)]
    assert "'labels'" in leaks(rows)
    records = [{"r": i, "y": int(b)} for i, b in enumerate(LABELS)]
    assert "'labels'" in leaks(records)


def test_subset_of_rows() -> None:
    rows = np.sort(RNG.choice(N, 10, replace=False))
    assert "'residuals'" in leaks(RESID[rows])  # distinctive: found value by value
    batch = np.sort(RNG.choice(N, 120, replace=False))
    labels_batch = LABELS[batch].astype(np.int8)
    assert_no_leak(frames_of(labels_batch), {"labels": LABELS})  # unseen without the subset
    msg = leaks(labels_batch, subsets={"batch 3": batch})
    assert "subset 'batch 3'" in msg


def test_single_distinctive_value_needs_min_hits_1() -> None:
    assert_no_leak(frames_of(float(INCOME[5])), SECRETS)  # one hit may be chance
    assert "'feature income'" in leaks(float(INCOME[5]), min_hits=1)
    assert "'feature income'" in leaks([float(v) for v in INCOME[5:8]])  # three may not


def test_ids_as_str() -> None:
    assert "'ids'" in leaks(IDS[:3])
    assert "'ids'" in leaks({"note": f"row of {IDS[17]} failed"})
    assert "'ids'" in leaks(np.array([x.encode() for x in IDS[:5]]))
    assert "'ids'" in leaks([IDS[9].encode()])


def test_short_ids_as_values_and_tokens() -> None:
    short = {"ids": ["a1", "b2", "c3"]}
    assert_no_leak(frames_of("ab12"), short)
    with pytest.raises(AssertionError):
        assert_no_leak(frames_of(["b2"]), short)
    with pytest.raises(AssertionError):
        assert_no_leak(frames_of("id b2 done"), short)


def test_ids_sha256_truncated_to_8_bytes() -> None:
    digest = hashlib.sha256(IDS[42].encode()).digest()
    assert "sha256" in leaks(digest[:8])
    assert "sha256" in leaks(b"\x00" * 5 + digest[10:18] + b"\x01")
    assert "sha256" in leaks(np.frombuffer(digest[:8], dtype="<u8"))
    assert "sha256" in leaks(int.from_bytes(digest[:8], "big"))
    assert "sha256" in leaks(digest.hex())
    assert "sha512" in leaks(
        IntArray([int.from_bytes(hashlib.sha512(b"cust-000007").digest())], 64)
    )


def test_ints_in_an_intarray() -> None:
    salaries = RNG.integers(20_000, 200_000, N)
    with pytest.raises(AssertionError, match="'salary'"):
        assert_no_leak(frames_of(IntArray([int(v) for v in salaries], 8)), {"salary": salaries})


def test_float64_bytes_at_an_odd_offset() -> None:
    assert "'feature income'" in leaks(b"abc" + INCOME[:20].tobytes())
    assert "'feature income'" in leaks(b"".join(struct.pack(">d", v) for v in INCOME[:5]))


def test_leak_split_over_frames_counts() -> None:
    frames = frames_of(float(RESID[0]), float(RESID[1]), float(RESID[2]))
    with pytest.raises(AssertionError, match="3 distinct values"):
        assert_no_leak(frames, SECRETS)


# ----------------------------------------------------------------------- clean traffic


def test_clean_traffic_passes() -> None:
    assert_no_leak(frames_of(*clean_values()), SECRETS)


def test_low_entropy_run_needs_enough_bits() -> None:
    # 16 equal labels in a row could be chance; 60 cannot
    assert_no_leak(frames_of(LABELS[:16].astype(np.int8)), {"labels": LABELS})
    with pytest.raises(AssertionError):
        assert_no_leak(frames_of(LABELS[:60].astype(np.int8)), {"labels": LABELS})
    with pytest.raises(AssertionError):
        assert_no_leak(frames_of(LABELS[:16].astype(np.int8)), {"labels": LABELS}, min_bits=4)


# ----------------------------------------------------------------------- the machinery


def test_recorder_as_a_memory_tap() -> None:
    rec = Recorder()
    hub = MemoryHub(2, tap=rec)
    hub.transport(0).send(1, "x", encode({"y": LABELS.astype(np.int8)}))
    hub.transport(1).send(0, "public", encode(N))
    assert rec.keys() == ["x", "public"]
    src, dst, key, payload = rec.frames[0]
    assert (src, dst, key) == (0, 1, "x") and isinstance(payload, bytes)
    with pytest.raises(AssertionError, match="'x' \\(0->1\\)"):
        assert_no_leak(rec.frames, {"labels": LABELS})
    assert_no_leak(rec.frames, {"labels": LABELS}, allow=lambda k: k == "x")


def test_undecodable_frame_fails_unless_decoder_given() -> None:
    frames = [Frame(0, 1, "proto", b"\xff\x00garbage")]
    with pytest.raises(AssertionError, match="does not decode"):
        assert_no_leak(frames, SECRETS)
    assert_no_leak(frames, SECRETS, decode=lambda b: {"raw": b})
    leaky = [Frame(0, 1, "proto", IDS[3].encode())]
    with pytest.raises(AssertionError, match="'ids'"):
        assert_no_leak(leaky, SECRETS, decode=lambda b: {"raw": b})


def test_protobuf_messages_are_walked() -> None:
    from veil.protocols.interconnect.proto import ecdh_psi_pb2

    msg = ecdh_psi_pb2.EcdhPsiCipherBatch(type="enc", batch_index=0, count=1)
    msg.ciphertext = hashlib.sha256(IDS[1].encode()).digest()
    frames = [Frame(0, 1, "b", msg.SerializeToString())]
    with pytest.raises(AssertionError, match="sha256"):
        assert_no_leak(frames, SECRETS, decode=ecdh_psi_pb2.EcdhPsiCipherBatch.FromString)


def test_a_check_of_nothing_fails() -> None:
    with pytest.raises(AssertionError, match="no frame was checked"):
        assert_no_leak([], SECRETS)
    with pytest.raises(AssertionError, match="no frame was checked"):
        assert_no_leak(frames_of(1), SECRETS, allow=lambda k: True)
    with pytest.raises(ValueError):
        assert_no_leak(frames_of(1), {})
    with pytest.raises(ValueError, match="fits no"):
        assert_no_leak(frames_of(1), SECRETS, subsets={"b": [N + 5]})

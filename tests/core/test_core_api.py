"""API contract of edgesel_server.core.Bandit (docs/core.md): errors, edge cases, snapshots, threads."""

from __future__ import annotations

import math
import pickle
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from numpy_reference import ReferenceBandit, best_index, fields

from edgesel_server.core import Bandit, SnapshotError, UnknownArmError

POLICIES = ["disjoint_linucb", "hybrid_linucb", "lin_ts"]
D, P = 3, 2


def make(policy="hybrid_linucb", n_arms=3, n_updates=20, seed=0, **kw):
    rng = np.random.default_rng(seed)
    b = Bandit(policy, D, P, seed=seed, **kw)
    for i in range(n_arms):
        b.add_arm(f"arm{i}", rng.normal(size=P))
    for _ in range(n_updates):
        b.update(f"arm{rng.integers(n_arms)}", rng.normal(size=D), float(rng.normal()))
    return b


def snapshot_state(b: Bandit) -> dict:
    out = {
        "props": (b.policy, b.device_dim, b.model_dim, b.joint_dim, b.alpha, b.lam, b.refactor_every),
        "n_updates": b.n_updates,
        "ids": b.arm_ids(),
        "arms": {a: b.arm_stats(a) for a in b.arm_ids()},
    }
    if b.joint_dim:
        out["shared"] = b.shared_stats()
    return out


def assert_same_state(s1: dict, s2: dict) -> None:
    assert s1["props"] == s2["props"]
    assert s1["n_updates"] == s2["n_updates"]
    assert s1["ids"] == s2["ids"]
    for a in s1["ids"]:
        for key, v in s1["arms"][a].items():
            np.testing.assert_array_equal(s2["arms"][a][key], v, err_msg=f"{a} {key}")
    if "shared" in s1:
        for key, v in s1["shared"].items():
            np.testing.assert_array_equal(s2["shared"][key], v, err_msg=f"shared {key}")


# ---- construction ------------------------------------------------------------------------------------
def test_properties_and_defaults():
    b = Bandit("hybrid_linucb", 4, 2)
    assert (b.policy, b.device_dim, b.model_dim, b.joint_dim) == ("hybrid_linucb", 4, 2, 15)
    assert (b.alpha, b.lam, b.refactor_every, b.n_updates) == (1.0, 1.0, 1000, 0)
    assert Bandit("disjoint_linucb", 4).joint_dim == 0
    assert Bandit("lin_ts", 4).joint_dim == 0
    assert Bandit("lin_ts", 4, 2).joint_dim == 15
    assert Bandit("hybrid_linucb", 4).joint_dim == 5  # model_dim 0: z = [1, x]
    b = Bandit("lin_ts", 2, 1, alpha=0.0, lam=3.5, refactor_every=7, seed=2**64 - 1)
    assert (b.alpha, b.lam, b.refactor_every) == (0.0, 3.5, 7)
    for name in (
        "policy",
        "device_dim",
        "model_dim",
        "joint_dim",
        "alpha",
        "lam",
        "refactor_every",
        "n_updates",
    ):
        with pytest.raises(AttributeError):
            setattr(b, name, getattr(b, name))


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        (("ucb", 3), {}, "policy"),
        (("", 3), {}, "policy"),
        (("disjoint_linucb", 3), {"alpha": -0.1}, "alpha"),
        (("disjoint_linucb", 3), {"alpha": math.nan}, "alpha"),
        (("disjoint_linucb", 3), {"alpha": math.inf}, "alpha"),
        (("disjoint_linucb", 3), {"lam": 0.0}, "lam"),
        (("disjoint_linucb", 3), {"lam": -1.0}, "lam"),
        (("disjoint_linucb", 3), {"lam": math.nan}, "lam"),
        (("disjoint_linucb", 3), {"lam": math.inf}, "lam"),
        (("disjoint_linucb", 0), {}, "dim"),
        (("disjoint_linucb", -1), {}, "dim"),
        (("hybrid_linucb", 3, -1), {}, "dim"),
        (("hybrid_linucb", 10**9, 10**9), {}, "dim"),  # absurd sizes: an error, not an allocation
        (("hybrid_linucb", 3), {"refactor_every": 0}, "refactor"),
        (("hybrid_linucb", 3), {"refactor_every": -5}, "refactor"),
        (("lin_ts", 3), {"seed": -1}, "seed"),
        (("lin_ts", 3), {"seed": 2**64}, "seed"),
    ],
)
def test_constructor_rejects(args, kwargs, needle):
    with pytest.raises(ValueError, match=f"(?i){needle}"):
        Bandit(*args, **kwargs)


# ---- arms --------------------------------------------------------------------------------------------
def test_arm_bookkeeping():
    b = Bandit("hybrid_linucb", 2, 1)
    for a in ["z", "a", "m"]:
        b.add_arm(a, [0.5])
    assert b.arm_ids() == ["z", "a", "m"]
    assert len(b) == 3 and "a" in b and "q" not in b
    b.remove_arm("a")
    assert b.arm_ids() == ["z", "m"] and "a" not in b and len(b) == 2
    b.add_arm("a", np.array([0.25]))
    assert b.arm_ids() == ["z", "m", "a"]
    np.testing.assert_array_equal(b.arm_stats("a")["model_features"], [0.25])
    d = Bandit("disjoint_linucb", 2)
    d.add_arm("x")
    d.add_arm("y", [])
    assert d.arm_ids() == ["x", "y"]
    assert np.asarray(d.arm_stats("x")["model_features"]).shape == (0,)


def test_duplicate_arm_rejected():
    b = Bandit("hybrid_linucb", 2, 1)
    b.add_arm("dup", [1.0])
    with pytest.raises(ValueError, match="dup") as ei:
        b.add_arm("dup", [2.0])
    assert not isinstance(ei.value, UnknownArmError)
    np.testing.assert_array_equal(b.arm_stats("dup")["model_features"], [1.0])
    assert len(b) == 1


@pytest.mark.parametrize(
    "feats", [[1.0], [1.0, 2.0, 3.0], [math.nan, 1.0], [1.0, math.inf], [-math.inf, 0.0], None]
)
def test_bad_model_features_rejected(feats):
    b = Bandit("hybrid_linucb", 2, 2)
    with pytest.raises(ValueError):
        b.add_arm("a", feats)
    assert len(b) == 0


def test_unknown_arm_errors_name_the_arm():
    b = make()
    x = np.zeros(D)
    calls = [
        lambda: b.update("ghost-7", x, 1.0),
        lambda: b.remove_arm("ghost-7"),
        lambda: b.arm_stats("ghost-7"),
        lambda: b.score(x, ["arm0", "ghost-7"]),
        lambda: b.select(x, ["ghost-7"]),
        lambda: b.update_batch(["arm0", "ghost-7"], np.zeros((2, D)), np.zeros(2)),
    ]
    before = snapshot_state(b)
    for call in calls:
        with pytest.raises(UnknownArmError, match="ghost-7") as ei:
            call()
        assert isinstance(ei.value, ValueError)
    assert issubclass(UnknownArmError, ValueError) and issubclass(SnapshotError, ValueError)
    assert_same_state(before, snapshot_state(b))


# ---- input validation --------------------------------------------------------------------------------
BAD_X = {
    "nan": np.array([0.0, math.nan, 1.0]),
    "inf": np.array([math.inf, 0.0, 1.0]),
    "-inf": np.array([0.0, 0.0, -math.inf]),
    "short": np.zeros(D - 1),
    "long": np.zeros(D + 1),
    "empty": np.zeros(0),
    "2d": np.zeros((1, D)),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("bad", list(BAD_X))
def test_bad_x_rejected_everywhere(policy, bad):
    b = make(policy)
    x = BAD_X[bad]
    before = snapshot_state(b)
    for call in (
        lambda: b.score(x),
        lambda: b.select(x),
        lambda: b.select(x, ["arm1"]),
        lambda: b.update("arm0", x, 1.0),
    ):
        with pytest.raises(ValueError) as ei:
            call()
        assert not isinstance(ei.value, UnknownArmError)
    assert_same_state(before, snapshot_state(b))
    if bad in ("nan", "inf", "-inf"):
        with pytest.raises(ValueError):
            Bandit.joint_features(x, np.zeros(P))
        with pytest.raises(ValueError):
            Bandit.joint_features(np.zeros(D), np.array([0.0, x[~np.isfinite(x)][0]]))


def test_error_messages_name_the_problem():
    b = make()
    with pytest.raises(ValueError, match="(?i)(nan|finite)"):
        b.select(BAD_X["nan"])
    with pytest.raises(ValueError, match="(?i)(inf|finite)"):
        b.select(BAD_X["inf"])
    with pytest.raises(ValueError, match="(?i)(length|dim|shape|size)"):
        b.select(BAD_X["short"])
    with pytest.raises(ValueError, match="(?i)(reward|nan|finite)"):
        b.update("arm0", np.zeros(D), math.nan)
    with pytest.raises(ValueError, match="(?i)(empty|no arm|eligible)"):
        b.select(np.zeros(D), [])


@pytest.mark.parametrize("reward", [math.nan, math.inf, -math.inf])
def test_bad_reward_rejected(reward):
    b = make()
    before = snapshot_state(b)
    with pytest.raises(ValueError):
        b.update("arm0", np.zeros(D), reward)
    with pytest.raises(ValueError):
        b.update_batch(["arm0", "arm1"], np.zeros((2, D)), np.array([0.0, reward]))
    assert_same_state(before, snapshot_state(b))


def test_empty_eligible_list():
    b = make()
    for call in (lambda: b.select(np.zeros(D), []), lambda: b.score(np.zeros(D), [])):
        with pytest.raises(ValueError, match="(?i)(empty|eligible|no arm)") as ei:
            call()
        assert not isinstance(ei.value, UnknownArmError)
    empty = Bandit("disjoint_linucb", D)
    with pytest.raises(ValueError):
        empty.select(np.zeros(D))


def test_update_batch_validates_everything_first():
    b = make(n_updates=5)
    before = snapshot_state(b)
    good_x = np.ones((3, D))
    bad_x = good_x.copy()
    bad_x[2, 1] = math.nan
    for args in [
        (["arm0", "arm1", "arm2"], bad_x, np.zeros(3)),  # NaN in the last row
        (["arm0", "arm1", "arm2"], good_x, np.array([0.0, 1.0, math.inf])),  # bad last reward
        (["arm0", "arm1", "nope"], good_x, np.zeros(3)),  # unknown last arm
        (["arm0", "arm1"], good_x, np.zeros(3)),  # length mismatch
        (["arm0", "arm1", "arm2"], good_x, np.zeros(2)),
        (["arm0", "arm1", "arm2"], np.ones((3, D + 1)), np.zeros(3)),  # wrong width
    ]:
        with pytest.raises(ValueError):
            b.update_batch(*args)
        assert_same_state(before, snapshot_state(b))
    b.update_batch([], np.zeros((0, D)), np.zeros(0))
    assert_same_state(before, snapshot_state(b))


def test_shared_stats_only_for_hybrid_statistics():
    with pytest.raises(ValueError):
        make("disjoint_linucb").shared_stats()
    with pytest.raises(ValueError):
        Bandit("lin_ts", 2).shared_stats()
    assert make("lin_ts").shared_stats()["beta"].shape == ((D + 1) * (P + 1),)


def test_accepts_lists_and_float_like_inputs():
    b = make()
    arm = b.select([0.1, 0.2, 0.3]).id
    b.update(arm, [0.1, 0.2, 0.3], 1)  # int reward
    b.update(arm, np.array([1, 2, 3], dtype=np.float32), np.float64(0.5))


# ---- tie-breaking ------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["disjoint_linucb", "hybrid_linucb"])
def test_ties_go_to_smallest_id(policy):
    ids = ["m10", "m2", "b", "B", "é", "a_", "a"]
    b = Bandit(policy, 2, 1 if policy == "hybrid_linucb" else 0, alpha=1.0)
    for a in ids:
        b.add_arm(a, [0.5] if policy == "hybrid_linucb" else None)  # identical arms: identical totals
    for x in [np.zeros(2), np.array([0.3, -0.7]), np.array([1.0, 1.0])]:
        assert b.select(x).id == "B"  # "B" < "a" < "a_" < "b" < "m10" < "m2" < "é"
        assert b.select(x, ["m2", "m10", "é"]).id == "m10"
        assert b.select(x, ["é", "b", "a_"]).id == "a_"
        _, _, _, total = b.score(x)
        assert len(set(total.tolist())) == 1
    # same updates on every arm keep them tied
    for a in ids:
        b.update(a, np.array([0.5, -0.5]), 1.0)
    assert b.select(np.array([0.2, 0.1])).id == "B"
    b.update("m2", np.array([0.2, 0.1]), 100.0)
    assert b.select(np.array([0.2, 0.1])).id == "m2"


def test_alpha_zero_is_greedy_and_tie_free_of_bonus():
    b = make("disjoint_linucb", alpha=0.0)
    _, _, bonus, total = b.score(np.ones(D))
    np.testing.assert_array_equal(bonus, 0.0)
    ids, mean, _, _ = b.score(np.ones(D))
    np.testing.assert_array_equal(total, mean)
    assert b.select(np.ones(D)).id == ids[best_index(list(ids), mean)]


# ---- many arms ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_thousands_of_arms_in_one_call(policy):
    rng = np.random.default_rng(4)
    d, p, n = 4, 3, 5000
    b = Bandit(policy, d, p, alpha=0.5, seed=1)
    ref = ReferenceBandit(policy, d, p, alpha=0.5, seed=1)
    ids = [f"model-{i:05d}" for i in rng.permutation(n)]
    for a in ids:
        m = rng.uniform(-1, 1, size=p)
        b.add_arm(a, m)
        ref.add_arm(a, m)
    upd = list(rng.choice(ids, 3000))
    xs, rs = rng.uniform(-1, 1, size=(3000, d)), rng.normal(size=3000)
    b.update_batch(upd, xs, rs)
    ref.update_batch(upd, xs, rs)
    x = rng.uniform(-1, 1, size=d)
    out_ids, mean, bonus, total = b.score(x)
    assert list(out_ids) == ids and mean.shape == bonus.shape == total.shape == (n,)
    sc = ref.score(x)
    np.testing.assert_allclose(mean, sc.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bonus, sc.bonus, rtol=1e-9, atol=1e-9)
    subset = list(rng.permutation(ids)[:3000])
    arm, _, _, tot = fields(b.select(x, subset))
    ref_arm, ref_sc = ref.select(x, subset)
    assert arm == ref_arm and math.isclose(tot, ref_sc.total[ref_sc.ids.index(arm)], rel_tol=1e-9)


# ---- snapshots ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_snapshot_round_trip(policy):
    rng = np.random.default_rng(6)
    b = make(policy, n_arms=5, n_updates=100, seed=3, alpha=0.8, lam=0.7, refactor_every=13)
    for _ in range(7):  # advance the RNG (lin_ts) before snapshotting
        b.score(rng.normal(size=D))
    blob = b.to_bytes()
    assert isinstance(blob, bytes)
    assert blob[:8] == b"EDGESELB" and struct.unpack("<I", blob[8:12]) == (2,)
    crc = zlib.crc32(blob[:-4])
    assert blob[-4:] in (struct.pack("<I", crc), struct.pack(">I", crc))
    c = Bandit.from_bytes(blob)
    assert isinstance(c, Bandit)
    assert_same_state(snapshot_state(b), snapshot_state(c))
    # identical behaviour afterwards: scores (incl. the Thompson draws), choices, and updates that
    # cross several refactor points (so the refactor counters must be in the snapshot too)
    for step in range(60):
        x = rng.normal(size=D)
        arms = None if step % 3 else ["arm4", "arm1", "arm2"]
        s1, s2 = b.score(x, arms), c.score(x, arms)
        assert list(s1[0]) == list(s2[0])
        for u, v in zip(s1[1:], s2[1:], strict=True):
            np.testing.assert_array_equal(u, v)
        sel1, sel2 = b.select(x, arms), c.select(x, arms)
        assert fields(sel1) == fields(sel2)
        r = float(rng.normal())
        b.update(sel1.id, x, r)
        c.update(sel2.id, x, r)
    assert_same_state(snapshot_state(b), snapshot_state(c))
    d = Bandit.from_bytes(c.to_bytes())
    assert_same_state(snapshot_state(b), snapshot_state(d))


def _blob():
    return make("lin_ts", n_arms=2, n_updates=5).to_bytes()


def test_snapshot_every_single_byte_flip_is_detected():
    blob = _blob()
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(blob)
            bad[i] ^= mask
            with pytest.raises(SnapshotError):
                Bandit.from_bytes(bytes(bad))


def test_snapshot_truncation_and_padding_detected():
    blob = _blob()
    for n in range(len(blob)):
        with pytest.raises(SnapshotError):
            Bandit.from_bytes(blob[:n])
    for extra in (b"\x00", b"EDGESELB", blob):
        with pytest.raises(SnapshotError):
            Bandit.from_bytes(blob + extra)


def _with_crc(body: bytes, like: bytes) -> bytes:
    crc = zlib.crc32(body)
    le = like[-4:] == struct.pack("<I", zlib.crc32(like[:-4]))
    return body + struct.pack("<I" if le else ">I", crc)


def test_snapshot_foreign_bytes_rejected():
    blob = _blob()
    rng = np.random.default_rng(0)
    foreign = [
        b"",
        b"E",
        b"EDGESELB",
        b"EDGESELB\x01\x00\x00\x00",
        pickle.dumps({"a": 1}),
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        rng.bytes(len(blob)),
        bytes(len(blob)),
        b"edgeselb" + blob[8:],
        _with_crc(blob[:8] + struct.pack("<I", 3) + blob[12:-4], blob),  # unsupported version, good CRC
        _with_crc(blob[:8] + struct.pack("<I", 0) + blob[12:-4], blob),
    ]
    for data in foreign:
        with pytest.raises(SnapshotError):
            Bandit.from_bytes(data)


FUZZ_SCRIPT = r"""
import struct, sys, zlib
import numpy as np
from edgesel_server.core import Bandit, SnapshotError

b = Bandit("hybrid_linucb", 3, 2, seed=1)
rng = np.random.default_rng(0)
for i in range(3):
    b.add_arm(f"arm{i}", rng.normal(size=2))
for _ in range(10):
    b.update(f"arm{rng.integers(3)}", rng.normal(size=3), 1.0)
blob = b.to_bytes()
le = blob[-4:] == struct.pack("<I", zlib.crc32(blob[:-4]))
fmt = "<I" if le else ">I"
body = blob[:-4]
outcomes = {"ok": 0, "snapshot_error": 0}
for trial in range(3000):
    bad = bytearray(body)
    kind = trial % 3
    if kind == 0:  # random bytes in the state, CRC recomputed: passes the checksum
        for _ in range(1 + trial % 4):
            bad[12 + rng.integers(len(body) - 12)] = rng.integers(256)
    elif kind == 1:  # a 0xFF run: huge lengths / dims
        i = 12 + rng.integers(len(body) - 12)
        bad[i:i + 8] = b"\xff" * 8
    else:  # truncated state with a valid CRC
        bad = bad[: 12 + rng.integers(len(body) - 12)]
    data = bytes(bad) + struct.pack(fmt, zlib.crc32(bytes(bad)))
    try:
        c = Bandit.from_bytes(data)
    except SnapshotError:
        outcomes["snapshot_error"] += 1
        continue
    outcomes["ok"] += 1
    # a blob that decodes must give a usable bandit (or clean ValueErrors), never a crash
    try:
        for a in c.arm_ids():
            c.arm_stats(a)
        c.score(np.zeros(c.device_dim))
    except ValueError:
        pass
print(outcomes)
"""


def test_snapshot_with_valid_crc_but_garbage_state_never_crashes():
    # in a subprocess: a panic that aborts, or an allocation of 2^64 bytes, must not take pytest down
    proc = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr[-3000:]}"
    assert "PanicException" not in proc.stderr
    print(proc.stdout)


# ---- concurrency -------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_threads_score_while_updating_equals_sequential_replay(policy):
    # lin_ts: hybrid statistics; its generator must also not lose or repeat draws under contention
    d, p, n_arms = 6, 3, 40
    rng = np.random.default_rng(12)
    feats = {f"arm{i:02d}": rng.uniform(-1, 1, size=p) for i in range(n_arms)}
    p_used = 0 if policy == "disjoint_linucb" else p
    kw = dict(alpha=1.0, lam=1.0, refactor_every=50, seed=77)
    b = Bandit(policy, d, p_used, **kw)
    for a, m in feats.items():
        b.add_arm(a, m if p_used else None)
    ids = list(feats)
    log: list[tuple[str, np.ndarray, float]] = []
    log_lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = {"score": 0, "scored_arms": 0}

    def scorer(seed):
        r = np.random.default_rng(seed)
        n = scored = 0
        try:
            while not stop.is_set():
                x = r.uniform(-1, 1, size=d)
                if n % 2:
                    arm, mean, bonus, total = fields(b.select(x, list(r.choice(ids, 10, replace=False))))
                    assert arm in feats and math.isfinite(total)
                    scored += 10
                else:
                    out_ids, mean, bonus, total = b.score(x)
                    assert len(out_ids) == n_arms and np.isfinite(total).all()
                    scored += n_arms
                n += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        with log_lock:
            counts["score"] += n
            counts["scored_arms"] += scored

    def updater(seed):
        r = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                a, x, reward = str(r.choice(ids)), r.uniform(-1, 1, size=d), float(r.normal())
                if r.uniform() < 0.1:
                    n = int(r.integers(1, 8))
                    batch = (list(r.choice(ids, n)), r.uniform(-1, 1, size=(n, d)), r.normal(size=n))
                    with log_lock:
                        b.update_batch(*batch)
                        log.extend(zip(batch[0], batch[1], batch[2].tolist(), strict=True))
                else:
                    with log_lock:
                        b.update(a, x, reward)
                        log.append((a, x, reward))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=scorer, args=(100 + i,)) for i in range(8)]
    threads += [threading.Thread(target=updater, args=(200 + i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert counts["score"] > 0 and len(log) > 0

    replay = Bandit(b.policy, d, b.model_dim, **kw)
    for a, m in feats.items():
        replay.add_arm(a, m if p_used else None)
    for a, x, reward in log:
        replay.update(a, x, reward)
    if policy == "lin_ts":  # consume exactly as many normals as the scoring threads did
        q, rem = divmod(counts["scored_arms"], n_arms)
        for _ in range(q):
            replay.score(np.zeros(d))
        if rem:
            replay.score(np.zeros(d), ids[:rem])
    assert replay.n_updates == b.n_updates == len(log)
    for a in ids:
        s1, s2 = b.arm_stats(a), replay.arm_stats(a)
        assert s1["n_updates"] == s2["n_updates"]
        for key in ("a", "a_inv", "b", "theta"):
            np.testing.assert_allclose(s1[key], s2[key], rtol=1e-9, atol=1e-9, err_msg=f"{a} {key}")
    if b.joint_dim:
        s1, s2 = b.shared_stats(), replay.shared_stats()
        for key in ("a", "a_inv", "b", "beta"):
            np.testing.assert_allclose(s1[key], s2[key], rtol=1e-9, atol=1e-9, err_msg=f"shared {key}")
    for x in (np.full(d, 0.3), np.linspace(-1, 1, d)):
        np.testing.assert_allclose(b.score(x)[3], replay.score(x)[3], rtol=1e-9, atol=1e-9)

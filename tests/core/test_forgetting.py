"""Forgetting (`half_life`, docs/core.md "Forgetting") against the plain numpy reference of the same
discounted recursion, the windup of naive forgetting, and exact snapshots and replays.

The reference (numpy_reference.py) keeps every matrix explicitly and applies ``A ← γA + c e_j e_jᵀ`` (and
``b, s, B_a ← γ·``) before each observation of the matrix's clock: an arm's own updates, every event for the
hybrid shared statistics. The core keeps only the inverse by Sherman-Morrison; both must agree to 1e-9
whatever the pull pattern.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy_reference import ReferenceBandit
from test_core_vs_reference import POLICIES, Mirror, arm_ids_st, assert_close, coord, frob_rel, vec

from edgesel_server.core import Bandit, CoreError


def skewed_pick(data, ids):
    """An arm drawn with strongly uneven probabilities (the first arms far more often)."""
    n = len(ids)
    i = min(
        data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    )
    return ids[i]


@pytest.mark.parametrize("policy", POLICIES)
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_forgetting_matches_reference_random_sequences(policy, data):
    d = data.draw(st.integers(1, 5), label="d")
    p = 0 if policy == "disjoint_linucb" else data.draw(st.integers(0, 3), label="p")
    half_life = data.draw(st.sampled_from([1, 2, 3, 5, 17, 200]), label="half_life")
    mir = Mirror(
        policy,
        d,
        p,
        alpha=data.draw(st.floats(0.0, 3.0), label="alpha"),
        lam=data.draw(st.floats(0.1, 10.0), label="lam"),
        seed=data.draw(st.integers(0, 2**64 - 1), label="seed"),
        refactor_every=data.draw(st.sampled_from([1, 3, 1000]), label="refactor_every"),
        half_life=half_life,
    )
    n_arms = data.draw(st.integers(1, 6), label="K")
    for arm_id in data.draw(st.lists(arm_ids_st, min_size=n_arms, max_size=n_arms, unique=True)):
        mir.add_arm(arm_id, data.draw(vec(p)))
    ops = data.draw(
        st.lists(
            st.sampled_from(["update"] * 5 + ["select", "score", "batch", "add", "remove"]), max_size=60
        ),
        label="ops",
    )
    for op in ops:
        ids = mir.ref.arm_ids()
        if op in ("select", "score"):
            x = data.draw(vec(d))
            arms = data.draw(st.none() | st.lists(st.sampled_from(ids), min_size=1, unique=True))
            mir.select(x, arms) if op == "select" else mir.score(x, arms)
        elif op == "update":
            mir.update(skewed_pick(data, ids), data.draw(vec(d)), data.draw(coord))
        elif op == "batch":
            n = data.draw(st.integers(0, 8))
            batch_ids = [skewed_pick(data, ids) for _ in range(n)]
            xs = np.array([data.draw(vec(d)) for _ in range(n)]).reshape(n, d)
            rs = np.array(data.draw(st.lists(coord, min_size=n, max_size=n)))
            mir.update_batch(batch_ids, xs, rs)
        elif op == "add":
            mir.add_arm(data.draw(arm_ids_st.filter(lambda s, ids=ids: s not in ids)), data.draw(vec(p)))
        elif op == "remove" and len(ids) > 1:
            mir.remove_arm(data.draw(st.sampled_from(ids)))
    mir.check_state()


@pytest.mark.parametrize("half_life", [10, 60, 400])
@pytest.mark.parametrize("policy", POLICIES)
def test_forgetting_matches_reference_uneven_closed_loop(policy, half_life):
    """A closed loop where one arm takes most pulls and the others are touched rarely, with a change of the
    rewards half way."""
    rng = np.random.default_rng([half_life, POLICIES.index(policy)])
    d, p = 5, (0 if policy == "disjoint_linucb" else 3)
    mir = Mirror(policy, d, p, alpha=0.6, lam=0.8, seed=7, refactor_every=50, half_life=half_life)
    for i in range(6):
        mir.add_arm(f"m{i}", rng.uniform(-1, 1, size=p))
    weights = np.array([0.8, 0.1, 0.05, 0.03, 0.015, 0.005])
    for step in range(1500):
        x = np.tanh(rng.normal(size=d))
        if step % 3 == 0:
            arm = mir.select(x, None)
        else:
            arm = f"m{rng.choice(6, p=weights)}"
        drift = 1.0 if step < 700 else -1.0  # the rewards change half way
        mir.update(arm, x, float(drift * x[0] + 0.1 * rng.normal()))
        if step % 250 == 249:
            mir.check_state()
    mir.check_state()
    assert mir.near_ties <= 3


def naive_forgetting(arm_of_event, xs, d, lam, gamma, *, every_event):
    """Naive exponential forgetting ``A ← γA + xxᵀ``, λ decaying with the data: at every event for every
    arm (``every_event``, a global clock), or at each update of the pulled arm (its own clock)."""
    a = {arm: lam * np.eye(d) for arm in set(arm_of_event)}
    for arm, x in zip(arm_of_event, xs, strict=True):
        for name, m in a.items():
            if every_event or name == arm:
                m *= gamma
        a[arm] += np.outer(x, x)
    return a


def test_naive_forgetting_winds_up_while_ours_keeps_the_prior():
    """The documented windup: under naive forgetting a direction the busy arm's devices never excite decays
    towards singular (with either clock) and, with a global clock, so does a rarely pulled arm's whole A;
    A⁻¹ explodes. Ours keeps ``A ⪰ λγ^(d−1)·I`` (so ``‖A⁻¹‖ ≤ 1/(λγ^(d−1))``) and its stored inverse
    stays exact."""
    d, lam, half_life = 4, 1.0, 25
    gamma = 2.0 ** (-1.0 / half_life)
    rng = np.random.default_rng(3)
    n = 4000
    # "busy" takes every event but every 500th, which goes to "rare"; busy's devices never excite e_3
    arm_of_event = ["rare" if t % 500 == 499 else "busy" for t in range(n)]
    xs = rng.uniform(-1, 1, size=(n, d))
    xs[:, 3] = np.where(np.array(arm_of_event) == "busy", 0.0, xs[:, 3])
    naive_global = naive_forgetting(arm_of_event, xs, d, lam, gamma, every_event=True)
    naive_own = naive_forgetting(arm_of_event, xs, d, lam, gamma, every_event=False)

    core = Bandit("disjoint_linucb", d, alpha=1.0, lam=lam, half_life=half_life)
    ref = ReferenceBandit("disjoint_linucb", d, alpha=1.0, lam=lam, half_life=half_life)
    for b in (core, ref):
        b.add_arm("busy")
        b.add_arm("rare")
    rewards = rng.normal(size=n)
    for arm, x, r in zip(arm_of_event, xs, rewards, strict=True):
        core.update(arm, x, float(r))
        ref.update(arm, x, float(r))

    floor = lam * gamma ** (d - 1)
    # naive: the prior is gone (busy: e_3 saw nothing in ~4000 updates; rare: 500 events between pulls)
    windup = [("busy", naive_global), ("busy", naive_own), ("rare", naive_global)]
    for arm, naive in windup:
        naive_min = np.linalg.eigvalsh(naive[arm]).min()
        assert naive_min < 1e-5 * lam, (arm, naive_min)
        assert np.linalg.norm(np.linalg.inv(naive[arm]), 2) > 1e5 / lam
        print(f"\nnaive {arm}: min eigenvalue {naive_min:.3e}")
    for arm in ("busy", "rare"):
        st_core, st_ref = core.arm_stats(arm), ref.arm_stats(arm)
        for key in ("a", "a_inv", "b", "theta"):
            assert_close(st_core[key], st_ref[key], f"{arm} {key}")
        ours_min = np.linalg.eigvalsh(st_core["a"]).min()
        assert ours_min >= floor * (1 - 1e-12), (arm, ours_min, floor)
        assert np.linalg.norm(st_core["a_inv"], 2) <= (1 + 1e-9) / floor
        assert frob_rel(st_core["a_inv"], np.linalg.inv(st_core["a"])) < 1e-10
        print(f"\nours {arm}: min eigenvalue {ours_min:.4f} (floor {floor:.4f})")


def _drive(b, rng, n, d, ids):
    for _ in range(n):
        x = np.tanh(rng.normal(size=d))
        arm = b.select(x).id if rng.uniform() < 0.5 else str(rng.choice(ids, p=[0.7, 0.2, 0.05, 0.05]))
        b.update(arm, x, float(x[0] - 0.3 * x[1] + 0.1 * rng.normal()))


@pytest.mark.parametrize("policy", POLICIES)
def test_snapshot_and_replay_are_bit_identical_with_forgetting(policy):
    d, p = 4, (0 if policy == "disjoint_linucb" else 2)
    ids = ["a", "b", "c", "e"]

    def fresh():
        b = Bandit(policy, d, p, alpha=0.5, seed=5, refactor_every=40, forced_sampling=0.1, half_life=30)
        for i, arm in enumerate(ids):
            b.add_arm(arm, [0.1 * i, -0.2 * i][:p] if p else None)
        return b

    live = fresh()
    log: list[tuple[str, np.ndarray, float]] = []
    orig_update = live.update
    rng = np.random.default_rng(11)
    for _ in range(400):  # record the log of a closed loop
        x = np.tanh(rng.normal(size=d))
        arm = live.select(x).id if rng.uniform() < 0.5 else str(rng.choice(ids, p=[0.7, 0.2, 0.05, 0.05]))
        r = float(x[0] - 0.3 * x[1] + 0.1 * rng.normal())
        orig_update(arm, x, r)
        log.append((arm, x, r))
    blob = live.to_bytes()
    restored = Bandit.from_bytes(blob)
    assert restored.half_life == 30 and restored.to_bytes() == blob
    # replay of the same log, in uneven batches, gives the same bytes (the rng aside: replay never selects)
    replay = fresh()
    i = 0
    while i < len(log):
        chunk = log[i : i + 1 + (i % 7)]
        replay.update_batch(
            [c[0] for c in chunk], np.array([c[1] for c in chunk]), np.array([c[2] for c in chunk])
        )
        i += len(chunk)
    for arm in ids:
        for key in ("a", "a_inv", "b", "theta"):
            assert replay.arm_stats(arm)[key].tobytes() == live.arm_stats(arm)[key].tobytes(), (arm, key)
    if p:
        assert replay.shared_stats()["a_inv"].tobytes() == live.shared_stats()["a_inv"].tobytes()
    # and the restored bandit continues exactly like the original
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    _drive(live, r1, 300, d, ids)
    _drive(restored, r2, 300, d, ids)
    assert live.to_bytes() == restored.to_bytes()


def test_half_life_is_validated_and_a_setting_on_restore():
    assert Bandit("disjoint_linucb", 2).half_life == 0
    for bad in (-1, -(2**40)):
        with pytest.raises(CoreError, match="half_life"):
            Bandit("disjoint_linucb", 2, half_life=bad)
    with pytest.raises(TypeError, match="half_life"):
        Bandit("disjoint_linucb", 2, half_life=2.5)
    b = Bandit("hybrid_linucb", 2, 1, half_life=7)
    b.add_arm("m", [0.5])
    b.update("m", np.array([0.2, 0.1]), 1.0)
    assert Bandit.from_bytes(b.to_bytes()).half_life == 7
    assert Bandit.from_bytes(b.to_bytes(), half_life=0).half_life == 0
    with pytest.raises(CoreError, match="half_life"):
        Bandit.from_bytes(b.to_bytes(), half_life=-3)


def test_no_forgetting_is_the_old_recursion_exactly():
    """half_life = 0 keeps plain sums: A = λI + Σxxᵀ built by the same additions, bit for bit."""
    rng = np.random.default_rng(0)
    d = 3
    b = Bandit("disjoint_linucb", d, lam=1.0)
    b.add_arm("a")
    expect = np.eye(d)
    for _ in range(50):
        x = rng.uniform(-1, 1, size=d)
        b.update("a", x, 0.5)
        for i in range(d):  # row i += x_i · x, as the core adds it
            expect[i] += x[i] * x
    assert b.arm_stats("a")["a"].tobytes() == expect.tobytes()
    assert not math.isnan(b.score(np.ones(d))[3][0])

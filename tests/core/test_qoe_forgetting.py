"""Forgetting in the QoE model (`QoeModel(half_life=N)`, docs/core.md "Forgetting" and "The QoE model"):
every target forgets exactly as the hybrid layout does (its shared part on that target's updates, each arm
on its own), checked against the numpy reference (numpy_reference_qoe.py, whose targets are the eager
`ReferenceBandit("hybrid_linucb", half_life=N)`), plus exact snapshots and replays, the version-1 snapshot
(no half_life) and half_life as a setting on restore.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from test_qoe_model import SIM_SPEC, Mirror

from edgesel_server.core import CoreError, QoeModel

ARMS = ("m0", "m1", "m2", "m3")


def _feedback(rng: np.random.Generator, arm: int, x: np.ndarray, step: int, drift_at: int) -> dict:
    """Latency (and sometimes energy, rating, or a failure) of `arm` for device `x`; arm 0's latency
    triples after `drift_at`, so forgetting visibly changes the statistics."""
    base = 40.0 * (1 + arm) * (1.0 + x[0])
    if arm == 0 and step >= drift_at:
        base *= 3.0
    u = rng.uniform()
    if u < 0.05:
        return {"failed": True}
    fb: dict = {"latency_ms": float(base * np.exp(0.1 * rng.normal()))}
    if u < 0.4:
        fb["energy_mj"] = float(100.0 * (1 + arm) * np.exp(0.1 * rng.normal()))
    if u > 0.8:
        fb["user_rating"] = float(rng.uniform(1.0, 5.0))
    return fb


@pytest.mark.parametrize("half_life", [5, 60, 400])
def test_discounted_targets_match_reference_over_a_closed_loop(half_life):
    """900 events, one arm pulled far more than the others (uneven clocks), a drift half way: scores (the
    targets' discounted means and widths, composed) agree with the numpy reference to 1e-9, and choices are
    identical."""
    rng = np.random.default_rng([half_life, 12])
    d, p = 3, 2
    mirror = Mirror(d, p, SIM_SPEC, alpha=1.0, lam=0.8, half_life=half_life)
    assert mirror.core.half_life == half_life
    for i, arm in enumerate(ARMS):
        mirror.add_arm(arm, rng.uniform(0.0, 1.0, p), 0.6 + 0.05 * i)
    weights = np.array([0.85, 0.1, 0.04, 0.01])
    for step in range(900):
        x = rng.uniform(0.0, 1.0, d)
        if step % 3 == 0:
            arm = mirror.core.select(x)[0]
        else:
            arm = ARMS[rng.choice(len(ARMS), p=weights)]
        fb = _feedback(rng, ARMS.index(arm), x, step, drift_at=450)
        reward = 0.0 if fb.get("failed") else float(rng.uniform(0.2, 1.0))
        mirror.update(arm, x, reward, **fb)
        if step % 30 == 29:
            mirror.check(x)
    mirror.check(rng.uniform(0.0, 1.0, d))
    assert mirror.near_ties <= 2


def test_forgetting_changes_the_state_and_zero_is_no_forgetting():
    """The same events with half_life 0 and N > 0 give different scores (the feature is wired), and 0 is
    bit for bit the model built without the argument."""

    def run(**kw) -> QoeModel:
        rng = np.random.default_rng(3)
        m = QoeModel(3, 2, SIM_SPEC, **kw)
        for i, arm in enumerate(ARMS):
            m.add_arm(arm, rng.uniform(0.0, 1.0, 2), accuracy=0.6 + 0.05 * i)
        for step in range(300):
            x = rng.uniform(0.0, 1.0, 3)
            arm = int(rng.integers(0, len(ARMS)))
            m.update(ARMS[arm], x, 0.5, **_feedback(rng, arm, x, step, drift_at=150))
        return m

    plain, zero, forget = run(), run(half_life=0), run(half_life=20)
    assert plain.to_bytes() == zero.to_bytes()
    x = np.full(3, 0.5)
    assert not np.array_equal(plain.score(x)[1], forget.score(x)[1])


def _log(n: int, seed: int) -> list[tuple[str, np.ndarray, float, dict]]:
    rng = np.random.default_rng(seed)
    out = []
    for step in range(n):
        x = rng.uniform(0.0, 1.0, 3)
        arm = int(rng.choice(len(ARMS), p=[0.7, 0.2, 0.05, 0.05]))
        fb = _feedback(rng, arm, x, step, drift_at=n // 2)
        out.append((ARMS[arm], x, 0.0 if fb.get("failed") else 0.7, fb))
    return out


def _fresh(half_life: int) -> QoeModel:
    m = QoeModel(3, 2, SIM_SPEC, refactor_every=40, half_life=half_life)
    for i, arm in enumerate(ARMS):
        m.add_arm(arm, [0.1 * i, 0.3], accuracy=0.6 + 0.05 * i)
    return m


def test_snapshot_and_replay_are_bit_identical_with_forgetting():
    live = _fresh(30)
    for arm, x, r, fb in _log(500, 1):
        live.update(arm, x, r, **fb)
    blob = live.to_bytes()
    restored = QoeModel.from_bytes(blob)
    assert restored.half_life == 30 and restored.to_bytes() == blob
    replay = _fresh(30)
    for arm, x, r, fb in _log(500, 1):
        replay.update(arm, x, r, **fb)
    assert replay.to_bytes() == blob
    # the restored model continues exactly like the original (the clocks travel with the targets)
    for arm, x, r, fb in _log(300, 2):
        live.update(arm, x, r, **fb)
        restored.update(arm, x, r, **fb)
    assert live.to_bytes() == restored.to_bytes()
    x = np.full(3, 0.4)
    for u, v in zip(live.score(x)[1:], restored.score(x)[1:], strict=True):
        assert u.tobytes() == v.tobytes()


def _as_version_1(blob: bytes) -> bytes:
    """A current (version 2) blob of a half_life-0 model rewritten in format version 1: no `half_life` u64
    after `refactor_every` (header: magic 8, version 4, d 4, p 4, alpha 8, lam 8, refactor_every 8)."""
    assert blob[8:12] == struct.pack("<I", 2)
    assert blob[44:52] == struct.pack("<Q", 0)
    body = blob[:8] + struct.pack("<I", 1) + blob[12:44] + blob[52:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_1_snapshot_reads_as_no_forgetting():
    m = _fresh(0)
    for arm, x, r, fb in _log(200, 5):
        m.update(arm, x, r, **fb)
    old = QoeModel.from_bytes(_as_version_1(m.to_bytes()))
    assert old.half_life == 0
    assert old.to_bytes() == m.to_bytes()  # written back as the current version, same state
    # and it can be restored with forgetting from then on (a setting, like Bandit.from_bytes)
    later = QoeModel.from_bytes(_as_version_1(m.to_bytes()), half_life=25)
    assert later.half_life == 25


def test_half_life_is_validated_and_a_setting_on_restore():
    assert QoeModel(2).half_life == 0
    for bad in (-1, -(2**40)):
        with pytest.raises(CoreError, match="half_life"):
            QoeModel(2, half_life=bad)
    with pytest.raises(TypeError, match="half_life"):
        QoeModel(2, half_life=2.5)  # type: ignore[arg-type]
    m = _fresh(7)
    for arm, x, r, fb in _log(50, 9):
        m.update(arm, x, r, **fb)
    blob = m.to_bytes()
    assert QoeModel.from_bytes(blob).half_life == 7
    zero = QoeModel.from_bytes(blob, half_life=0)
    assert zero.half_life == 0
    # a setting: the learned state is kept, and it is written with the new half-life
    assert QoeModel.from_bytes(zero.to_bytes()).half_life == 0
    with pytest.raises(CoreError, match="half_life"):
        QoeModel.from_bytes(blob, half_life=-3)

"""`QoeModel.update_batch` (a replica learning a run of Feedback in one call) against `update` one row at a
time and against the numpy reference (numpy_reference_qoe.py).

Over hypothesis-generated models and runs (measurements, failures, scalar rewards, preferences, rows the model
refuses): the batch learns exactly the rows `update` accepts before the first one it refuses, returns their
number, and leaves the state bit for bit where `update` one by one leaves it (snapshot bytes); after skipping
the refused row, the next batch goes on the same way. The learned model scores as the reference within 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy_reference_qoe import ReferenceQoeModel
from test_qoe_model import SIM_SPEC, assert_close, feedback, prefs

from edgesel_server.core import QoeModel

MEASURED = ("latency_ms", "energy_mj", "user_rating", "accuracy")
BUDGETS = ("latency_budget_ms", "energy_budget_mj")
# Rows `update` refuses (so the batch must stop before them): what a log could hold that the model rejects.
REFUSED = {
    "unknown_arm": {},
    "rating_out_of_range": {"user_rating": 7.0},
    "negative_latency": {"latency_ms": -1.0},
    "failed_with_measurement": {"failed": True, "latency_ms": 10.0},
    "unknown_weight": {"weights": {"bogus": 1.0}},
    "reward_out_of_range": {},
}


def update_kwargs(kind: str, meas: dict, pref: dict, refused: str | None) -> dict:
    """The keyword arguments of `update` for one generated row (without arm, x, reward)."""
    kw: dict = {**pref}
    if kind == "failed":
        kw["failed"] = True
    elif kind == "measured":
        kw.update(meas)
    if refused:
        kw.update(REFUSED[refused])
    return kw


def batch_columns(
    rows: list[tuple[str, np.ndarray, float, dict]],
) -> tuple[list, np.ndarray, np.ndarray, dict]:
    """`update_batch` arguments for rows of (arm, x, reward, update kwargs): NaN where a row gives nothing."""
    columns = {
        name: np.array([kw.get(name, math.nan) for *_, kw in rows], dtype=np.float64)
        for name in (*MEASURED, *BUDGETS)
    }
    weights = [kw.get("weights") for *_, kw in rows]
    return (
        [arm for arm, *_ in rows],
        np.array([x for _, x, _, _ in rows], dtype=np.float64).reshape(len(rows), -1),
        np.array([r for _, _, r, _ in rows], dtype=np.float64),
        {
            **columns,
            "failed": [bool(kw.get("failed", False)) for *_, kw in rows],
            "weights": weights if any(w is not None for w in weights) else None,
        },
    )


def one_by_one(model: QoeModel, ref: ReferenceQoeModel, rows: list) -> int:
    """`update` of each row until the first it refuses (which must change nothing); how many it learned."""
    for n, (arm, x, reward, kw) in enumerate(rows):
        before = model.to_bytes()
        try:
            model.update(arm, x, reward, **kw)
        except ValueError:
            assert model.to_bytes() == before
            return n
        ref.update(arm, x, reward, **kw)
    return len(rows)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 4),
    p=st.integers(0, 3),
    n_arms=st.integers(1, 4),
    sim_spec=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.integers(0, 3),
            feedback,
            prefs,
            st.floats(0.0, 1.0),
            st.one_of(st.none(), st.none(), st.none(), st.sampled_from(sorted(REFUSED))),
        ),
        min_size=1,
        max_size=30,
    ),
    split=st.integers(0, 30),
    refactor_every=st.sampled_from([1, 4, 1000]),
    half_life=st.sampled_from([0, 0, 3, 17]),
    seed=st.integers(0, 2**32 - 1),
)
def test_update_batch_is_update_row_by_row(
    d, p, n_arms, sim_spec, steps, split, refactor_every, half_life, seed
):
    rng = np.random.default_rng(seed)
    spec = SIM_SPEC if sim_spec else None
    kw = {"refactor_every": refactor_every, "half_life": half_life}
    single, batched = QoeModel(d, p, spec, **kw), QoeModel(d, p, spec, **kw)
    ref = ReferenceQoeModel(d, p, spec, half_life=half_life)
    for a in range(n_arms):
        m, acc = rng.uniform(0.0, 1.0, p), None if a % 2 else float(rng.uniform(0.5, 0.9))
        for model in (single, batched):
            model.add_arm(f"arm{a}", m, accuracy=acc)
        ref.add_arm(f"arm{a}", m, acc)
    rows = []
    for arm, (kind, meas), pref, reward, refused in steps:
        arm_id = "nope" if refused == "unknown_arm" else f"arm{arm % n_arms}"
        reward = 1.5 if refused == "reward_out_of_range" else 0.0 if kind == "failed" else reward
        rows.append((arm_id, rng.uniform(0.0, 1.0, d), reward, update_kwargs(kind, meas, pref, refused)))
    # Two batches (split anywhere), each continued past a refused row as the server does (it skips that one).
    for todo in (rows[:split], rows[split:]):
        while todo:
            expected = one_by_one(single, ref, todo)
            arms, xs, rewards, columns = batch_columns(todo)
            assert batched.update_batch(arms, xs, rewards, **columns) == expected
            assert batched.to_bytes() == single.to_bytes()
            todo = todo[expected + 1 :]
    assert batched.n_updates == single.n_updates
    x = rng.uniform(0.0, 1.0, d)
    _, exp, bonus, opt = batched.score(x)
    _, rexp, rbonus, ropt, _ = ref.score(x)
    assert_close(exp, rexp, "expected")
    assert_close(bonus, rbonus, "bonus")
    assert_close(opt, ropt, "optimistic")


def test_update_batch_checks_its_columns() -> None:
    model = QoeModel(2, 1)
    model.add_arm("a", [0.5])
    nan = np.full(2, math.nan)
    columns = {name: nan for name in (*MEASURED, *BUDGETS)}
    xs = np.full((2, 2), 0.5)
    try:
        model.update_batch(["a", "a"], xs, [0.5], **columns, failed=[False, False])
    except ValueError as e:
        assert "rewards" in str(e)
    else:
        raise AssertionError("a rewards column of the wrong length was accepted")
    try:
        model.update_batch(["a", "a"], xs, [0.5, 0.5], **columns, failed=[False])
    except ValueError as e:
        assert "failed" in str(e)
    else:
        raise AssertionError("a failed column of the wrong length was accepted")
    assert model.n_updates == 0
    assert model.update_batch(["a", "a"], xs, [0.5, 0.5], **columns, failed=[False, True]) == 2
    assert model.n_updates == 2

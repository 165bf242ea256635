"""`[space] reward_aggregation`: several Feedbacks per decision, learned once at the window's close.

An in-process engine on a real SQLite store, driven by hypothesis: random decisions, each with a random
sequence of Feedbacks (some of them retries of an earlier request), then the window closes. The reward each
decision's close event carries must equal a plain reference aggregate of the accepted (non-retried)
Feedbacks, and the learned state must equal a reference space that learned exactly those rewards in log order.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesel_server.config import ConfigError, load_config
from edgesel_server.engine import Engine
from edgesel_server.space import SpaceRuntime
from edgesel_server.store import base as ev
from edgesel_server.store.base import LogEvent
from edgesel_server.store.sqlite import SqliteStore
from tests.server.serverproc import write_config
from tests.server.store_contract import check_activation, check_observation_fences

PHONE = {"ram_gb": 4.0, "has_npu": 1.0}
REFERENCE = {
    "first": lambda rs: rs[0],
    "last": lambda rs: rs[-1],
    "min": min,
    "mean": statistics.fmean,
}
DEFAULT_REWARD = 0.25  # tests/server/serverproc.py


def make_engine(directory: Path, aggregation: str, **kw: object) -> Engine:
    engine = Engine(load_config(write_config(directory, aggregation=aggregation, **kw)))  # type: ignore[arg-type]
    engine.start()
    return engine


def reward_events(engine: Engine, space: str = "vision") -> list[LogEvent]:
    return [e for e in engine.store.events_after(space, 0) if e.kind in (ev.FEEDBACK, ev.DEFAULT_REWARD)]


def check_learned_as_reference(engine: Engine, rewards: dict[str, float]) -> None:
    """A fresh space that applies the engine's log with the reference rewards learns exactly the same."""
    ref = SpaceRuntime(engine.cfg.spaces[0], engine.cfg)
    for e in engine.store.events_after("vision", 0):
        if e.kind in (ev.FEEDBACK, ev.DEFAULT_REWARD):
            e.reward = rewards[e.event_id or ""]
        ref.apply(e)
    space = engine.spaces["vision"]
    for model_id in ("tiny", "small", "big"):
        got, want = space.bandit.arm_stats(model_id), ref.bandit.arm_stats(model_id)
        assert got["n_updates"] == want["n_updates"], model_id
        np.testing.assert_array_equal(got["theta"], want["theta"])


feedback_plans = st.lists(  # per decision: its Feedbacks, as (reward, retry of the k-th earlier one or None)
    st.lists(st.tuples(st.floats(0.0, 1.0), st.none() | st.integers(0, 5)), max_size=6),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("aggregation", ["first", "mean", "last", "min"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=feedback_plans)
def test_the_update_applied_at_the_close_is_the_reference_aggregate(aggregation: str, plans) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_aggregate_scenario(Path(tmp), aggregation, plans))


async def _aggregate_scenario(directory: Path, aggregation: str, plans) -> None:
    engine = make_engine(directory, aggregation, on_missing="default")
    try:
        decisions = [await engine.select("vision", PHONE) for _ in plans]
        accepted: dict[str, list[float]] = {c.decision.event_id: [] for c in decisions}
        # Interleave the decisions' Feedbacks: one of each in turn.
        sent: dict[str, list[tuple[str, float]]] = {c.decision.event_id: [] for c in decisions}
        for step in range(max(len(p) for p in plans)):
            for choice, plan in zip(decisions, plans, strict=True):
                if step >= len(plan):
                    continue
                eid = choice.decision.event_id
                reward, retry_of = plan[step]
                earlier = sent[eid]
                if retry_of is not None and retry_of < len(earlier):
                    request_id, reward = earlier[retry_of]
                    retried = True
                else:
                    request_id, retried = f"r{step}", False
                    earlier.append((request_id, reward))
                result = await engine.feedback(eid, reward, request_id=request_id)
                if aggregation == "first":
                    first = accepted[eid][0] if accepted[eid] else None
                    if first is None:
                        accepted[eid].append(reward)
                    assert result.duplicate == (first is not None)
                    assert result.reward == (reward if first is None else first)
                else:
                    # every new request is ACCEPTED (recorded), a retried one DUPLICATE with its own reward
                    assert result.duplicate == retried
                    assert result.reward == reward
                    if not retried:
                        accepted[eid].append(reward)
        if aggregation != "first":
            assert not reward_events(engine), "nothing is learned before the window closes"
        space = engine.spaces["vision"]
        await engine._expire(space, time.time() + space.cfg.reward_window_s + 1)
        events = {e.event_id: e for e in reward_events(engine)}
        assert set(events) == set(accepted)
        want = {eid: REFERENCE[aggregation](rs) if rs else DEFAULT_REWARD for eid, rs in accepted.items()}
        for eid, rs in accepted.items():
            e = events[eid]
            assert e.kind == (ev.FEEDBACK if rs else ev.DEFAULT_REWARD)
            assert e.reward == want[eid], (aggregation, rs)
        check_learned_as_reference(engine, want)
        # A Feedback after the close: a retry of an accepted request is still DUPLICATE, a new one too late.
        for choice in decisions:
            eid = choice.decision.event_id
            if sent[eid] and aggregation != "first":
                request_id, reward = sent[eid][0]
                again = await engine.feedback(eid, reward, request_id=request_id)
                assert again.duplicate and again.reward == reward
    finally:
        await engine.close()


def test_reward_aggregation_is_checked_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reward_aggregation must be one of first, mean, last, min"):
        load_config(write_config(tmp_path, aggregation="median"))


def test_the_aggregate_survives_a_restart_mid_window(tmp_path: Path) -> None:
    """Observations are durable before they are acknowledged: a new engine on the same data closes the
    window with every one of them (the crash version with kill -9 is in tests/hardening)."""

    async def first_life() -> str:
        engine = make_engine(tmp_path, "mean")
        choice = await engine.select("vision", PHONE)
        for i, r in enumerate((0.2, 0.9, 0.4)):
            assert not (await engine.feedback(choice.decision.event_id, r, request_id=f"q{i}")).duplicate
        engine.store.close()  # no final snapshot, no close: as if the process died
        return choice.decision.event_id

    async def second_life(eid: str) -> None:
        engine = make_engine(tmp_path, "mean")
        try:
            assert not reward_events(engine)
            dup = await engine.feedback(eid, 0.9, request_id="q1")
            assert dup.duplicate and dup.reward == 0.9
            assert not (await engine.feedback(eid, 0.7, request_id="q3")).duplicate
            space = engine.spaces["vision"]
            await engine._expire(space, time.time() + space.cfg.reward_window_s + 1)
            (e,) = reward_events(engine)
            assert e.reward == statistics.fmean([0.2, 0.9, 0.4, 0.7])
        finally:
            await engine.close()

    eid = asyncio.run(first_life())
    asyncio.run(second_life(eid))


QOE_OBSERVATIONS = [
    {"latency_ms": 40.0, "user_rating": 4.0},
    {"latency_ms": 90.0},
    {"latency_ms": 20.0, "energy_mj": 30.0},
]


@pytest.mark.parametrize("aggregation", ["mean", "last", "min"])
def test_qoe_model_learns_the_aggregated_measurement_record(tmp_path: Path, aggregation: str) -> None:
    """mean: each measurement field averaged over the Feedbacks that reported it (reward: the mean of their
    QoE); last/min: the record of the Feedback whose QoE is the one applied."""

    async def scenario() -> None:
        engine = make_engine(tmp_path, aggregation, policy="qoe_model")
        try:
            space = engine.spaces["vision"]
            choice = await engine.select("vision", PHONE)
            eid = choice.decision.event_id
            values = []
            for i, m in enumerate(QOE_OBSERVATIONS):
                res = await engine.feedback(eid, None, m, request_id=f"m{i}")
                assert not res.duplicate
                values.append(res.reward)
            await engine._expire(space, time.time() + space.cfg.reward_window_s + 1)
            (e,) = reward_events(engine)
            record = json.loads(e.payload)
            if aggregation == "mean":
                assert e.reward == statistics.fmean(values)
                assert record["measurements"] == {
                    "latency_ms": statistics.fmean([40.0, 90.0, 20.0]),
                    "user_rating": 4.0,
                    "energy_mj": 30.0,
                }
            else:
                i = len(values) - 1 if aggregation == "last" else values.index(min(values))
                assert e.reward == values[i]
                assert record["measurements"] == QOE_OBSERVATIONS[i]
            assert record["latency_ms"] == record["measurements"]["latency_ms"]  # what the report sees
            assert record["aggregation"] == {"mode": aggregation, "n": 3}
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_the_sqlite_store_fences_observations_and_the_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.open(lambda e: None)
    try:
        check_observation_fences(store, "vision")
        check_activation(store, "vision")
    finally:
        store.close()


def test_holdout_and_report_see_one_aggregated_outcome_per_decision(tmp_path: Path) -> None:
    """A held-out decision's close is reported (its aggregated QoE and latency) but teaches nothing; a policy
    decision's close teaches once. The report counts decisions, not Feedbacks."""
    from edgesel_server.config import parse_config
    from edgesel_server.holdout import in_holdout
    from edgesel_server.toml import loads as toml_loads
    from tests.server.test_holdout import CONFIG, ids

    text = CONFIG.format(share=0.5).replace(
        'name = "fleet"\n', 'name = "fleet"\nreward_aggregation = "mean"\n'
    )
    cfg = parse_config(toml_loads(text), base_dir=tmp_path)
    held = next(i for i in ids(50, seed=3) if in_holdout("fleet", i, 0.5))
    outside = next(i for i in ids(50, seed=3) if not in_holdout("fleet", i, 0.5))
    runs = [{"user_rating": 4.0, "latency_ms": 30.0}, {"latency_ms": 60.0}, {"user_rating": 2.0}]

    async def scenario() -> None:
        engine = Engine(cfg)
        engine.start()
        try:
            space = engine.spaces["fleet"]
            qoe: dict[str, list[float]] = {}
            for inst in (held, outside):
                d = (
                    await engine.select(
                        "fleet", {"ram_gb": 4.0}, labels={"soc": "exynos"}, installation_id=inst
                    )
                ).decision
                qoe[d.group] = [
                    (await engine.feedback(d.event_id, None, m, request_id=f"m{k}")).reward
                    for k, m in enumerate(runs)
                ]
            assert space.bandit.n_updates == 0
            await engine._expire(space, time.time() + space.cfg.reward_window_s + 1)
            assert space.bandit.n_updates == 1  # the policy decision only, once
            rep = engine.report("fleet")["since_start"]["classes"]["exynos"]
            for group in ("policy", "holdout"):
                assert rep[group]["n"] == 1
                assert rep[group]["mean_qoe"] == pytest.approx(statistics.fmean(qoe[group]), rel=1e-12)
                # the mean of 30 and 60, as the report's quantile sketch keeps it (to 1 %, lift.py)
                assert rep[group]["p50_latency_ms"] == pytest.approx(45.0, rel=0.01)
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_without_request_id_identical_content_counts_once(tmp_path: Path) -> None:
    """Clients older than FeedbackRequest.request_id: a Feedback is identified by its content."""

    async def scenario() -> None:
        engine = make_engine(tmp_path, "mean")
        try:
            eid = (await engine.select("vision", PHONE)).decision.event_id
            assert not (await engine.feedback(eid, 0.4)).duplicate
            assert not (await engine.feedback(eid, 0.8)).duplicate
            again = await engine.feedback(eid, 0.4)
            assert again.duplicate and again.reward == 0.4
            measured = await engine.feedback(eid, None, {"latency_ms": 20.0})
            assert not measured.duplicate
            assert (await engine.feedback(eid, None, {"latency_ms": 20.0})).duplicate
            space = engine.spaces["vision"]
            await engine._expire(space, time.time() + space.cfg.reward_window_s + 1)
            (e,) = reward_events(engine)
            assert e.reward == statistics.fmean([0.4, 0.8, measured.reward])
        finally:
            await engine.close()

    asyncio.run(scenario())

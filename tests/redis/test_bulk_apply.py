"""Bulk decode + batch apply of the Redis log: a replica that applied the log in batches (catching up at
start, or its tailer N entries behind) holds exactly the state of one that applied it one event at a time.

The log is written by a real engine on a real Redis: Selects with holdout installations (whose Feedback
teaches nothing), with and without a latency budget and QoE weights, Feedback with measurements, failed runs
(an installation kept away from a model, guardrails withdrawing models), a model added and one retired in the
middle, so a batch crosses event kinds. Compared: the learned state, counters, lift report (also as served,
whose window merge depends on the order cells were made), failed pairs, guardrails, the status history."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from pathlib import Path

import pytest

from edgesel_server.catalog import Model
from edgesel_server.config import load_config
from edgesel_server.engine import Engine
from edgesel_server.errors import NoEligibleModel
from edgesel_server.space import SpaceRuntime
from edgesel_server.status.history import SpaceHistory
from edgesel_server.store import redis as redis_store
from edgesel_server.store.redis import RedisStore
from tests.redis.conftest import RedisServer, requires_redis
from tests.server.test_holdout import CONFIG, SHARE, ids

pytestmark = requires_redis
SPACE = "fleet"


async def write_log(cfg, url: str, n: int, seed: int) -> None:
    engine = Engine(cfg, RedisStore(url))
    engine.start()
    rng = random.Random(seed)
    installs = ids(n, seed=seed)
    try:
        for k, installation in enumerate(installs):
            if k == n // 3:
                await engine.add_model(SPACE, Model("late", features={}))
            if k == 2 * n // 3:
                await engine.retire_model(SPACE, "slow")
            soc = rng.choice(["snapdragon", "exynos"])
            prefs = {}
            if k % 4 == 1:
                prefs = {
                    "latency_budget_ms": rng.uniform(20, 200),
                    "qoe_weights": {"latency": 2.0, "rating": 0.5},
                }
            try:
                c = await engine.select(SPACE, {"ram_gb": rng.uniform(0.5, 32)}, labels={"soc": soc},
                                        installation_id=installation, **prefs)  # fmt: skip
            except NoEligibleModel:
                continue  # the guardrails withdrew every model from this class
            if k % 11 == 5:
                await engine.feedback(c.decision.event_id, failed=True, failure_reason="load_error")
            elif k % 3 == 0:
                await engine.feedback(c.decision.event_id, rng.random())
            else:
                slower = 4.0 if c.model.id == "slow" else 1.0  # the p95 latency guardrail withdraws it
                m = {"latency_ms": slower * rng.uniform(5, 120), "user_rating": float(rng.randint(1, 5))}
                await engine.feedback(c.decision.event_id, measurements=m)
    finally:
        await engine.flush_unsaved()
        engine.store.close()  # no final snapshot: the replicas below replay the whole log


GUARDRAILS = """
[space.guardrails]
max_failure_rate = 0.5
max_p95_latency_ratio = 1.5
window = 20
min_observations = 5
"""
REPORT_AT = 2e9  # a fixed "now" for the served report (its window)


def new_space(cfg) -> SpaceRuntime:
    space = SpaceRuntime(cfg.spaces[0], cfg)
    space.history = SpaceHistory(60.0, 10, now=0.0)  # as if the status page were served
    space.restore(None)
    return space


def state(space: SpaceRuntime) -> tuple:
    assert space.history is not None
    history = space.history.view()
    return (
        space.report(REPORT_AT),
        dataclasses.astuple(history.current),
        history.failures,
        space.bandit.to_bytes(),
        space.applied_seq,
        space.since_snapshot,
        {k: dataclasses.astuple(v) for k, v in space.counters.items()},
        space.lift.to_dict(),
        {k: list(v) for k, v in space.failed_pairs._by_model.items()},
        space.guardrails.to_dict(),
        space.active,
        space.withdrawn,
    )


def one_by_one(cfg, url: str) -> SpaceRuntime:
    space = new_space(cfg)
    store = RedisStore(url)
    store.open(space.apply)
    try:
        for e in store.events_after(SPACE, 0):
            space.apply(e)
    finally:
        store.close()
    return space


def replayed_in_batches(cfg, url: str) -> tuple[SpaceRuntime, int]:
    space = new_space(cfg)
    store = RedisStore(url)
    store.open(space.apply, apply_batch=space.apply_batch)
    sizes = []
    try:
        for batch in store.event_batches_after(SPACE, 0):
            sizes.append(len(batch))
            space.apply_batch(batch)
    finally:
        store.close()
    return space, max(sizes)


def tailed_in_batches(cfg, url: str, upto: int, monkeypatch: pytest.MonkeyPatch) -> tuple[SpaceRuntime, int]:
    """A running replica `upto` entries behind: its tailer catches up through apply_batch."""
    space = new_space(cfg)
    sizes: list[int] = []

    def apply_batch(events: list) -> None:
        sizes.append(len(events))
        space.apply_batch(events, isolate=True)

    store = RedisStore(url)
    store.open(space.apply, apply_batch=apply_batch)
    try:
        with store._lock:
            store._applied[SPACE] = 0  # behind by the whole log
        deadline = time.monotonic() + 60
        while store.applied_seq(SPACE) < upto and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        store.close()
    return space, max(sizes)


@pytest.mark.parametrize("policy", ["disjoint_linucb", "hybrid_linucb", "qoe_model"])
def test_batches_and_one_by_one_give_bit_identical_replicas(
    tmp_path: Path, redis_server: RedisServer, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "edgesel.toml"
    text = CONFIG.format(share=SHARE).replace('kind = "disjoint_linucb"', f'kind = "{policy}"')
    if policy == "qoe_model":
        text = text.replace("forced_sampling = 0.5\n", "")  # qoe_model has no forced sampling
    config.write_text(text.replace("snapshot_every = 7", "snapshot_every = 1000000") + GUARDRAILS)
    cfg = load_config(config)
    # Small reads, so that the log arrives in several batches and the batch boundaries fall mid-run.
    monkeypatch.setattr(redis_store, "LOG_READ_COUNT", 50)
    asyncio.run(write_log(cfg, redis_server.url, 240, seed=7))
    reference = one_by_one(cfg, redis_server.url)
    upto = reference.applied_seq
    assert upto > 240  # the configured models, the Feedback events, one add, one retire
    assert reference.counters["late"].n_updates > 0 and reference.failed_pairs._by_model
    assert reference.guardrails.to_dict()["pairs"]  # the guardrails watched
    if policy != "qoe_model":  # (qoe_model learns to avoid the slow model before the guardrail would act)
        assert reference.guardrails.withdrawn and reference.guardrails.history
    replayed, replay_batch = replayed_in_batches(cfg, redis_server.url)
    tailed, tail_batch = tailed_in_batches(cfg, redis_server.url, upto, monkeypatch)
    assert replay_batch > 1 and tail_batch > 1  # batches really happened
    assert state(replayed) == state(reference)
    assert state(tailed) == state(reference)
    assert replayed.bandit.to_bytes() == tailed.bandit.to_bytes() == reference.bandit.to_bytes()


def test_log_reads_pause_the_collector_only_when_they_return_at_once(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay's pages and a tailer's reads while it is behind are decoded with the cyclic GC paused
    (gc_pause.py); a caught-up tailer's read, which may block, is not paused; the collector is on after."""
    import gc

    config = tmp_path / "edgesel.toml"
    config.write_text(CONFIG.format(share=SHARE).replace("snapshot_every = 7", "snapshot_every = 1000000"))
    cfg = load_config(config)
    monkeypatch.setattr(redis_store, "LOG_READ_COUNT", 50)
    asyncio.run(write_log(cfg, redis_server.url, 120, seed=3))
    decoded: list[bool] = []
    decode = redis_store._Page.events

    def recording_decode(page: redis_store._Page, *args: int | None) -> list:
        decoded.append(gc.isenabled())
        return decode(page, *args)

    monkeypatch.setattr(redis_store._Page, "events", recording_decode)
    assert gc.isenabled()
    replayed, _ = replayed_in_batches(cfg, redis_server.url)
    assert len(decoded) > 2 and not any(decoded)  # every page of the replay
    assert gc.isenabled()

    space = new_space(cfg)
    store = RedisStore(url=redis_server.url)
    reads: list[tuple[bool, int]] = []  # (collector on at the read, entries it returned)
    store.open(space.apply, apply_batch=space.apply_batch)
    xread = store._t.xread

    def recording_xread(*args, **kwargs):
        on = gc.isenabled()
        resp = xread(*args, **kwargs)
        pages = list(resp.items() if isinstance(resp, dict) else resp or [])
        reads.append((on, sum(len(entries) for _, entries in pages)))
        return resp

    store._t.xread = recording_xread
    try:
        with store._lock:
            store._applied[SPACE] = 0  # behind by the whole log
        upto = replayed.applied_seq
        deadline = time.monotonic() + 60
        while (store.applied_seq(SPACE) < upto or len(reads) < 12) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        store.close()
    assert store.applied_seq(SPACE) == upto
    ends = [k for k, (_, n) in enumerate(reads) if n < 50]
    assert ends, reads
    first_short = ends[0]  # the read that caught up
    assert reads[0][0]  # nothing says the first read is behind
    assert not any(on for on, _ in reads[1 : first_short + 1]), reads  # each after a full page: paused
    assert all(on for on, _ in reads[first_short + 1 :]), reads  # caught up: may block, not paused
    assert gc.isenabled()
    assert space.bandit.to_bytes() == replayed.bandit.to_bytes()


def test_real_log_replies_are_read_in_rust_and_decode_as_before(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The replies of a real Redis to the store's own XRANGE and XREAD (whatever protocol its clients speak)
    take the Rust path of the bulk decoder, and decode to what the per-entry decoder gives."""
    from edgesel_server._core import log_page_columns
    from tests.server.test_log_page_decode import assert_same, reference

    config = tmp_path / "edgesel.toml"
    config.write_text(CONFIG.format(share=SHARE))
    cfg = load_config(config)
    asyncio.run(write_log(cfg, redis_server.url, 60, seed=5))
    store = RedisStore(redis_server.url)
    store.open(new_space(cfg).apply)
    try:
        key = redis_store._skey(SPACE, "log")
        ranged = store._r.xrange(key, min="0-1", max="+", count=500)
        resp = store._t.xread({key: "0-0"}, count=500)
        pages = [ranged, *[entries for _, entries in (resp.items() if isinstance(resp, dict) else resp)]]
    finally:
        store.close()
    assert len(pages) == 2 and len(ranged) > 60
    for entries in pages:
        assert log_page_columns(entries) is not None
        assert_same(redis_store._Page(SPACE, entries).events(), reference(entries))

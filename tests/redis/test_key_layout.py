"""The Redis layout is Redis-Cluster-safe (every key of a space in one hash slot), and a space written by a
release before the hash tags (``edgesel:log:<space>``, ``edgesel:dec:<event>``, ...) is moved to it at the
first start, with nothing lost: the learned state, the open decisions and the exactly-once claims."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.crc import key_slot

from edgesel_server.config import load_config
from edgesel_server.engine import Engine
from edgesel_server.errors import StoreUnavailable
from edgesel_server.store import redis as redis_store
from edgesel_server.store.redis import RedisStore
from tests.redis.conftest import RedisServer, requires_redis
from tests.server.test_holdout import CONFIG

pytestmark = requires_redis
SPACE = "fleet"


def legacy_key(space: str, kind: str, *rest: str) -> str:
    """How releases before the hash tags named the keys."""
    if kind in ("dec", "fb"):
        return "edgesel:" + ":".join((kind, *rest))
    if kind == "alive":
        return "edgesel:alive:" + rest[0]
    return "edgesel:" + ":".join((kind, space, *rest))


async def select(engine: Engine, i: int) -> str:
    c = await engine.select(SPACE, {"ram_gb": 1.0 + i % 7}, labels={"soc": "exynos"})
    return c.decision.event_id


async def legacy_deployment(cfg) -> tuple[bytes, list[str], str]:
    """A space with a snapshot, log entries after it, open decisions and a given Feedback: the old layout."""
    engine = Engine(cfg, RedisStore(cfg.store))
    engine.start()
    for i in range(20):
        await engine.feedback(await select(engine, i), 0.1 * (i % 10))
    await engine.snapshot(SPACE)
    for i in range(10):
        await engine.feedback(await select(engine, i), 0.05 * i)
    given = await select(engine, 3)
    await engine.feedback(given, 0.7)
    open_ids = [await select(engine, i) for i in range(5)]
    engine.store.close()  # stopped without a final snapshot: the log after the snapshot must survive too
    # What a replica of the old release loads from it (a restart does not replay the Selects' draws, so the
    # bandit's RNG differs from the never-stopped one's: compare loads with loads).
    reloaded = Engine(cfg, RedisStore(cfg.store))
    reloaded.start()
    state = reloaded.spaces[SPACE].bandit.to_bytes()
    reloaded.store.close()
    return state, open_ids, given


def test_a_legacy_layout_is_moved_once_and_keeps_state_decisions_and_claims(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "edgesel.toml"
    config.write_text(CONFIG.format(share=0.3).replace("[server]", f'[server]\nstore = "{redis_server.url}"'))
    cfg = load_config(config)
    r = redis_server.client()
    with monkeypatch.context() as m:
        m.setattr(redis_store, "_skey", legacy_key)
        m.setattr(RedisStore, "_migrate_legacy_keys", lambda self, space: None)
        state, open_ids, given = asyncio.run(legacy_deployment(cfg))
    legacy = {k.decode() for k in r.scan_iter("edgesel:*")}
    kinds = ("log", "seq", "models", "snaps", "decidx", "sel")
    assert {f"edgesel:{k}:{SPACE}" for k in kinds} <= legacy
    assert f"edgesel:fb:{given}" in legacy and not any("{" in k for k in legacy)

    after: list[tuple[bytes, int]] = []

    async def new_release() -> None:
        engine = Engine(cfg, RedisStore(cfg.store))
        engine.start()
        try:
            space = engine.spaces[SPACE]
            assert space.bandit.to_bytes() == state  # the snapshot and the log after it, both moved
            assert len(space.pending) == len(open_ids) and all(e in space.pending for e in open_ids)
            keys = {k.decode() for k in r.scan_iter("edgesel:*")}
            assert keys and all(k.startswith(f"edgesel:{{{SPACE}}}:") for k in keys), sorted(keys)
            assert len({key_slot(k.encode()) for k in keys}) == 1  # one hash slot: Redis-Cluster-safe
            d = engine.store.get_decision(open_ids[1])  # looked up without knowing its space
            assert d is not None and d.space == SPACE
            assert not (await engine.feedback(open_ids[0], 0.5)).duplicate
            dup = await engine.feedback(given, 0.1)  # its exactly-once claim moved with it
            assert dup.duplicate and dup.reward == 0.7
            assert sum(engine.store.selection_counts(SPACE).values()) == 20 + 10 + 1 + 5
        finally:
            await engine.close()
        after.append((engine.spaces[SPACE].bandit.to_bytes(), engine.spaces[SPACE].applied_seq))

    asyncio.run(new_release())
    assert asyncio.run(restarted(cfg)) == after[0]  # a second start finds nothing to move, the same state

    # An old replica writing again next to the new layout: the new release refuses to start.
    r.set(f"edgesel:seq:{SPACE}", 1)
    engine = Engine(cfg, RedisStore(cfg.store))
    with pytest.raises(StoreUnavailable, match="both the legacy layout"):
        engine.start()
    engine.store.close()


async def restarted(cfg) -> tuple[bytes, int]:
    engine = Engine(cfg, RedisStore(cfg.store))
    engine.start()
    await engine.close()
    return engine.spaces[SPACE].bandit.to_bytes(), engine.spaces[SPACE].applied_seq

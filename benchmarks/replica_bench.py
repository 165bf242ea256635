"""A Redis replica's catch-up CPU per applied Feedback event: the per-entry path vs bulk decode + batch apply.

    .venv/bin/python benchmarks/replica_bench.py --events 50000 --repeats 3 [--policy qoe_model] [--json F]

A real redis-server (no persistence: only reading is timed) on a free port gets the same N Feedback events
twice, each time through a real engine's own reward path (`Engine._append_reward`: the payload the server
logs, with measurements) and that path's own store code: once through the store module as it was before bulk
apply (`--old-rev`, loaded from git), into one Redis database, and once through today's store, into another.
Then, interleaved per repeat, a fresh replica of each path catches up from seq 0:

- replay: what a starting replica does (events_after + apply per event / event_batches_after + apply_batch);
- tail: the tailer thread of a running replica that is N events behind (XREAD; per entry / in bulk).

Timed in process CPU time (`time.process_time`: every thread of this process, so the tailer and the redis
client's parsing count, Redis's own CPU does not). Old path with redis-py's pure-Python parser and with
hiredis, the previous bulk path (`--prev-rev`: its store and SpaceRuntime from git, on today's other modules
and core) and today's, both with hiredis. Every replica's learned state (bandit snapshot bytes) must be
bit-identical to the others' at the end, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
from redis._parsers import _RESP2Parser

from edgesel_server import qoe_policy
from edgesel_server.config import PolicyConfig, ServerConfig, load_config
from edgesel_server.engine import Engine
from edgesel_server.space import SpaceRuntime, new_event_id
from edgesel_server.store import base as ev
from edgesel_server.store import redis as new_redis
from edgesel_tools.bench.fleet import BenchFleet

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
           "--dir", str(directory), "--appendonly", "no", "--save", "", "--protected-mode", "no",
           "--logfile", str(directory / "redis.log")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.5) as r:
                if r.ping():
                    return proc, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def old_module(rev: str, path: str = "store/redis.py") -> ModuleType:
    """server/edgesel_server/<path> as it was at `rev` (git), importable next to today's modules."""
    src = subprocess.run(
        ["git", "show", f"{rev}:server/edgesel_server/{path}"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader(f"edgesel_old_{path.replace('/', '_')[:-3]}_{rev}", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
    return mod


def old_store(mod: ModuleType, url: str) -> Any:
    """The old RedisStore, opened the way today's engine opens a store (it had no batch apply)."""
    # Store methods added since (observations: reward aggregation, which this benchmark's space does not use).
    mod.RedisStore.__abstractmethods__ = frozenset()
    store = mod.RedisStore(url)
    open_one_by_one = store.open
    store.open = lambda apply, apply_batch=None: open_one_by_one(apply)
    return store


def python_parser(store: Any) -> Any:
    """The store's redis clients without hiredis (as before it was a dependency)."""
    for client in (store._r, store._w, store._t):
        client.connection_pool.connection_kwargs["parser_class"] = _RESP2Parser
    return store


def bench_config(path: str, policy: str | None) -> ServerConfig:
    cfg = load_config(path)
    space = cfg.spaces[0]
    if policy:
        space = dataclasses.replace(space, policy=dataclasses.replace(space.policy, kind=policy))
    assert isinstance(space.policy, PolicyConfig)
    # No snapshot while filling: it would let the log be trimmed, and a replica would load it instead of
    # replaying the events.
    return dataclasses.replace(cfg, spaces=[space], snapshot_every=10**9)


async def fill(cfg: ServerConfig, store: Any, n: int, seed: int) -> None:
    """n Feedback events for decisions of real Selects, through the engine's own reward path."""
    engine = Engine(cfg, store)
    engine.start()
    space = engine.spaces[cfg.spaces[0].name]
    fleet = BenchFleet(cfg.spaces[0], seed=seed)
    rng = random.Random(seed)
    choices = [await engine.select(space.name, f) for f in fleet.device_feature_samples(64)]
    chunk = 512
    for start in range(0, n, chunk):
        todo = []
        for i in range(start, min(n, start + chunk)):
            eid = f"{i:08x}{new_event_id()[8:]}"
            d = dataclasses.replace(choices[i % len(choices)].decision, event_id=eid)
            m = {"latency_ms": rng.uniform(5, 300), "energy_mj": rng.uniform(10, 900), "user_rating": 4.0}
            reward = space.reward_for(d, None, m)
            record = qoe_policy.feedback_record(m, False, "", d.prefs)
            todo.append(engine._append_reward(space, d, reward, ev.FEEDBACK, m, record))
        await asyncio.gather(*todo)
    await engine.flush_unsaved()
    store.close()  # no final snapshot (Engine.close would write one): a fresh replica replays everything


def fresh_space(cfg: ServerConfig, runtime: type = SpaceRuntime) -> SpaceRuntime:
    return runtime(cfg.spaces[0], cfg)


def replay(store: Any, space: SpaceRuntime, bulk: bool) -> int:
    store.open(space.apply)
    try:
        snap = store.latest_snapshot(space.name)
        assert snap is None, "a snapshot was written while filling"
        space.restore(None)
        if bulk:
            for batch in store.event_batches_after(space.name, 0):
                space.apply_batch(batch)
        else:
            for e in store.events_after(space.name, 0):
                space.apply(e)
        return space.applied_seq
    finally:
        store.close()


def tail(store: Any, space: SpaceRuntime, upto: int, bulk: bool) -> int:
    space.restore(None)
    if bulk:
        store.open(space.apply, apply_batch=space.apply_batch)
    else:
        store.open(space.apply)
    try:
        with store._lock:  # a replica N events behind: its tailer reads from seq 0
            store._applied[space.name] = 0
        deadline = time.monotonic() + 600
        while store.applied_seq(space.name) < upto and time.monotonic() < deadline:
            time.sleep(0.01)
        return store.applied_seq(space.name)
    finally:
        store.close()


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.process_time()
    out = fn(*args)
    return time.process_time() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples/edgesel.toml"))
    p.add_argument("--policy", default=None, help="override the space's policy kind (default: the config's)")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-rev", default="6b0f371", help="git revision of the per-entry store code")
    p.add_argument(
        "--prev-rev",
        default="7a7727a",
        help="git revision of the previous bulk path (store/redis.py, space.py)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args()
    cfg = bench_config(args.config, args.policy)
    old = old_module(args.old_rev)
    prev_store, prev_space = old_module(args.prev_rev), old_module(args.prev_rev, "space.py")
    tmp = Path(tempfile.mkdtemp(prefix="replica-bench-"))
    proc, port = start_redis(tmp)
    try:
        urls = {"old": f"redis://127.0.0.1:{port}/0", "new": f"redis://127.0.0.1:{port}/1"}
        t0 = time.monotonic()
        asyncio.run(fill(cfg, old_store(old, urls["old"]), args.events, args.seed))
        asyncio.run(fill(cfg, new_redis.RedisStore(urls["new"]), args.events, args.seed))
        fill_s = time.monotonic() - t0
        upto = args.events + len(cfg.spaces[0].models)  # the feedback events after the AddModel events
        variants = {
            "old, pure-Python parser": lambda: python_parser(old_store(old, urls["old"])),
            "old, hiredis": lambda: old_store(old, urls["old"]),
            # the previous release's bulk decode + batch apply (its store and SpaceRuntime; today's lift.py,
            # qoe_policy.py and core), reading the same log as today's
            f"bulk at {args.prev_rev}": lambda: prev_store.RedisStore(urls["new"]),
            "new (bulk, hiredis)": lambda: new_redis.RedisStore(urls["new"]),
        }
        runtimes = {f"bulk at {args.prev_rev}": prev_space.SpaceRuntime}
        cpu: dict[str, dict[str, list[float]]] = {k: {"replay": [], "tail": []} for k in variants}
        states: dict[str, bytes] = {}
        for _ in range(args.repeats):
            for name, make in variants.items():  # interleaved: each repeat runs every variant once
                bulk = name.startswith(("new", "bulk"))
                for mode in ("replay", "tail"):
                    space = fresh_space(cfg, runtimes.get(name, SpaceRuntime))
                    fn = replay if mode == "replay" else tail
                    extra = () if mode == "replay" else (upto,)
                    s, seq = timed(fn, make(), space, *extra, bulk)
                    assert seq == upto, (name, mode, seq, upto)
                    cpu[name][mode].append(s / args.events * 1e6)
                    states[f"{name}/{mode}"] = space.bandit.to_bytes()
        identical = len(set(states.values())) == 1
        report: dict[str, Any] = {
            "events": args.events,
            "policy": cfg.spaces[0].policy.kind,
            "fill_s": round(fill_s, 1),
            "us_per_event": {
                k: {m: round(statistics.median(v), 2) for m, v in r.items()} for k, r in cpu.items()
            },
            "runs_us_per_event": {
                k: {m: [round(x, 2) for x in v] for m, v in r.items()} for k, r in cpu.items()
            },
            "states_bit_identical": identical,
        }
        med = report["us_per_event"]
        base = med["old, hiredis"]
        new = med["new (bulk, hiredis)"]
        report["new_vs_old_hiredis"] = {m: round(new[m] / base[m], 3) for m in ("replay", "tail")}
        report["new_vs_prev_bulk"] = {
            m: round(new[m] / med[f"bulk at {args.prev_rev}"][m], 3) for m in ("replay", "tail")
        }
        report["new_vs_old_pure_python"] = {
            m: round(new[m] / med["old, pure-Python parser"][m], 3) for m in ("replay", "tail")
        }
        print(f"{args.events} feedback events, policy {report['policy']}, filled in {fill_s:.0f} s; "
              f"median of {args.repeats} interleaved runs, process CPU us per applied event:")  # fmt: skip
        print(f"{'path':<28}{'replay':>10}{'tail':>10}")
        for k, v in med.items():
            print(f"{k:<28}{v['replay']:>10.2f}{v['tail']:>10.2f}")
        for k in ("new_vs_prev_bulk", "new_vs_old_hiredis", "new_vs_old_pure_python"):
            print(f"{k}: replay {report[k]['replay']:.3f}x, tail {report[k]['tail']:.3f}x")
        print(f"learned states bit-identical across all {len(states)} replicas: {identical}")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0 if identical else 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Where a Select's server CPU goes: the real server with one part of its Select path taken out, side by side.

    .venv/bin/python benchmarks/select_breakdown.py [--duration 10] [--rounds 3] [--variants base,no_sql]

Each variant is a real `edgesel-server` (examples/edgesel.toml, a fresh data directory) started by this script
with one function replaced *in that process only*, loaded with `edgesel-bench --phases select` over loopback;
the variants run interleaved, `--rounds` times, and the medians are printed. The bench measures the server's
CPU per call from /proc (all of its threads); the server itself counts its store writer's batches.

Variants (none of them is a way to run edgesel; they bound what each part costs):
  base         the server as shipped
  no_store     the decision is not written at all (`Engine._persist_decision` returns at once): the cost of
               everything but durability, i.e. the bound for any decision-log design
  canned       Select answers one prebuilt response (no engine at all) behind the same RPC guard, metrics
               and registration: what serving an edgesel RPC costs beyond the floor before any of its work
  no_sql       the writer thread takes decision-only batches and resolves them without SQL or fsync: the
               hand-off to the writer thread and back, without the write
  no_fsync     durability = "process" (SQLite synchronous=NORMAL: no fsync at commit)
  slow_commit  like no_sql, but each decision-only batch takes 2 ms (a slow disk): bigger groups per commit
  loop_journal the decision appended to a file and fdatasync'd on the event loop thread, once per loop
               iteration for all decisions made in it (no writer thread, no SQLite): the bound for a journal

Columns: rps, p99 (ms), server CPU per call (µs), the difference to base, decisions per commit and the writer
thread's CPU per decision (thread CPU time inside the commit, µs).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "edgesel.toml"
VARIANTS = ("base", "no_store", "canned", "no_sql", "no_fsync", "slow_commit", "loop_journal")


def patch(variant: str) -> None:
    """Inside the server process: replace the part the variant takes out, and count the writer's batches."""
    from edgesel_server import config, engine
    from edgesel_server.store import sqlite

    if variant == "no_store":

        async def persist(self: engine.Engine, d: object) -> None:
            return None

        engine.Engine._persist_decision = persist  # type: ignore[method-assign,assignment]
    if variant == "canned":
        from edgesel_server import servicers

        real = servicers.SelectionServicer.Select
        first: list = []

        async def canned(self: servicers.SelectionServicer, request: object, context: object) -> object:
            if not first:  # one real answer, then the same one for every call
                first.append(await real(self, request, context))  # type: ignore[arg-type]
            return first[0]

        servicers.SelectionServicer.Select = canned  # type: ignore[method-assign,assignment]
    if variant == "loop_journal":
        import asyncio

        journal = os.open(os.environ["EDGESEL_BREAKDOWN_JOURNAL"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        queued: list = []

        def flush() -> None:
            batch = list(queued)
            queued.clear()
            os.write(journal, b"".join(row for row, _ in batch))
            os.fdatasync(journal)
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

        async def journaled(self: engine.Engine, d: engine.Decision) -> None:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            if not queued:
                loop.call_soon(flush)
            row = json.dumps([d.event_id, d.model_id, d.created, d.deadline, d.propensity, d.x.tolist()])
            queued.append((row.encode() + b"\n", waiter))
            await waiter

        engine.Engine._persist_decision = journaled  # type: ignore[method-assign]
    if variant == "no_fsync":
        load = config.load_config

        def load_config(path: object) -> config.ServerConfig:
            cfg = load(path)  # type: ignore[arg-type]
            cfg.durability = "process"
            return cfg

        config.load_config = load_config
    commit = sqlite.SqliteStore._commit
    stats: Counter = Counter()

    def counted(self: sqlite.SqliteStore, conn: object, batch: list) -> None:
        started = time.thread_time()
        if variant in ("no_sql", "slow_commit") and all(kind == "decision" for kind, _, _ in batch):
            if variant == "slow_commit":
                time.sleep(0.002)
            for _, _, fut in batch:
                fut.set_result(None)
        else:
            commit(self, conn, batch)  # type: ignore[arg-type]
        decisions = sum(kind == "decision" for kind, _, _ in batch)
        if decisions:
            stats["commits"] += 1
            stats["decisions"] += decisions
            stats["cpu_us"] += (time.thread_time() - started) * 1e6

    sqlite.SqliteStore._commit = counted  # type: ignore[method-assign]
    atexit.register(lambda: print("WRITER " + json.dumps(dict(stats)), flush=True))


def serve(variant: str, argv: list[str]) -> int:
    patch(variant)
    from edgesel_server import cli

    return cli.main(argv)


def run_variant(variant: str, duration: float, work: Path) -> dict:
    data = work / variant
    shutil.rmtree(data, ignore_errors=True)
    cmd = [sys.executable, __file__, "--serve", variant, "--", "--config", str(CONFIG), "--listen",
           "127.0.0.1:0", "--data-dir", str(data), "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "EDGESEL_BREAKDOWN_JOURNAL": str(work / f"{variant}.journal")}
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    target = ""
    for line in server.stdout:
        if line.startswith("LISTENING "):
            target = line.split()[1]
            break
    if not target:
        raise SystemExit(f"{variant}: the server did not start (rc {server.wait()})")
    out = work / f"{variant}.json"
    bench = [str(Path(sys.executable).with_name("edgesel-bench")), "--config", str(CONFIG),
             "--target", target, "--server-pid", str(server.pid), "--phases", "select",
             "--duration", str(duration), "--concurrency", "16", "--json", str(out)]  # fmt: skip
    subprocess.run(bench, check=True, stdout=subprocess.DEVNULL)
    server.send_signal(signal.SIGTERM)
    rest, _ = server.communicate(timeout=60)
    writer = next((json.loads(ln[7:]) for ln in rest.splitlines() if ln.startswith("WRITER ")), {})
    sel = json.loads(out.read_text())["select"]
    commits = writer.get("commits", 0)
    return {
        "rps": sel["rps"],
        "p99_ms": sel["p99_ms"],
        "server_us": sel["server_cpu_us_per_call"],
        "per_commit": writer.get("decisions", 0) / commits if commits else float("nan"),
        "writer_us": writer.get("cpu_us", 0.0) / max(1, writer.get("decisions", 0)),
        "errors": sel["errors"],
    }


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[4:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", help="also write the medians here")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    work = Path(tempfile.mkdtemp(prefix="edgesel-breakdown-"))
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v in variants:
                res = run_variant(v, args.duration, work)
                runs[v].append(res)
                print(f"round {r + 1}/{args.rounds} {v:12s} {res['rps']:6.0f}/s "
                      f"{res['server_us']:5.0f} us/call", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    base = med.get("base", {}).get("server_us", float("nan"))
    cores = os.cpu_count()
    print(f"\nmedians of {args.rounds} rounds, {args.duration:g} s of Select, 16 in flight, {cores} cores")
    print(f"{'variant':12s} {'rps':>6s} {'p99 ms':>7s} {'server us':>9s} {'vs base':>8s} {'per commit':>10s} "
          f"{'writer us':>9s} {'errors':>6s}")  # fmt: skip
    for v, m in med.items():
        print(f"{v:12s} {m['rps']:6.0f} {m['p99_ms']:7.1f} {m['server_us']:9.0f} "
              f"{m['server_us'] - base:+8.0f} {m['per_commit']:10.2f} {m['writer_us']:9.0f} "
              f"{m['errors']:6.0f}")  # fmt: skip
    if args.json:
        summary = {"rounds": args.rounds, "duration": args.duration, "medians": med}
        Path(args.json).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

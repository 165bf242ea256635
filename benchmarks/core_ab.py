"""A/B benchmark: this build of the Rust core against another build of it, in one process.

On a shared machine, two separate benchmark runs differ by more than the change being measured. This script
loads a second build of `edgesel_server._core` (e.g. the one of the previous revision) from its `.so` file
next to the installed one, gives both the same state, checks that they score bit for bit alike, and times
them with interleaved repeats (`core_bench.measure`) in thread CPU time, so drift and time spent descheduled
by other processes hit neither. It prints, per row of the
`core_bench.py` grid, the median µs per `select` and per `update` of both and the ratio new / baseline
(> 1: the new build is slower).

    python benchmarks/core_ab.py --baseline /path/to/old/_core.abi3.so [--quick] [--json out.json]

To get a baseline: `git worktree add /tmp/old <rev>`, build it there (`maturin build --release`) and pass
the `_core*.so` from the wheel, or any other venv's `edgesel_server/_core*.so`.

This is a script, not a timed test: nothing here asserts a speed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from core_bench import ARMS, DIMS, HYBRID_P, POLICIES, core_bandit, env_summary, measure, workload  # noqa: E402

from edgesel_server.core import Bandit  # noqa: E402


def load_baseline(path: str):
    """The `Bandit` class of the extension module at `path` (a second copy of `_core`, under another name)."""
    spec = importlib.util.spec_from_file_location("edgesel_baseline._core", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Bandit


def check_bit_identical(new, old, d: int) -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.uniform(-1, 1, size=d)
        a, b = new.score(x), old.score(x)
        if list(a[0]) != list(b[0]) or any(
            not np.array_equal(u, v) for u, v in zip(a[1:], b[1:], strict=True)
        ):
            sys.exit("MISMATCH: the two builds score differently")


def bench_one(baseline_cls, policy: str, n_arms: int, d: int, quick: bool) -> dict:
    p = HYBRID_P[d] if policy == "hybrid_linucb" else 0
    work = workload(n_arms, d, p, 200 if quick else 2000)
    new, old = core_bandit(Bandit, policy, d, p, work), core_bandit(baseline_cls, policy, d, p, work)
    check_bit_identical(new, old, d)
    # CPU time of this thread, not wall time: on a shared machine, time spent descheduled is not the code's.
    repeats, target = (3, 0.004) if quick else (31, 0.02)
    rng = np.random.default_rng(2)
    ids = work[0]
    pool_x = [np.ascontiguousarray(v) for v in rng.uniform(-1, 1, size=(512, d))]
    pool_arm = [ids[i] for i in rng.integers(n_arms, size=512)]
    pool_r = rng.normal(size=512).tolist()
    cpu = time.thread_time
    sel_new, sel_old = measure(new.select, old.select, lambda i: (pool_x[i % 512],), repeats, target, cpu)
    upd_args = lambda i: (pool_arm[i % 512], pool_x[(i * 7) % 512], pool_r[i % 512])  # noqa: E731
    upd_new, upd_old = measure(new.update, old.update, upd_args, repeats, target, cpu)
    return {
        "policy": "hybrid" if policy == "hybrid_linucb" else "disjoint",
        "K": n_arms,
        "d": d,
        "joint_dim": (d + 1) * (p + 1) if p else 0,
        "new_select_us": sel_new * 1e6,
        "baseline_select_us": sel_old * 1e6,
        "new_update_us": upd_new * 1e6,
        "baseline_update_us": upd_old * 1e6,
    }


HEADER = (
    f"{'policy':<9}{'K':>6}{'d':>4}{'k':>5} | {'select µs: new':>15}{'baseline':>10}{'new/base':>9}"
    f" | {'update µs: new':>15}{'baseline':>10}{'new/base':>9}"
)


def fmt_row(r: dict) -> str:
    return (
        f"{r['policy']:<9}{r['K']:>6}{r['d']:>4}{r['joint_dim']:>5} | "
        f"{r['new_select_us']:>15.2f}{r['baseline_select_us']:>10.2f}"
        f"{r['new_select_us'] / r['baseline_select_us']:>9.3f}"
        f" | {r['new_update_us']:>15.2f}{r['baseline_update_us']:>10.2f}"
        f"{r['new_update_us'] / r['baseline_update_us']:>9.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="path of the other build's _core*.so")
    ap.add_argument("--quick", action="store_true", help="fast smoke run (few repeats, short timings)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = ap.parse_args(argv)
    baseline_cls = load_baseline(args.baseline)
    t_start = time.perf_counter()
    print("edgesel core A/B: this build vs --baseline (median thread CPU time per call, interleaved repeats)")
    for line in env_summary():
        print("  " + line)
    print()
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for policy in POLICIES:
        for d in DIMS:
            for n_arms in ARMS:
                rows.append(bench_one(baseline_cls, policy, n_arms, d, args.quick))
                print(fmt_row(rows[-1]), flush=True)
    worst = max(r[f"new_{op}_us"] / r[f"baseline_{op}_us"] for r in rows for op in ("select", "update"))
    print(f"\nworst ratio new/baseline: {worst:.3f}; done in {time.perf_counter() - t_start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Microbenchmark: the Rust bandit core (edgesel_server.core) against the best numpy implementation.

Prints, side by side in one run, the median time per `select` (scoring every arm) and per `update`
for the Rust core and for benchmarks/numpy_fast.py, over policy × K (arms) × d (device_dim), and the
ratio numpy / rust (> 1: Rust is faster); and the core's update with forgetting (`half_life`, docs/core.md)
against the same core without it, interleaved in the same window (ratio forget / plain). Before timing
each configuration it checks, untimed, that both implementations give the same scores on the same state,
so the comparison is apples to apples.

    python benchmarks/core_bench.py                 # full grid
    python benchmarks/core_bench.py --quick         # smoke run (CI), < 60 s
    python benchmarks/core_bench.py --json out.json

For a fair run, unset the OpenBLAS overrides that this machine may set (they can slow numpy down):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/core_bench.py

numpy's BLAS runs on one thread (OPENBLAS_NUM_THREADS=1 unless already set), like the Rust core;
`OPENBLAS_NUM_THREADS=2 python benchmarks/core_bench.py` lets numpy use more.

This is a script, not a timed test: nothing here asserts a speed.
"""

from __future__ import annotations

import os

# numpy's BLAS gets one thread unless the caller sets OPENBLAS_NUM_THREADS: the Rust core scores on one
# thread, and on small (2-vCPU) machines multi-threaded OpenBLAS gemv is slower and erratic (measured
# 1-10 ms instead of 0.3 ms for K=1000, d=32). Must happen before numpy is imported.
BLAS_THREADS_DEFAULTED = "OPENBLAS_NUM_THREADS" not in os.environ
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numpy_fast import FastBandit, FastQoeModel  # noqa: E402

from edgesel_server.core import Bandit, QoeModel  # noqa: E402

POLICIES = ("disjoint_linucb", "hybrid_linucb")
ARMS = (10, 100, 1000)
DIMS = (8, 16, 32)
# hybrid model_dim per device_dim: joint dim (d+1)(p+1) = 126, 255, 231
HYBRID_P = {8: 13, 16: 14, 32: 6}
ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
CHECK_RTOL = 1e-9


def env_summary() -> list[str]:
    py, cpu = platform.python_version(), f"{os.cpu_count()} CPUs, {platform.machine()}"
    lines = [f"python {py}, numpy {np.__version__}, {cpu}"]
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        blas = deps.get("blas", {})
        lines.append(f"numpy BLAS: {blas.get('name', '?')} {blas.get('version', '')}".rstrip())
    except Exception as e:  # noqa: BLE001 - informational only
        lines.append(f"numpy BLAS: unknown ({e.__class__.__name__})")
    seen = [f"{v}={os.environ[v]}" for v in ENV_VARS if v in os.environ]
    if BLAS_THREADS_DEFAULTED:
        seen = [v + " (set by this script)" if v.startswith("OPENBLAS_NUM_THREADS") else v for v in seen]
    lines.append("BLAS env: " + (", ".join(seen) if seen else "none of " + ", ".join(ENV_VARS) + " set"))
    if "OPENBLAS_CORETYPE" in os.environ or "OPENBLAS_L2_SIZE" in os.environ:
        lines.append(
            "NOTE: OpenBLAS overrides are set; for a fair run use "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/core_bench.py`"
        )
    return lines


def workload(n_arms: int, d: int, p: int, n_train: int, seed: int = 0):
    """Arm ids, their features and the feedback every implementation learns from."""
    rng = np.random.default_rng(seed)
    ids = [f"model-{i:04d}" for i in range(n_arms)]
    feats = rng.uniform(-1, 1, size=(n_arms, p))
    arm_idx = rng.integers(n_arms, size=n_train)
    xs = rng.uniform(-1, 1, size=(n_train, d))
    w = rng.normal(size=d)
    rewards = xs @ w * np.cos(arm_idx) + 0.1 * rng.normal(size=n_train)
    return ids, feats, [ids[i] for i in arm_idx], xs, rewards


FORGET_HALF_LIFE = 1000


def core_bandit(cls, policy: str, d: int, p: int, work, **kw) -> Bandit:
    """A bandit of class `cls` (this build's `Bandit`, or another build's) trained on `work`."""
    ids, feats, train_ids, xs, rewards = work
    b = cls(policy, d, p, alpha=1.0, lam=1.0, **kw)
    for a, m in zip(ids, feats, strict=True):
        b.add_arm(a, m if p else None)
    b.update_batch(train_ids, xs, rewards)
    return b


def build(policy: str, n_arms: int, d: int, p: int, n_train: int, seed: int = 0):
    """The same state in both implementations: same arms, same feedback."""
    work = workload(n_arms, d, p, n_train, seed)
    ids, feats, train_ids, xs, rewards = work
    rust = core_bandit(Bandit, policy, d, p, work)
    forget = core_bandit(Bandit, policy, d, p, work, half_life=FORGET_HALF_LIFE)
    fast = FastBandit(policy, d, p, alpha=1.0, lam=1.0)
    fast.add_arms(ids, feats)
    fast.update_batch(train_ids, xs, rewards)
    return rust, fast, forget, ids


def check_same_scores(rust: Bandit, fast: FastBandit, d: int, seed: int = 1) -> float:
    """Largest |rust − numpy| / max(1, |numpy|) over mean, bonus, total; exits on any mismatch."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(5):
        x = rng.uniform(-1, 1, size=d)
        r_ids, *r_vals = rust.score(x)
        f_ids, *f_vals = fast.score(x)
        if list(r_ids) != list(f_ids):
            sys.exit("MISMATCH: arm order differs between the Rust core and numpy_fast")
        for name, rv, fv in zip(("mean", "bonus", "total"), r_vals, f_vals, strict=True):
            err = float(np.max(np.abs(np.asarray(rv) - fv) / np.maximum(1.0, np.abs(fv))))
            worst = max(worst, err)
            if not err <= CHECK_RTOL:
                sys.exit(
                    f"MISMATCH: {name} differs by {err:.3e} (relative) between the Rust core and numpy_fast"
                )
        r_sel, f_sel = rust.select(x), fast.select(x)
        if r_sel.id != f_sel[0] and abs(r_sel.total - f_sel[3]) > CHECK_RTOL * max(1.0, abs(f_sel[3])):
            sys.exit(f"MISMATCH: select chose {r_sel.id} (Rust) vs {f_sel[0]} (numpy)")
    return worst


def _per_call(fn, calls, clock=time.perf_counter) -> float:
    t0 = clock()
    for args in calls:
        fn(*args)
    return (clock() - t0) / len(calls)


def measure(
    rust_fn, numpy_fn, make_args, repeats: int, target_s: float, clock=time.perf_counter
) -> tuple[float, float]:
    """Median per-call seconds for both, repeats interleaved so drift hits both alike."""
    probe = [make_args(i) for i in range(8)]
    est = {}
    for name, fn in (("rust", rust_fn), ("numpy", numpy_fn)):
        _per_call(fn, probe)  # warm-up (caches, lazy init)
        est[name] = max(_per_call(fn, probe), 1e-8)
    calls = {
        name: [make_args(i) for i in range(int(min(20_000, max(5, target_s / t))))] for name, t in est.items()
    }
    times: dict[str, list[float]] = {"rust": [], "numpy": []}
    for _ in range(repeats):
        times["rust"].append(_per_call(rust_fn, calls["rust"], clock))
        times["numpy"].append(_per_call(numpy_fn, calls["numpy"], clock))
    return statistics.median(times["rust"]), statistics.median(times["numpy"])


def bench_one(policy: str, n_arms: int, d: int, quick: bool) -> dict:
    p = HYBRID_P[d] if policy == "hybrid_linucb" else 0
    n_train = 200 if quick else 2000
    rust, fast, forget, ids = build(policy, n_arms, d, p, n_train)
    worst = check_same_scores(rust, fast, d)
    repeats, target = (3, 0.004) if quick else (7, 0.05)
    rng = np.random.default_rng(2)
    pool_x = [np.ascontiguousarray(v) for v in rng.uniform(-1, 1, size=(512, d))]
    pool_arm = [ids[i] for i in rng.integers(n_arms, size=512)]
    pool_r = rng.normal(size=512).tolist()
    sel_r, sel_n = measure(rust.select, fast.select, lambda i: (pool_x[i % 512],), repeats, target)

    def upd_args(i: int) -> tuple:
        return pool_arm[i % 512], pool_x[(i * 7) % 512], pool_r[i % 512]

    upd_r, upd_n = measure(rust.update, fast.update, upd_args, repeats, target)
    upd_plain, upd_forget = measure(rust.update, forget.update, upd_args, repeats, target)
    return {
        "policy": "hybrid" if policy == "hybrid_linucb" else "disjoint",
        "K": n_arms,
        "d": d,
        "joint_dim": (d + 1) * (p + 1) if p else 0,
        "rust_select_us": sel_r * 1e6,
        "numpy_select_us": sel_n * 1e6,
        "rust_update_us": upd_r * 1e6,
        "numpy_update_us": upd_n * 1e6,
        "forget_update_us": upd_forget * 1e6,
        "plain_update_us": upd_plain * 1e6,
        "_check": worst,
        "_p": p,
    }


QOE_ARMS = (100, 1000)
QOE_D, QOE_P = 8, 5  # like the fleet scenario's catalog features; joint dim 54 per target


def build_qoe(n_arms: int, n_train: int, seed: int = 0) -> tuple[QoeModel, FastQoeModel, list[str]]:
    """The same qoe_model state in Rust and numpy: arms with catalog accuracies, latency + rating feedback."""
    rng = np.random.default_rng(seed)
    d, p = QOE_D, QOE_P
    rust = QoeModel(d, p)
    fast = FastQoeModel(d, p)
    ids = [f"model-{i:04d}" for i in range(n_arms)]
    feats = rng.uniform(0, 1, size=(n_arms, p))
    acc = rng.uniform(0.55, 0.85, size=n_arms)
    for a, m, c in zip(ids, feats, acc, strict=True):
        rust.add_arm(a, m, accuracy=float(c))
    fast.add_arms(ids, feats, acc)
    for _ in range(n_train):
        i = int(rng.integers(n_arms))
        x = rng.uniform(0, 1, size=d)
        lat, rating = float(20.0 * np.exp(feats[i, 0] + x[0])), float(rng.uniform(1, 5))
        rust.update(ids[i], x, 0.5, latency_ms=lat, user_rating=rating)
        fast.update(ids[i], x, 0.5, lat, rating)
    return rust, fast, ids


def check_same_qoe(rust: QoeModel, fast: FastQoeModel, seed: int = 1) -> float:
    """Largest relative difference of expected, bonus, optimistic QoE; exits on a mismatch or another pick."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(5):
        x = rng.uniform(0, 1, size=QOE_D)
        r_ids, *r_vals = rust.score(x)
        f_ids, *f_vals = fast.score(x)
        for name, rv, fv in zip(("expected", "bonus", "optimistic"), r_vals, f_vals, strict=True):
            err = float(np.max(np.abs(np.asarray(rv) - fv) / np.maximum(1.0, np.abs(fv))))
            worst = max(worst, err)
            if list(r_ids) != list(f_ids) or not err <= CHECK_RTOL:
                sys.exit(
                    f"MISMATCH: qoe_model {name} differs by {err:.3e} between the Rust core and numpy_fast"
                )
        r_sel, f_sel = rust.select(x), fast.select(x)
        if r_sel[0] != f_sel[0] and abs(r_sel[3] - f_sel[3]) > CHECK_RTOL * max(1.0, abs(f_sel[3])):
            sys.exit(f"MISMATCH: qoe_model select chose {r_sel[0]} (Rust) vs {f_sel[0]} (numpy)")
    return worst


def bench_qoe(n_arms: int, quick: bool) -> dict:
    rust, fast, ids = build_qoe(n_arms, 200 if quick else 2000)
    worst = check_same_qoe(rust, fast)
    repeats, target = (3, 0.004) if quick else (7, 0.05)
    rng = np.random.default_rng(2)
    pool_x = [np.ascontiguousarray(v) for v in rng.uniform(0, 1, size=(512, QOE_D))]
    pool_arm = [ids[i] for i in rng.integers(n_arms, size=512)]
    pool_lat = rng.uniform(5, 300, size=512).tolist()

    def rust_select(x):
        return rust.select(x)

    def rust_update(a, x, lat):
        rust.update(a, x, 0.5, latency_ms=lat, user_rating=3.0)

    def fast_update(a, x, lat):
        fast.update(a, x, 0.5, lat, 3.0)

    sel_r, sel_n = measure(rust_select, fast.select, lambda i: (pool_x[i % 512],), repeats, target)
    upd_r, upd_n = measure(
        rust_update, fast_update, lambda i: (pool_arm[i % 512], pool_x[(i * 7) % 512], pool_lat[i % 512]),
        repeats, target,
    )  # fmt: skip
    return {
        "policy": "qoe_model",
        "K": n_arms,
        "d": QOE_D,
        "joint_dim": (QOE_D + 1) * (QOE_P + 1),
        "rust_select_us": sel_r * 1e6,
        "numpy_select_us": sel_n * 1e6,
        "rust_update_us": upd_r * 1e6,
        "numpy_update_us": upd_n * 1e6,
        "_check": worst,
        "_p": QOE_P,
    }


HEADER = (
    f"{'policy':<9}{'K':>6}{'d':>4}{'p':>4}{'k':>5} | {'select µs: rust':>16}{'numpy':>10}{'ratio':>8}"
    f" | {'update µs: rust':>16}{'numpy':>10}{'ratio':>8} | {'forget µs':>10}{'ratio':>7} | {'check':>8}"
)


def fmt_row(r: dict) -> str:
    sel_ratio = r["numpy_select_us"] / r["rust_select_us"]
    upd_ratio = r["numpy_update_us"] / r["rust_update_us"]
    return (
        f"{r['policy']:<9}{r['K']:>6}{r['d']:>4}{r['_p']:>4}{r['joint_dim']:>5} | "
        f"{r['rust_select_us']:>16.2f}{r['numpy_select_us']:>10.2f}{sel_ratio:>7.1f}x"
        f" | {r['rust_update_us']:>16.2f}{r['numpy_update_us']:>10.2f}{upd_ratio:>7.1f}x"
        f" | {r['forget_update_us']:>10.2f}{r['forget_update_us'] / r['plain_update_us']:>6.2f}x"
        f" | {r['_check']:>8.1e}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (few repeats, short timings)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    print("edgesel core benchmark: Rust core vs numpy_fast (median time per call; ratio = numpy / rust)")
    print("fair run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/core_bench.py")
    for line in env_summary():
        print("  " + line)
    print(f"  mode: {'quick' if args.quick else 'full'}; 'check' = max relative score difference, untimed")
    print(
        f"  'forget' = the core's update with half_life = {FORGET_HALF_LIFE}, timed interleaved with the"
        " plain core's; its ratio = forget / plain"
    )
    print()
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for policy in POLICIES:
        for d in DIMS:
            for n_arms in ARMS:
                row = bench_one(policy, n_arms, d, args.quick)
                rows.append(row)
                print(fmt_row(row), flush=True)
    for n_arms in QOE_ARMS:
        row = bench_qoe(n_arms, args.quick)
        rows.append(row)
        print(fmt_row(row), flush=True)
    print(f"\ndone in {time.perf_counter() - t_start:.1f} s")
    if args.json:
        keys = (
            "policy",
            "K",
            "d",
            "joint_dim",
            "rust_select_us",
            "numpy_select_us",
            "rust_update_us",
            "numpy_update_us",
            "forget_update_us",
            "plain_update_us",
        )
        with open(args.json, "w") as f:
            json.dump({"rows": [{k: r[k] for k in keys} for r in rows]}, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

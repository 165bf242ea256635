"""Forgetting against drift: rounds to recover on a drift scenario and the QoE cost on a stationary one.

    python benchmarks/forgetting_sweep.py                       # the table of docs/simulator.md, "Drift"
    python benchmarks/forgetting_sweep.py --policies disjoint_linucb --half-lives 0,100 --seeds 2024
    python benchmarks/forgetting_sweep.py --policies qoe_model        # the default policy's table

For every seed, policy and half-life it runs the full scenario (``edgesel-sim run --seed S --half-life N``
does the same run) and prints one row per (policy, half-life): rounds to recover per seed and their mean on
the drift scenario, and mean QoE with its change versus ``half_life = 0`` on both scenarios.
This is a measurement, not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgesel_tools.sim.report import build_report
from edgesel_tools.sim.runner import run
from edgesel_tools.sim.scenario import build_stream, load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "examples" / "scenarios"


def measure(path: Path, policies: list[str], half_lives: list[int], seeds: list[int]) -> dict:
    """{(policy, half_life): {seed: (mean_qoe, rounds_to_recover)}}."""
    out: dict = {}
    sc = load_scenario(path)
    for seed in seeds:
        stream = build_stream(sc, None, seed)
        oracle = run(stream, ["oracle"])
        for hl in half_lives:
            rep = build_report(stream, oracle + run(stream, policies, half_life=hl))
            for p in policies:
                m = rep["policies"][p]
                out.setdefault((p, hl), {})[seed] = (m["mean_qoe"], m.get("rounds_to_recover"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drift", default=str(SCENARIOS / "drift.toml"))
    ap.add_argument("--stationary", default=str(SCENARIOS / "fleet.toml"))
    ap.add_argument("--policies", default="hybrid_linucb,disjoint_linucb")
    ap.add_argument("--half-lives", default="0,100,200,400")
    ap.add_argument("--seeds", default="2024,2025,2026")
    args = ap.parse_args(argv)
    policies = args.policies.split(",")
    half_lives = [int(h) for h in args.half_lives.split(",")]
    if 0 not in half_lives:
        half_lives.insert(0, 0)
    seeds = [int(s) for s in args.seeds.split(",")]
    drift = measure(Path(args.drift), policies, half_lives, seeds)
    still = measure(Path(args.stationary), policies, half_lives, seeds)
    print("| policy | half_life | rounds to recover (seeds) | mean | drift QoE (Δ) | stationary QoE (Δ) |")
    print("|---|---|---|---|---|---|")
    for p in policies:
        for hl in half_lives:
            d, s, d0, s0 = drift[(p, hl)], still[(p, hl)], drift[(p, 0)], still[(p, 0)]
            rtr = [d[k][1] for k in seeds]
            known = [r for r in rtr if r is not None]
            mean_rtr = f"{sum(known) / len(known):.0f}" if len(known) == len(rtr) else "n/a"

            def cell(v: dict, v0: dict) -> str:
                q = sum(v[k][0] for k in seeds) / len(seeds)
                dq = sum(100 * (v[k][0] - v0[k][0]) / v0[k][0] for k in seeds) / len(seeds)
                return f"{q:.4f} ({dq:+.2f} %)"

            per_seed = " / ".join(str(r) for r in rtr)
            print(f"| {p} | {hl} | {per_seed} | {mean_rtr} | {cell(d, d0)} | {cell(s, s0)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

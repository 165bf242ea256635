"""The demo: a real edgesel server on the embedded store, driven by a simulated fleet through the SDK.

    python -m edgesel_tools.demo [--rounds N] [--out DIR]

It builds the shipped example scenario's stream of device arrivals (heterogeneous phones and boards, real
models from the ImageNet zoo, a new model appearing mid-run), starts `edgesel-server`, and has every simulated
device Select a model and report its QoE over gRPC. The same stream is also run in-process for the baselines
(the single best common model in hindsight, random, and the oracle), then the report and regret plot are
written and a summary printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgesel_tools.sim.live import run_live
from edgesel_tools.sim.report import build_report, plot_regret, write_report
from edgesel_tools.sim.runner import console_progress, run
from edgesel_tools.sim.scenario import build_stream, load_scenario

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIO = ROOT / "examples/scenarios/fleet.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="edgesel-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO))
    p.add_argument("--rounds", type=int, default=15000, help="device requests to simulate (default 15000)")
    p.add_argument("--out", default=str(ROOT / "out/demo"), help="where the report, plot and server data go")
    args = p.parse_args(argv)
    out = Path(args.out)
    if (out / "server").exists():
        import shutil

        shutil.rmtree(out / "server")  # a fresh server each demo run

    scenario = load_scenario(args.scenario)
    stream = build_stream(scenario, args.rounds)
    changes = ", ".join(f"+{a} at round {r}" for r, ch in stream.change_rounds for a in ch.add) or "none"
    print(
        f"edgesel demo: scenario {scenario.name!r}: {stream.rounds} device requests from "
        f"{len(scenario.devices)} device types, {len(scenario.models)} models in the catalog "
        f"(catalog changes: {changes})"
    )
    print("starting edgesel-server (embedded SQLite store) and driving the fleet through the SDK...")
    t0 = time.perf_counter()
    live = run_live(stream, out / "server", policy="hybrid_linucb", progress=console_progress)
    live_s = time.perf_counter() - t0
    print(
        f"live run: {stream.rounds} Select + Feedback round trips in {live_s:.1f}s "
        f"({2 * stream.rounds / live_s:.0f} RPC/s)"
    )
    print("baselines on the same stream (in-process):")
    baselines = run(stream, ["oracle", "common_model", "random"], progress=console_progress)
    report = build_report(
        stream, [live, *baselines], {"live_policy": "hybrid_linucb", "alpha": 0.5, "lam": 1.0}
    )
    report_path = write_report(report, out)
    plot_path = plot_regret(report, stream, out)

    pol = report["policies"]
    ours, common, oracle, rnd = pol[live.name], pol["common_model"], pol["oracle"], pol["random"]
    print()
    print(f"{'policy':<32}{'mean QoE':>9}{'vs oracle':>11}{'regret':>9}{'optimal picks':>15}")
    for name, m in [
        (f"edgesel ({live.name})", ours),
        ("common model (hindsight)", common),
        ("random", rnd),
        ("oracle", oracle),
    ]:
        print(
            f"{name:<32}{m['mean_qoe']:>9.3f}{m['qoe_vs_oracle']:>11.3f}{m['cumulative_regret']:>9.1f}"
            f"{m['optimal_pick_rate']:>15.3f}"
        )
    gain = (ours["mean_qoe"] / common["mean_qoe"] - 1) * 100
    print(
        f"\nedgesel's devices got {gain:+.1f}% QoE over the best single model for everyone "
        f"({report['common_model']}), with {ours['cumulative_regret'] / common['cumulative_regret']:.2f}x "
        f"its regret; {ours['qoe_vs_oracle'] * 100:.1f}% of the oracle's QoE."
    )
    print(
        f"QoE over the last 20% of the run: edgesel {ours['mean_qoe_last_20pct']:.3f}, "
        f"common model {common['mean_qoe_last_20pct']:.3f}, oracle {oracle['mean_qoe_last_20pct']:.3f}"
    )
    for arm, e in report["new_model"].items():
        pick = e["policies"].get(live.name, {})
        print(
            f"new model {arm} (added at round {e['added_at_round']}): picked up for the devices it suits "
            f"after {pick.get('rounds_to_pickup')} rounds"
        )
    print(f"\nreport: {report_path}\nplot:   {plot_path}\nserver data and log: {out / 'server'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

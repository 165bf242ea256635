"""``edgesel-sim``: run policies on a scenario, write a decision log, or replay a log.

edgesel-sim --scenario FILE [--policies a,b,...] [--rounds N] [--out DIR] [--seed S] [--live]
edgesel-sim log --scenario FILE --out LOG.jsonl [--rounds N] [--seed S]
edgesel-sim replay --log LOG.jsonl --policy NAME[,NAME...]
edgesel-sim compare --scenario FILE [--policies a,b,...] [--rounds 8000,20000] [--seeds 5] [--out DIR]
edgesel-sim live-lift --scenario FILE [--seeds 20] [--rounds N] [--policy qoe_model] [--holdout-model ARM]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgesel_tools.sim.policies import (
    ALL_POLICIES,
    CORE_POLICIES,
    DEFAULT_ALPHA,
    DEFAULT_EPSILON,
    DEFAULT_LAMBDA,
    POLICY_FACTORIES,
    policy_seed,
)

if TYPE_CHECKING:
    from edgesel_tools.sim.runner import PolicyRun, ProgressFn
    from edgesel_tools.sim.scenario import Stream

SUBCOMMANDS = ("run", "log", "replay", "compare", "live-lift")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpha", type=float, default=None, help="exploration strength of the core policies")
    p.add_argument("--lam", type=float, default=None, help=f"ridge strength (default {DEFAULT_LAMBDA})")
    p.add_argument(
        "--epsilon", type=float, default=None, help=f"epsilon_greedy's ε (default {DEFAULT_EPSILON})"
    )
    p.add_argument(
        "--half-life",
        type=int,
        default=None,
        help="forgetting of the core policies, in applied feedback events (default 0: none)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgesel-sim", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run policies on a scenario (the default command)")
    r.add_argument("--scenario", required=True, help="scenario TOML file")
    r.add_argument("--policies", default=",".join(ALL_POLICIES), help="comma-separated policy names")
    r.add_argument("--rounds", type=int, default=None, help="override the scenario's rounds")
    r.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    r.add_argument("--out", default="sim-out", help="output directory (report.json, regret.png)")
    r.add_argument("--no-plot", action="store_true", help="skip regret.png")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.add_argument(
        "--live",
        action="store_true",
        help="run the core policies end to end: each through its own edgesel-server process (started on a\n"
        "free loopback port) and the client SDK, instead of in-process; baselines stay in-process",
    )
    r.add_argument(
        "--holdout-model",
        default=None,
        help="--live on a measured scenario: hold out --holdout-share of the devices on this model and\n"
        "print the server's GetSpaceReport lift",
    )
    r.add_argument("--holdout-share", type=float, default=0.1, help="with --holdout-model (default 0.1)")
    _common(r)
    lg = sub.add_parser("log", help="write a decision log of a uniformly random logging policy")
    lg.add_argument("--scenario", required=True)
    lg.add_argument("--out", required=True, help="JSONL file to write")
    lg.add_argument("--rounds", type=int, default=None)
    lg.add_argument("--seed", type=int, default=None)
    rp = sub.add_parser(
        "replay", help="estimate policies offline from a decision log (replay, IPS, SNIPS, DM, DR + 95%% CIs)"
    )
    rp.add_argument("--log", required=True, help="JSONL decision log")
    rp.add_argument(
        "--policy", required=True, help="comma-separated: core policies, random, epsilon_greedy, fixed:ARM"
    )
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--out", default=None, help="also write the estimates to this JSON file")
    rp.add_argument(
        "--per-event",
        default=None,
        metavar="FILE",
        help="write every evaluated event's terms (weight, q̂, IPS/DM/DR terms) as JSONL",
    )
    rp.add_argument(
        "--skip-unoffered",
        action="store_true",
        help="fixed:ARM: leave out events whose eligible list lacks ARM (default: ARM's fallback is the\n"
        "first eligible arm)",
    )
    _common(rp)
    from edgesel_tools.sim.compare import COMPARE_POLICIES

    cp = sub.add_parser("compare", help="policies x seeds x horizons on one scenario: mean +- sd tables")
    cp.add_argument("--scenario", required=True)
    cp.add_argument("--policies", default=",".join(COMPARE_POLICIES), help="comma-separated policy names")
    cp.add_argument("--rounds", default="8000,20000", help="comma-separated horizons (default 8000,20000)")
    cp.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    cp.add_argument("--seed", type=int, default=None, help="first seed (default: the scenario's)")
    cp.add_argument("--out", default="sim-compare", help="output directory (compare.json, compare.md)")
    cp.add_argument("--quiet", action="store_true", help="no progress line")
    cp.add_argument("--no-plot", action="store_true", help="skip compare.png")
    _common(cp)
    ll = sub.add_parser(
        "live-lift",
        help="measured scenario through a real server with a holdout, per seed: the report's lift and CI vs\n"
        "the simulator's true lift (sim/lift_check.py)",
    )
    ll.add_argument("--scenario", required=True, help='a kind = "measured" scenario')
    ll.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    ll.add_argument("--seed", type=int, default=None, help="first seed (default: the scenario's)")
    ll.add_argument("--rounds", type=int, default=None, help="override the scenario's rounds")
    ll.add_argument("--policy", default="qoe_model", help="the space's policy (default qoe_model)")
    ll.add_argument(
        "--holdout-model", default=None, help="the incumbent (default: the best that runs everywhere)"
    )
    ll.add_argument("--holdout-share", type=float, default=0.1, help="holdout share (default 0.1)")
    ll.add_argument("--out", default="sim-live-lift", help="output directory (lift.json, a server per seed)")
    return p


def _fail(msg: str) -> int:
    print(f"edgesel-sim: error: {msg}", file=sys.stderr)
    return 2


def _policy_names(arg: str) -> list[str] | str:
    """The --policies list, or an error message."""
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_FACTORIES]
    if unknown:
        return f"unknown policy {unknown} (known: {', '.join(POLICY_FACTORIES)})"
    return names or "no policies"


def _run(args: argparse.Namespace) -> int:
    from edgesel_tools.sim.report import build_report, plot_regret, write_report
    from edgesel_tools.sim.runner import console_progress, run
    from edgesel_tools.sim.scenario import Scenario, build_stream, load_scenario

    names = _policy_names(args.policies)
    if isinstance(names, str):
        return _fail(names)
    if args.rounds is not None and args.rounds < 1:
        return _fail("--rounds must be >= 1")
    scenario = load_scenario(args.scenario)
    measured_live = args.live and not isinstance(scenario, Scenario)
    if args.holdout_model is not None and not (measured_live and 0 < args.holdout_share < 1):
        return _fail("--holdout-model needs --live, a measured scenario and 0 < --holdout-share < 1")
    start = time.perf_counter()
    stream = build_stream(scenario, args.rounds, args.seed)
    print(
        f"edgesel-sim: scenario {scenario.name!r}: {stream.rounds} rounds, "
        f"{len(scenario.devices)} device types, "
        f"{len(stream.arm_ids)} models, d={stream.device_dim}, p={stream.model_dim}, seed {stream.seed} "
        f"(stream built in {time.perf_counter() - start:.1f}s)",
        file=sys.stderr,
    )
    progress = None if args.quiet else console_progress
    live = [n for n in names if n in CORE_POLICIES] if args.live else []
    if "qoe_model" in live and not measured_live:
        # A formula scenario's QoE (logistic satisfaction, battery-dependent energy budget) is not one a
        # server's [space.qoe] can express yet, so a live qoe_model would learn another objective.
        live.remove("qoe_model")
        print("edgesel-sim: --live: qoe_model runs in-process (the server cannot express this scenario's "
              "QoE function yet)", file=sys.stderr)  # fmt: skip
    runs = run(
        stream,
        [n for n in names if n not in live],
        alpha=args.alpha,
        lam=args.lam,
        epsilon=args.epsilon,
        progress=progress,
        half_life=args.half_life,
    )
    for name in live if measured_live else []:
        runs.append(_run_measured_live(args, stream, name, progress))
    for name in [] if measured_live else live:
        from edgesel_tools.sim.live import run_live

        alpha = DEFAULT_ALPHA.get(name, 0.5) if args.alpha is None else args.alpha
        lam = DEFAULT_LAMBDA if args.lam is None else args.lam
        workdir = Path(args.out) / f"server-{name}"
        result = run_live(stream, workdir, policy=name, alpha=alpha, lam=lam,
                          seed=policy_seed(stream.seed, name), progress=progress,
                          half_life=args.half_life or 0)  # fmt: skip
        result.name = name  # same key as an in-process run, so reports compare like for like
        runs.append(result)
    settings = {
        "alpha": args.alpha,
        "lam": args.lam,
        "epsilon": args.epsilon,
        "half_life": args.half_life,
        "policies": names,
    }
    report = build_report(stream, runs, settings)
    path = write_report(report, args.out)
    if not args.no_plot:
        plot_regret(report, stream, args.out)
    print(f"{'policy':<16} {'mean QoE':>9} {'vs oracle':>9} {'regret':>9} {'optimal':>8}")
    for name, m in report["policies"].items():
        print(
            f"{name:<16} {m['mean_qoe']:9.4f} {m['qoe_vs_oracle']:9.3f} {m['cumulative_regret']:9.1f} "
            f"{m['optimal_pick_rate']:8.3f}"
        )
    for name, m in report["policies"].items():
        if "drift_recovery" in m:
            print(f"drift: {name}: rounds to recover {[r['rounds_to_recover'] for r in m['drift_recovery']]}")
    for arm, e in report["new_model"].items():
        picks = {n: p["rounds_to_pickup"] for n, p in e["policies"].items()}
        print(f"new model {arm} (round {e['added_at_round']}): rounds to pickup {picks}")
    print(f"wrote {path} in {time.perf_counter() - start:.1f}s")
    return 0


def _run_measured_live(
    args: argparse.Namespace, stream: Stream, name: str, progress: ProgressFn | None
) -> PolicyRun:
    """One core policy through a server serving the measured scenario's own space (sim/live_measured.py)."""
    from edgesel_tools.sim.live_measured import run_measured_live

    result, report, _ = run_measured_live(stream, Path(args.out) / f"server-{name}", policy=name,
                                          alpha=args.alpha, seed=policy_seed(stream.seed, name),
                                          holdout_model=args.holdout_model, holdout_share=args.holdout_share,
                                          progress=progress)  # fmt: skip
    result.name = name  # same key as an in-process run, so reports compare like for like
    pooled = report.since_start.pooled
    if pooled.HasField("lift"):
        lf = pooled.lift
        print(f"{name}@server GetSpaceReport: policy n={pooled.policy.n} mean QoE "
              f"{pooled.policy.mean_qoe:.4f}, holdout n={pooled.holdout.n} mean QoE "
              f"{pooled.holdout.mean_qoe:.4f}, lift {lf.absolute:+.4f} "
              f"(95% CI {lf.absolute_ci95_low:+.4f} .. {lf.absolute_ci95_high:+.4f})")  # fmt: skip
    return result


def _log(args: argparse.Namespace) -> int:
    from edgesel_tools.sim.replay import write_random_log
    from edgesel_tools.sim.scenario import Scenario, build_stream, load_scenario

    scenario = load_scenario(args.scenario)
    if not isinstance(scenario, Scenario):
        return _fail(
            "log: measured scenarios are not supported yet (the log header names the fleet features)"
        )
    stream = build_stream(scenario, args.rounds, args.seed)
    n = write_random_log(stream, args.out)
    print(f"wrote {n} decisions to {args.out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from edgesel_tools.sim.replay import replay_file, write_per_event

    results = {}
    per_event_lines = 0
    if args.per_event:
        open(args.per_event, "w").close()  # one file for all policies, appended to below
    for name in [n.strip() for n in args.policy.split(",") if n.strip()]:
        res = replay_file(
            args.log,
            name,
            alpha=args.alpha,
            lam=args.lam,
            epsilon=args.epsilon,
            seed=args.seed,
            skip_unoffered=args.skip_unoffered,
        )
        results[name] = res.as_dict()
        if args.per_event:
            per_event_lines += write_per_event(res, args.per_event, append=True)
        if not res.uniform_logging:
            print(
                f"warning: {name}: logging propensities are not uniform; trust IPS/SNIPS/DR, not replay",
                file=sys.stderr,
            )
        if res.target_probabilities != "exact":
            print(
                f"warning: {name}: no closed-form choice probabilities; IPS/DM/DR use its sampled pick",
                file=sys.stderr,
            )
    text = json.dumps(results, indent=2)
    print(text)
    if args.per_event:
        print(f"wrote {per_event_lines} per-event lines to {args.per_event}", file=sys.stderr)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from edgesel_tools.sim.compare import compare, markdown, plot_comparison, write_comparison
    from edgesel_tools.sim.runner import console_progress
    from edgesel_tools.sim.scenario import load_scenario

    names = _policy_names(args.policies)
    if isinstance(names, str):
        return _fail(names)
    try:
        horizons = [int(h) for h in args.rounds.split(",") if h.strip()]
    except ValueError:
        return _fail(f"--rounds must be comma-separated integers, got {args.rounds!r}")
    if not horizons or min(horizons) < 1 or args.seeds < 1:
        return _fail("--rounds needs horizons >= 1 and --seeds must be >= 1")
    scenario = load_scenario(args.scenario)
    first = scenario.seed if args.seed is None else args.seed
    start = time.perf_counter()
    result = compare(
        scenario,
        names,
        horizons,
        [first + i for i in range(args.seeds)],
        alpha=args.alpha,
        lam=args.lam,
        epsilon=args.epsilon,
        progress=None if args.quiet else console_progress,
        half_life=args.half_life,
    )
    js, md = write_comparison(result, args.out)
    if not args.no_plot:
        plot_comparison(result, args.out)
    print(markdown(result))
    print(f"wrote {js} and {md} in {time.perf_counter() - start:.1f}s")
    return 0


def _live_lift(args: argparse.Namespace) -> int:
    from edgesel_tools.sim.lift_check import as_json, check_seed, default_incumbent, format_row, format_table
    from edgesel_tools.sim.measured import MeasuredScenario
    from edgesel_tools.sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    if not isinstance(scenario, MeasuredScenario):
        return _fail('live-lift needs a measured scenario (kind = "measured")')
    if args.seeds < 1 or not 0 < args.holdout_share < 1 or (args.rounds is not None and args.rounds < 1):
        return _fail("live-lift needs --seeds >= 1, 0 < --holdout-share < 1 and --rounds >= 1")
    incumbent = args.holdout_model or default_incumbent(scenario)
    first = scenario.seed if args.seed is None else args.seed
    out = Path(args.out)
    print(f"edgesel-sim: live-lift on {scenario.name!r}: policy {args.policy}, holdout {incumbent} "
          f"share {args.holdout_share}", file=sys.stderr)  # fmt: skip
    checks = []
    for seed in range(first, first + args.seeds):
        c = check_seed(scenario, seed, out / f"seed-{seed}", rounds=args.rounds, policy=args.policy,
                       holdout_model=incumbent, holdout_share=args.holdout_share)  # fmt: skip
        checks.append(c)
        print(format_row(c), file=sys.stderr)
    print(format_table(checks))
    (out / "lift.json").write_text(json.dumps(as_json(checks), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'lift.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    from edgesel_tools.sim.replay import LogError
    from edgesel_tools.sim.scenario import ScenarioError

    try:
        commands = {"run": _run, "log": _log, "replay": _replay, "compare": _compare, "live-lift": _live_lift}
        return commands[args.command](args)
    except (ScenarioError, LogError, OSError) as e:
        return _fail(str(e))
    except ValueError as e:  # bad policy name / hyper-parameter from the core
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())

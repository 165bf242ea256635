"""The comparison harness: several policies × several seeds × several horizons on one scenario.

Per seed the stream is built once for the longest horizon and every policy runs on it once; a shorter horizon
H is the first H rounds of that run (a policy does not know the horizon, so its first H picks are those of an
H-round run on the same draws), measured against the oracle of those rounds. The best single model in
hindsight (``common_model``) is recomputed per horizon, since hindsight over 8,000 rounds and over 20,000 can
differ. Output: per horizon and policy, mean ± standard deviation (and min, max) over seeds of mean QoE, QoE
vs the oracle, cumulative regret, regret vs the best single model, failure rate and optimal-pick rate, plus
each run's share of offered (request, model) pairs that do not run, and the mean regret curves
(compare.png). See docs/simulator.md, "Comparisons".
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgesel_tools.sim.policies import CommonModelPolicy
from edgesel_tools.sim.report import build_report
from edgesel_tools.sim.runner import PolicyRun, ProgressFn, run, run_policy
from edgesel_tools.sim.scenario import Scenario, build_stream

# The default line-up: today's core policies, the baselines, and the peers a user might pick instead. A new
# policy registered in policies.POLICY_FACTORIES joins a comparison by its name (--policies or this tuple).
COMPARE_POLICIES = (
    "oracle",
    "common_model",
    "hybrid_linucb",
    "disjoint_linucb",
    "lin_ts",
    "vw_cb_adf",
    "mabwiser_linucb",
    "random",
)
METRICS = (
    "mean_qoe",
    "qoe_vs_oracle",
    "cumulative_regret",
    "regret_vs_common_model",
    "failure_rate",
    "optimal_pick_rate",
    "rounds_to_recover",  # scenarios with [[drift]] only (sim/drift.py)
)


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def compare(
    scenario: Any,
    policies: Sequence[str],
    horizons: Sequence[int],
    seeds: Sequence[int],
    *,
    alpha: float | None = None,
    lam: float | None = None,
    epsilon: float | None = None,
    progress: ProgressFn | None = None,
    half_life: int | None = None,
) -> dict[str, Any]:
    horizons = sorted(set(horizons))
    longest = horizons[-1]
    learners = [p for p in policies if p != "common_model"]
    per_seed: dict[int, dict[int, dict[str, Any]]] = {h: {} for h in horizons}
    runtime: dict[str, list[float]] = {}
    curves: dict[str, list[list[list[float]]]] = {}  # policy -> per seed [[round, cumulative regret], ...]
    for seed in seeds:
        stream = build_stream(scenario, longest, seed)
        runs = run(
            stream, learners, alpha=alpha, lam=lam, epsilon=epsilon, progress=progress, half_life=half_life
        )
        for r in runs:
            runtime.setdefault(r.name, []).append(r.runtime_s)
        for h in horizons:
            sub = stream.prefix(h)
            sub_runs = [PolicyRun(r.name, r.picks[:h], r.runtime_s) for r in runs]
            if "common_model" in policies:
                sub_runs.append(run_policy(CommonModelPolicy(sub), sub))
            rep = build_report(sub, sub_runs)
            if h == longest:
                for n, m in rep["policies"].items():
                    curves.setdefault(n, []).append(m["regret_checkpoints"])
            per_seed[h][seed] = {
                "oracle_mean_qoe": rep["oracle_mean_qoe"],
                "common_model": rep["common_model"],
                "pair_failure_rate": rep["pair_failure_rate"],
                "policies": {n: {k: m.get(k) for k in METRICS} for n, m in rep["policies"].items()},
            }
    results: dict[str, Any] = {}
    for h in horizons:
        seeds_h = per_seed[h]
        table: dict[str, Any] = {}
        for name in policies:
            table[name] = {
                k: _spread([float(seeds_h[s]["policies"][name][k]) for s in seeds])
                for k in METRICS
                if all(seeds_h[s]["policies"][name].get(k) is not None for s in seeds)
            }
        results[str(h)] = {
            "oracle_mean_qoe": _spread([seeds_h[s]["oracle_mean_qoe"] for s in seeds]),
            "pair_failure_rate": _spread([seeds_h[s]["pair_failure_rate"] for s in seeds]),
            "common_model_by_seed": {str(s): seeds_h[s]["common_model"] for s in seeds},
            "policies": table,
            "by_seed": {str(s): seeds_h[s] for s in seeds},
        }
    source = getattr(scenario, "source", "")
    return {
        "scenario": scenario.name,
        "scenario_file": source,
        "kind": "formula" if isinstance(scenario, Scenario) else "measured",
        "horizons": horizons,
        "seeds": list(seeds),
        "policies": list(policies),
        "settings": {"alpha": alpha, "lam": lam, "epsilon": epsilon, "half_life": half_life},
        "runtime_s": {n: _spread(v) for n, v in runtime.items()},
        "results": results,
        # Over the longest horizon: [round, mean, sd] of the cumulative regret over seeds, 100 points.
        "regret_curves": {n: _mean_curve(c) for n, c in curves.items()},
    }


def _mean_curve(per_seed: list[list[list[float]]]) -> list[list[float]]:
    out = []
    for points in zip(*per_seed, strict=True):
        values = [p[1] for p in points]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append([points[0][0], round(statistics.fmean(values), 3), round(sd, 3)])
    return out


def plot_comparison(result: dict[str, Any], out_dir: str | Path) -> Path:
    """compare.png: mean cumulative regret over seeds (± 1 sd band), longest horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = str(result["horizons"][-1])
    table = result["results"][longest]["policies"]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    order = sorted(result["regret_curves"].items(), key=lambda kv: -kv[1][-1][1])
    for name, curve in order:
        r = [0.0] + [p[0] for p in curve]
        mean = [0.0] + [p[1] for p in curve]
        sd = [0.0] + [p[2] for p in curve]
        q = table[name]["qoe_vs_oracle"]["mean"]
        (line,) = ax.plot(r, mean, lw=1.8, label=f"{name} ({q:.3f} of oracle)")
        lo = [m - e for m, e in zip(mean, sd, strict=True)]
        hi = [m + e for m, e in zip(mean, sd, strict=True)]
        ax.fill_between(r, lo, hi, color=line.get_color(), alpha=0.15)
    for h in result["horizons"][:-1]:
        ax.axvline(h, color="grey", ls=":", lw=1)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret vs oracle (expected QoE)")
    ax.set_title(f"edgesel-sim compare: {result['scenario']}, mean ± sd over {len(result['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(out_dir) / "compare.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(result: dict[str, Any]) -> str:
    """The comparison as Markdown tables, one per horizon: mean ± sd over seeds."""
    n = len(result["seeds"])
    lines = [f"Scenario `{result['scenario']}`, seeds {result['seeds']}; mean ± sd over {n} seeds."]

    def cell(m: dict[str, Any], key: str, nd: int) -> str:
        v = m.get(key)
        return "—" if v is None else f"{v['mean']:.{nd}f} ± {v['sd']:.{nd}f}"

    for h, res in result["results"].items():
        fail = res["pair_failure_rate"]
        lines += [
            "",
            f"**{int(h):,} rounds** — oracle mean QoE {res['oracle_mean_qoe']['mean']:.4f}; "
            f"{fail['mean']:.1%} of offered (request, model) pairs do not run; best single model: "
            + ", ".join(sorted(set(res["common_model_by_seed"].values()))),
            "",
            "| policy | mean QoE | vs oracle | cumulative regret | regret vs best single | failure rate |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in res["policies"].items():
            lines.append(
                f"| {name} | {cell(m, 'mean_qoe', 4)} | {cell(m, 'qoe_vs_oracle', 3)} | "
                f"{cell(m, 'cumulative_regret', 1)} | {cell(m, 'regret_vs_common_model', 2)} | "
                f"{cell(m, 'failure_rate', 3)} |"
            )
    return "\n".join(lines) + "\n"


def write_comparison(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "compare.json", out / "compare.md"
    js.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md.write_text(markdown(result), encoding="utf-8")
    return js, md

"""report.json and regret.png from policy runs (field meanings in docs/simulator.md, "Report")."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgesel_tools.sim.conservative import conservative_check
from edgesel_tools.sim.runner import PolicyRun
from edgesel_tools.sim.scenario import Stream

PICKUP_WINDOW = 20  # consecutive requests for which the new model is optimal
PICKUP_SHARE = 0.5
PICKUP_BINS = ((0, 250), (250, 500), (500, 1000), (1000, 2000), (2000, None))


def _r(v: float, nd: int = 4) -> float:
    return round(float(v), nd)


def policy_metrics(stream: Stream, run: PolicyRun, n_checkpoints: int = 100) -> dict[str, Any]:
    t_idx = np.arange(stream.rounds)
    best, best_value = stream.best_expected()
    got = stream.expected[t_idx, run.picks]
    regret = best_value - got
    cum = np.cumsum(regret)
    step = max(1, stream.rounds // n_checkpoints)
    checkpoints = [[int(r), _r(cum[r - 1], 3)] for r in range(step, stream.rounds + 1, step)]
    if checkpoints[-1][0] != stream.rounds:
        checkpoints.append([stream.rounds, _r(cum[-1], 3)])
    picks = Counter(stream.arm_ids[j] for j in run.picks)
    per_device = {}
    for i, name in enumerate(stream.device_names):
        sel = stream.device_index == i
        if sel.any():
            per_device[name] = {
                "requests": int(sel.sum()),
                "mean_qoe": _r(got[sel].mean()),
                "oracle_mean_qoe": _r(best_value[sel].mean()),
                "top_pick": Counter(stream.arm_ids[j] for j in run.picks[sel]).most_common(1)[0][0],
            }
    out: dict[str, Any] = {
        "mean_qoe": _r(got.mean()),
        "mean_reported_qoe": _r(stream.reward[t_idx, run.picks].mean()),
        "cumulative_regret": _r(cum[-1], 3),
        "optimal_pick_rate": _r(np.mean(got >= best_value - 1e-12)),
        "failure_rate": _r(np.mean(~stream.fits[t_idx, run.picks])),
        "mean_qoe_last_20pct": _r(got[int(0.8 * stream.rounds) :].mean()),
        "runtime_s": _r(run.runtime_s, 3),
        "regret_checkpoints": checkpoints,
        "top_picks": [[a, _r(n / stream.rounds)] for a, n in picks.most_common(5)],
        "per_device": per_device,
    }
    if run.baseline_model is not None:
        out["conservative"] = conservative_check(stream, run.picks, run.baseline_model, run.max_loss)
    return out


def new_model_stats(stream: Stream, runs: list[PolicyRun]) -> dict[str, Any]:
    """Pickup of every arm added mid-run, on the requests for which it is the oracle's pick."""
    best, _ = stream.best_expected()
    col = {a: i for i, a in enumerate(stream.arm_ids)}
    out: dict[str, Any] = {}
    for r0, ch in stream.change_rounds:
        for arm in ch.add:
            j = col[arm]
            after = np.arange(r0, stream.rounds)
            optimal_rounds = after[best[after] == j]
            by_device = {}
            for i, name in enumerate(stream.device_names):
                sel = stream.device_index[after] == i
                if sel.any():
                    share = float(np.mean(best[after][sel] == j))
                    if share > 0:
                        by_device[name] = _r(share, 3)
            entry: dict[str, Any] = {
                "added_at_round": int(r0),
                "requests_after": int(after.size),
                "optimal_requests": int(optimal_rounds.size),
                "optimal_share_by_device": dict(sorted(by_device.items(), key=lambda kv: -kv[1])),
                "pickup_rule": (
                    f"rounds after the add until the first window of {PICKUP_WINDOW} consecutive requests "
                    f"for which it is optimal has it picked >= {PICKUP_SHARE:.0%} "
                    "(counted at the window's last request)"
                ),
                "policies": {},
            }
            for run in runs:
                picked = run.picks[optimal_rounds] == j
                pickup = None
                if picked.size >= PICKUP_WINDOW:
                    window_share = (
                        np.convolve(picked.astype(float), np.ones(PICKUP_WINDOW), "valid") / PICKUP_WINDOW
                    )
                    hit = np.flatnonzero(window_share >= PICKUP_SHARE)
                    if hit.size:
                        pickup = int(optimal_rounds[hit[0] + PICKUP_WINDOW - 1] - r0)
                first = np.flatnonzero(run.picks[after] == j)
                bins = {}
                for lo, hi in PICKUP_BINS:
                    rel = optimal_rounds - r0
                    sel = (rel >= lo) & (rel < hi if hi is not None else True)
                    if sel.any():
                        bins[f"{lo}-{hi if hi is not None else 'end'}"] = _r(picked[sel].mean(), 3)
                not_opt = run.picks[after][best[after] != j] == j
                entry["policies"][run.name] = {
                    "rounds_to_pickup": pickup,
                    "first_pick_after": int(first[0]) if first.size else None,
                    "pick_rate_when_optimal": _r(picked.mean(), 3) if picked.size else None,
                    "pick_rate_when_optimal_by_rounds_after": bins,
                    "pick_rate_when_not_optimal": _r(not_opt.mean(), 3) if not_opt.size else None,
                }
            out[arm] = entry
    return out


def build_report(
    stream: Stream, runs: list[PolicyRun], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    sc = stream.scenario
    policies = {run.name: policy_metrics(stream, run) for run in runs}
    _, best_value = stream.best_expected()
    oracle_mean = float(best_value.mean())
    common = policies.get("common_model")
    for m in policies.values():
        m["qoe_vs_oracle"] = _r(m["mean_qoe"] / oracle_mean) if oracle_mean > 0 else None
        if common and common["cumulative_regret"] > 0:
            m["regret_vs_common_model"] = _r(m["cumulative_regret"] / common["cumulative_regret"])
    drifts = getattr(sc, "drifts", ())
    if drifts:
        from edgesel_tools.sim.drift import affected_rows, recovery

        names, kinds = stream.device_names, [getattr(d, "kind", "") for d in sc.devices]
        t_idx = np.arange(stream.rounds)
        for run in runs:
            got = stream.expected[t_idx, run.picks]
            rec = [recovery(d, affected_rows(d, stream.device_index, names, kinds), got, best_value)
                   for d in drifts]  # fmt: skip
            policies[run.name]["drift_recovery"] = rec
            policies[run.name]["rounds_to_recover"] = rec[0]["rounds_to_recover"]
    from edgesel_tools.sim.policies import common_model_ranking

    return {
        "scenario": sc.name,
        "scenario_file": sc.source,
        "rounds": stream.rounds,
        "seed": stream.seed,
        "arms": len(stream.arm_ids),
        "device_dim": stream.device_dim,
        "model_dim": stream.model_dim,
        "eligibility": sc.eligibility,
        "oracle_mean_qoe": _r(oracle_mean),
        # Share of offered (request, model) pairs that would crash / not run: how much there is to avoid.
        "pair_failure_rate": _r(1.0 - stream.fits[stream.eligible].mean()),
        "common_model": stream.arm_ids[common_model_ranking(stream)[0]],
        "settings": settings or {},
        "policies": policies,
        "new_model": new_model_stats(stream, runs),
    }


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def plot_regret(report: dict[str, Any], stream: Stream, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    order = sorted(report["policies"].items(), key=lambda kv: -kv[1]["cumulative_regret"])
    for name, m in order:
        pts = np.array([[0, 0.0], *m["regret_checkpoints"]])
        ax.plot(pts[:, 0], pts[:, 1], label=f"{name} (mean QoE {m['mean_qoe']:.3f})", lw=1.8)
    for r0, ch in stream.change_rounds:
        ax.axvline(r0, color="grey", ls="--", lw=1)
        label = ", ".join([f"+{a}" for a in ch.add] + [f"-{a}" for a in ch.remove])
        ax.annotate(label, (r0, ax.get_ylim()[1] * 0.97), fontsize=7, rotation=90, va="top", ha="right")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret vs oracle (expected QoE)")
    ax.set_title(f"edgesel-sim: {report['scenario']} ({report['rounds']} rounds, oracle mean QoE "
                 f"{report['oracle_mean_qoe']:.3f})")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(out_dir) / "regret.png"
    fig.savefig(path)
    plt.close(fig)
    return path

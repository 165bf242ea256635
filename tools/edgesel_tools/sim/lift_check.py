"""Does the live report's lift agree with the simulator's ground truth? (`edgesel-sim live-lift`)

One seed: a measured scenario runs end to end through a real server with a holdout configured
(sim/live_measured.py); at the end the report's pooled since-start lift and 95 % CI are read with
GetSpaceReport, and each decision's group with the server's own decision log (`--export-log`).

Two estimands. The report's lift is mean(QoE | policy) − mean(QoE | holdout) over the Feedback it applied
(lift.py), and QoE there is the reward the server computed from each Feedback's measurements. The `true lift`
is the same difference of means with each realized reward replaced by its expectation under the scenario's
true QoE model:

    true lift = mean_{t ∈ P} μ(t, a_t) − mean_{t ∈ H} μ(t, a_t)

over exactly the decisions the report counted (P, H: the server's groups; the counts and the groups' mean
realized QoE are checked equal to the report's), where μ(t, a) = E[reward | the request's device instance,
its user's preferences, model a] integrates out what changes from request to request: the log-normal latency
jitter, whether this request carries a rating, and the rating noise (`true_qoe`). The instance's hidden
latency factor and rating bias are fixed properties of the device and its user, so they stay in μ.

The stream's `expected` (the regret reference) is not μ: it is the QoE at the instance's *nominal* latency,
without the jitter's convexity (E[max(0, 1 − L·J/2B)] ≠ max(0, 1 − L/2B)) and without the rating, so a lift
computed from it differs from the report's estimand by a bias; it is printed beside (`nominal lift`) and
not used for coverage.

The true lift is conditional on which devices happened to land in the holdout. The `fleet lift` is what an
operator asks ("did the fleet get better QoE than it would have with the incumbent?"): its holdout side is the
incumbent's μ over every request of the run (policy and holdout devices alike). Since the holdout is drawn by
device and a device's requests are strongly correlated (same user, budget, unit), the holdout's composition
varies from seed to seed by far more than request noise: an interval that treats requests as independent
(Welch over requests, the report before it clustered by device) covers the true lift but not the fleet lift.
The `cluster` columns are the exact per-installation cluster-robust interval (CR1), as a reference for the
report's bucketed one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from edgesel_server.config import load_config
from edgesel_server.export_log import export_decision_log
from edgesel_server.lift import Z95
from edgesel_server.qoe import QoeFunction
from edgesel_tools.sim.live_measured import device_instances, run_measured_live
from edgesel_tools.sim.measured import PREFERENCE_TERMS, MeasuredFeedback, MeasuredScenario, reward_of
from edgesel_tools.sim.policies import policy_seed
from edgesel_tools.sim.scenario import ScenarioError, Stream, build_stream

PANEL_NODES = 32  # Gauss-Legendre nodes per smooth piece of the jitter integral
Z_RANGE = 8.5  # the standard normal mass beyond ±8.5 is 2e-17


@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _normal_nodes(kinks: tuple[float, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(Z)], Z ~ N(0, 1), for f smooth between `kinks`: Gauss-Legendre on each piece
    of [−Z_RANGE, Z_RANGE] times the normal density, so a kink costs no accuracy (Gauss-Hermite over a kink
    converges slowly: 5e-4 off at 48 nodes)."""
    cuts = [-Z_RANGE, *sorted(k for k in kinks if -Z_RANGE < k < Z_RANGE), Z_RANGE]
    x, w = _legendre(n)
    zs, ws = [], []
    for a, b in zip(cuts, cuts[1:], strict=False):
        z = 0.5 * (b - a) * x + 0.5 * (a + b)
        zs.append(z)
        ws.append(0.5 * (b - a) * w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    return np.concatenate(zs), np.concatenate(ws)


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def expected_clip01(m: float, sd: float) -> float:
    """E[clip(m + ε, 0, 1)], ε ~ N(0, sd²), in closed form: clip(y, 0, 1) = max(y, 0) − max(y − 1, 0) and
    E[max(m + ε, 0)] = m Φ(m/sd) + sd φ(m/sd)."""
    if sd <= 0:
        return min(1.0, max(0.0, m))

    def relu(c: float) -> float:
        return c * _cdf(c / sd) + sd * _phi(c / sd)

    return relu(m) - relu(m - 1.0)


def true_qoe(stream: Stream, qoe: QoeFunction, t: int, j: int, *, nodes: int = PANEL_NODES) -> float:
    """μ(t, j): the expected reward of arm j for round t's request, over the per-request randomness of
    sim/measured.py (latency jitter, the rating coin, rating noise), with the device instance, its latency
    factor, its user's preferences and rating bias fixed.

    Per jitter node: without a rating the reward is the QoE function of (latency, accuracy); with one, the
    rating's score is clip(felt + bias + ε, 0, 1) and the reward is affine in the rating (a weighted mean of
    scores, inside [reward_min, reward_max]), so its expectation is the QoE function at the expected
    rating."""
    fb = stream.feedback
    sc = stream.scenario
    assert isinstance(sc, MeasuredScenario) and isinstance(fb, MeasuredFeedback)
    latency, biases = fb.instance_latency_ms, fb.instance_rating_bias
    assert latency is not None and biases is not None, "a stream built by build_measured_stream"
    if fb.failed[t, j]:
        return qoe.reward_min
    inst = int(device_instances(stream)[t])
    nominal = float(latency[inst, j])
    bias = float(biases[inst])
    prefs = fb.preferences(t)
    accuracy = float(fb.accuracy[j])
    p_rate = sc.users.rating_probability
    span = qoe.reward_max - qoe.reward_min
    # The latency score max(0, 1 − L/2B) has its kink where the jittered latency is twice the budget.
    sd = sc.noise.latency_jitter_sd
    kink = math.log(2.0 * prefs["latency_budget_ms"] / nominal) / sd if sd > 0 else math.inf
    z, w = _normal_nodes((kink,), nodes) if sd > 0 else (np.zeros(1), np.ones(1))
    total = 0.0
    for zk, wk in zip(z, w, strict=True):
        m = {"latency_ms": nominal * math.exp(sd * float(zk)), "accuracy": accuracy}
        r0 = reward_of(qoe, m, prefs)
        value = r0
        if p_rate > 0:
            felt = (r0 - qoe.reward_min) / span
            score = expected_clip01(felt + bias, sc.noise.rating_sd)
            rating = qoe.rating_min + score * (qoe.rating_max - qoe.rating_min)
            value = (1.0 - p_rate) * r0 + p_rate * reward_of(qoe, {**m, "user_rating": rating}, prefs)
        total += float(wk) * value
    return total


@dataclass
class LiftCheck:
    seed: int
    rounds: int
    n_policy: int
    n_holdout: int
    true_lift: float
    report_lift: float
    ci_low: float
    ci_high: float
    covered: bool
    nominal_lift: float  # from the stream's `expected` (nominal latency, no rating): not the estimand
    fleet_lift: float  # policy side as true_lift, holdout side the incumbent's μ over every request
    fleet_covered: bool
    # The same difference of means with the exact per-installation cluster-robust interval (the report's
    # clusters are 64 buckets of installations): a reference for the report's.
    cluster_ci_low: float
    cluster_ci_high: float
    fleet_cluster_covered: bool
    runtime_s: float


def cluster_robust_ci(
    values: np.ndarray, in_policy: np.ndarray, clusters: np.ndarray, z: float = Z95
) -> tuple[float, float]:
    """95 % interval of mean(policy) − mean(holdout) with each group's variance the cluster-robust (CR1)
    sandwich C/(C−1) Σ_c (S_c − n_c ȳ)² / n², clusters being installations."""
    diff, var = 0.0, 0.0
    for sign, mask in ((1.0, in_policy), (-1.0, ~in_policy)):
        y, c = values[mask], clusters[mask]
        mean = float(y.mean())
        _, inverse = np.unique(c, return_inverse=True)
        resid = np.bincount(inverse, weights=y - mean)  # S_c − n_c ȳ per cluster
        k = resid.size
        var += k / (k - 1) * float(resid @ resid) / y.size**2
        diff += sign * mean
    half = z * math.sqrt(var)
    return diff - half, diff + half


def _groups_from_log(path: Path) -> dict[str, str]:
    out = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("type") == "decision":
                out[rec["event_id"]] = rec["group"]
    return out


def check_seed(
    sc: MeasuredScenario,
    seed: int,
    workdir: Path,
    *,
    rounds: int | None = None,
    policy: str = "qoe_model",
    holdout_model: str,
    holdout_share: float = 0.1,
) -> LiftCheck:
    """One live run and its comparison; raises RuntimeError when the report and the run disagree on which
    decisions it covers (counts or mean realized QoE per group)."""
    if (workdir / "data").exists():
        raise ScenarioError(f"{workdir / 'data'} exists: each seed's server needs a fresh data directory")
    start = time.perf_counter()
    stream = build_stream(sc, rounds, seed)
    qoe = sc.space.qoe
    run, report, event_ids = run_measured_live(
        stream,
        workdir,
        policy=policy,
        seed=policy_seed(seed, policy),
        holdout_model=holdout_model,
        holdout_share=holdout_share,
    )
    log_path = workdir / "decisions.jsonl"
    cfg = load_config(workdir / "edgesel.toml")
    cfg.data_dir = workdir / "data"
    export_decision_log(cfg, sc.space.name, log_path)
    groups = _groups_from_log(log_path)
    picks = run.picks
    rows = np.arange(stream.rounds)
    group = np.array([groups[e] for e in event_ids])
    mu_cache: dict[tuple[int, int], float] = {}
    instances = device_instances(stream)

    def mu(t: int, j: int) -> float:
        key = (int(instances[t]), j)  # μ depends on the round only through its instance
        if key not in mu_cache:
            mu_cache[key] = true_qoe(stream, qoe, t, j)
        return mu_cache[key]

    pol, hold = rows[group == "policy"], rows[group == "holdout"]
    pooled = report.since_start.pooled
    if (pooled.policy.n, pooled.holdout.n) != (len(pol), len(hold)):
        raise RuntimeError(
            f"seed {seed}: the report counts {pooled.policy.n} policy / {pooled.holdout.n} holdout "
            f"decisions, the server's log {len(pol)} / {len(hold)}"
        )
    if (report.window.pooled.policy.n, report.window.pooled.holdout.n) != (len(pol), len(hold)):
        raise RuntimeError(f"seed {seed}: the report's window does not cover the whole run")
    realized = stream.reward[rows, picks]
    for name, idx, cell in (("policy", pol, pooled.policy), ("holdout", hold, pooled.holdout)):
        if not math.isclose(float(realized[idx].mean()), cell.mean_qoe, rel_tol=1e-9, abs_tol=1e-12):
            raise RuntimeError(f"seed {seed}: {name} mean QoE {cell.mean_qoe} != {realized[idx].mean()}")
    if not pooled.HasField("lift"):
        raise RuntimeError(f"seed {seed}: the report has no lift (too few decisions in a group)")
    true_p = float(np.mean([mu(int(t), int(picks[t])) for t in pol]))
    true_h = float(np.mean([mu(int(t), int(picks[t])) for t in hold]))
    inc = stream.arm_ids.index(holdout_model)
    fleet_h = float(np.mean([mu(int(t), inc) for t in rows]))
    expected = stream.expected[rows, picks]
    lift = pooled.lift
    lo, hi = lift.absolute_ci95_low, lift.absolute_ci95_high
    mine = np.concatenate([pol, hold])
    clo, chi = cluster_robust_ci(realized[mine], group[mine] == "policy", instances[mine])
    true_lift = true_p - true_h
    fleet_lift = true_p - fleet_h
    return LiftCheck(
        seed=seed,
        rounds=stream.rounds,
        n_policy=len(pol),
        n_holdout=len(hold),
        true_lift=true_lift,
        report_lift=lift.absolute,
        ci_low=lo,
        ci_high=hi,
        covered=lo <= true_lift <= hi,
        nominal_lift=float(expected[pol].mean() - expected[hold].mean()),
        fleet_lift=fleet_lift,
        fleet_covered=lo <= fleet_lift <= hi,
        cluster_ci_low=clo,
        cluster_ci_high=chi,
        fleet_cluster_covered=clo <= fleet_lift <= chi,
        runtime_s=time.perf_counter() - start,
    )


def default_incumbent(sc: MeasuredScenario) -> str:
    """The variant with the best mean nominal QoE over the scenario's devices among those that run on every
    one of them (an operator's "one model for everyone")."""
    rows = [sc.table.device(d.name) for d in sc.devices]
    budget = math.sqrt(sc.users.latency_budget_ms[0] * sc.users.latency_budget_ms[1])
    prefs = {"latency_budget_ms": budget, "qoe_weights": {term: 1.0 for term in PREFERENCE_TERMS}}
    best, best_q = None, -math.inf
    for v in sc.models:
        j = sc.table.variant(v.arm_id)
        if not sc.table.runs[rows, j].all():
            continue
        measured = [{"latency_ms": float(sc.table.latency_ms[i, j]), "accuracy": v.top1 / 100} for i in rows]
        q = float(np.mean([reward_of(sc.space.qoe, m, prefs) for m in measured]))
        if q > best_q:
            best, best_q = v.arm_id, q
    if best is None:
        raise ScenarioError("no variant of the initial catalog runs on every device: pass --holdout-model")
    return best


HEADER = (
    f"{'seed':>6} {'n_pol':>6} {'n_hold':>6} {'true lift':>10} {'report':>10} {'CI95 low':>10} "
    f"{'CI95 high':>10} {'covered':>7} {'nominal':>9} {'fleet':>9} {'fleet cov':>9} {'clust low':>10} "
    f"{'clust high':>10} {'fleet cl cov':>12} {'s':>6}"
)


def format_row(c: LiftCheck) -> str:
    return (
        f"{c.seed:>6} {c.n_policy:>6} {c.n_holdout:>6} {c.true_lift:>10.5f} {c.report_lift:>10.5f} "
        f"{c.ci_low:>10.5f} {c.ci_high:>10.5f} {'yes' if c.covered else 'NO':>7} {c.nominal_lift:>9.5f} "
        f"{c.fleet_lift:>9.5f} {'yes' if c.fleet_covered else 'NO':>9} {c.cluster_ci_low:>10.5f} "
        f"{c.cluster_ci_high:>10.5f} {'yes' if c.fleet_cluster_covered else 'NO':>12} {c.runtime_s:>6.1f}"
    )


def format_table(checks: list[LiftCheck]) -> str:
    n = len(checks)
    covered = sum(c.covered for c in checks)
    fleet = sum(c.fleet_covered for c in checks)
    fleet_cl = sum(c.fleet_cluster_covered for c in checks)
    return "\n".join([
        HEADER,
        *map(format_row, checks),
        f"coverage: the true lift is in the report's 95% CI in {covered}/{n} seeds ({covered / n:.0%})",
        f"fleet lift in the report's CI: {fleet}/{n} seeds; in the cluster-robust CI: {fleet_cl}/{n} seeds",
    ])  # fmt: skip


def as_json(checks: list[LiftCheck]) -> dict:
    return {
        "seeds": [asdict(c) for c in checks],
        "n": len(checks),
        "covered": sum(c.covered for c in checks),
        "fleet_covered": sum(c.fleet_covered for c in checks),
        "fleet_cluster_covered": sum(c.fleet_cluster_covered for c in checks),
    }

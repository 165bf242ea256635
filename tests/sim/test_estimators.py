"""Off-policy estimators (IPS, SNIPS, DM, DR, bootstrap CIs) against a plain reference of the published
formulas (Open Bandit Pipeline's `ope/estimators.py`; OBP itself does not install on this Python), and on
simulated logs whose true values are known."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edgesel_tools.sim.cli import main
from edgesel_tools.sim.estimators import RidgeRewardModel, event_terms
from edgesel_tools.sim.policies import EpsilonGreedyPolicy, Request, make_learning_policy
from edgesel_tools.sim.replay import Decision, read_log, replay, replay_file, write_random_log
from edgesel_tools.sim.scenario import build_stream


def obp_reference(action_dist, action, pscore, reward, estimated_rewards):
    """OBP's formulas over dense (n, K) arrays: action_dist[i, a] = π(a | x_i), estimated_rewards = q̂."""
    n = len(action)
    rows = np.arange(n)
    w = action_dist[rows, action] / pscore
    ips = np.mean(w * reward)
    snips = np.sum(w * reward) / np.sum(w) if np.sum(w) > 0 else np.nan
    dm = np.mean(np.sum(action_dist * estimated_rewards, axis=1))
    dr = dm + np.mean(w * (reward - estimated_rewards[rows, action]))
    return {"ips": ips, "snips": snips, "dm": dm, "dr": dr}


@pytest.mark.parametrize("case", range(60))
def test_event_terms_match_the_published_formulas(case):
    rng = np.random.default_rng(case)
    n, k = int(rng.integers(1, 200)), int(rng.integers(1, 12))
    action_dist = rng.dirichlet(np.full(k, 0.5), size=n)
    if case % 3 == 0:  # deterministic targets too
        action_dist = np.eye(k)[rng.integers(0, k, size=n)]
    logging = rng.dirichlet(np.ones(k), size=n)
    action = np.array([rng.choice(k, p=p) for p in logging])
    pscore = logging[np.arange(n), action]
    reward = rng.random(n)
    q = rng.random((n, k))
    ref = obp_reference(action_dist, action, pscore, reward, q)
    terms = event_terms(list(action_dist), list(q), [[a] for a in action], list(pscore), list(reward))
    got = terms.estimates()
    for name, value in ref.items():
        if not np.isfinite(value):  # SNIPS with zero total weight
            assert got[name] is None
            continue
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(7)
    n, k = 500, 4
    terms = event_terms(
        list(rng.dirichlet(np.ones(k), size=n)),
        list(rng.random((n, k))),
        [[int(a)] for a in rng.integers(0, k, n)],
        [1 / k] * n,
        list(rng.random(n)),
    )
    a, b = terms.bootstrap(seed=3), terms.bootstrap(seed=3)
    assert a == b and terms.bootstrap(seed=4) != a
    est = terms.estimates()
    for name, ci in a.items():
        assert ci.low < est[name] < ci.high, name
        # a 95 % percentile interval of a mean is about ±1.96 standard errors
        se = {"ips": terms.ips, "dm": terms.dm, "dr": terms.dr}.get(name)
        if se is not None:
            width = 2 * 1.96 * se.std(ddof=1) / np.sqrt(n)
            assert ci.high - ci.low == pytest.approx(width, rel=0.15), name


def test_ridge_reward_model_against_numpy_lstsq():
    rng = np.random.default_rng(1)
    xs = [rng.random(3) for _ in range(300)]
    arms = [str(a) for a in rng.integers(0, 3, 300)]
    r = [float(x @ [0.3, -0.2, 0.5]) + 0.1 * (a == "1") for x, a in zip(xs, arms, strict=True)]
    model = RidgeRewardModel(lam=1e-3).fit(xs, arms, r)
    for arm in "012":
        rows = [i for i, a in enumerate(arms) if a == arm]
        x1 = np.array([np.concatenate(([1.0], xs[i])) for i in rows])
        y = np.array([r[i] for i in rows]) - np.mean(r)
        theta = np.linalg.solve(x1.T @ x1 + 1e-3 * np.eye(4), x1.T @ y)
        probe = rng.random(3)
        want = np.mean(r) + theta @ np.concatenate(([1.0], probe))
        assert model.predict(probe, [arm])[0] == pytest.approx(want, rel=1e-9)
    assert model.predict(rng.random(3), ["never-logged"])[0] == pytest.approx(np.mean(r))


def test_dm_and_dr_of_a_fixed_policy_match_its_true_value(logged):
    stream, path = logged
    arm = "efficientnet_b0"
    truth = stream.reward[:, stream.arm_ids.index(arm)].mean()
    res = replay_file(path, f"fixed:{arm}")
    assert res.target_probabilities == "exact"
    for name in ("ips", "snips", "dm", "dr"):
        value = getattr(res, f"{name}_value")
        lo, hi = res.ci95[name]
        assert lo <= value <= hi
        assert value == pytest.approx(truth, abs=0.03), name
    # DR corrects DM with the logged rewards: never further from the truth than the model's misfit allows,
    # and its interval covers the truth
    assert res.ci95["dr"][0] <= truth <= res.ci95["dr"][1]


def test_confidence_intervals_cover_the_truth_over_seeds(stationary, tmp_path):
    """Over 20 independent random logs the 95 % DR and IPS intervals of a fixed policy cover its true value in
    at least 17 (seeds are fixed, so the test is deterministic)."""
    arm = "efficientnet_b0"
    covered = {"ips": 0, "dr": 0}
    for seed in range(20):
        stream = build_stream(stationary, rounds=1500, seed=1000 + seed)
        path = tmp_path / f"log{seed}.jsonl"
        write_random_log(stream, path)
        col = stream.arm_ids.index(arm)
        assert stream.eligible[:, col].all()
        truth = stream.expected[:, col].mean()
        res = replay_file(path, f"fixed:{arm}", seed=seed)
        for name in covered:
            lo, hi = res.ci95[name]
            covered[name] += lo <= truth <= hi
    assert covered["ips"] >= 17 and covered["dr"] >= 17, covered


def test_stochastic_targets_are_weighted_by_their_probabilities(logged):
    """The uniform target on a uniform log has weight exactly 1 on every event, so IPS is the log's mean
    reward to the last bit; with a sampled pick instead the weights would be 0 or K."""
    stream, path = logged
    res = replay_file(path, "random")
    recs = [r for r in read_log(path.read_text().splitlines()) if isinstance(r, Decision)]
    mean = np.mean([r.reward for r in recs])
    assert res.target_probabilities == "exact"
    weights = np.array([e.weight for e in res.per_event])
    assert np.allclose(weights, 1.0, rtol=1e-12, atol=0)
    assert res.ips_value == pytest.approx(mean, rel=1e-12)
    # ε-greedy: the logged arm's weight is (ε/K + (1−ε)·[greedy]) / (1/K)
    pol = EpsilonGreedyPolicy(epsilon=0.2, seed=1)
    for a in ("a", "b", "c"):
        pol.add_arm(a, np.zeros(0))
    pol.update(Request(0, np.zeros(1), ["a"]), "b", 1.0)
    pol.update(Request(0, np.zeros(1), ["a"]), "a", 0.5)
    pol.update(Request(0, np.zeros(1), ["a"]), "c", 0.1)
    _, probs = pol.distribution(Request(1, np.zeros(1), ["a", "b", "c"]))
    assert probs == pytest.approx([0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3]) and probs.sum() == pytest.approx(1.0)


def test_lin_ts_says_its_probabilities_are_a_sampled_pick(logged):
    pytest.importorskip("edgesel_server._core")
    _, path = logged
    assert replay_file(path, "lin_ts").target_probabilities == "sampled pick"
    assert replay_file(path, "hybrid_linucb").target_probabilities == "exact"  # deterministic: one-hot


def _log_lines(eligible_of_round):
    yield json.dumps({"type": "header", "device_dim": 1, "model_dim": 0})
    for t, eligible in enumerate(eligible_of_round):
        yield json.dumps(
            {"round": t, "context": [0.5], "eligible": eligible, "arm": eligible[0],
             "propensity": 1 / len(eligible), "reward": 1.0 if eligible[0] == "a" else 0.0}
        )  # fmt: skip


def test_fixed_arm_fallback_and_skip_unoffered():
    rounds = [["a", "b"], ["b", "c"], ["a", "c"], ["c", "b"]]
    fallback = replay(read_log(_log_lines(rounds)), make_learning_policy("fixed:a", 1, 0, 0))
    skipped = replay(
        read_log(_log_lines(rounds)), make_learning_policy("fixed:a", 1, 0, 0), skip_unoffered=True
    )
    # fallback: where "a" is not offered the first eligible arm stands in, so all four events count
    assert fallback.events == 4 and fallback.accepted == 4 and fallback.skipped_unoffered == 0
    assert skipped.events == 2 and skipped.accepted == 2 and skipped.skipped_unoffered == 2
    assert skipped.replay_value == 1.0 and skipped.ips_value == 2.0  # w = 1 / (1/2) on both events


def test_cli_writes_full_precision_and_per_event_results(logged, tmp_path, capsys):
    _, path = logged
    out, per_event = tmp_path / "est.json", tmp_path / "events.jsonl"
    argv = ["replay", "--log", str(path), "--policy", "random,fixed:efficientnet_b0"]
    assert main([*argv, "--out", str(out), "--per-event", str(per_event)]) == 0
    assert "per-event lines" in capsys.readouterr().err
    est = json.loads(out.read_text())
    lines = [json.loads(line) for line in per_event.read_text().splitlines()]
    for name in ("random", "fixed:efficientnet_b0"):
        mine = [e for e in lines if e["policy"] == name]
        assert len(mine) == est[name]["events"] == 24_000
        # the file's terms reproduce the report exactly: nothing was rounded on the way
        assert np.mean([e["dr"] for e in mine]) == pytest.approx(est[name]["dr_value"], rel=1e-15)
        assert set(est[name]["ci95"]) == {"ips", "snips", "dm", "dr"}
    assert main([*argv[:4], "fixed:nonexistent", "--skip-unoffered"]) == 0
    assert json.loads(capsys.readouterr().out)["fixed:nonexistent"]["skipped_unoffered"] == 24_000


def test_read_log_still_accepts_its_own_output():
    buf = io.StringIO("\n".join(_log_lines([["a", "b"]])) + "\n")
    assert [type(r).__name__ for r in read_log(buf)] == ["dict", "Decision"]

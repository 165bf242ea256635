"""qoe_model in the simulator: it is driven with what devices measure, beats the best single model, and its
conservative variant keeps the cumulative QoE >= (1 - max_loss) x the baseline's at every checkpoint."""

from __future__ import annotations

import numpy as np

from edgesel_tools.sim.conservative import conservative_check
from edgesel_tools.sim.policies import QoeModelPolicy, make_policy
from edgesel_tools.sim.runner import run, run_policy
from edgesel_tools.sim.scenario import build_stream, load_scenario


def test_qoe_model_learns_the_measurements_and_beats_one_model_for_everyone(tiny_path):
    stream = build_stream(load_scenario(tiny_path), 3000)
    policy = make_policy("qoe_model", stream)
    assert isinstance(policy, QoeModelPolicy)
    result = run_policy(policy, stream)
    stats = policy.model.target_stats()
    crashed = int((~stream.fits[np.arange(stream.rounds), result.picks]).sum())
    # Every round taught "runs"; the rounds where the model ran taught latency and energy.
    assert stats["runs"]["n_updates"] == 3000
    assert stats["log_latency"]["n_updates"] == stats["log_energy"]["n_updates"] == 3000 - crashed
    assert stats["rating"]["n_updates"] == 0
    common, oracle = run(stream, ["common_model", "oracle"])
    t = np.arange(stream.rounds)
    got = stream.expected[t, result.picks].sum()
    assert got > stream.expected[t, common.picks].sum()
    assert got > 0.95 * stream.expected[t, oracle.picks].sum()


def test_conservative_variant_never_falls_below_the_baseline_budget(tiny_path):
    stream = build_stream(load_scenario(tiny_path), 3000)
    (result,) = run(stream, ["qoe_model_conservative"])
    assert result.baseline_model is not None and result.max_loss == 0.05
    check = conservative_check(stream, result.picks, result.baseline_model, result.max_loss)
    assert check["holds"], check

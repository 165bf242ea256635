"""The measured scenario (examples/scenarios/aihub.toml): ground truth from the AI Hub table, rewards from the
server's own QoE function and feature schema."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from edgesel_server.config import load_config
from edgesel_server.schema import FeatureSchema
from edgesel_tools.sim.cli import main
from edgesel_tools.sim.measured import PREFERENCE_TERMS, MeasuredScenario, load_measurements
from edgesel_tools.sim.scenario import ScenarioError, build_stream, load_scenario

from .conftest import REPO, SCENARIOS

AIHUB = SCENARIOS / "aihub.toml"
CONFIG = REPO / "examples" / "edgesel-aihub.toml"


@pytest.fixture(scope="module")
def stream():
    return build_stream(load_scenario(AIHUB), 600)


def test_rewards_are_the_server_qoe_of_the_sampled_measurements(stream):
    qoe = load_config(CONFIG).spaces[0].qoe  # the server's QoE function, loaded as the server loads it
    fb = stream.feedback
    table = load_measurements("aihub")
    cols = [table.variant(a) for a in stream.arm_ids]
    rng = np.random.default_rng(0)
    rated = 0
    cells = zip(rng.integers(0, stream.rounds, 400), rng.integers(0, len(stream.arm_ids), 400), strict=True)
    for t, k in cells:
        if fb.failed[t, k]:
            assert math.isnan(fb.latency_ms[t, k]) and stream.reward[t, k] == qoe.reward_min
            continue
        m = {"latency_ms": fb.latency_ms[t, k], "accuracy": table.variants[cols[k]].top1 / 100.0}
        if not math.isnan(fb.user_rating[t, k]):
            assert qoe.rating_min <= fb.user_rating[t, k] <= qoe.rating_max
            m["user_rating"] = fb.user_rating[t, k]
            rated += 1
        weights = dict(zip(PREFERENCE_TERMS, fb.qoe_weights[t], strict=True))
        want = qoe.reward(m, latency_budget_ms=fb.latency_budget_ms[t], weights=weights)
        assert stream.reward[t, k] == want
    assert rated > 0


def test_failures_are_the_measured_does_not_run_pairs(stream):
    table = load_measurements("aihub")
    dev = [table.device(n) for n in stream.device_names]
    cols = [table.variant(a) for a in stream.arm_ids]
    runs = table.runs[np.ix_(dev, cols)]
    assert np.array_equal(stream.fits, runs[stream.device_index])
    assert np.all(stream.expected[~stream.fits] == 0.0)
    assert 0.15 < 1.0 - stream.fits.mean() < 0.25


def test_latency_is_the_measurement_with_log_normal_jitter():
    sc = load_scenario(AIHUB)
    assert isinstance(sc, MeasuredScenario)
    st = build_stream(sc, 1200)
    table = sc.table
    dev = np.array([table.device(n) for n in st.device_names])[st.device_index]
    cols = np.array([table.variant(a) for a in st.arm_ids])
    ratio = np.log(st.feedback.latency_ms / table.latency_ms[dev[:, None], cols[None, :]])
    ok = st.fits
    # per-request jitter and the hidden per-instance factor, both log-normal and centred
    want_sd = math.hypot(sc.noise.latency_jitter_sd, sc.noise.instance_sd)
    assert abs(ratio[ok].mean()) < 0.02
    assert ratio[ok].std() == pytest.approx(want_sd, rel=0.1)


def test_contexts_are_what_the_servers_schema_computes(stream):
    space = load_config(CONFIG).spaces[0]
    sc = stream.scenario
    dev_schema, model_schema = FeatureSchema(space.device_features), FeatureSchema(space.model_features)
    for i, d in enumerate(sc.devices):
        rows = stream.contexts[stream.device_index == i]
        if rows.size:
            assert np.array_equal(rows[0], dev_schema.vector(d.features()))
    by_id = {m.id: m for m in space.models}
    for k, a in enumerate(stream.arm_ids):
        assert np.array_equal(stream.arm_features[k], model_schema.vector(by_id[a].features))


def test_preferences_move_the_best_model(stream):
    """Tight budgets favour fast variants, loose ones accurate ones: no single model is everyone's best."""
    best, _ = stream.best_expected()
    budget = stream.feedback.latency_budget_ms
    tight, loose = best[budget < 3.0], best[budget > 10.0]
    acc = stream.feedback.accuracy
    assert acc[loose].mean() > acc[tight].mean()
    assert len(set(best.tolist())) >= 5


def test_prefix_is_the_start_of_the_stream(stream):
    short = stream.prefix(200)
    assert short.rounds == 200 and np.array_equal(short.reward, stream.reward[:200])
    assert np.array_equal(short.feedback.latency_ms, stream.feedback.latency_ms[:200], equal_nan=True)
    assert np.array_equal(short.arm_features, stream.arm_features)


def test_bad_measured_scenarios_name_the_field(tmp_path):
    base = AIHUB.read_text(encoding="utf-8")
    cases = {
        'data = "aihub"': ('data = "nope"', "'data'"),
        'models = "all"': ('models = ["resnet50:w4"]', "catalog.models[0]"),
        'devices = "all"': ('devices = { "Pixel 99" = 1.0 }', "fleet.devices.Pixel 99"),
        'space_config = "../edgesel-aihub.toml"': ('space_config = "missing.toml"', "'space_config'"),
        'eligibility = "all"': ('eligibility = "ram_filter"', "fleet.eligibility"),
    }
    for old, (new, field) in cases.items():
        path = tmp_path / "s.toml"
        text = base.replace(old, new).replace("../edgesel-aihub.toml", str(CONFIG))
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ScenarioError, match=re.escape(field)):
            load_scenario(path)


def test_cli_runs_the_measured_scenario(tmp_path):
    pytest.importorskip("edgesel_server._core")
    out = tmp_path / "out"
    assert main(["--scenario", str(AIHUB), "--rounds", "300", "--out", str(out), "--quiet", "--no-plot"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["arms"] == 86 and rep["eligibility"] == "all"
    pol = rep["policies"]
    assert pol["oracle"]["failure_rate"] == 0.0 and pol["random"]["failure_rate"] > 0.1
    assert 0.15 < rep["pair_failure_rate"] < 0.25


def test_a_real_server_on_the_aihub_config_gives_the_simulators_rewards(tmp_path, stream):
    """examples/edgesel-aihub.toml served by a real edgesel-server: Select with a device's raw features and
    its user's Preferences, Feedback with the stream's measurements; the reward the server applies is the
    simulator's for that (round, model)."""
    from edgesel_client import EdgeselClient, Preferences
    from edgesel_server.process import server_command, start_listening, stop

    proc, target = start_listening(server_command(CONFIG, tmp_path / "data"))
    fb = stream.feedback
    col = {a: j for j, a in enumerate(stream.arm_ids)}
    checked = failed = 0
    try:
        with EdgeselClient(target, space="image-classification", timeout=10.0) as client:
            for t in range(40):
                device = stream.scenario.devices[stream.device_index[t]]
                prefs = fb.preferences(t)
                sel = client.select(
                    device_features=device.features(),
                    preferences=Preferences(prefs["latency_budget_ms"], qoe_weights=prefs["qoe_weights"]),
                )
                j = col[sel.model_id]
                m = fb.measurements(t, j)
                if not m:  # today's SDK has no "failed": the space's minimum as a reward
                    receipt = sel.feedback(reward=0.0)
                    failed += 1
                else:
                    receipt = sel.feedback(**m)
                    checked += 1
                assert receipt.reward == pytest.approx(stream.reward[t, j], abs=1e-12), (t, sel.model_id, m)
    finally:
        stop(proc)
    assert checked >= 10

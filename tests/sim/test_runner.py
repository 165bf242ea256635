"""Runs: determinism, fairness of the shared stream, policies beating baselines, the CLI's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesel_tools.sim.cli import main
from edgesel_tools.sim.policies import ALL_POLICIES, Request
from edgesel_tools.sim.report import build_report
from edgesel_tools.sim.runner import run
from edgesel_tools.sim.scenario import build_stream, load_scenario


def _strip_runtime(report):
    for m in report["policies"].values():
        m.pop("runtime_s")
    return report


def test_same_seed_same_stream_and_report(tiny_path):
    sc = load_scenario(tiny_path)
    a, b = build_stream(sc, 800), build_stream(sc, 800)
    for f in ("contexts", "expected", "reward", "eligible", "device_index"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    c = build_stream(sc, 800, seed=sc.seed + 1)
    assert not np.array_equal(a.reward, c.reward)
    names = ["oracle", "common_model", "random", "epsilon_greedy"]
    ra = _strip_runtime(build_report(a, run(a, names)))
    rb = _strip_runtime(build_report(b, run(b, names)))
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)


def test_core_policies_are_deterministic(tiny_path):
    pytest.importorskip("edgesel_server._core")
    sc = load_scenario(tiny_path)
    names = ["hybrid_linucb", "disjoint_linucb", "lin_ts"]
    reports = [
        _strip_runtime(build_report(s, run(s, names))) for s in (build_stream(sc, 600), build_stream(sc, 600))
    ]
    assert json.dumps(reports[0], sort_keys=True) == json.dumps(reports[1], sort_keys=True)


def test_oracle_has_zero_regret_and_bounds_everyone(tiny_path):
    st = build_stream(load_scenario(tiny_path), 1000)
    rep = build_report(st, run(st, ["oracle", "random", "common_model", "epsilon_greedy"]))
    pol = rep["policies"]
    assert pol["oracle"]["cumulative_regret"] == 0 and pol["oracle"]["optimal_pick_rate"] == 1.0
    for m in pol.values():
        assert m["mean_qoe"] <= pol["oracle"]["mean_qoe"] + 1e-9
        assert m["regret_checkpoints"][-1] == [1000, m["cumulative_regret"]]


def test_a_policy_object_can_be_plugged_in(tiny_path):
    """The runner takes any object with add_arm/remove_arm/select/update (e.g. a live-server adapter)."""
    st = build_stream(load_scenario(tiny_path), 300)

    class FirstEligible:
        name = "first"

        def __init__(self):
            self.arms, self.updates = [], 0

        def add_arm(self, arm_id, features):
            self.arms.append(arm_id)

        def remove_arm(self, arm_id):
            self.arms.remove(arm_id)

        def select(self, request: Request) -> str:
            return request.eligible[0]

        def update(self, request, arm_id, reward):
            assert 0.0 <= reward <= 1.0
            self.updates += 1

    p = FirstEligible()
    (res,) = run(st, [p])
    assert p.updates == 300 and len(p.arms) == len(st.scenario.models)
    assert res.name == "first" and res.picks.shape == (300,)

    class Cheater(FirstEligible):
        def select(self, request):
            return "not-a-model"

    with pytest.raises(RuntimeError, match="not eligible"):
        run(st, [Cheater()])


def test_hybrid_beats_random_and_common_model_on_a_short_run(tiny_path):
    pytest.importorskip("edgesel_server._core")
    st = build_stream(load_scenario(tiny_path), 3000)
    rep = build_report(st, run(st, ["hybrid_linucb", "common_model", "random"]))
    pol = rep["policies"]
    assert pol["hybrid_linucb"]["cumulative_regret"] < pol["common_model"]["cumulative_regret"]
    assert pol["hybrid_linucb"]["cumulative_regret"] < 0.5 * pol["random"]["cumulative_regret"]
    assert pol["hybrid_linucb"]["mean_qoe_last_20pct"] > pol["common_model"]["mean_qoe_last_20pct"]


def test_cli_writes_report_and_plot(tiny_path, tmp_path, capsys):
    pytest.importorskip("edgesel_server._core")
    out = tmp_path / "out"
    rc = main(["--scenario", str(tiny_path), "--rounds", "2000", "--out", str(out), "--seed", "3", "--quiet"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["scenario"] == "tiny" and rep["rounds"] == 2000 and rep["seed"] == 3
    assert set(rep["policies"]) == set(ALL_POLICIES)
    for m in rep["policies"].values():
        assert {"mean_qoe", "cumulative_regret", "optimal_pick_rate", "regret_checkpoints"} <= set(m)
    (arm,) = rep["new_model"]
    assert arm == "resnet50_int8:IMAGENET1K_FBGEMM_V2"
    assert set(rep["new_model"][arm]["policies"]) == set(ALL_POLICIES)
    png = (out / "regret.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "hybrid_linucb" in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, tiny_path, capsys):
    assert main(["--scenario", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "cannot read scenario" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_path.read_text().replace("pixel_4 = 1.0", "pixel_40 = 1.0"))
    assert main(["--scenario", str(bad), "--out", str(tmp_path)]) == 2
    assert "fleet.devices.pixel_40" in capsys.readouterr().err
    assert main(["--scenario", str(tiny_path), "--policies", "oracle,magic", "--out", str(tmp_path)]) == 2
    assert "magic" in capsys.readouterr().err

"""`edgesel-sim --live` on the measured scenario (sim/live_measured.py): the scenario's own server config
served by a real edgesel-server, raw features, installation ids, Preferences and Measurements over gRPC.
Without a holdout the server must choose exactly as the in-process core; with one, the run prints
GetSpaceReport."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgesel_server.config import parse_config
from edgesel_server.toml import loads as toml_loads
from edgesel_tools.sim.cli import main as sim_main
from edgesel_tools.sim.live_measured import measured_server_config, run_measured_live
from edgesel_tools.sim.policies import policy_seed
from edgesel_tools.sim.runner import run
from edgesel_tools.sim.scenario import ScenarioError, build_stream, load_scenario

from .conftest import SCENARIOS

AIHUB = SCENARIOS / "aihub.toml"


@pytest.mark.parametrize("policy", ["qoe_model", "hybrid_linucb"])
def test_live_measured_run_reproduces_the_in_process_core(policy: str, tmp_path: Path) -> None:
    sc = load_scenario(AIHUB)
    stream = build_stream(sc, 300, 4)
    (local,) = run(stream, [policy])
    # Every Feedback's reward is checked against the simulator's inside the run (same QoE function).
    live, report, events = run_measured_live(stream, tmp_path, policy=policy, seed=policy_seed(4, policy))
    np.testing.assert_array_equal(live.picks, local.picks)
    assert len(set(events)) == 300
    assert report.since_start.pooled.policy.n == 300 and report.since_start.pooled.holdout.n == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_sim_cli_live_on_a_measured_scenario_with_a_holdout(tmp_path: Path, capsys) -> None:
    args = ["run", "--scenario", str(AIHUB), "--rounds", "300", "--quiet", "--no-plot", "--live",
            "--policies", "qoe_model,oracle", "--holdout-model", "mobilenet_v4:w8a8",
            "--out", str(tmp_path)]  # fmt: skip
    assert sim_main(args) == 0
    out = capsys.readouterr().out
    assert "qoe_model@server GetSpaceReport: policy n=" in out and "95% CI" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["policies"]) == {"qoe_model", "oracle"}
    config = (tmp_path / "server-qoe_model/edgesel.toml").read_text()
    assert '[space.holdout]\nmodel = "mobilenet_v4:w8a8"\nshare = 0.1' in config
    assert sim_main([*args[:-2], "--holdout-share", "1.5", "--out", str(tmp_path)]) == 2


def test_live_config_keeps_the_scenarios_space_and_replaces_policy_and_holdout(tmp_path: Path) -> None:
    sc = load_scenario(AIHUB)
    text = measured_server_config(sc, policy="qoe_model", seed=7, holdout_model="resnet50:w8a8",
                                  holdout_share=0.2)  # fmt: skip
    (space,) = parse_config(toml_loads(text)).spaces
    assert space.policy.kind == "qoe_model" and space.policy.seed == 7
    assert space.holdout is not None and (space.holdout.model, space.holdout.share) == ("resnet50:w8a8", 0.2)
    assert space.qoe == sc.space.qoe and space.device_features == sc.space.device_features
    assert [m.id for m in space.models] == [m.id for m in sc.space.models]
    two = tmp_path / "two.toml"
    two.write_text(Path(sc.space_config_file).read_text() + '\n[[space]]\nname = "other"\n')
    with pytest.raises(ScenarioError, match="exactly one"):
        measured_server_config(dataclasses.replace(sc, space_config_file=str(two)))

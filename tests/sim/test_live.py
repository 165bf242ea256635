"""The simulator through a real server and the SDK: the in-process core's picks, catalog change included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesel_tools import demo
from edgesel_tools.sim.live import run_live
from edgesel_tools.sim.policies import make_policy
from edgesel_tools.sim.runner import run_policy
from edgesel_tools.sim.scenario import build_stream, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_live_server_reproduces_the_in_process_core(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "examples/scenarios/tiny.toml")
    stream = build_stream(scenario, 1800)  # tiny.toml adds a model at round 1500: AddModel over gRPC
    assert any(r < stream.rounds for r, _ in stream.change_rounds)
    live = run_live(stream, tmp_path / "server", policy="hybrid_linucb", alpha=0.5, lam=1.0)
    local = run_policy(make_policy("hybrid_linucb", stream, alpha=0.5, lam=1.0), stream)
    # Same normalized vectors, same arms, same order of updates: the server must choose exactly as the core.
    np.testing.assert_array_equal(live.picks, local.picks)
    log = (tmp_path / "server/server.log").read_text()
    assert "Traceback" not in log


def test_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    assert demo.main(["--rounds", "400", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "edgesel's devices got" in out and "of the oracle's QoE" in out
    assert (tmp_path / "report.json").is_file() and (tmp_path / "regret.png").stat().st_size > 10_000


def test_sim_cli_live_matches_in_process(tmp_path: Path) -> None:
    from edgesel_tools.sim.cli import main as sim_main

    scenario = str(ROOT / "examples/scenarios/tiny.toml")
    common = ["--scenario", scenario, "--rounds", "500", "--quiet", "--no-plot",
              "--policies", "hybrid_linucb,disjoint_linucb,lin_ts,oracle"]  # fmt: skip
    assert sim_main(["run", *common, "--out", str(tmp_path / "local")]) == 0
    assert sim_main(["run", *common, "--out", str(tmp_path / "live"), "--live"]) == 0
    import json

    local = json.loads((tmp_path / "local/report.json").read_text())["policies"]
    live = json.loads((tmp_path / "live/report.json").read_text())["policies"]
    for name in ("hybrid_linucb", "disjoint_linucb", "lin_ts"):
        assert live[name]["mean_qoe"] == local[name]["mean_qoe"], name
        assert live[name]["cumulative_regret"] == local[name]["cumulative_regret"], name
    assert (tmp_path / "live/server-hybrid_linucb/data/edgesel.sqlite3").is_file()

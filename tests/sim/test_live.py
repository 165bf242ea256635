"""The simulator through a real server and the SDK: the in-process core's picks, catalog change included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesel_server import demo
from edgesel_server.sim.live import run_live
from edgesel_server.sim.policies import make_policy
from edgesel_server.sim.runner import run_policy
from edgesel_server.sim.scenario import build_stream, load_scenario

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

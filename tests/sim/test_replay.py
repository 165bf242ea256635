"""Offline evaluation: replay / IPS on a uniformly random log match the policies' online values."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edgesel_tools.sim.cli import main
from edgesel_tools.sim.policies import make_learning_policy
from edgesel_tools.sim.replay import LogError, read_log, replay, replay_file
from edgesel_tools.sim.runner import run
from edgesel_tools.sim.scenario import build_stream


def test_log_format(logged):
    stream, path = logged
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["device_dim"] == stream.device_dim
    assert json.loads(lines[1])["type"] == "arms"
    rec = json.loads(lines[2])
    assert rec["type"] == "decision" and rec["arm"] in rec["eligible"]
    assert rec["propensity"] == pytest.approx(1 / len(rec["eligible"]))
    assert len(lines) == 2 + stream.rounds


def test_replay_of_a_fixed_policy_matches_its_true_value(logged):
    stream, path = logged
    arm = "efficientnet_b0"
    truth = stream.reward[:, stream.arm_ids.index(arm)].mean()
    res = replay_file(path, f"fixed:{arm}")
    k = len(stream.arm_ids)
    assert res.uniform_logging and res.events == stream.rounds
    assert abs(res.accepted - stream.rounds / k) < 5 * np.sqrt(stream.rounds / k)
    assert res.replay_value == pytest.approx(truth, abs=0.02)
    assert res.ips_value == pytest.approx(truth, abs=0.03)
    assert res.snips_value == pytest.approx(truth, abs=0.02)


def test_replay_of_learning_policies_matches_their_online_value(logged, stationary):
    pytest.importorskip("edgesel_server._core")
    stream, path = logged
    for name in ("hybrid_linucb", "epsilon_greedy"):
        res = replay_file(path, name)
        assert res.accepted > 2000
        # Li et al. 2011: the accepted events are distributed like an online run of ~accepted rounds.
        online = build_stream(stationary, rounds=res.accepted)
        (on,) = run(online, [name])
        value = online.reward[np.arange(online.rounds), on.picks].mean()
        assert res.replay_value == pytest.approx(value, abs=0.03), name
        assert res.snips_value == pytest.approx(value, abs=0.04), name
    # and replay tells a good policy from a bad one
    assert replay_file(path, "hybrid_linucb").replay_value > replay_file(path, "random").replay_value + 0.1


def test_read_log_rejects_bad_lines():
    good = {
        "type": "decision",
        "context": [0.1],
        "eligible": ["a", "b"],
        "arm": "a",
        "propensity": 0.5,
        "reward": 1,
    }
    cases = [
        ("not json", "not JSON"),
        (json.dumps({**good, "arm": "c"}), "'eligible'"),
        (json.dumps({**good, "propensity": 0}), "'propensity'"),
        (json.dumps({**good, "context": [float("nan")]}).replace("NaN", "NaN"), "'context'"),
        (json.dumps({k: v for k, v in good.items() if k != "arm"}), "missing field 'arm'"),
        (json.dumps({"type": "weird"}), "unknown record type"),
    ]
    for line, msg in cases:
        with pytest.raises(LogError, match=msg):
            list(read_log(io.StringIO(line + "\n")))
    # missing rewards are skipped, not counted
    recs = list(read_log([json.dumps({**good, "reward": None}), json.dumps(good)]))
    res = replay(recs, make_learning_policy("fixed:a", 1, 0, 0))
    assert res.events == 1 and res.accepted == 1 and res.replay_value == 1.0


def test_cli_log_and_replay(tiny_path, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    assert main(["log", "--scenario", str(tiny_path), "--rounds", "500", "--out", str(log)]) == 0
    capsys.readouterr()
    out = tmp_path / "est.json"
    assert (
        main(["replay", "--log", str(log), "--policy", "random,fixed:efficientnet_b0", "--out", str(out)])
        == 0
    )
    est = json.loads(out.read_text())
    assert set(est) == {"random", "fixed:efficientnet_b0"} and est["random"]["events"] == 500
    assert main(["replay", "--log", str(log), "--policy", "nonsense"]) == 2
    assert "unknown policy" in capsys.readouterr().err

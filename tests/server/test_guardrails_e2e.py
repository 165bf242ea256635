"""Guardrails end to end: a model that becomes very slow on one device class (vs the holdout's incumbent)
mid-run is withdrawn there within the window, still offered elsewhere, the withdrawal survives a kill -9 and
restart, and LiftGuardrail restores it. Real edgesel-server processes on loopback.

Until Feedback can say that a model failed, the breach is the p95 latency ratio; the failure-rate guardrail
is the same code path (guardrails.py, tests/server/test_guardrails.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2
from edgesel_server.holdout import in_holdout
from tests.hardening.support import json_logs
from tests.hardening.test_observability import scrape
from tests.rpc_status import reason_of
from tests.server.serverproc import ServerProcess
from tests.server.test_holdout import CONFIG, SHARE, Fleet, ids

WINDOW = 20
MIN_OBS = 10
GUARDED = (
    CONFIG.format(share=SHARE).replace(
        "[space.qoe]",
        f"[space.guardrails]\nmax_p95_latency_ratio = 3.0\nwindow = {WINDOW}\n"
        f"min_observations = {MIN_OBS}\n\n[space.qoe]",
    )
    + '\n[server.metrics]\nlisten = "127.0.0.1:0"\n'
)

SOCS = ("snapdragon", "exynos")


def withdrawn(fleet: Fleet) -> set[tuple[str, str]]:
    return {(w.model_id, w.device_class) for w in fleet.report().withdrawn}


def offered_slow(fleet: Fleet, installation: str, soc: str) -> bool:
    """Whether `slow` can still be chosen for this class (an eligible list of only `slow`)."""
    try:
        fleet.select(installation, soc, eligible_model_ids=["slow"])
        return True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(e) == "NO_ELIGIBLE_MODEL"
        assert "withdrawn" in (e.details() or "") and soc in (e.details() or "")
        return False


def test_a_model_slow_on_one_class_is_withdrawn_there_survives_restart_and_is_lifted(tmp_path: Path) -> None:
    config = tmp_path / "edgesel.toml"
    config.write_text(GUARDED)
    installs = ids(300, seed=5)
    held = [i for i in installs if in_holdout("fleet", i, SHARE)]
    policy = [i for i in installs if not in_holdout("fleet", i, SHARE)]
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        fleet = Fleet(server.target)
        # The holdout's incumbent runs at 10 ms on both classes; so does `slow`, at first.
        for k in range(MIN_OBS):
            for soc in SOCS:
                r = fleet.select(held[k], soc)
                assert r.model.model_id == "incumbent"
                fleet.feedback(r.event_id, 4.0, 10.0)
                r = fleet.select(policy[k], soc, eligible_model_ids=["slow"])
                fleet.feedback(r.event_id, 4.0, 11.0)
        assert withdrawn(fleet) == set()
        # Mid-run, `slow` becomes 10x slower on snapdragon only.
        sent_after_change = 0
        while ("slow", "snapdragon") not in withdrawn(fleet):
            assert sent_after_change < WINDOW, "not withdrawn within the window"
            r = fleet.select(policy[MIN_OBS + sent_after_change], "snapdragon", eligible_model_ids=["slow"])
            fleet.feedback(r.event_id, 2.0, 100.0)
            r = fleet.select(policy[MIN_OBS + sent_after_change], "exynos", eligible_model_ids=["slow"])
            fleet.feedback(r.event_id, 4.0, 11.0)
            sent_after_change += 1
        assert withdrawn(fleet) == {("slow", "snapdragon")}
        rep = fleet.report()
        (w,) = rep.withdrawn
        assert w.guardrail == "p95_latency_ratio" and w.limit == 3.0 and w.value > 3.0
        assert rep.withdrawals_total == 1
        # No longer offered on snapdragon (not even when the policy picks freely), still on exynos.
        assert not offered_slow(fleet, policy[0], "snapdragon")
        assert offered_slow(fleet, policy[0], "exynos")
        picks = {fleet.select(i, "snapdragon").model.model_id for i in policy[40:100]}
        assert "slow" not in picks and picks <= {"incumbent", "fast"}
        logs = [e for e in json_logs(server) if e.get("msg", e.get("message", "")).startswith("guardrail")]
        assert any(e.get("model_id") == "slow" and e.get("device_class") == "snapdragon" for e in logs), logs
        m = scrape(server)
        assert m['edgesel_guardrail_withdrawals_total{space="fleet"}'] == 1
        assert m['edgesel_guardrail_withdrawn{space="fleet"}'] == 1
        lift = rep.since_start.pooled.lift
        key = 'device_class="POOLED",period="since_start",space="fleet"'
        assert m[f"edgesel_lift{{{key}}}"] == pytest.approx(lift.absolute, rel=1e-9)
        assert m[f"edgesel_lift_ci95_low{{{key}}}"] == pytest.approx(lift.absolute_ci95_low, rel=1e-9)
    finally:
        server.kill()

    # kill -9: the withdrawal is rebuilt from snapshot + log.
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        fleet = Fleet(server.target)
        assert withdrawn(fleet) == {("slow", "snapdragon")}
        assert not offered_slow(fleet, policy[0], "snapdragon")
        req = catalog_pb2.LiftGuardrailRequest(space="fleet", model_id="slow", device_class="snapdragon")
        assert fleet.cat.LiftGuardrail(req, timeout=10).lifted
        assert withdrawn(fleet) == set()
        assert offered_slow(fleet, policy[0], "snapdragon")
        assert not fleet.cat.LiftGuardrail(req, timeout=10).lifted  # nothing left to lift
        for bad, code in (("", grpc.StatusCode.INVALID_ARGUMENT), ("nope", grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as err:
                fleet.cat.LiftGuardrail(
                    catalog_pb2.LiftGuardrailRequest(space="fleet", model_id=bad, device_class="exynos"),
                    timeout=10,
                )
            assert err.value.code() == code and "model" in (err.value.details() or "")
        rep = fleet.report()
        assert rep.withdrawals_total == 1 and not rep.withdrawn
    finally:
        server.kill()
    # The lift is in the log too.
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        assert withdrawn(Fleet(server.target)) == set()
    finally:
        server.kill()

"""Guardrails end to end: a model that becomes very slow on one device class (vs the holdout's incumbent)
mid-run is withdrawn there within the window, still offered elsewhere, the withdrawal survives a kill -9 and
restart, and LiftGuardrail restores it. Real edgesel-server processes on loopback.

The same for the failure-rate guardrail, fed by real `Measurements.failed` Feedback: a model that starts
failing on one device class mid-run is withdrawn there within the window, and stays so after a kill -9."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
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


FAILURE_LIMIT = 0.3
FAIL_GUARDED = CONFIG.format(share=SHARE).replace(
    "[space.qoe]",
    f"[space.guardrails]\nmax_failure_rate = {FAILURE_LIMIT}\nwindow = {WINDOW}\n"
    f"min_observations = {MIN_OBS}\n\n[space.qoe]",
)


def report_failed(fleet: Fleet, event_id: str) -> float:
    """Feedback with Measurements.failed = true (the model did not run); returns the reward it was given."""
    m = types_pb2.Measurements(failed=True, failure_reason=types_pb2.FAILURE_REASON_UNSUPPORTED_OP)
    r = fleet.sel.Feedback(selection_pb2.FeedbackRequest(event_id=event_id, measurements=m), timeout=10)
    assert r.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
    return float(r.reward)


def test_a_model_failing_on_one_class_is_withdrawn_there_within_the_window_and_survives_restart(
    tmp_path: Path,
) -> None:
    config = tmp_path / "edgesel.toml"
    config.write_text(FAIL_GUARDED)
    policy = [i for i in ids(400, seed=9) if not in_holdout("fleet", i, SHARE)]
    # A device that reported a failure is not offered that model again (failed_pairs.py), so every request
    # after the change comes from an installation that has not used `slow` yet.
    fresh = iter(policy[2 * MIN_OBS :])
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        fleet = Fleet(server.target)
        for k in range(MIN_OBS):  # `slow` runs on both classes at first
            for soc, inst in zip(SOCS, (policy[k], policy[MIN_OBS + k]), strict=True):
                r = fleet.select(inst, soc, eligible_model_ids=["slow"])
                fleet.feedback(r.event_id, 4.0, 11.0)
        assert withdrawn(fleet) == set()
        # Mid-run, `slow` stops running on snapdragon (say a driver update); exynos devices still run it.
        sent_after_change = 0
        while ("slow", "snapdragon") not in withdrawn(fleet):
            assert sent_after_change < WINDOW, "not withdrawn within the window"
            r = fleet.select(next(fresh), "snapdragon", eligible_model_ids=["slow"])
            assert report_failed(fleet, r.event_id) == 0.0  # the space's minimum reward
            r = fleet.select(next(fresh), "exynos", eligible_model_ids=["slow"])
            fleet.feedback(r.event_id, 4.0, 11.0)
            sent_after_change += 1
        # f failures after MIN_OBS successes: withdrawn at the first f with f / (MIN_OBS + f) > the limit
        first = next(f for f in range(1, WINDOW) if f / (MIN_OBS + f) > FAILURE_LIMIT)
        assert sent_after_change == first
        rep = fleet.report()
        (w,) = rep.withdrawn
        assert (w.model_id, w.device_class, w.guardrail) == ("slow", "snapdragon", "failure_rate")
        assert w.limit == FAILURE_LIMIT and w.value == pytest.approx(first / (MIN_OBS + first))
        assert rep.withdrawals_total == 1
        cells = {c.device_class: c for c in rep.since_start.classes}
        assert cells["snapdragon"].policy.failure_rate == pytest.approx(first / (MIN_OBS + first))
        assert cells["exynos"].policy.failure_rate == 0.0
        assert not offered_slow(fleet, next(fresh), "snapdragon")
        assert offered_slow(fleet, next(fresh), "exynos")
        logs = [e for e in json_logs(server) if e.get("msg", e.get("message", "")).startswith("guardrail")]
        assert any(
            e.get("guardrail") == "failure_rate" and e.get("device_class") == "snapdragon" for e in logs
        ), logs
    finally:
        server.kill()
    # kill -9: the withdrawal (and its history) is rebuilt from snapshot + log.
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        fleet = Fleet(server.target)
        rep = fleet.report()
        assert [(w.model_id, w.device_class, w.guardrail) for w in rep.withdrawn] == [
            ("slow", "snapdragon", "failure_rate")
        ]
        assert rep.withdrawals_total == 1
        assert not offered_slow(fleet, next(fresh), "snapdragon")
        assert offered_slow(fleet, next(fresh), "exynos")
    finally:
        server.kill()

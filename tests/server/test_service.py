"""The selection service end to end: a real server process on loopback, through the SDK and raw stubs."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_client import AsyncEdgeselClient, EdgeselClient, EdgeselError, RetryPolicy
from tests.rpc_status import reason_of
from tests.server.serverproc import ServerProcess, write_config

PHONE = {"ram_gb": 2.0, "has_npu": 0.0, "battery_percent": 40.0}
JETSON = {"ram_gb": 16.0, "has_npu": 1.0, "battery_percent": 100.0}
NO_RETRY = RetryPolicy(max_attempts=1)


def select(stub: sel_grpc.SelectionServiceStub, **kw) -> selection_pb2.SelectResponse:
    kw.setdefault("space", "vision")
    kw.setdefault("device_features", PHONE)
    return stub.Select(selection_pb2.SelectRequest(**kw), timeout=10)


def state_bytes(cat: cat_grpc.CatalogServiceStub, space: str = "vision") -> bytes:
    return cat.ExportState(catalog_pb2.ExportStateRequest(space=space), timeout=10).state


def total_updates(cat: cat_grpc.CatalogServiceStub, space: str = "vision") -> int:
    return cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space=space), timeout=10).total_updates


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def test_select_then_feedback_exactly_once(server: ServerProcess) -> None:
    with EdgeselClient(server.target, space="vision", retry=NO_RETRY) as client:
        sel = client.select(device_features=PHONE, include_ranking=True)
        assert sel.model_id in {"tiny", "small", "big"}
        assert sel.artifact_uri == f"file:///models/{sel.model_id}.pt"
        assert len(sel.ranking) == 3 and sel.ranking[0].model_id == sel.model_id
        assert sel.feedback_deadline is not None
        first = sel.feedback(reward=0.8)
        again = client.feedback(sel.event_id, reward=0.1)
        assert first.outcome.name == "ACCEPTED" and math.isclose(first.reward, 0.8)
        assert again.outcome.name == "DUPLICATE"
    with grpc.insecure_channel(server.target) as ch:
        stats = cat_grpc.CatalogServiceStub(ch).GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision"))
        arm = next(a for a in stats.arms if a.model_id == sel.model_id)
        assert stats.total_updates == 1 and arm.n_updates == 1 and math.isclose(arm.reward_sum, 0.8)


def test_measurements_go_through_the_qoe_function(stubs) -> None:
    sel_stub, _ = stubs
    r = select(sel_stub)
    fb = sel_stub.Feedback(
        selection_pb2.FeedbackRequest(
            event_id=r.event_id, measurements=types_pb2.Measurements(user_rating=5.0, latency_ms=50.0)
        )
    )
    # rating 5 scores 1, 50 ms against the 100 ms budget scores 0.75; equal weights -> 0.875
    assert fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
    assert math.isclose(fb.reward, 0.875)


def test_learning_changes_later_choices(server: ServerProcess) -> None:
    """Phones are happiest with the tiny model, Jetsons with the big one; the server must learn that."""
    truth = {
        ("phone", "tiny"): 0.9,
        ("phone", "small"): 0.5,
        ("phone", "big"): 0.1,
        ("jetson", "tiny"): 0.4,
        ("jetson", "small"): 0.6,
        ("jetson", "big"): 0.95,
    }
    picks: dict[str, list[str]] = {"phone": [], "jetson": []}
    with EdgeselClient(server.target, space="vision", retry=NO_RETRY) as client:
        for i in range(160):
            kind, feats = ("phone", PHONE) if i % 2 == 0 else ("jetson", JETSON)
            sel = client.select(device_features=feats)
            picks[kind].append(sel.model_id)
            sel.feedback(reward=truth[(kind, sel.model_id)])
    assert picks["phone"][-20:].count("tiny") >= 18
    assert picks["jetson"][-20:].count("big") >= 18


def test_bad_input_gets_a_clear_status_and_changes_nothing(server: ServerProcess, stubs) -> None:
    s, cat = stubs
    good = select(s)
    s.Feedback(selection_pb2.FeedbackRequest(event_id=good.event_id, reward=0.5))
    pending = select(s)
    before = state_bytes(cat)
    C = grpc.StatusCode
    cases = {
        "unknown space": (lambda: select(s, space="nope"), C.NOT_FOUND, "unknown space"),
        "NaN feature": (
            lambda: select(s, device_features={**PHONE, "ram_gb": math.nan}),
            C.INVALID_ARGUMENT,
            "ram_gb",
        ),
        "inf feature": (
            lambda: select(s, device_features={**PHONE, "battery_percent": math.inf}),
            C.INVALID_ARGUMENT,
            "battery_percent",
        ),
        "missing feature": (
            lambda: select(s, device_features={"has_npu": 1.0}),
            C.INVALID_ARGUMENT,
            "ram_gb",
        ),
        "out of range": (
            lambda: select(s, device_features={**PHONE, "ram_gb": 1e6}),
            C.INVALID_ARGUMENT,
            "outside",
        ),
        "unknown eligible": (lambda: select(s, eligible_model_ids=["ghost"]), C.NOT_FOUND, "eligible"),
        "too many eligible": (
            lambda: select(s, eligible_model_ids=[f"m{i}" for i in range(501)]),
            C.INVALID_ARGUMENT,
            "limit",
        ),
        "nothing fits": (
            lambda: select(s, preferences=types_pb2.Preferences(max_model_size_mb=1.0)),
            C.FAILED_PRECONDITION,
            "fits",
        ),
        "bad qoe weight": (
            lambda: select(s, preferences=types_pb2.Preferences(qoe_weights={"vibes": 1.0})),
            C.INVALID_ARGUMENT,
            "vibes",
        ),
        "oversized": (
            lambda: select(s, device_features={f"f{i}": 1.0 for i in range(5000)}),
            C.RESOURCE_EXHAUSTED,
            "",
        ),
        "unknown event": (
            lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id="0" * 32, reward=0.5)),
            C.NOT_FOUND,
            "unknown event",
        ),
        "empty event": (
            lambda: s.Feedback(selection_pb2.FeedbackRequest(reward=0.5)),
            C.INVALID_ARGUMENT,
            "",
        ),
        "reward out of range": (
            lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id=pending.event_id, reward=7.0)),
            C.INVALID_ARGUMENT,
            "outside",
        ),
        "NaN reward": (
            lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id=pending.event_id, reward=math.nan)),
            C.INVALID_ARGUMENT,
            "finite",
        ),
        "no qoe": (
            lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id=pending.event_id)),
            C.INVALID_ARGUMENT,
            "neither",
        ),
        "bad rating": (
            lambda: s.Feedback(
                selection_pb2.FeedbackRequest(
                    event_id=pending.event_id, measurements=types_pb2.Measurements(user_rating=11)
                )
            ),
            C.INVALID_ARGUMENT,
            "user_rating",
        ),
        "unknown model stats": (
            lambda: cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision", model_id="ghost")),
            C.NOT_FOUND,
            "ghost",
        ),
        "duplicate add": (
            lambda: cat.AddModel(
                catalog_pb2.AddModelRequest(
                    space="vision",
                    model=types_pb2.Model(
                        model_id="tiny", features={"top1": 50, "file_size_mb": 1, "quantized": 0}
                    ),
                )
            ),
            C.ALREADY_EXISTS,
            "already exists",
        ),
        "add without features": (
            lambda: cat.AddModel(
                catalog_pb2.AddModelRequest(space="vision", model=types_pb2.Model(model_id="new"))
            ),
            C.INVALID_ARGUMENT,
            "missing",
        ),
        "garbage import": (
            lambda: cat.ImportState(catalog_pb2.ImportStateRequest(space="vision", state=b"garbage")),
            C.INVALID_ARGUMENT,
            "snapshot",
        ),
    }
    # The machine-readable reason of each (google.rpc.ErrorInfo); None: refused by gRPC itself.
    reasons = {
        "unknown space": "SPACE_UNKNOWN",
        "NaN feature": "INVALID_FEATURES",
        "inf feature": "INVALID_FEATURES",
        "missing feature": "INVALID_FEATURES",
        "out of range": "INVALID_FEATURES",
        "unknown eligible": "MODEL_UNKNOWN",
        "too many eligible": "LIMIT_EXCEEDED",
        "nothing fits": "NO_ELIGIBLE_MODEL",
        "bad qoe weight": "INVALID_PREFERENCES",
        "oversized": None,
        "unknown event": "EVENT_UNKNOWN",
        "empty event": "INVALID_ARGUMENT",
        "reward out of range": "INVALID_REWARD",
        "NaN reward": "INVALID_REWARD",
        "no qoe": "INVALID_REWARD",
        "bad rating": "INVALID_REWARD",
        "unknown model stats": "MODEL_UNKNOWN",
        "duplicate add": "MODEL_EXISTS",
        "add without features": "INVALID_MODEL",
        "garbage import": "INVALID_STATE",
    }
    assert set(reasons) == set(cases)
    for name, (call, want, words) in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == want, (name, info.value.details())
        assert words.lower() in (info.value.details() or "").lower(), (name, info.value.details())
        assert reason_of(info.value) == reasons[name], name
    assert state_bytes(cat) == before, "a rejected request changed the learned state"
    # The pending decision survived every bad attempt and still takes its one good feedback.
    ok = s.Feedback(selection_pb2.FeedbackRequest(event_id=pending.event_id, reward=0.5))
    assert ok.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
    assert server.alive()


def test_expired_feedback_is_rejected_and_default_reward_applied(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, window=1.0, on_missing="default")
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            r = select(s)
            deadline = time.time() + 10
            while total_updates(cat) == 0 and time.time() < deadline:
                time.sleep(0.2)
            stats = cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision", model_id=r.model.model_id))
            assert stats.total_updates == 1 and math.isclose(stats.arms[0].reward_sum, 0.25)
            code = code_of(lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.9)))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert total_updates(cat) == 1
    finally:
        proc.kill()


async def test_many_concurrent_clients(server: ServerProcess) -> None:
    async def device(i: int) -> int:
        acked = 0
        async with AsyncEdgeselClient(server.target, space="vision", retry=NO_RETRY) as client:
            for _ in range(15):
                sel = await client.select(device_features=PHONE if i % 2 else JETSON)
                receipt = await sel.feedback(reward=(i % 5) / 4)
                acked += receipt.outcome.name == "ACCEPTED"
        return acked

    acked = sum(await asyncio.gather(*(device(i) for i in range(32))))
    assert acked == 32 * 15
    with grpc.insecure_channel(server.target) as ch:
        assert total_updates(cat_grpc.CatalogServiceStub(ch)) == acked


def test_concurrent_duplicate_feedback_is_learned_once(server: ServerProcess, stubs) -> None:
    s, cat = stubs
    r = select(s)
    fut = [
        s.Feedback.future(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.5)) for _ in range(20)
    ]
    statuses = sorted(f.result().status for f in fut)
    assert statuses.count(selection_pb2.FEEDBACK_STATUS_ACCEPTED) == 1
    assert statuses.count(selection_pb2.FEEDBACK_STATUS_DUPLICATE) == 19
    assert total_updates(cat) == 1


def test_catalog_changes_at_runtime(stubs) -> None:
    s, cat = stubs
    for _ in range(40):  # teach the shared model: accurate models please big devices
        r = select(s, device_features=JETSON)
        s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=r.model.features["top1"] / 100))
    new = types_pb2.Model(
        model_id="huge",
        artifact_uri="file:///models/huge.pt",
        features={"top1": 85.0, "file_size_mb": 300.0, "quantized": 0},
    )
    added = cat.AddModel(catalog_pb2.AddModelRequest(space="vision", model=new)).model
    assert added.model_id == "huge" and not added.retired
    r = select(s, device_features=JETSON, include_ranking=True)
    ranked = {m.model_id: m for m in r.ranking}
    assert "huge" in ranked
    # Cold start: a sensible mean from the shared model (not zero, not random) and a larger bonus.
    assert ranked["huge"].expected_qoe > 0.3
    assert ranked["huge"].exploration_bonus > ranked["big"].exploration_bonus
    cat.RetireModel(catalog_pb2.RetireModelRequest(space="vision", model_id="big"))
    for _ in range(20):
        assert select(s, device_features=JETSON).model.model_id != "big"
    assert code_of(lambda: select(s, eligible_model_ids=["big"])) == grpc.StatusCode.NOT_FOUND
    listed = cat.ListModels(catalog_pb2.ListModelsRequest(space="vision", include_retired=True)).models
    assert {m.model_id: m.retired for m in listed} == {
        "tiny": False,
        "small": False,
        "big": True,
        "huge": False,
    }
    before = select(s, eligible_model_ids=["tiny"]).model  # the server builds a model's message once...
    upd = cat.UpdateModel(
        catalog_pb2.UpdateModelRequest(
            space="vision",
            model=types_pb2.Model(model_id="tiny", version="2", artifact_uri="file:///v2/tiny.pt"),
        )
    )
    assert upd.model.version == "2" and upd.model.features["top1"] == 58.0
    after = select(s, eligible_model_ids=["tiny"]).model  # ...and again once the model changed
    assert before.version != "2" and (after.version, after.artifact_uri) == ("2", "file:///v2/tiny.pt")
    assert after.features == before.features


def test_export_import_reset(stubs) -> None:
    s, cat = stubs
    for _ in range(10):
        r = select(s)
        s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.7))
    exported = cat.ExportState(catalog_pb2.ExportStateRequest(space="vision"))
    assert exported.policy == "hybrid_linucb" and exported.state
    cat.ResetState(catalog_pb2.ResetStateRequest(space="vision"))
    assert total_updates(cat) == 0
    cat.ImportState(
        catalog_pb2.ImportStateRequest(space="vision", state=exported.state, format=exported.format)
    )
    assert total_updates(cat) == 10 and state_bytes(cat) == exported.state
    other = state_bytes(cat, "second")
    code = code_of(lambda: cat.ImportState(catalog_pb2.ImportStateRequest(space="vision", state=other)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_restart_keeps_state_and_pending_decisions(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, snapshot_every=7)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    with grpc.insecure_channel(proc.target) as ch:
        s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
        for i in range(23):
            r = select(s, device_features=PHONE if i % 3 else JETSON)
            s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=(i % 4) / 3))
        open_decision = select(s)
        before = state_bytes(cat)
    assert proc.terminate() == 0, "SIGTERM must shut down cleanly with exit 0"
    proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            assert state_bytes(cat) == before
            fb = s.Feedback(selection_pb2.FeedbackRequest(event_id=open_decision.event_id, reward=1.0))
            assert fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
            assert total_updates(cat) == 24
    finally:
        proc.kill()


def test_health_and_reflection(server: ServerProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "edgesel.v1.SelectionService", "edgesel.v1.CatalogService"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        names = {s.name for s in responses[0].list_services_response.service}
        assert {"edgesel.v1.SelectionService", "edgesel.v1.CatalogService", "grpc.health.v1.Health"} <= names


def test_sdk_falls_back_when_the_server_is_down(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1)
    client = EdgeselClient(proc.target, space="vision", retry=retry, timeout=2.0, default_model_id="tiny")
    try:
        live = client.select(device_features=PHONE)
        assert not live.from_cache
        proc.kill()
        cached = client.select(device_features=PHONE)
        assert cached.from_cache and cached.model_id == live.model_id
        receipt = live.feedback(reward=0.6)  # server down: queued, not lost
        assert receipt.outcome.name == "QUEUED" and len(client.feedback_queue) == 1
        proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
        # wait_for_ready: returns once grpc's reconnect backoff (seconds under load) finds the server again
        assert client.flush_feedback(timeout=30.0) == 1 and len(client.feedback_queue) == 0
        with grpc.insecure_channel(proc.target) as ch:
            assert total_updates(cat_grpc.CatalogServiceStub(ch)) == 1
    finally:
        client.close(flush=False)
        proc.kill()


def test_sdk_reports_refusals_as_errors(server: ServerProcess) -> None:
    with EdgeselClient(server.target, space="vision", retry=NO_RETRY) as client:
        with pytest.raises(EdgeselError) as info:
            client.select(space="nope", device_features=PHONE)
        assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_forced_sampling_logs_exact_propensities_for_offline_replay(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    text = cfg.read_text().replace('kind = "hybrid_linucb"', 'kind = "hybrid_linucb"\nforced_sampling = 1.0')
    cfg.write_text(text)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    picks = []
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s = sel_grpc.SelectionServiceStub(ch)
            for i in range(300):
                r = select(s, device_features=PHONE if i % 2 else JETSON)
                picks.append(r.model.model_id)
                if i % 3:  # some decisions never get feedback
                    s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.5))
    finally:
        assert proc.terminate() == 0
    # forced_sampling = 1: uniform over the 3 models whatever was learned
    assert all(60 <= picks.count(m) <= 140 for m in ("tiny", "small", "big")), picks
    out = tmp_path / "log.jsonl"
    from edgesel_server.cli import main as server_main

    assert server_main(["--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--export-log", str(out),
                        "--space", "vision"]) == 0  # fmt: skip
    import json

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["propensities"] == "exact"
    assert set(lines[1]["add"]) == {"tiny", "small", "big"} and len(lines[1]["add"]["tiny"]) == 3
    decisions = lines[2:]
    assert len(decisions) == 300
    assert all(math.isclose(d["propensity"], 1 / 3) for d in decisions)
    assert sum(d["reward"] is None for d in decisions) == 100
    assert [d["arm"] for d in decisions] == picks
    from edgesel_tools.sim.replay import replay_file

    est = replay_file(str(out), "random")
    assert est.uniform_logging


def test_pending_bound_closes_the_oldest_decisions_with_the_default_reward(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, on_missing="default")
    cfg.write_text(
        cfg.read_text().replace("max_eligible = 500", "max_eligible = 500\nmax_pending_decisions = 5")
    )
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            events = [select(s).event_id for _ in range(12)]
            deadline = time.time() + 10
            while total_updates(cat) < 7 and time.time() < deadline:
                time.sleep(0.1)
            assert total_updates(cat) == 7  # the 7 oldest were closed with default_reward = 0.25
            stats = cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision"))
            assert math.isclose(sum(a.reward_sum for a in stats.arms), 7 * 0.25)
            late = code_of(lambda: s.Feedback(selection_pb2.FeedbackRequest(event_id=events[0], reward=0.9)))
            assert late == grpc.StatusCode.FAILED_PRECONDITION
            ok = s.Feedback(selection_pb2.FeedbackRequest(event_id=events[-1], reward=0.9))
            assert ok.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
    finally:
        proc.kill()


def test_a_retried_select_with_the_same_request_id_gets_the_same_decision(stubs) -> None:
    s, cat = stubs
    inst = {"installation_id": "0123456789abcdef0123456789abcdef"}
    first = select(s, request_id="req-42", **inst)
    again = select(s, request_id="req-42", **inst)
    other = select(s, request_id="req-43", **inst)
    assert again.event_id == first.event_id and again.model.model_id == first.model.model_id
    assert other.event_id != first.event_id
    s.Feedback(selection_pb2.FeedbackRequest(event_id=first.event_id, reward=0.5))
    # Once its feedback is in, the request id no longer pins a decision: a new Select gets a new one.
    assert select(s, request_id="req-42", **inst).event_id != first.event_id
    code = code_of(lambda: select(s, request_id="x" * 129, **inst))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # The same request id with other device features is another request.
    assert select(s, request_id="req-43", device_features=JETSON, **inst).event_id != other.event_id

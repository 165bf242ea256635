"""Details of the contract that were wrong once (issue 11), each through a real server process."""

from __future__ import annotations

import math
import time
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from tests.hardening.crashload import wait_for
from tests.server.serverproc import ServerProcess, write_config

PHONE = {"ram_gb": 2.0, "has_npu": 0.0, "battery_percent": 40.0}
ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
DUPLICATE = selection_pb2.FEEDBACK_STATUS_DUPLICATE


def select(stub: sel_grpc.SelectionServiceStub, **kw) -> selection_pb2.SelectResponse:
    kw.setdefault("space", "vision")
    kw.setdefault("device_features", PHONE)
    return stub.Select(selection_pb2.SelectRequest(**kw), timeout=10)


def feedback(
    stub: sel_grpc.SelectionServiceStub, event_id: str, reward: float
) -> selection_pb2.FeedbackResponse:
    return stub.Feedback(selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=10)


def rpc_error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def arm_stats(cat: cat_grpc.CatalogServiceStub, **kw) -> catalog_pb2.GetArmStatsResponse:
    return cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision", **kw), timeout=10)


def test_a_duplicate_feedback_reports_the_reward_that_was_applied(stubs) -> None:
    s, _ = stubs
    r = select(s)
    assert feedback(s, r.event_id, 0.75).status == ACCEPTED
    again = feedback(s, r.event_id, 0.125)
    assert again.status == DUPLICATE and again.reward == 0.75


def test_selection_counts_survive_kill9(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, snapshot_every=1000)  # no snapshot: the counts must come from the store
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s = sel_grpc.SelectionServiceStub(ch)
            for i in range(12):
                r = select(s)
                if i % 3:
                    feedback(s, r.event_id, 0.5)
            before = {a.model_id: a for a in arm_stats(cat_grpc.CatalogServiceStub(ch)).arms}
        assert sum(a.n_selections for a in before.values()) == 12
        proc.kill()
        proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
        with grpc.insecure_channel(proc.target) as ch:
            after = {a.model_id: a for a in arm_stats(cat_grpc.CatalogServiceStub(ch)).arms}
        assert sum(a.n_updates for a in after.values()) == 8
        for model_id, a in after.items():
            assert a.n_selections == before[model_id].n_selections >= a.n_updates, model_id
    finally:
        proc.kill()


def test_decisions_closed_long_before_a_restart_still_get_the_default_reward(tmp_path: Path) -> None:
    window = 1.0
    cfg = write_config(tmp_path, window=window, on_missing="default")
    proc = ServerProcess(cfg, tmp_path / "data").start()
    with grpc.insecure_channel(proc.target) as ch:
        decision = select(sel_grpc.SelectionServiceStub(ch))
    proc.kill()  # no sweep will run for it in this process
    # However slow the restart: here it comes more than two windows after the decision's window closed.
    closed_at = decision.feedback_deadline.ToNanoseconds() / 1e9
    wait_for(lambda: time.time() > closed_at + 3 * window, 60)
    proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            wait_for(lambda: arm_stats(cat).total_updates >= 1, 60, "the default reward was never applied")
            stats = arm_stats(cat, model_id=decision.model.model_id)
            assert stats.total_updates == 1 and stats.arms[0].reward_sum == 0.25
            late = rpc_error(lambda: feedback(s, decision.event_id, 0.9))
            assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        proc.kill()


def test_the_same_request_id_from_two_devices_never_shares_a_decision(stubs) -> None:
    s, _ = stubs
    # Two devices, same features, both counting their requests from "1", no auth (one fleet).
    a = select(s, request_id="1")
    b = select(s, request_id="1")
    assert a.event_id != b.event_id
    assert feedback(s, a.event_id, 0.5).status == ACCEPTED
    assert feedback(s, b.event_id, 0.5).status == ACCEPTED
    # With an installation id, a retry of the same request is idempotent for that installation only.
    first = select(s, request_id="1", installation_id="inst-a-4f1d2c3b5a697887")
    retry = select(s, request_id="1", installation_id="inst-a-4f1d2c3b5a697887")
    other = select(s, request_id="1", installation_id="inst-b-0e9d8c7b6a594837")
    assert retry.event_id == first.event_id and other.event_id != first.event_id
    short = rpc_error(lambda: select(s, request_id="2", installation_id="short"))
    assert short.code() == grpc.StatusCode.INVALID_ARGUMENT and "installation_id" in (short.details() or "")


def test_get_arm_stats_with_an_empty_model_id_is_refused(stubs) -> None:
    _, cat = stubs
    err = rpc_error(lambda: arm_stats(cat, model_id=""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "model_id" in (err.details() or "")


def add_model(cat: cat_grpc.CatalogServiceStub, **kw) -> catalog_pb2.AddModelResponse:
    kw.setdefault("model_id", "new")
    kw.setdefault("features", {"top1": 70.0, "file_size_mb": 10.0, "quantized": 0.0})
    return cat.AddModel(catalog_pb2.AddModelRequest(space="vision", model=types_pb2.Model(**kw)), timeout=10)


def test_add_model_checks_feature_names_metadata_and_duplicates(stubs) -> None:
    _, cat = stubs
    features = {"top1": 70.0, "file_size_mb": 10.0, "quantized": 0.0}
    typo = rpc_error(lambda: add_model(cat, features={**features, "quantised": 1.0}))
    assert typo.code() == grpc.StatusCode.INVALID_ARGUMENT and "quantised" in (typo.details() or "")
    huge = rpc_error(lambda: add_model(cat, metadata={"blob": "x" * 60_000}))
    assert huge.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in (huge.details() or "")
    many = rpc_error(lambda: add_model(cat, metadata={f"k{i}": "v" for i in range(200)}))
    assert many.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in (many.details() or "")
    dup = rpc_error(lambda: add_model(cat, model_id="tiny"))
    assert dup.code() == grpc.StatusCode.ALREADY_EXISTS
    assert add_model(cat, metadata={"sha256": "ab" * 32}).model.model_id == "new"


def test_all_zero_qoe_weights_are_refused_at_select(stubs) -> None:
    s, _ = stubs
    zero = {"rating": 0.0, "latency": 0.0, "energy": 0.0, "accuracy": 0.0}
    err = rpc_error(lambda: select(s, preferences=types_pb2.Preferences(qoe_weights=zero)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "qoe_weights" in (err.details() or "")
    # Weights that keep one term are fine, and a measurement Feedback then works.
    r = select(s, preferences=types_pb2.Preferences(qoe_weights={**zero, "rating": 1.0}))
    fb = s.Feedback(
        selection_pb2.FeedbackRequest(
            event_id=r.event_id, measurements=types_pb2.Measurements(user_rating=4.0)
        ),
        timeout=10,
    )
    assert fb.status == ACCEPTED and math.isfinite(fb.reward)


def test_list_spaces_describes_each_space_and_feature(stubs) -> None:
    _, cat = stubs
    spaces = {sp.name: sp for sp in cat.ListSpaces(catalog_pb2.ListSpacesRequest(), timeout=10).spaces}
    vision = spaces["vision"]
    assert vision.description == "image classification on phones and boards"
    ram = next(f for f in vision.device_features if f.name == "ram_gb")
    assert (ram.min, ram.max, ram.transform) == (0.25, 64.0, "log") and not ram.HasField("default")
    npu = next(f for f in vision.device_features if f.name == "has_npu")
    assert npu.HasField("default") and npu.default == 0.0
    assert [f.name for f in vision.model_features] == list(vision.model_feature_names)


def test_reflection_v1_and_health_list(server: ServerProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2

    with grpc.insecure_channel(server.target) as ch:
        listed = health_pb2_grpc.HealthStub(ch).List(health_pb2.HealthListRequest(), timeout=5)
        assert listed.statuses["edgesel.v1.SelectionService"].status == health_pb2.HealthCheckResponse.SERVING
        # grpc.reflection.v1 has the same messages as v1alpha under another service name.
        call = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        responses = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {sv.name for sv in responses[0].list_services_response.service}
        assert "edgesel.v1.SelectionService" in names


TABLES = ("events", "decisions", "snapshots")


def test_export_log_never_writes_to_the_store(tmp_path: Path) -> None:
    import sqlite3
    import subprocess
    import sys

    from tests.server.serverproc import ROOT

    cfg = write_config(tmp_path)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    with grpc.insecure_channel(proc.target) as ch:
        s = sel_grpc.SelectionServiceStub(ch)
        for _ in range(3):
            feedback(s, select(s).event_id, 0.5)
    proc.terminate()
    # A config that now has a model the store never saw: a writable engine would append its add_model.
    cfg.write_text(cfg.read_text() + '\n[[space.models]]\nid = "extra"\n')

    def rows() -> tuple[int, ...]:
        with sqlite3.connect(data / "edgesel.sqlite3") as db:
            return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES)

    before = rows()
    out = tmp_path / "log.jsonl"
    cmd = [sys.executable, "-m", "edgesel_server.cli", "--config", str(cfg), "--data-dir", str(data),
           "--export-log", str(out), "--space", "vision"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert rows() == before
    assert len(out.read_text().splitlines()) == 2 + 3


def test_the_sdk_exposes_the_servers_reason(tmp_path: Path) -> None:
    from edgesel_client import AsyncEdgeselClient, EdgeselClient, EdgeselError, RetryPolicy

    cfg = write_config(tmp_path, window=1.0)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with EdgeselClient(
            proc.target, space="vision", retry=RetryPolicy(max_attempts=1), cache_dir=tmp_path
        ) as c:
            with pytest.raises(EdgeselError) as unknown:
                c.select("nope", device_features=PHONE)
            assert unknown.value.code == grpc.StatusCode.NOT_FOUND and unknown.value.reason == "SPACE_UNKNOWN"
            assert unknown.value.metadata == {"field": "space"}
            with pytest.raises(EdgeselError) as bad:
                c.select(device_features={**PHONE, "ram_gb": 1e9})
            assert bad.value.reason == "INVALID_FEATURES"
            sel = c.select(device_features=PHONE)
            wait_for(lambda: time.time() > sel.feedback_deadline.timestamp(), 30)
            with pytest.raises(EdgeselError) as late:
                c.feedback(sel.event_id, reward=0.5)
            assert (
                late.value.code == grpc.StatusCode.FAILED_PRECONDITION
                and late.value.reason == "EVENT_EXPIRED"
            )
            installation = c._state.installation_id
        # The installation id was made once and kept in the cache directory: the next client reuses it.
        assert (tmp_path / "installation_id").read_text().strip() == installation
        with EdgeselClient(proc.target, space="vision", cache_dir=tmp_path) as again:
            assert again._state.installation_id == installation

        async def async_reason() -> str | None:
            async with AsyncEdgeselClient(
                proc.target, space="vision", retry=RetryPolicy(max_attempts=1)
            ) as a:
                try:
                    await a.feedback("0" * 44, reward=0.5)
                except EdgeselError as e:
                    return e.reason
            return None

        import asyncio

        assert asyncio.run(async_reason()) == "EVENT_UNKNOWN"
    finally:
        proc.kill()


def test_thompson_sampling_decisions_are_stored(tmp_path: Path) -> None:
    # Their propensity is NaN (no closed form); SQLite turned it into NULL and refused the row, so every
    # lin_ts decision lived in memory only and its Feedback was NOT_FOUND after a restart.
    cfg = write_config(tmp_path, policy="lin_ts", snapshot_every=1000)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            decision = select(sel_grpc.SelectionServiceStub(ch))
        proc.kill()
        proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
        with grpc.insecure_channel(proc.target) as ch:
            s = sel_grpc.SelectionServiceStub(ch)
            assert feedback(s, decision.event_id, 0.5).status == ACCEPTED
            assert arm_stats(cat_grpc.CatalogServiceStub(ch)).total_updates == 1
        assert not [line for line in proc.stderr_lines if "store write failed" in line]
    finally:
        proc.kill()

"""The `qoe_model` policy through a real server: measurements and `failed` feedback through the SDK, bad
input rejected by name with the state unchanged, and a restart (kill -9) that rebuilds the learned state
bit for bit from the log (SQLite here, Redis in tests/redis)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_client import AsyncEdgeselClient, EdgeselClient, EdgeselError, Preferences, RetryPolicy
from edgesel_server.core import QoeModel
from tests.server.serverproc import ServerProcess, write_config
from tests.server.test_service import PHONE, select, state_bytes, total_updates

NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture
def qoe_server(tmp_path: Path):
    proc = ServerProcess(write_config(tmp_path, policy="qoe_model"), tmp_path / "data").start()
    yield proc
    proc.kill()


def test_failed_feedback_end_to_end_sync_and_async(qoe_server: ServerProcess) -> None:
    with EdgeselClient(qoe_server.target, space="vision", retry=NO_RETRY) as client:
        sel = client.select(device_features=PHONE)
        receipt = sel.feedback(failed=True, failure_reason="out_of_memory")
        assert receipt.outcome.name == "ACCEPTED" and receipt.reward == 0.0  # the space's reward_min
        with pytest.raises(ValueError, match="alone"):
            client.select(device_features=PHONE).feedback(latency_ms=3.0, failed=True)

    async def via_async() -> float:
        async with AsyncEdgeselClient(qoe_server.target, space="vision", retry=NO_RETRY) as client:
            sel = await client.select(device_features=PHONE)
            return (await sel.feedback(failed=True)).reward

    assert asyncio.run(via_async()) == 0.0
    with grpc.insecure_channel(qoe_server.target) as ch:
        cat = cat_grpc.CatalogServiceStub(ch)
        assert total_updates(cat) == 2
        state = QoeModel.from_bytes(state_bytes(cat))
        runs = state.target_stats()["runs"]
        assert runs["n_updates"] == 2 and state.target_stats()["log_latency"]["n_updates"] == 0


@pytest.mark.parametrize(
    ("measurements", "field"),
    [
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"latency_ms": -5.0}, "latency_ms"),
        ({"energy_mj": math.inf}, "energy_mj"),
        ({"failed": True, "latency_ms": 12.0}, "latency_ms"),
        ({"user_rating": 11.0}, "user_rating"),
    ],
)
def test_bad_measurements_are_invalid_argument_and_change_nothing(
    qoe_server: ServerProcess, measurements: dict, field: str
) -> None:
    with grpc.insecure_channel(qoe_server.target) as ch:
        stub, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
        good = select(stub)
        stub.Feedback(
            selection_pb2.FeedbackRequest(
                event_id=good.event_id, measurements=types_pb2.Measurements(latency_ms=30.0, user_rating=4.0)
            ),
            timeout=10,
        )
        before = state_bytes(cat)
        bad = select(stub)
        with pytest.raises(grpc.RpcError) as info:
            stub.Feedback(
                selection_pb2.FeedbackRequest(
                    event_id=bad.event_id, measurements=types_pb2.Measurements(**measurements)
                ),
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (info.value.details() or "")
        assert state_bytes(cat) == before and total_updates(cat) == 1


def test_restart_after_kill_rebuilds_the_learned_state_bit_for_bit(tmp_path: Path) -> None:
    # snapshot_every=7: the restart reads a snapshot and replays the log after it.
    cfg = write_config(tmp_path, policy="qoe_model", snapshot_every=7)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with EdgeselClient(proc.target, space="vision", retry=NO_RETRY) as client:
            for i in range(30):
                device = {**PHONE, "ram_gb": 1.0 + i % 5, "battery_percent": 10.0 + 3 * i}
                sel = client.select(
                    device_features=device, preferences=Preferences(latency_budget_ms=20.0 + i)
                )
                if i % 6 == 5:
                    sel.feedback(failed=True, failure_reason="unsupported_op")
                elif i % 4 == 3:
                    sel.feedback(reward=0.1 + i / 40)
                else:
                    sel.feedback(latency_ms=5.0 + 7 * i, energy_mj=40.0 + i, user_rating=1 + i % 5)
        with grpc.insecure_channel(proc.target) as ch:
            before = state_bytes(cat_grpc.CatalogServiceStub(ch))
    finally:
        proc.kill()
    proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            cat = cat_grpc.CatalogServiceStub(ch)
            assert state_bytes(cat) == before
            assert total_updates(cat) == 30
            stats = QoeModel.from_bytes(before).target_stats()
            # 5 failed (runs only), 5 scalar rewards (rating only), 20 measured (rating, latency, energy,
            # runs)
            assert stats["runs"]["n_updates"] == 25 and stats["rating"]["n_updates"] == 25
            assert stats["log_latency"]["n_updates"] == 20
    finally:
        proc.kill()


def test_scalar_reward_and_old_log_events_still_teach(qoe_server: ServerProcess) -> None:
    with EdgeselClient(qoe_server.target, space="vision", retry=NO_RETRY) as client:
        client.select(device_features=PHONE).feedback(reward=0.7)
        with pytest.raises(EdgeselError):
            client.select(device_features=PHONE).feedback(user_rating=9.0)
    with grpc.insecure_channel(qoe_server.target) as ch:
        cat = cat_grpc.CatalogServiceStub(ch)
        stats = QoeModel.from_bytes(state_bytes(cat)).target_stats()
        assert stats["rating"]["n_updates"] == 1 and stats["runs"]["n_updates"] == 0
        listed = cat.ListSpaces(catalog_pb2.ListSpacesRequest())
        assert {s.name: s.policy for s in listed.spaces}["vision"] == "qoe_model"


def test_preferences_change_the_choice_for_the_same_device(qoe_server: ServerProcess) -> None:
    with EdgeselClient(qoe_server.target, space="vision", retry=NO_RETRY) as client:
        for _ in range(20):  # what each model measures on this phone
            client.select(device_features=PHONE, eligible=["tiny"]).feedback(latency_ms=10.0)
            client.select(device_features=PHONE, eligible=["big"]).feedback(latency_ms=400.0)
        pair = ["tiny", "big"]
        tight = client.select(
            device_features=PHONE, eligible=pair, preferences=Preferences(latency_budget_ms=20)
        )
        loose = client.select(
            device_features=PHONE, eligible=pair, preferences=Preferences(latency_budget_ms=5e3)
        )
        accuracy_first = client.select(
            device_features=PHONE,
            eligible=pair,
            preferences=Preferences(latency_budget_ms=300, qoe_weights={"latency": 0.05, "accuracy": 1.0}),
        )
    assert (tight.model_id, loose.model_id, accuracy_first.model_id) == ("tiny", "big", "big")


def test_a_model_that_failed_on_an_installation_is_not_offered_to_it_again(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, policy="qoe_model", snapshot_every=3)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    mine, other = "a" * 32, "b" * 32

    def pick(stub, installation: str) -> selection_pb2.SelectResponse:
        return select(stub, installation_id=installation, eligible_model_ids=["small", "big"])

    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            first = pick(stub, mine)
            broken = first.model.model_id
            stub.Feedback(
                selection_pb2.FeedbackRequest(
                    event_id=first.event_id, measurements=types_pb2.Measurements(failed=True)
                ),
                timeout=10,
            )
            for _ in range(4):  # also across snapshots (snapshot_every=3)
                d = select(
                    stub, installation_id=mine, eligible_model_ids=["small", "big"], include_ranking=True
                )
                assert [m.model_id for m in d.ranking] != [] and broken not in {m.model_id for m in d.ranking}
                stub.Feedback(selection_pb2.FeedbackRequest(event_id=d.event_id, reward=0.5), timeout=10)
            # Only this model and this installation: when it is the only choice it is still offered.
            assert select(stub, installation_id=mine, eligible_model_ids=[broken]).model.model_id == broken
        proc.kill()
        proc = ServerProcess(cfg, tmp_path / "data", port=proc.port).start()
        with grpc.insecure_channel(proc.target) as ch:
            stub, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            assert broken not in {m.model_id for m in pick_ranking(stub, mine)}
            cat.UpdateModel(
                catalog_pb2.UpdateModelRequest(
                    space="vision", model=types_pb2.Model(model_id=broken, version="2")
                ),
                timeout=10,
            )
            # A new version may run: the installation can get it again (the policy decides).
            offered = {m.model_id for m in pick_ranking(stub, mine)}
            assert broken in offered
            assert broken in {m.model_id for m in pick_ranking(stub, other)}
    finally:
        proc.kill()


def pick_ranking(stub, installation: str) -> list:
    return list(
        select(
            stub, installation_id=installation, eligible_model_ids=["small", "big"], include_ranking=True
        ).ranking
    )


def test_the_ranking_comes_only_when_asked_for(qoe_server: ServerProcess) -> None:
    """selection.proto: "only when include_ranking was set" — qoe_model used to rank (and send) every arm on
    every Select."""
    with grpc.insecure_channel(qoe_server.target) as ch:
        stub = sel_grpc.SelectionServiceStub(ch)
        plain = select(stub)
        assert plain.model.model_id and list(plain.ranking) == []
        ranked = select(stub, include_ranking=True)
        assert len(ranked.ranking) >= 2 and ranked.ranking[0].model_id == ranked.model.model_id

"""Select(defer_activation) + Activate(event_id): a deferred decision is recorded at Select but counts, and
its feedback window opens, only at Activate; one never activated is neither learned nor defaulted.

In-process engines on a real SQLite store for the rules; a real server process for the contract (status
codes and reasons, the SDK) and for kill -9 after an acknowledged Activate.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import selection_pb2, selection_pb2_grpc
from edgesel_client import ActivationOutcome, ActivationReceipt, EdgeselClient
from edgesel_client.errors import EdgeselError
from edgesel_server.engine import Engine
from edgesel_server.errors import (
    ActivationExpired,
    ExpiredEvent,
    NotActivated,
    NotDeferred,
    OtherInstallation,
    UnknownEvent,
)
from edgesel_server.store import base as ev
from tests.server.serverproc import ServerProcess, write_config
from tests.server.test_reward_aggregation import PHONE, make_engine, reward_events

INSTALLATION = "install-0123456789abcdef"


async def selections(engine: Engine) -> dict[str, int]:
    return {a["model_id"]: a["n_selections"] for a in await engine.arm_stats("vision")}


def test_a_deferred_decision_never_activated_is_neither_learned_nor_defaulted(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = make_engine(tmp_path, "first", on_missing="default", retention=1.0)
        try:
            space = engine.spaces["vision"]
            choice = await engine.select("vision", PHONE, defer_activation=True)
            d = choice.decision
            assert d.deferred and not d.activated and d.deadline == d.created + 1.0
            with pytest.raises(NotActivated):
                await engine.feedback(d.event_id, 0.9)
            await engine._expire(space, time.time() + space.cfg.reward_window_s + 5)  # windows, retention
            assert not reward_events(engine)  # no default reward for it
            assert space.stats.never_activated == 1
            assert sum((await selections(engine)).values()) == 0  # it never counted
            await asyncio.sleep(max(0.0, d.deadline - time.time()) + 0.05)
            with pytest.raises(ActivationExpired):
                await engine.activate(d.event_id)
            assert space.bandit.n_updates == 0
        finally:
            await engine.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("aggregation", ["first", "mean"])
def test_activate_opens_the_window_and_counts_the_selection(tmp_path: Path, aggregation: str) -> None:
    async def scenario() -> None:
        engine = make_engine(tmp_path, aggregation, on_missing="default")
        try:
            space = engine.spaces["vision"]
            plain = (await engine.select("vision", PHONE)).decision
            d = (
                await engine.select("vision", PHONE, defer_activation=True, installation_id=INSTALLATION)
            ).decision
            counted = await selections(engine)
            assert counted[plain.model_id] >= 1 and sum(counted.values()) == 1
            with pytest.raises(UnknownEvent):
                await engine.activate("f" * 44)
            with pytest.raises(NotDeferred):
                await engine.activate(plain.event_id)
            with pytest.raises(OtherInstallation):
                await engine.activate(d.event_id, installation_id="another-installation-00")
            before = time.time()
            act = await engine.activate(d.event_id, installation_id=INSTALLATION)
            assert not act.already_activated
            assert before <= act.decision.activated <= time.time()
            assert act.decision.deadline == act.decision.activated + space.cfg.reward_window_s
            again = await engine.activate(d.event_id)  # idempotent: the first activation counts
            assert again.already_activated and again.decision.deadline == act.decision.deadline
            assert sum((await selections(engine)).values()) == 2
            for i, r in enumerate((0.8, 0.4)):
                res = await engine.feedback(d.event_id, r, request_id=f"r{i}")
                assert res.duplicate == (aggregation == "first" and i == 1)
            # The window runs from the Activate: the plain decision closes with it, this one not before.
            await engine._expire(space, act.decision.deadline - 0.001)
            learned = {e.event_id: e.reward for e in reward_events(engine)}
            assert learned.get(plain.event_id) == 0.25  # its own window passed: the default reward
            if aggregation == "first":
                assert learned[d.event_id] == 0.8
            else:
                assert d.event_id not in learned
                await engine._expire(space, act.decision.deadline)
                learned = {e.event_id: e.reward for e in reward_events(engine)}
                assert learned[d.event_id] == statistics.fmean([0.8, 0.4])
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_deferred_and_activated_decisions_survive_a_restart(tmp_path: Path) -> None:
    async def first_life() -> tuple[str, str]:
        engine = make_engine(tmp_path, "mean")
        waiting = (await engine.select("vision", PHONE, defer_activation=True)).decision
        active = (await engine.select("vision", PHONE, defer_activation=True)).decision
        await engine.activate(active.event_id)
        await engine.feedback(active.event_id, 0.3, request_id="a")
        engine.store.close()  # as if the process died
        return waiting.event_id, active.event_id

    async def second_life(waiting: str, active: str) -> None:
        engine = make_engine(tmp_path, "mean")
        try:
            with pytest.raises(NotActivated):
                await engine.feedback(waiting, 0.5)
            assert (await engine.feedback(active, 0.9, request_id="b")).duplicate is False
            assert (await engine.activate(active)).already_activated
            act = await engine.activate(waiting)
            space = engine.spaces["vision"]
            await engine._expire(space, act.decision.deadline)
            learned = {e.event_id: e.reward for e in reward_events(engine)}
            assert learned == {active: statistics.fmean([0.3, 0.9])}
            # `waiting` got no Feedback and the space drops such windows: a close that teaches nothing, after
            # which a Feedback is too late.
            closes = {e.event_id: e.kind for e in engine.store.events_after("vision", 0) if e.event_id}
            assert closes == {active: ev.FEEDBACK, waiting: ev.NO_FEEDBACK}
            with pytest.raises(ExpiredEvent):
                await engine.feedback(waiting, 0.5, request_id="late")
        finally:
            await engine.close()

    asyncio.run(second_life(*asyncio.run(first_life())))


def test_a_retried_deferred_select_gets_the_same_decision(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = make_engine(tmp_path, "first")
        try:
            kw = {"defer_activation": True, "request_id": "s1", "installation_id": INSTALLATION}
            one = await engine.select("vision", PHONE, **kw)
            two = await engine.select("vision", PHONE, **kw)
            assert one.decision.event_id == two.decision.event_id
        finally:
            await engine.close()

    asyncio.run(scenario())


def reason(e: grpc.RpcError) -> str:
    from edgesel_client.errors import error_info

    return error_info(e.trailing_metadata())[0]  # type: ignore[attr-defined]


def test_the_contract_through_a_real_server_and_the_sdk(tmp_path: Path) -> None:
    proc = ServerProcess(write_config(tmp_path, aggregation="mean", window=600.0), tmp_path / "data").start()
    try:
        with EdgeselClient(proc.target, space="vision", installation_id=INSTALLATION) as client:
            sel = client.select(device_features=PHONE, defer_activation=True)
            assert sel.feedback_deadline is None and sel.activation_deadline is not None
            with pytest.raises(EdgeselError) as info:
                sel.feedback(0.7)
            assert (
                info.value.code == grpc.StatusCode.FAILED_PRECONDITION
                and info.value.reason == "NOT_ACTIVATED"
            )
            act = sel.activate()
            assert act.outcome is ActivationOutcome.ACTIVATED and act.feedback_deadline is not None
            again = client.activate(sel.event_id)
            assert again == ActivationReceipt(ActivationOutcome.ALREADY_ACTIVATED, act.feedback_deadline)
            assert sel.feedback(0.7).outcome.value == "accepted"
            assert sel.feedback(0.2).outcome.value == "accepted"  # a second report is not a duplicate
            plain = client.select(device_features=PHONE)
            with pytest.raises(EdgeselError) as info:
                client.activate(plain.event_id)
            assert info.value.reason == "NOT_DEFERRED"
            with pytest.raises(EdgeselError) as info:
                client.activate("0" * 44)
            assert info.value.code == grpc.StatusCode.NOT_FOUND and info.value.reason == "EVENT_UNKNOWN"
            assert client.activate("").outcome is ActivationOutcome.DROPPED  # an offline-cache selection
        with grpc.insecure_channel(proc.target) as ch:
            stub = selection_pb2_grpc.SelectionServiceStub(ch)
            for bad in (
                selection_pb2.ActivateRequest(event_id=""),
                selection_pb2.ActivateRequest(event_id=sel.event_id, installation_id="x"),
            ):
                with pytest.raises(grpc.RpcError) as raw:
                    stub.Activate(bad, timeout=10)
                assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as raw:
                stub.Activate(
                    selection_pb2.ActivateRequest(
                        event_id=sel.event_id, installation_id="someone-else-12345"
                    ),
                    timeout=10,
                )
            assert raw.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason(raw.value) == "EVENT_OTHER_INSTALLATION"
    finally:
        proc.kill()


def test_an_acknowledged_activate_survives_kill9(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, aggregation="first")
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = selection_pb2_grpc.SelectionServiceStub(ch)
            ids = [
                stub.Select(
                    selection_pb2.SelectRequest(space="vision", device_features=PHONE, defer_activation=True)
                ).event_id
                for _ in range(6)
            ]
            deadlines = {}
            for eid in ids[:3]:
                r = stub.Activate(selection_pb2.ActivateRequest(event_id=eid), timeout=10)
                deadlines[eid] = r.feedback_deadline.ToNanoseconds()
        port = proc.port
        proc.kill()
        proc = ServerProcess(cfg, tmp_path / "data", port=port).start()
        with grpc.insecure_channel(proc.target) as ch:
            stub = selection_pb2_grpc.SelectionServiceStub(ch)
            for eid in ids[:3]:
                again = stub.Activate(selection_pb2.ActivateRequest(event_id=eid), timeout=10)
                assert again.already_activated and again.feedback_deadline.ToNanoseconds() == deadlines[eid]
                fb = stub.Feedback(selection_pb2.FeedbackRequest(event_id=eid, reward=0.5), timeout=10)
                assert fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
            for eid in ids[3:]:
                with pytest.raises(grpc.RpcError) as info:
                    stub.Feedback(selection_pb2.FeedbackRequest(event_id=eid, reward=0.5), timeout=10)
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert reason(info.value) == "NOT_ACTIVATED"
    finally:
        proc.kill()

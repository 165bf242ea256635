from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from fake_selection_server import FAST_RECONNECT, FAST_RETRY, FakeSelectionService, LoopbackServer

from edgesel_client import AsyncEdgeselClient, AsyncSelection, EdgeselError, FeedbackOutcome, RetryPolicy


def make_client(target: str, **kwargs: object) -> AsyncEdgeselClient:
    options: dict[str, object] = {
        "space": "image-classification",
        "timeout": 2.0,
        "retry": FAST_RETRY,
        "channel_options": FAST_RECONNECT,
    }
    options.update(kwargs)
    return AsyncEdgeselClient(target, **options)  # type: ignore[arg-type]


async def test_select_round_trip_and_selection_feedback(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    async with make_client(server.target, token="device-token") as client:
        selection = await client.select(eligible=["mobilenet-int8"], include_ranking=True)
        assert isinstance(selection, AsyncSelection)
        assert (selection.event_id, selection.model_id) == ("evt-1", "mobilenet-int8")
        assert [ranked.model_id for ranked in selection.ranking] == ["mobilenet-int8"]
        receipt = await selection.feedback(user_rating=5)
        assert receipt.outcome is FeedbackOutcome.ACCEPTED
        assert receipt.reward == pytest.approx(1.0)
        duplicate = await selection.feedback(reward=0.0)
        assert duplicate.outcome is FeedbackOutcome.DUPLICATE
    assert servicer.select_requests[0].device_features["cpu_cores"] >= 1
    assert {entry["authorization"] for entry in servicer.metadata} == {"Bearer device-token"}


async def test_device_labels_are_detected_overridden_or_given(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    async with make_client(server.target, label_overrides={"form_factor": "board"}) as client:
        await client.select()
        await client.select(device_labels={"os": "android"})
        with pytest.raises(TypeError, match="device label 'os' must be a string"):
            await client.select(device_labels={"os": 1})  # type: ignore[dict-item]
    detected, given = (dict(r.device_labels) for r in servicer.select_requests)
    assert detected["form_factor"] == "board" and detected["os"] and detected["cpu_arch"]
    assert given == {"os": "android"}  # given labels replace detection, like device_features


async def test_select_retries_unavailable_with_backoff(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    servicer.fail_selects = 2
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=1.0, jitter=0.0)
    async with make_client(server.target, retry=retry) as client:
        started = time.monotonic()
        selection = await client.select()
        elapsed = time.monotonic() - started
    assert selection.event_id == "evt-3"
    assert elapsed >= 0.05 + 0.10 - 0.01


async def test_non_retryable_error_raises(server: LoopbackServer, servicer: FakeSelectionService) -> None:
    servicer.fail_selects = 1
    servicer.failure_code = grpc.StatusCode.PERMISSION_DENIED
    async with make_client(server.target, default_model_id="mobilenet-int8") as client:
        with pytest.raises(EdgeselError) as raised:
            await client.select()
    assert raised.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert len(servicer.select_requests) == 1


async def test_offline_fallback_and_queued_feedback(
    idle_server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    async with make_client(idle_server.target, default_model_id="mobilenet-int8") as client:
        default = await client.select()
        assert (default.from_cache, default.model_id, default.event_id) == (True, "mobilenet-int8", "")
        assert (await default.feedback(reward=1.0)).outcome is FeedbackOutcome.DROPPED

        idle_server.start()
        online = await _select_when_reachable(client)
        idle_server.stop()
        # Selections that met the starting server before it listened came from the cache too; how many
        # depends on the machine's load, so count from here.
        from_cache_before = client.stats().selections_from_cache

        cached = await client.select()
        assert (cached.from_cache, cached.model_id, cached.event_id) == (True, online.model_id, "")
        assert (await online.feedback(reward=0.6)).outcome is FeedbackOutcome.QUEUED
        assert await client.flush_feedback(timeout=0.1) == 0

        idle_server.start()
        delivered = 0
        stop_at = time.monotonic() + 5.0
        while delivered < 1 and time.monotonic() < stop_at:
            delivered += await client.flush_feedback()
            await asyncio.sleep(0.05)
        assert delivered == 1
        stats = client.stats()
    assert servicer.delivered_event_ids() == [online.event_id]
    assert from_cache_before >= 1  # the first select (no server yet)
    assert (stats.selections_from_cache, stats.feedback_flushed, stats.feedback_pending) == (
        from_cache_before + 1,
        1,
        0,
    )


async def _select_when_reachable(client: AsyncEdgeselClient) -> AsyncSelection:
    stop_at = time.monotonic() + 5.0
    while True:
        selection = await client.select()
        if not selection.from_cache or time.monotonic() > stop_at:
            assert not selection.from_cache
            return selection
        await asyncio.sleep(0.05)


async def test_queue_bound_and_flush_on_next_success(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    async with make_client(server.target, feedback_queue_size=1) as client:
        first, second = await client.select(), await client.select()
        servicer.fail_feedbacks = 2 * FAST_RETRY.max_attempts
        assert (await first.feedback(reward=0.1)).outcome is FeedbackOutcome.QUEUED
        assert (await second.feedback(reward=0.2)).outcome is FeedbackOutcome.QUEUED
        assert client.stats().feedback_dropped_queue_full == 1
        await client.select()  # succeeds and flushes
        assert len(client.feedback_queue) == 0
    assert servicer.delivered_event_ids() == [second.event_id]


async def test_unreachable_without_fallback_raises(idle_server: LoopbackServer) -> None:
    client = make_client(idle_server.target, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    with pytest.raises(EdgeselError) as raised:
        await client.select()
    await client.close()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RuntimeError, match="closed"):
        await client.select()

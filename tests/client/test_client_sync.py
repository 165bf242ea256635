from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from fake_selection_server import FAST_RECONNECT, FAST_RETRY, FakeSelectionService, LoopbackServer

from edgesel_client import (
    EdgeselClient,
    EdgeselError,
    FeedbackOutcome,
    Preferences,
    RetryPolicy,
    Selection,
)


def make_client(target: str, **kwargs: object) -> EdgeselClient:
    options: dict[str, object] = {
        "space": "image-classification",
        "timeout": 2.0,
        "retry": FAST_RETRY,
        "channel_options": FAST_RECONNECT,
    }
    options.update(kwargs)
    return EdgeselClient(target, **options)  # type: ignore[arg-type]


def wait_until_flushed(client: EdgeselClient, expected: int, seconds: float = 5.0) -> int:
    delivered = 0
    stop_at = time.monotonic() + seconds
    while delivered < expected and time.monotonic() < stop_at:
        delivered += client.flush_feedback(timeout=1.0)
        if delivered < expected:
            time.sleep(0.05)
    return delivered


def test_select_round_trip_and_selection_feedback(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        selection = client.select(
            eligible=["mobilenet-int8", "resnet50-fp16"],
            preferences=Preferences(latency_budget_ms=50.0, qoe_weights={"latency": 2.0}),
            include_ranking=True,
        )
        assert selection.event_id == "evt-1"
        assert selection.model_id == "mobilenet-int8"
        assert selection.version == "3"
        assert selection.artifact_uri.endswith("mobilenet-int8.tflite")
        assert selection.features == {"size_mb": 3.4, "top1_accuracy": 0.70}
        assert selection.metadata == {"format": "tflite"}
        assert (selection.expected_qoe, selection.exploration_bonus, selection.score) == (0.8, 0.1, 0.9)
        assert selection.policy_version == "7"
        assert not selection.from_cache
        assert [ranked.model_id for ranked in selection.ranking] == ["mobilenet-int8", "resnet50-fp16"]
        assert selection.feedback_deadline is not None
        assert selection.feedback_deadline.tzinfo is not None
        assert selection.feedback_deadline > datetime.now(timezone.utc)

        request = servicer.select_requests[0]
        assert request.space == "image-classification"
        assert list(request.eligible_model_ids) == ["mobilenet-int8", "resnet50-fp16"]
        assert request.preferences.HasField("latency_budget_ms")
        assert not request.preferences.HasField("max_model_size_mb")
        assert dict(request.preferences.qoe_weights) == {"latency": 2.0}
        assert request.request_id
        assert request.device_features["cpu_cores"] >= 1  # detected automatically

        receipt = selection.feedback(user_rating=4, latency_ms=31.5)
        assert receipt.outcome is FeedbackOutcome.ACCEPTED
        assert receipt.reward == pytest.approx(0.8)
        measurements = servicer.feedback_requests[0].measurements
        assert measurements.HasField("user_rating") and measurements.HasField("latency_ms")
        assert not measurements.HasField("energy_mj")

        again = client.feedback(selection.event_id, reward=0.1)
        assert again.outcome is FeedbackOutcome.DUPLICATE
        assert again.reward == pytest.approx(0.8)


def test_explicit_device_features_and_reward_feedback(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        selection = client.select(device_features={"cpu_cores": 4, "ram_gb": 2.0})
        assert dict(servicer.select_requests[0].device_features) == {"cpu_cores": 4.0, "ram_gb": 2.0}
        receipt = selection.feedback(0.25)
        assert receipt.outcome is FeedbackOutcome.ACCEPTED
        assert servicer.feedback_requests[0].WhichOneof("qoe") == "reward"
        assert servicer.feedback_requests[0].reward == 0.25


def test_device_overrides_extend_detected_features(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target, device_overrides={"network_mbps": 40.0, "cpu_cores": 64}) as client:
        client.select()
    sent = servicer.select_requests[0].device_features
    assert sent["network_mbps"] == 40.0
    assert sent["cpu_cores"] == 64.0
    assert "ram_gb" in sent


def test_feedback_arguments_are_validated(server: LoopbackServer) -> None:
    with make_client(server.target) as client:
        with pytest.raises(ValueError, match="not both"):
            client.feedback("evt-1", reward=0.5, latency_ms=3.0)
        with pytest.raises(ValueError, match="at least one"):
            client.feedback("evt-1")
        with pytest.raises(ValueError, match="finite"):
            client.feedback("evt-1", reward=math.nan)


def test_bearer_token_is_sent_in_metadata(server: LoopbackServer, servicer: FakeSelectionService) -> None:
    with make_client(server.target, token="s3cret") as client:
        client.select().feedback(reward=1.0)
    assert [entry["authorization"] for entry in servicer.metadata] == ["Bearer s3cret", "Bearer s3cret"]


def test_no_token_means_no_authorization_header(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        client.select()
    assert "authorization" not in servicer.metadata[0]


def test_select_retries_unavailable_with_backoff(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    servicer.fail_selects = 2
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=1.0, multiplier=2.0, jitter=0.0)
    with make_client(server.target, retry=retry) as client:
        started = time.monotonic()
        selection = client.select()
        elapsed = time.monotonic() - started
    assert selection.event_id == "evt-3"
    assert not selection.from_cache
    assert len(servicer.select_requests) == 3
    assert elapsed >= 0.05 + 0.10 - 0.01  # two backoffs: 50 ms, then 100 ms
    # every attempt of one select carries the same request id (lets the server deduplicate)
    assert len({request.request_id for request in servicer.select_requests}) == 1


def test_select_retries_deadline_exceeded_but_feedback_does_not(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    servicer.slow_selects, servicer.slow_select_s = 1, 0.5
    with make_client(server.target, timeout=0.2) as client:
        selection = client.select()
        assert not selection.from_cache
        assert len(servicer.select_requests) == 2


def test_feedback_retries_unavailable(server: LoopbackServer, servicer: FakeSelectionService) -> None:
    with make_client(server.target) as client:
        selection = client.select()
        servicer.fail_feedbacks = 2
        assert selection.feedback(reward=0.5).outcome is FeedbackOutcome.ACCEPTED
    assert len(servicer.feedback_requests) == 3


def test_non_retryable_errors_raise_at_once_without_fallback(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target, default_model_id="mobilenet-int8") as client:
        client.select()
        servicer.fail_selects = 1
        servicer.failure_code = grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(EdgeselError) as raised:
            client.select()
        assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details == "injected failure"
        with pytest.raises(EdgeselError) as unknown:
            client.feedback("evt-unknown", reward=0.5)
        assert unknown.value.code is grpc.StatusCode.NOT_FOUND
        assert len(client.feedback_queue) == 0
    assert len(servicer.select_requests) == 2


def test_unreachable_without_fallback_raises_unavailable(idle_server: LoopbackServer) -> None:
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0.0)
    with make_client(idle_server.target, retry=retry) as client:
        with pytest.raises(EdgeselError) as raised:
            client.select()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert raised.value.is_unavailable


def test_offline_fallback_default_then_last_good(idle_server: LoopbackServer) -> None:
    with make_client(idle_server.target, default_model_id="mobilenet-int8") as client:
        default = client.select()
        assert default.from_cache
        assert default.model_id == "mobilenet-int8"
        assert default.event_id == ""
        assert default.feedback(reward=1.0).outcome is FeedbackOutcome.DROPPED

        idle_server.start()
        online = _select_when_reachable(client, eligible=["resnet50-fp16"])
        assert online.model_id == "resnet50-fp16"
        idle_server.stop()
        # Attempts that met the starting server before it listened were cached too (their number depends
        # on the machine's load): count from here.
        from_cache_before = client.stats().selections_from_cache

        cached = client.select(eligible=["resnet50-fp16"])
        assert cached.from_cache
        assert cached.event_id == ""
        assert cached.model_id == "resnet50-fp16"
        assert cached.artifact_uri == online.artifact_uri
        # the default model is not eligible here and nothing was cached for this set: no fallback
        with pytest.raises(EdgeselError):
            client.select(eligible=["other-model"])
        stats = client.stats()
    assert from_cache_before >= 1 and stats.selections_from_cache == from_cache_before + 1
    assert stats.feedback_dropped_from_cache == 1


def _select_when_reachable(client: EdgeselClient, eligible: list[str]) -> Selection:
    stop_at = time.monotonic() + 5.0
    while True:
        selection = client.select(eligible=eligible)
        if not selection.from_cache or time.monotonic() > stop_at:
            assert not selection.from_cache
            return selection
        time.sleep(0.05)


def test_feedback_is_queued_and_sent_when_the_server_comes_back(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        first = client.select()
        second = client.select()
        server.stop()
        assert first.feedback(reward=0.9).outcome is FeedbackOutcome.QUEUED
        assert second.feedback(latency_ms=12.0).outcome is FeedbackOutcome.QUEUED
        assert client.stats().feedback_pending == 2
        assert client.flush_feedback(timeout=0.1) == 0  # still down: stays queued
        assert len(client.feedback_queue) == 2

        server.start()  # same port
        assert wait_until_flushed(client, expected=2) == 2
        stats = client.stats()
    assert servicer.delivered_event_ids() == [first.event_id, second.event_id]
    assert (stats.feedback_queued, stats.feedback_flushed, stats.feedback_pending) == (2, 2, 0)


def test_next_successful_call_flushes_the_queue(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        selection = client.select()
        servicer.fail_feedbacks = FAST_RETRY.max_attempts  # every attempt of this feedback fails
        assert selection.feedback(reward=0.3).outcome is FeedbackOutcome.QUEUED
        client.select()  # succeeds, then delivers the queued feedback
        assert len(client.feedback_queue) == 0
    assert servicer.delivered_event_ids() == [selection.event_id]


def test_feedback_queue_drops_the_oldest_when_full(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target, feedback_queue_size=2) as client:
        selections = [client.select() for _ in range(3)]
        server.stop()
        for selection in selections:
            assert selection.feedback(reward=0.5).outcome is FeedbackOutcome.QUEUED
        stats = client.stats()
        assert (stats.feedback_pending, stats.feedback_dropped_queue_full) == (2, 1)
        server.start()
        assert wait_until_flushed(client, expected=2) == 2
    assert servicer.delivered_event_ids() == [selections[1].event_id, selections[2].event_id]


def test_queued_feedback_past_its_deadline_is_dropped(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    with make_client(server.target) as client:
        selection = client.select()
        server.stop()
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        receipt = client.feedback(selection.event_id, reward=0.5, feedback_deadline=past)
        assert receipt.outcome is FeedbackOutcome.QUEUED
        server.start()
        assert client.flush_feedback() == 0
        assert client.stats().feedback_dropped_expired == 1
    assert servicer.feedback_requests == []


def test_close_flushes_pending_feedback(server: LoopbackServer, servicer: FakeSelectionService) -> None:
    client = make_client(server.target)
    selection = client.select()
    servicer.fail_feedbacks = FAST_RETRY.max_attempts
    assert selection.feedback(reward=0.7).outcome is FeedbackOutcome.QUEUED
    client.close()
    client.close()  # idempotent
    assert servicer.delivered_event_ids() == [selection.event_id]


def test_select_needs_a_space(server: LoopbackServer) -> None:
    with make_client(server.target, space=None) as client:
        with pytest.raises(ValueError, match="space"):
            client.select()
        assert client.select("other-space").model_id == "resnet50-fp16"


def test_explicit_flush_waits_out_the_reconnect_backoff(
    server: LoopbackServer, servicer: FakeSelectionService
) -> None:
    # grpc's default reconnect backoff: after failing to connect, the channel fails calls fast for a while.
    client = EdgeselClient(server.target, space="s", timeout=3.0, retry=RetryPolicy.no_retries())
    try:
        selection = client.select()
        server.stop()
        assert selection.feedback(reward=0.4).outcome is FeedbackOutcome.QUEUED
        assert client.select().from_cache  # the failed connect puts the channel in reconnect backoff
        server.start()
        assert client.flush_feedback() == 1
    finally:
        client.close(flush=False)
    assert servicer.delivered_event_ids() == [selection.event_id]

"""Everything the sync and asyncio clients share except how they wait: settings, cache, queue, counters."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc

from edgesel.v1 import selection_pb2, types_pb2
from edgesel_client.channel import auth_metadata
from edgesel_client.device import detect_device_features, detect_device_labels
from edgesel_client.installation import load_or_create
from edgesel_client.messages import build_feedback_request, build_select_request
from edgesel_client.offline import (
    ClientStats,
    FeedbackQueue,
    OfflineCounters,
    PendingFeedback,
    SelectionCache,
)
from edgesel_client.preferences import Preferences
from edgesel_client.retry import RetryPolicy
from edgesel_client.selection import BaseSelection

# Queued feedback is worth another try later on these codes; anything else means the server said no.
REQUEUE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ClientState:
    def __init__(
        self,
        *,
        space: str | None,
        token: str | None,
        timeout: float,
        retry: RetryPolicy,
        default_model_id: str | None,
        feedback_queue_size: int,
        device_overrides: Mapping[str, float] | None,
        label_overrides: Mapping[str, str] | None = None,
        installation_id: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.space = space
        self.timeout = timeout
        self.retry = retry
        self.default_model_id = default_model_id
        self.metadata = auth_metadata(token)
        self.device_overrides = dict(device_overrides or {})
        self.label_overrides = dict(label_overrides or {})
        self.cache = SelectionCache()
        self.feedback_queue = FeedbackQueue(feedback_queue_size)
        self.counters = OfflineCounters()
        self.installation_id = installation_id or load_or_create(cache_dir)

    def resolve_space(self, space: str | None) -> str:
        resolved = space if space is not None else self.space
        if not resolved:
            raise ValueError("no space given and the client has no default space")
        return resolved

    def select_request(
        self,
        *,
        space: str,
        device_features: Mapping[str, float] | None,
        eligible: Sequence[str] | None,
        preferences: Preferences | types_pb2.Preferences | None,
        include_ranking: bool,
        request_id: str | None,
        device_labels: Mapping[str, str] | None = None,
        defer_activation: bool = False,
    ) -> selection_pb2.SelectRequest:
        features = (
            detect_device_features(self.device_overrides) if device_features is None else device_features
        )
        labels = detect_device_labels(self.label_overrides) if device_labels is None else device_labels
        return build_select_request(
            space=space,
            device_features=features,
            eligible=eligible,
            preferences=preferences,
            request_id=request_id or uuid.uuid4().hex,
            include_ranking=include_ranking,
            device_labels=labels,
            installation_id=self.installation_id,
            defer_activation=defer_activation,
        )

    def remember(self, space: str, eligible: Sequence[str] | None, selection: BaseSelection) -> None:
        self.cache.remember(space, eligible, selection)

    def offline_fields(self, space: str, eligible: Sequence[str] | None) -> dict[str, Any] | None:
        """Fields of the offline fallback selection, or None when there is none."""
        fallback = self.cache.fallback(space, eligible, self.default_model_id)
        if fallback is None:
            return None
        self.counters.selections_from_cache += 1
        return {name: getattr(fallback, name) for name in fallback.__dataclass_fields__}

    def feedback_request(
        self,
        event_id: str,
        reward: float | None,
        *,
        user_rating: float | None,
        latency_ms: float | None,
        energy_mj: float | None,
        accuracy: float | None,
        failed: bool = False,
        failure_reason: str | None = None,
    ) -> selection_pb2.FeedbackRequest:
        request = build_feedback_request(
            event_id,
            reward,
            user_rating=user_rating,
            latency_ms=latency_ms,
            energy_mj=energy_mj,
            accuracy=accuracy,
            failed=failed,
            failure_reason=failure_reason,
        )
        # One id per report, kept by its retries and the queue: where the space aggregates several Feedbacks
        # per decision, the server counts each report once (and two equal ratings twice).
        request.request_id = uuid.uuid4().hex
        return request

    def queue_feedback(self, request: selection_pb2.FeedbackRequest, deadline: datetime | None) -> None:
        self.feedback_queue.put(PendingFeedback(request=request, deadline=deadline))
        self.counters.feedback_queued += 1

    def stats(self) -> ClientStats:
        return self.counters.snapshot(self.feedback_queue)

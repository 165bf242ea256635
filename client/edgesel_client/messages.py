"""Translation between the SDK's Python types and the edgesel.v1 protobuf messages."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import Any

from edgesel.v1 import selection_pb2, types_pb2
from edgesel_client.preferences import Preferences
from edgesel_client.selection import (
    ActivationOutcome,
    ActivationReceipt,
    FeedbackOutcome,
    FeedbackReceipt,
    RankedModel,
)


def build_select_request(
    *,
    space: str,
    device_features: Mapping[str, float],
    eligible: Sequence[str] | None,
    preferences: Preferences | types_pb2.Preferences | None,
    request_id: str,
    include_ranking: bool,
    device_labels: Mapping[str, str] | None = None,
    installation_id: str = "",
    defer_activation: bool = False,
) -> selection_pb2.SelectRequest:
    if isinstance(eligible, str):
        raise TypeError("eligible must be a sequence of model ids, not a single string")
    for name, label in (device_labels or {}).items():
        if not isinstance(label, str):
            raise TypeError(f"device label {name!r} must be a string, got {label!r}")
    request = selection_pb2.SelectRequest(
        space=space,
        device_features={name: float(value) for name, value in device_features.items()},
        device_labels=dict(device_labels or {}),
        eligible_model_ids=list(eligible or ()),
        request_id=request_id,
        include_ranking=include_ranking,
        installation_id=installation_id,
        defer_activation=defer_activation,
    )
    if isinstance(preferences, Preferences):
        request.preferences.CopyFrom(preferences.to_proto())
    elif preferences is not None:
        request.preferences.CopyFrom(preferences)
    return request


FAILURE_REASON_CODES = {
    "load_error": types_pb2.FAILURE_REASON_LOAD_ERROR,
    "out_of_memory": types_pb2.FAILURE_REASON_OUT_OF_MEMORY,
    "unsupported_op": types_pb2.FAILURE_REASON_UNSUPPORTED_OP,
    "timeout": types_pb2.FAILURE_REASON_TIMEOUT,
    "other": types_pb2.FAILURE_REASON_OTHER,
}


def build_feedback_request(
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
    """Either a ready-made reward or at least one measurement, never both (the contract's ``oneof qoe``);
    or ``failed`` alone (with an optional reason)."""
    measured = {
        "user_rating": user_rating,
        "latency_ms": latency_ms,
        "energy_mj": energy_mj,
        "accuracy": accuracy,
    }
    present = {name: float(value) for name, value in measured.items() if value is not None}
    for name, value in [*present.items(), *([("reward", float(reward))] if reward is not None else [])]:
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if failure_reason is not None and not failed:
        raise ValueError("failure_reason needs failed=True")
    if failed:
        if reward is not None or present:
            raise ValueError("failed=True is reported alone: a model that did not run has no measurements")
        failure = types_pb2.Measurements(failed=True)
        if failure_reason is not None:
            if failure_reason not in FAILURE_REASON_CODES:
                raise ValueError(f"failure_reason must be one of {', '.join(FAILURE_REASON_CODES)}")
            failure.failure_reason = FAILURE_REASON_CODES[failure_reason]
        return selection_pb2.FeedbackRequest(event_id=event_id, measurements=failure)
    if reward is not None and present:
        raise ValueError("give either reward or measurements, not both")
    if reward is not None:
        return selection_pb2.FeedbackRequest(event_id=event_id, reward=float(reward))
    if not present:
        raise ValueError("give a reward or at least one measurement")
    measurements = types_pb2.Measurements()
    for name, value in present.items():
        setattr(measurements, name, value)
    return selection_pb2.FeedbackRequest(event_id=event_id, measurements=measurements)


def selection_fields(response: selection_pb2.SelectResponse) -> dict[str, Any]:
    """Keyword arguments for Selection / AsyncSelection (everything but the client)."""
    model = response.model
    deadline = (
        response.feedback_deadline.ToDatetime(tzinfo=timezone.utc)
        if response.HasField("feedback_deadline")
        else None
    )
    return {
        "event_id": response.event_id,
        "model_id": model.model_id,
        "version": model.version,
        "artifact_uri": model.artifact_uri,
        "features": dict(model.features),
        "metadata": dict(model.metadata),
        "expected_qoe": response.expected_qoe,
        "exploration_bonus": response.exploration_bonus,
        "score": response.score,
        "exploratory": response.exploratory,
        "feedback_deadline": deadline,
        "policy_version": response.policy_version,
        "ranking": tuple(
            RankedModel(
                model_id=ranked.model_id,
                expected_qoe=ranked.expected_qoe,
                exploration_bonus=ranked.exploration_bonus,
                score=ranked.score,
            )
            for ranked in response.ranking
        ),
        "request_user_rating": response.request_user_rating,
        "from_cache": False,
        "activation_deadline": (
            response.activation_deadline.ToDatetime(tzinfo=timezone.utc)
            if response.HasField("activation_deadline")
            else None
        ),
    }


def activation_receipt(response: selection_pb2.ActivateResponse) -> ActivationReceipt:
    outcome = (
        ActivationOutcome.ALREADY_ACTIVATED if response.already_activated else ActivationOutcome.ACTIVATED
    )
    return ActivationReceipt(
        outcome=outcome, feedback_deadline=response.feedback_deadline.ToDatetime(tzinfo=timezone.utc)
    )


def feedback_receipt(response: selection_pb2.FeedbackResponse) -> FeedbackReceipt:
    outcome = (
        FeedbackOutcome.DUPLICATE
        if response.status == selection_pb2.FEEDBACK_STATUS_DUPLICATE
        else FeedbackOutcome.ACCEPTED
    )
    return FeedbackReceipt(outcome=outcome, reward=response.reward)

"""What Select returns to the app, and what Feedback reports back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesel_client.aio import AsyncEdgeselClient
    from edgesel_client.client import EdgeselClient


class FeedbackOutcome(enum.Enum):
    """What happened to one piece of feedback."""

    ACCEPTED = "accepted"
    """The server applied it."""
    DUPLICATE = "duplicate"
    """The server had already applied feedback for this event id; nothing changed."""
    QUEUED = "queued"
    """The server was unreachable; it waits in the client's feedback queue for the next successful call."""
    DROPPED = "dropped"
    """Discarded locally: the selection came from the offline cache, so the server knows no such event."""


@dataclass(frozen=True)
class FeedbackReceipt:
    outcome: FeedbackOutcome
    reward: float | None = None
    """The reward the server applied (ACCEPTED / DUPLICATE), else None."""


class ActivationOutcome(enum.Enum):
    """What happened to an Activate."""

    ACTIVATED = "activated"
    """The decision counts from now on; its feedback window is open until ``feedback_deadline``."""
    ALREADY_ACTIVATED = "already_activated"
    """It had been activated before (e.g. a retry after a lost reply); ``feedback_deadline`` is that one's."""
    DROPPED = "dropped"
    """Nothing sent: the selection came from the offline cache, so the server knows no such event."""


@dataclass(frozen=True)
class ActivationReceipt:
    outcome: ActivationOutcome
    feedback_deadline: datetime | None = None
    """Feedback for the decision is taken until this instant (UTC); None when DROPPED."""


@dataclass(frozen=True)
class RankedModel:
    """One eligible model as the policy scored it (``score = expected_qoe + exploration_bonus``)."""

    model_id: str
    expected_qoe: float
    exploration_bonus: float
    score: float


@dataclass(frozen=True)
class BaseSelection:
    """The model chosen for this device and why; shared by the sync and asyncio flavours."""

    event_id: str
    """Identifies the decision for feedback; "" when the selection came from the offline fallback."""
    model_id: str
    version: str
    artifact_uri: str
    features: Mapping[str, float]
    metadata: Mapping[str, str]
    expected_qoe: float
    exploration_bonus: float
    score: float
    exploratory: bool
    """True when the policy chose this model to learn about it rather than because it looks best."""
    feedback_deadline: datetime | None
    """Feedback after this instant (UTC) is rejected by the server; None if unknown."""
    policy_version: str
    ranking: tuple[RankedModel, ...] = ()
    request_user_rating: bool = False
    """The server would especially like a user rating for this decision (the learner is unsure)."""
    from_cache: bool = False
    """True when the server was unreachable and this is the last good selection or the default model."""
    activation_deadline: datetime | None = None
    """Only for ``select(defer_activation=True)``: call ``activate`` before this instant (UTC). Such a
    selection has no ``feedback_deadline`` yet; ``activate`` returns it."""


@dataclass(frozen=True)
class Selection(BaseSelection):
    """A selection made through EdgeselClient; ``feedback`` reports its QoE through that client."""

    client: EdgeselClient | None = field(default=None, repr=False, compare=False)

    def activate(self) -> ActivationReceipt:
        """The model is downloaded and in use: see EdgeselClient.activate."""
        if self.client is None:
            raise RuntimeError("this Selection is not bound to a client")
        return self.client.activate(self.event_id)

    def feedback(
        self,
        reward: float | None = None,
        *,
        user_rating: float | None = None,
        latency_ms: float | None = None,
        energy_mj: float | None = None,
        accuracy: float | None = None,
        failed: bool = False,
        failure_reason: str | None = None,
    ) -> FeedbackReceipt:
        """Report either a ready-made ``reward``, raw measurements, or ``failed=True`` (the model did not run;
        ``failure_reason`` one of load_error, out_of_memory, unsupported_op, timeout, other); see
        EdgeselClient.feedback."""
        if self.client is None:
            raise RuntimeError("this Selection is not bound to a client")
        return self.client.feedback(
            self.event_id,
            reward,
            user_rating=user_rating,
            latency_ms=latency_ms,
            energy_mj=energy_mj,
            accuracy=accuracy,
            failed=failed,
            failure_reason=failure_reason,
            feedback_deadline=self.feedback_deadline,
        )


@dataclass(frozen=True)
class AsyncSelection(BaseSelection):
    """A selection made through AsyncEdgeselClient; ``await selection.feedback(...)`` reports its QoE."""

    client: AsyncEdgeselClient | None = field(default=None, repr=False, compare=False)

    async def activate(self) -> ActivationReceipt:
        """The model is downloaded and in use: see AsyncEdgeselClient.activate."""
        if self.client is None:
            raise RuntimeError("this AsyncSelection is not bound to a client")
        return await self.client.activate(self.event_id)

    async def feedback(
        self,
        reward: float | None = None,
        *,
        user_rating: float | None = None,
        latency_ms: float | None = None,
        energy_mj: float | None = None,
        accuracy: float | None = None,
        failed: bool = False,
        failure_reason: str | None = None,
    ) -> FeedbackReceipt:
        """Report either a ready-made ``reward`` or raw measurements (see AsyncEdgeselClient.feedback)."""
        if self.client is None:
            raise RuntimeError("this AsyncSelection is not bound to a client")
        return await self.client.feedback(
            self.event_id,
            reward,
            user_rating=user_rating,
            latency_ms=latency_ms,
            energy_mj=energy_mj,
            accuracy=accuracy,
            failed=failed,
            failure_reason=failure_reason,
            feedback_deadline=self.feedback_deadline,
        )

"""The asyncio flavour of the client: same behaviour as EdgeselClient, awaitable methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from edgesel.v1 import selection_pb2, selection_pb2_grpc, types_pb2
from edgesel_client.channel import PemSource, channel_credentials, merge_options, wants_tls
from edgesel_client.client_state import REQUEUE_CODES, ClientState
from edgesel_client.errors import EdgeselError
from edgesel_client.messages import feedback_receipt, selection_fields
from edgesel_client.offline import ClientStats, FeedbackQueue
from edgesel_client.preferences import Preferences
from edgesel_client.retry import (
    FEEDBACK_RETRYABLE_CODES,
    SELECT_RETRYABLE_CODES,
    RetryPolicy,
    call_with_retry_async,
)
from edgesel_client.selection import AsyncSelection, FeedbackOutcome, FeedbackReceipt


class AsyncEdgeselClient:
    """asyncio twin of EdgeselClient (same arguments and offline behaviour); use ``async with``.

    The grpc.aio channel is created on first use, inside the running event loop.
    """

    def __init__(
        self,
        target: str,
        *,
        space: str | None = None,
        token: str | None = None,
        root_certificates: PemSource | None = None,
        private_key: PemSource | None = None,
        certificate_chain: PemSource | None = None,
        secure: bool | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        default_model_id: str | None = None,
        feedback_queue_size: int = 1000,
        device_overrides: Mapping[str, float] | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        label_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self._state = ClientState(
            space=space,
            token=token,
            timeout=timeout,
            retry=retry if retry is not None else RetryPolicy(),
            default_model_id=default_model_id,
            feedback_queue_size=feedback_queue_size,
            device_overrides=device_overrides,
            label_overrides=label_overrides,
        )
        self._options = merge_options(channel_options)
        self._credentials = (
            channel_credentials(root_certificates, private_key, certificate_chain)
            if wants_tls(secure, root_certificates, private_key, certificate_chain)
            else None
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: selection_pb2_grpc.SelectionServiceStub | None = None
        self._closed = False

    @property
    def _stub(self) -> selection_pb2_grpc.SelectionServiceStub:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._stub_instance is None:
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            self._stub_instance = selection_pb2_grpc.SelectionServiceStub(self._channel)
        return self._stub_instance

    @property
    def feedback_queue(self) -> FeedbackQueue:
        return self._state.feedback_queue

    def stats(self) -> ClientStats:
        return self._state.stats()

    async def select(
        self,
        space: str | None = None,
        *,
        device_features: Mapping[str, float] | None = None,
        eligible: Sequence[str] | None = None,
        preferences: Preferences | types_pb2.Preferences | None = None,
        include_ranking: bool = False,
        request_id: str | None = None,
        device_labels: Mapping[str, str] | None = None,
    ) -> AsyncSelection:
        """See EdgeselClient.select."""
        state = self._state
        resolved_space = state.resolve_space(space)
        request = state.select_request(
            space=resolved_space,
            device_features=device_features,
            eligible=eligible,
            preferences=preferences,
            include_ranking=include_ranking,
            request_id=request_id,
            device_labels=device_labels,
        )
        stub = self._stub
        try:
            response: selection_pb2.SelectResponse = await call_with_retry_async(
                lambda: stub.Select(request, timeout=state.timeout, metadata=state.metadata),
                state.retry,
                SELECT_RETRYABLE_CODES,
            )
        except EdgeselError as error:
            if not error.is_unavailable:
                raise
            fields = state.offline_fields(resolved_space, eligible)
            if fields is None:
                raise
            return AsyncSelection(**fields, client=self)
        selection = AsyncSelection(**selection_fields(response), client=self)
        state.remember(resolved_space, eligible, selection)
        await self._flush_if_pending()
        return selection

    async def feedback(
        self,
        event_id: str,
        reward: float | None = None,
        *,
        user_rating: float | None = None,
        latency_ms: float | None = None,
        energy_mj: float | None = None,
        accuracy: float | None = None,
        failed: bool = False,
        failure_reason: str | None = None,
        feedback_deadline: datetime | None = None,
    ) -> FeedbackReceipt:
        """See EdgeselClient.feedback."""
        state = self._state
        request = state.feedback_request(
            event_id,
            reward,
            user_rating=user_rating,
            latency_ms=latency_ms,
            energy_mj=energy_mj,
            accuracy=accuracy,
            failed=failed,
            failure_reason=failure_reason,
        )
        if not event_id:
            state.counters.feedback_dropped_from_cache += 1
            return FeedbackReceipt(outcome=FeedbackOutcome.DROPPED)
        stub = self._stub
        try:
            response: selection_pb2.FeedbackResponse = await call_with_retry_async(
                lambda: stub.Feedback(request, timeout=state.timeout, metadata=state.metadata),
                state.retry,
                FEEDBACK_RETRYABLE_CODES,
            )
        except EdgeselError as error:
            if error.code not in REQUEUE_CODES:
                raise
            state.queue_feedback(request, feedback_deadline)
            return FeedbackReceipt(outcome=FeedbackOutcome.QUEUED)
        await self._flush_if_pending()
        return feedback_receipt(response)

    async def flush_feedback(self, timeout: float | None = None) -> int:
        """See EdgeselClient.flush_feedback."""
        state = self._state
        stub = self._stub
        wait = state.timeout if timeout is None else timeout
        pending = state.feedback_queue.take_all()
        delivered = 0
        for index, item in enumerate(pending):
            if item.expired():
                state.counters.feedback_dropped_expired += 1
                continue
            try:
                await stub.Feedback(item.request, timeout=wait, metadata=state.metadata, wait_for_ready=True)
            except grpc.RpcError as rpc_error:
                if EdgeselError.from_rpc_error(rpc_error).code in REQUEUE_CODES:
                    state.feedback_queue.put_back(pending[index:])
                    break
                state.counters.feedback_rejected += 1
                continue
            delivered += 1
            state.counters.feedback_flushed += 1
        return delivered

    async def _flush_if_pending(self) -> None:
        if len(self._state.feedback_queue):
            await self.flush_feedback()

    async def close(self, *, flush: bool = True) -> None:
        """Close the channel; if ``flush``, first try once more to send queued feedback (flush_feedback)."""
        if self._closed:
            return
        try:
            if flush and self._channel is not None:
                await self._flush_if_pending()
        finally:
            self._closed = True
            if self._channel is not None:
                await self._channel.close()

    async def __aenter__(self) -> AsyncEdgeselClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

"""The blocking client device apps embed, EdgeselClient.

Generated from aio.py (AsyncEdgeselClient) by scripts/unasync.py: do not edit; edit aio.py and run
``python scripts/unasync.py``. scripts/test.sh checks that this file is up to date.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc

from edgesel.v1 import selection_pb2, selection_pb2_grpc, types_pb2
from edgesel_client.channel import PemSource, channel_credentials, merge_options, wants_tls
from edgesel_client.client_state import REQUEUE_CODES, ClientState
from edgesel_client.errors import EdgeselError
from edgesel_client.messages import activation_receipt, feedback_receipt, selection_fields
from edgesel_client.offline import ClientStats, FeedbackQueue
from edgesel_client.preferences import Preferences
from edgesel_client.retry import (
    FEEDBACK_RETRYABLE_CODES,
    SELECT_RETRYABLE_CODES,
    RetryPolicy,
    call_with_retry,
)
from edgesel_client.selection import (
    ActivationOutcome,
    ActivationReceipt,
    FeedbackOutcome,
    FeedbackReceipt,
    Selection,
)


class EdgeselClient:
    """Asks an edgesel server which model this device should run, and reports back how it went.

    ``target`` is "host:port". TLS is used when ``secure=True`` or any of ``root_certificates`` (CA bundle),
    ``private_key`` / ``certificate_chain`` (mutual TLS) is given, each as PEM bytes or a file path.
    ``token`` is sent as ``authorization: Bearer <token>``. ``timeout`` bounds each attempt, in seconds.

    When the server stays unreachable after ``retry``, ``select`` answers from the offline cache (the last
    good selection for the same space and eligible set, else ``default_model_id``) with ``from_cache=True``,
    and ``feedback`` queues the report (at most ``feedback_queue_size``, oldest dropped) until the next
    successful call or ``flush_feedback()``. The channel is created on first use (for asyncio: inside the
    running event loop). One client may be shared by threads (the blocking client) or by the tasks of one
    event loop (the asyncio client).
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
        installation_id: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
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
            installation_id=installation_id,
            cache_dir=cache_dir,
        )
        self._options = merge_options(channel_options)
        self._credentials = (
            channel_credentials(root_certificates, private_key, certificate_chain)
            if wants_tls(secure, root_certificates, private_key, certificate_chain)
            else None
        )
        self._channel: grpc.Channel | None = None
        self._stub_instance: selection_pb2_grpc.SelectionServiceStub | None = None
        self._channel_lock = threading.Lock()  # never held across an await
        self._closed = False

    @property
    def _stub(self) -> selection_pb2_grpc.SelectionServiceStub:
        with self._channel_lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._stub_instance is None:
                if self._credentials is not None:
                    credentials = self._credentials
                    self._channel = grpc.secure_channel(self.target, credentials, options=self._options)
                else:
                    self._channel = grpc.insecure_channel(self.target, options=self._options)
                self._stub_instance = selection_pb2_grpc.SelectionServiceStub(self._channel)
            return self._stub_instance

    @property
    def feedback_queue(self) -> FeedbackQueue:
        return self._state.feedback_queue

    def stats(self) -> ClientStats:
        return self._state.stats()

    def select(
        self,
        space: str | None = None,
        *,
        device_features: Mapping[str, float] | None = None,
        eligible: Sequence[str] | None = None,
        preferences: Preferences | types_pb2.Preferences | None = None,
        include_ranking: bool = False,
        request_id: str | None = None,
        device_labels: Mapping[str, str] | None = None,
        defer_activation: bool = False,
    ) -> Selection:
        """Pick a model for this device.

        ``device_features=None`` detects them (see edgesel_client.device) merged with ``device_overrides``;
        ``device_labels`` are the categorical features (strings), and ``None`` detects them likewise
        (``detect_device_labels``) merged with ``label_overrides``; ``eligible`` restricts the choice to
        these model ids. ``defer_activation=True``: the decision counts only once ``activate`` says the model
        is in use (downloaded and loaded); Feedback before that is refused (NOT_ACTIVATED). Raises
        EdgeselError if the server refuses, or is unreachable and there is no offline fallback.
        """
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
            defer_activation=defer_activation,
        )
        stub = self._stub
        try:
            response: selection_pb2.SelectResponse = call_with_retry(
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
            return Selection(**fields, client=self)
        selection = Selection(**selection_fields(response), client=self)
        state.remember(resolved_space, eligible, selection)
        self._flush_if_pending()
        return selection

    def activate(self, event_id: str) -> ActivationReceipt:
        """Tell the server that the model of the deferred decision ``event_id`` (from
        ``select(defer_activation=True)``) is in use now: the decision counts from here and its feedback
        window opens (``feedback_deadline``).
        Safe to retry (ALREADY_ACTIVATED); DROPPED for a cached selection (``event_id == ""``). Raises
        EdgeselError when the server refuses (unknown event, not deferred, past its activation deadline) or
        stays unreachable."""
        if not event_id:
            return ActivationReceipt(outcome=ActivationOutcome.DROPPED)
        state = self._state
        request = selection_pb2.ActivateRequest(event_id=event_id, installation_id=state.installation_id)
        stub = self._stub
        response: selection_pb2.ActivateResponse = call_with_retry(
            lambda: stub.Activate(request, timeout=state.timeout, metadata=state.metadata),
            state.retry,
            FEEDBACK_RETRYABLE_CODES,
        )
        return activation_receipt(response)

    def feedback(
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
        """Report the QoE of decision ``event_id``: a ``reward`` or measurements, not both; or ``failed=True``
        when the model did not run on this device (optionally with ``failure_reason``: load_error,
        out_of_memory, unsupported_op, timeout or other), alone: the server scores it the space's minimum.

        Returns QUEUED when the server is unreachable (sent later), DROPPED for a cached selection
        (``event_id == ""``); raises EdgeselError when the server rejects it (e.g. unknown or expired event).
        ``feedback_deadline`` lets the queue discard the report once the server would refuse it anyway.
        """
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
            response: selection_pb2.FeedbackResponse = call_with_retry(
                lambda: stub.Feedback(request, timeout=state.timeout, metadata=state.metadata),
                state.retry,
                FEEDBACK_RETRYABLE_CODES,
            )
        except EdgeselError as error:
            if error.code not in REQUEUE_CODES:
                raise
            state.queue_feedback(request, feedback_deadline)
            return FeedbackReceipt(outcome=FeedbackOutcome.QUEUED)
        self._flush_if_pending()
        return feedback_receipt(response)

    def flush_feedback(self, timeout: float | None = None) -> int:
        """Send queued feedback now; returns how many reports the server took (accepted or duplicate).

        Each report waits up to ``timeout`` seconds (default: the client's) for the channel to (re)connect,
        so a server that just came back is not missed while grpc's reconnect backoff runs; the first report
        that still finds it unreachable stops the flush and the rest stay queued. Reports the server refuses
        (e.g. unknown or expired event) are discarded and counted in ``stats().feedback_rejected``.
        """
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
                stub.Feedback(item.request, timeout=wait, metadata=state.metadata, wait_for_ready=True)
            except grpc.RpcError as rpc_error:
                if EdgeselError.from_rpc_error(rpc_error).code in REQUEUE_CODES:
                    state.feedback_queue.put_back(pending[index:])
                    break
                state.counters.feedback_rejected += 1
                continue
            delivered += 1
            state.counters.feedback_flushed += 1
        return delivered

    def _flush_if_pending(self) -> None:
        if len(self._state.feedback_queue):
            self.flush_feedback()

    def close(self, *, flush: bool = True) -> None:
        """Close the channel; if ``flush``, first try once more to send queued feedback (flush_feedback)."""
        if self._closed:
            return
        try:
            if flush and self._channel is not None:  # without a channel nothing was ever queued
                self._flush_if_pending()
        finally:
            with self._channel_lock:
                self._closed = True
                channel, self._channel = self._channel, None
            if channel is not None:
                channel.close()

    def __enter__(self) -> EdgeselClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

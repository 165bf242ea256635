"""A real gRPC server on loopback with a small fake SelectionService, for the client SDK tests."""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from edgesel.v1 import selection_pb2, selection_pb2_grpc, types_pb2
from edgesel_client import RetryPolicy

MODELS = {
    "mobilenet-int8": types_pb2.Model(
        model_id="mobilenet-int8",
        version="3",
        artifact_uri="https://models.example/mobilenet-int8.tflite",
        features={"size_mb": 3.4, "top1_accuracy": 0.70},
        metadata={"format": "tflite"},
    ),
    "resnet50-fp16": types_pb2.Model(
        model_id="resnet50-fp16",
        version="1",
        artifact_uri="https://models.example/resnet50-fp16.onnx",
        features={"size_mb": 51.0, "top1_accuracy": 0.80},
        metadata={"format": "onnx"},
    ),
}

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.02, max_backoff=0.05, multiplier=2.0, jitter=0.0)
# Let a channel notice a server that (re)appears within ~0.1 s instead of grpc's default of seconds.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
)


@dataclass
class FakeSelectionService(selection_pb2_grpc.SelectionServiceServicer):
    """Picks the first eligible model (else resnet50-fp16), deduplicates feedback by event id."""

    fail_selects: int = 0
    """The next this-many Select calls abort with ``failure_code``."""
    fail_feedbacks: int = 0
    failure_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    slow_selects: int = 0
    """The next this-many Select calls sleep ``slow_select_s`` first (to provoke DEADLINE_EXCEEDED)."""
    slow_select_s: float = 0.0
    select_requests: list[selection_pb2.SelectRequest] = field(default_factory=list)
    feedback_requests: list[selection_pb2.FeedbackRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    applied: dict[str, float] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Select(
        self, request: selection_pb2.SelectRequest, context: grpc.ServicerContext
    ) -> selection_pb2.SelectResponse:
        with self.lock:
            self.select_requests.append(request)
            self.metadata.append({key: str(value) for key, value in context.invocation_metadata()})
            failing = self.fail_selects > 0
            self.fail_selects -= int(failing)
            slow = self.slow_selects > 0
            self.slow_selects -= int(slow)
            event_id = f"evt-{len(self.select_requests)}"
        if slow:
            time.sleep(self.slow_select_s)
        if failing:
            context.abort(self.failure_code, "injected failure")
        candidates = list(request.eligible_model_ids) or ["resnet50-fp16", "mobilenet-int8"]
        if candidates[0] not in MODELS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {candidates[0]}")
        with self.lock:
            self.issued.add(event_id)
        deadline = Timestamp()
        deadline.GetCurrentTime()
        deadline.seconds += 60
        ranking = [
            types_pb2.RankedModel(
                model_id=model_id, expected_qoe=0.8 - 0.1 * i, exploration_bonus=0.1, score=0.9 - 0.1 * i
            )
            for i, model_id in enumerate(candidates)
        ]
        return selection_pb2.SelectResponse(
            event_id=event_id,
            model=MODELS[candidates[0]],
            expected_qoe=0.8,
            exploration_bonus=0.1,
            score=0.9,
            exploratory=False,
            feedback_deadline=deadline,
            policy_version="7",
            ranking=ranking if request.include_ranking else [],
        )

    def Feedback(
        self, request: selection_pb2.FeedbackRequest, context: grpc.ServicerContext
    ) -> selection_pb2.FeedbackResponse:
        with self.lock:
            self.feedback_requests.append(request)
            self.metadata.append({key: str(value) for key, value in context.invocation_metadata()})
            failing = self.fail_feedbacks > 0
            self.fail_feedbacks -= int(failing)
        if failing:
            context.abort(self.failure_code, "injected failure")
        if request.event_id not in self.issued:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown event {request.event_id}")
        with self.lock:
            if request.event_id in self.applied:
                return selection_pb2.FeedbackResponse(
                    status=selection_pb2.FEEDBACK_STATUS_DUPLICATE, reward=self.applied[request.event_id]
                )
            if request.WhichOneof("qoe") == "reward":
                reward = request.reward
            else:
                measured = request.measurements
                reward = measured.user_rating / 5.0 if measured.HasField("user_rating") else 0.5
            self.applied[request.event_id] = reward
        return selection_pb2.FeedbackResponse(status=selection_pb2.FEEDBACK_STATUS_ACCEPTED, reward=reward)

    def delivered_event_ids(self) -> list[str]:
        return list(self.applied)


class LoopbackServer:
    """A real grpc.server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, servicer: FakeSelectionService) -> None:
        self.servicer = servicer
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> LoopbackServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        selection_pb2_grpc.add_SelectionServiceServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port if port is None else port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None


def unused_port() -> int:
    """A loopback port with nothing listening on it (the OS just handed it out and it was released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

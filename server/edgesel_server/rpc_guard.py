"""The guard around every edgesel RPC: authenticate, rate-limit, parse, observe, log, drain.

`RpcGuard.register` installs a service's handlers already wrapped, once, at start-up. (A grpc.aio
ServerInterceptor would do the same per call and cost about a tenth of Select's throughput.) Each wrapped
handler receives raw bytes and parses them itself, so bytes that are not a valid request message get
INVALID_ARGUMENT instead of the runtime's UNKNOWN, and runs the servicer with the caller's principal in
`security.PRINCIPAL`. Health and reflection are registered unwrapped and stay open; edgesel's services need a
token when auth is on: device tokens may call SelectionService only, admin tokens anything.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from edgesel.v1 import selection_pb2
from edgesel_server.config import ServerConfig
from edgesel_server.errors import (
    AdminTokenRequired,
    MalformedRequest,
    RateLimited,
    ShuttingDown,
    StreamingNotServed,
    TokenInvalid,
    TokenMissing,
    abort,
)
from edgesel_server.metrics import Metrics
from edgesel_server.security import PRINCIPAL, RateLimiter, Role, TokenRegistry, bearer_token

log = logging.getLogger(__name__)

OPEN_SERVICES = frozenset(
    {
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
        "grpc.reflection.v1.ServerReflection",
    }
)
DEVICE_SERVICES = frozenset({selection_pb2.DESCRIPTOR.services_by_name["SelectionService"].full_name})
REQUEST_ID_MAX = 128
DRAIN_QUIET_S = 0.2

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _request_id(request: Any, context: grpc.aio.ServicerContext) -> str:
    """The request's own `request_id` field, else an `x-request-id` header, else a fresh one."""
    rid = getattr(request, "request_id", "")
    if not rid:
        rid = next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), "")
    if not isinstance(rid, str) or not rid:
        rid = secrets.token_hex(8)
    return rid[:REQUEST_ID_MAX]


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:53412", "ipv6:[::1]:53412", "unix:..."
    return peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer


def _unary_handlers(service: ServiceDescriptor, servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """The servicer's method handlers, built from the service descriptor rather than through the generated
    `add_*Servicer_to_server`, whose body differs between grpcio-tools releases (the committed code comes from
    an old one so that the SDK runs on old runtimes; see scripts/gen_protos.py)."""
    handlers = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{method.full_name}: the guard serves unary methods only")
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
    return handlers


class RpcGuard:
    def __init__(
        self,
        *,
        tokens: TokenRegistry | None = None,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.metrics = metrics
        self.draining = False
        self.in_flight = 0
        self._last_arrival = 0.0

    @classmethod
    def from_config(
        cls, cfg: ServerConfig, tokens: TokenRegistry | None, metrics: Metrics | None
    ) -> RpcGuard:
        limiter = RateLimiter(cfg.rate_limit_per_s, cfg.rate_burst) if cfg.rate_limit_per_s > 0 else None
        return cls(tokens=tokens, limiter=limiter, metrics=metrics)

    def register(self, service: ServiceDescriptor, servicer: Any, server: grpc.aio.Server) -> None:
        """Register `servicer`, the implementation of `service`, with every method wrapped."""
        name = service.full_name
        wrapped = {m: self._build(h, f"/{name}/{m}") for m, h in _unary_handlers(service, servicer).items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, wrapped),))
        server.add_registered_method_handlers(name, wrapped)

    def _build(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").rpartition("/")
        guarded = service not in OPEN_SERVICES
        if handler.unary_unary is None:
            if guarded:  # no guarded service streams; refuse rather than serve one unauthenticated
                return grpc.unary_unary_rpc_method_handler(self._refuse_stream)
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(handler, service, method, guarded),
            request_deserializer=None,  # raw bytes: parsed in _wrap, where a failure is the caller's fault
            response_serializer=handler.response_serializer,
        )

    async def drain(self, timeout: float) -> None:
        """Answer new RPCs UNAVAILABLE (which clients retry) until those in flight have finished and no new
        one has arrived for a moment. Calls still queued inside gRPC when the server stops would be
        CANCELLED, which clients do not retry; draining first empties that queue."""
        self.draining = True
        if timeout <= 0:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_flight == 0 and time.monotonic() - self._last_arrival >= DRAIN_QUIET_S:
                return
            await asyncio.sleep(0.02)
        log.warning("drain timed out; stopping with RPCs still arriving", extra={"in_flight": self.in_flight})

    @staticmethod
    async def _refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, StreamingNotServed("streaming RPCs are not served behind auth"))

    def _wrap(self, handler: grpc.RpcMethodHandler, service: str, method: str, guarded: bool) -> Handler:
        behavior: Callable[..., Any] | None = handler.unary_unary
        assert behavior is not None  # checked by intercept_service
        parse = handler.request_deserializer

        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            principal = ""
            request = None
            self.in_flight += 1
            self._last_arrival = time.monotonic()
            try:
                if self.draining and guarded:
                    await abort(context, ShuttingDown("the server is shutting down; retry"))
                if guarded:
                    if self.tokens is not None:
                        token = bearer_token(context.invocation_metadata())
                        found = self.tokens.authenticate(token) if token is not None else None
                        if found is None:
                            await abort(
                                context,
                                TokenMissing("missing or malformed bearer token")
                                if token is None
                                else TokenInvalid("invalid bearer token"),
                            )
                        assert found is not None
                        role, principal = found
                        if role is not Role.ADMIN and service not in DEVICE_SERVICES:
                            await abort(context, AdminTokenRequired(f"{service} needs an admin token"))
                    if self.limiter is not None and not self.limiter.allow(principal or _peer_host(context)):
                        await abort(context, RateLimited("request rate limit exceeded"))
                try:
                    request = parse(raw) if parse is not None else raw
                except Exception:  # noqa: BLE001 - any parse failure means a malformed request
                    await abort(context, MalformedRequest(f"malformed {method} request message"))
                reset = PRINCIPAL.set(principal)
                try:
                    response = behavior(request, context)
                    if inspect.isawaitable(response):
                        response = await response
                finally:
                    PRINCIPAL.reset(reset)
                code = context.code() or grpc.StatusCode.OK
                return response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = grpc.StatusCode.UNKNOWN  # a bug the servicer let through: the runtime says UNKNOWN
                raise
            finally:
                self.in_flight -= 1
                seconds = time.perf_counter() - started
                if self.metrics is not None:
                    self.metrics.observe_rpc(service, method, code.name, seconds)
                level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO
                if log.isEnabledFor(level):  # building the fields costs more than the RPC's own work
                    log.log(
                        level,
                        "rpc",
                        extra={
                            "rpc": f"/{service}/{method}",
                            "status": code.name,
                            "duration_ms": round(seconds * 1000, 3),
                            "request_id": _request_id(request, context),
                            "principal": principal,
                            "peer": context.peer(),
                        },
                    )

        return call

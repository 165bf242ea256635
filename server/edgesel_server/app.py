"""Assemble and run the gRPC server: servicers, health, reflection, background tasks, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel_server.config import ConfigError, ServerConfig
from edgesel_server.engine import Engine
from edgesel_server.metrics import Metrics
from edgesel_server.rpc_guard import RpcGuard
from edgesel_server.security import TokenRegistry, server_credentials, warn_if_exposed
from edgesel_server.servicers import CatalogServicer, SelectionServicer
from edgesel_server.status import app as status_app
from edgesel_server.status.history import SpaceHistory, sample_forever
from edgesel_server.workers import WORKER_HEADER, WORKER_PID_HEADER

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
SHUTDOWN_DRAIN_S = 3.0
# The reflection protocol's v1 has v1alpha's messages under another name; clients (grpcurl, Postman) ask v1.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (
    selection_pb2.DESCRIPTOR.services_by_name["SelectionService"].full_name,
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
)


class HealthServicer(health.aio.HealthServicer):
    """The standard health service with `List` (grpcio-health-checking's aio servicer lacks it; its type
    stubs predate the RPC, hence the Any)."""

    async def List(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - RPC name
        status_of: dict[str, Any] = getattr(self, "_server_status")  # noqa: B009 - not in the stubs
        statuses = {name: health_pb2.HealthCheckResponse(status=st) for name, st in status_of.items()}
        return health_pb2.HealthListResponse(statuses=statuses)  # type: ignore[attr-defined]


def add_reflection_v1(servicer: reflection.aio.ReflectionServicer, server: grpc.aio.Server) -> None:
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )


class WorkerTagged:
    """A servicer whose every reply starts with initial metadata naming the worker (`--workers N`) that
    answered, so an admin (or a test) can tell the workers behind one port apart. CatalogService only: the
    device RPCs stay as they are."""

    def __init__(self, servicer: Any, index: int) -> None:
        self._servicer = servicer
        self._metadata = ((WORKER_HEADER, str(index)), (WORKER_PID_HEADER, str(os.getpid())))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)

        async def tagged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.send_initial_metadata(self._metadata)
            return await method(request, context)

        return tagged


class EdgeselServer:
    def __init__(self, cfg: ServerConfig, worker_index: int | None = None) -> None:
        self.cfg = cfg
        self.worker_index = worker_index  # one of `--workers N` processes: the port is shared
        self.engine = Engine(cfg)
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._background: asyncio.Task | None = None
        self.metrics: Metrics | None = None
        self.metrics_port: status_app.MetricsPort | None = None
        self._sampler: asyncio.Task | None = None
        self.guard: RpcGuard | None = None

    async def start(self) -> int:
        # Read tokens and certificates before the (possibly long) state rebuild, so a typo fails fast.
        tokens = TokenRegistry.from_config(self.cfg.auth) if self.cfg.auth else None
        credentials = server_credentials(self.cfg.tls) if self.cfg.tls else None
        metrics_tokens = status_app.load_tokens(self.cfg.metrics) if self.cfg.metrics_listen else None
        if self.cfg.metrics_listen:
            self.metrics = Metrics(self.engine)
            self.engine.store.commit_observer = self.metrics.observe_commit
        await asyncio.to_thread(self.engine.start)
        status_on = bool(self.cfg.metrics_listen) and self.cfg.metrics.status != "off"
        if status_on:
            # After the rebuild: the history is what this process saw live, not the replayed log.
            mc = self.cfg.metrics
            for space in self.engine.spaces.values():
                space.history = SpaceHistory(mc.sample_s, mc.samples)
        opts = [
            ("grpc.max_receive_message_length", self.cfg.max_message_bytes),
            ("grpc.max_send_message_length", max(self.cfg.max_message_bytes, 64 << 20)),
            # Off unless one of `--workers N`: a second server on a taken port must fail, not share it.
            ("grpc.so_reuseport", 0 if self.worker_index is None else 1),
        ]
        self.guard = RpcGuard.from_config(self.cfg, tokens, self.metrics)
        server = grpc.aio.server(options=opts)
        selection_service = selection_pb2.DESCRIPTOR.services_by_name["SelectionService"]
        catalog_service = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
        self.guard.register(selection_service, SelectionServicer(self.engine), server)
        catalog: Any = CatalogServicer(self.engine)
        if self.worker_index is not None:
            catalog = WorkerTagged(catalog, self.worker_index)
        self.guard.register(catalog_service, catalog, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflected = (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
            REFLECTION_V1,
        )
        reflection.enable_server_reflection(reflected, server)
        add_reflection_v1(reflection.aio.ReflectionServicer(reflected), server)
        try:
            if credentials is not None:
                self.port = server.add_secure_port(self.cfg.listen, credentials)
            else:
                self.port = server.add_insecure_port(self.cfg.listen)
        except RuntimeError:  # grpcio's "Failed to bind": taken (not by our --workers), or no such address
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {self.cfg.listen} (in use, or not an address of this host)")
        await server.start()
        self.server = server
        warn_if_exposed(self.cfg)
        if self.metrics is not None and self.cfg.metrics_listen:
            access = status_app.Access(self.cfg.metrics.status, metrics_tokens)
            page_of = self.engine if status_on else None
            port_app = status_app.MetricsPortApp(self.metrics.registry, page_of, access)
            self.metrics_port = status_app.MetricsPort(self.cfg.metrics_listen, port_app)
            status_app.warn_if_exposed(self.cfg.metrics_listen, self.cfg.metrics)
        if status_on:
            histories = {n: s.history for n, s in self.engine.spaces.items() if s.history is not None}
            self._sampler = asyncio.create_task(
                sample_forever(histories, self.cfg.metrics.sample_s), name="edgesel-status-history"
            )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._background = asyncio.create_task(self.engine.run_background(), name="edgesel-background")
        return self.port

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let in-flight RPCs finish, then flush and snapshot."""
        await self.health.enter_graceful_shutdown()
        if self.guard is not None:
            await self.guard.drain(min(grace, SHUTDOWN_DRAIN_S))
        if self.server is not None:
            await self.server.stop(grace)
        for task in (self._background, self._sampler):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        await self.engine.close()
        if self.metrics_port is not None:
            self.metrics_port.close()


async def serve(cfg: ServerConfig, worker_index: int | None = None) -> int:
    app = EdgeselServer(cfg, worker_index)
    port = await app.start()
    # Before LISTENING: whoever reads it (a supervisor of --workers, a test, a script) may stop us at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = cfg.listen.rsplit(":", 1)[0]
    log.info(
        "edgesel server listening", extra={"listen": f"{host}:{port}", "spaces": list(app.engine.spaces)}
    )
    # One plain line on stdout so scripts and tests can find the port when --listen ends in :0. After the
    # log line: a --workers supervisor that has read every worker's LISTENING logs its own line after theirs.
    print(f"LISTENING {host}:{port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await app.stop()
    log.info("stopped cleanly")
    return 0


def run(cfg: ServerConfig, worker_index: int | None = None) -> int:
    try:
        return asyncio.run(serve(cfg, worker_index))
    except KeyboardInterrupt:
        return 0
    except ConfigError as e:
        print(f"edgesel-server: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"edgesel-server: {e}", file=sys.stderr)
        return 1

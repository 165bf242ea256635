"""The reasons of the per-RPC tables that need a secured server, a rate limit or a bug, through raw stubs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.config import load_config
from edgesel_server.engine import Engine
from edgesel_server.servicers import SelectionServicer
from tests.hardening.support import ADMIN, DEVICE_A, DEVICE_B, PHONE, md, stubs_for, write_secure_config
from tests.rpc_status import refusal
from tests.server.serverproc import ServerProcess

C = grpc.StatusCode


def test_guard_and_ownership_reasons(secure_server: ServerProcess) -> None:
    with stubs_for(secure_server.target) as s:
        request = selection_pb2.SelectRequest(space="vision", device_features=PHONE)
        assert refusal(lambda: s.sel.Select(request, timeout=5)) == (C.UNAUTHENTICATED, "TOKEN_MISSING")
        wrong = md("not-a-token-of-this-server")
        assert refusal(lambda: s.sel.Select(request, metadata=wrong, timeout=5)) == (
            C.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )
        listing = catalog_pb2.ListSpacesRequest()
        assert refusal(lambda: s.cat.ListSpaces(listing, metadata=md(DEVICE_A), timeout=5)) == (
            C.PERMISSION_DENIED,
            "ADMIN_TOKEN_REQUIRED",
        )
        r = s.select(DEVICE_A)
        assert refusal(lambda: s.feedback(r.event_id, 0.5, DEVICE_B)) == (
            C.PERMISSION_DENIED,
            "FEEDBACK_OTHER_TOKEN",
        )
        raw = s.channel.unary_unary("/edgesel.v1.SelectionService/Select")
        assert refusal(lambda: raw(b"\xff\xff\xff", metadata=md(DEVICE_A), timeout=5)) == (
            C.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
        )
        assert s.select(ADMIN).event_id  # admin tokens may Select too


def test_rate_limit_reason(tmp_path: Path, admin_env: None) -> None:
    cfg = write_secure_config(tmp_path)
    cfg.write_text(
        cfg.read_text().replace("[server]\n", "[server]\nrate_limit_per_s = 1\nrate_burst = 2\n", 1)
    )
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with stubs_for(proc.target) as s:
            seen = set()
            for _ in range(6):
                try:
                    s.select(DEVICE_A)
                except grpc.RpcError:
                    seen.add(refusal(lambda: s.select(DEVICE_A)))
                    break
            assert seen == {(C.RESOURCE_EXHAUSTED, "RATE_LIMITED")}
    finally:
        proc.kill()


async def test_a_bug_is_internal_not_the_clients_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray ValueError from a bug is INTERNAL (reason INTERNAL) and logged, not INVALID_ARGUMENT."""
    from tests.server.serverproc import write_config

    engine = Engine(load_config(write_config(tmp_path)))

    async def broken_select(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug, not the request's fault")

    engine.select = broken_select  # type: ignore[method-assign]
    server = grpc.aio.server()
    sel_grpc.add_SelectionServiceServicer_to_server(SelectionServicer(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = sel_grpc.SelectionServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Select(
                    selection_pb2.SelectRequest(space="vision", device_features=PHONE), timeout=10
                )
        assert info.value.code() == C.INTERNAL and info.value.details() == "internal error: ValueError"
        from edgesel_client.errors import error_info

        assert error_info(info.value.trailing_metadata()) == ("INTERNAL", {})
        assert any("internal error in Select" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        await server.stop(0)
        await asyncio.sleep(0)

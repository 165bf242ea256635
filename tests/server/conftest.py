from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2_grpc, selection_pb2_grpc
from tests.server.serverproc import ServerProcess, write_config


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(write_config(tmp_path), tmp_path / "data").start()
    yield proc
    proc.kill()


@pytest.fixture
def stubs(
    server: ServerProcess,
) -> Iterator[tuple[selection_pb2_grpc.SelectionServiceStub, catalog_pb2_grpc.CatalogServiceStub]]:
    with grpc.insecure_channel(server.target) as ch:
        yield selection_pb2_grpc.SelectionServiceStub(ch), catalog_pb2_grpc.CatalogServiceStub(ch)

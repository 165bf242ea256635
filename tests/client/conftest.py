"""Fixtures: a real gRPC server on loopback running the fake SelectionService."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_selection_server import FakeSelectionService, LoopbackServer, unused_port


@pytest.fixture
def servicer() -> FakeSelectionService:
    return FakeSelectionService()


@pytest.fixture
def server(servicer: FakeSelectionService) -> Iterator[LoopbackServer]:
    loopback = LoopbackServer(servicer).start()
    yield loopback
    loopback.stop()


@pytest.fixture
def idle_server(servicer: FakeSelectionService) -> Iterator[LoopbackServer]:
    """A server object bound to a free port but not started: nothing listens until the test starts it."""
    loopback = LoopbackServer(servicer)
    loopback.port = unused_port()
    yield loopback
    loopback.stop()

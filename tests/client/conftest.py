"""Fixtures: a real gRPC server on loopback running the fake SelectionService, and a real edgesel-server
with device/admin tokens and mutual TLS (run by EDGESEL_SERVER_PYTHON when the SDK is tested on a Python the
server does not support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_selection_server import FakeSelectionService, LoopbackServer, unused_port

from tests.hardening.support import ADMIN, ADMIN_ENV, start_tls_server
from tests.pki import make_pki
from tests.server.serverproc import ServerProcess


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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    root = make_pki(tmp_path_factory.mktemp("pki"))
    if root is None:
        pytest.fail("openssl is not installed (scripts/test.sh installs it)")
    return root


@pytest.fixture
def mtls_server(tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    """A real edgesel-server: device tokens from a file, the admin token from the env, mutual TLS."""
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    proc = start_tls_server(tmp_path, pki, mutual=True)
    yield proc
    proc.kill()

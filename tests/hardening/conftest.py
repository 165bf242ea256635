from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.support import ADMIN, ADMIN_ENV, write_secure_config
from tests.pki import make_pki
from tests.server.serverproc import ServerProcess


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin token reaches the server through the environment variable its config names."""
    monkeypatch.setenv(ADMIN_ENV, f" {ADMIN} ,")


@pytest.fixture
def secure_server(tmp_path: Path, admin_env: None) -> Iterator[ServerProcess]:
    """A server with bearer tokens (device tokens from a file, admin from the env) and feedback binding."""
    proc = ServerProcess(write_secure_config(tmp_path), tmp_path / "data", extra=["--log-level", "debug"])
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_pki(tmp_path_factory.mktemp("pki"))
    if root is None:
        pytest.skip("openssl is not installed")
    return root

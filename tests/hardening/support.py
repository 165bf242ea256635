"""Shared pieces of the hardening tests: secured server configs, throwaway certificates, authed stubs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from tests.server.serverproc import ServerProcess, write_config

DEVICE_A = "dev-alpha-7f3c9a1e5b2d4c6f8a0b"
DEVICE_B = "dev-bravo-1a2b3c4d5e6f7a8b9c0d"
ADMIN = "adm-zulu-9e8d7c6b5a4f3e2d1c0b"
ADMIN_ENV = "EDGESEL_TEST_ADMIN_TOKENS"
ALL_TOKENS = (DEVICE_A, DEVICE_B, ADMIN)

PHONE = {"ram_gb": 2.0, "has_npu": 0.0, "battery_percent": 40.0}

AUTH_SECTION = f"""
[server.auth]
device_tokens_file = "device-tokens.txt"
admin_tokens_env = "{ADMIN_ENV}"
bind_feedback_to_token = true
"""


def write_secure_config(directory: Path, extra: str = AUTH_SECTION, **kw) -> Path:
    """The integration-test config plus `extra` TOML (e.g. `[server.auth]`), with the device token file."""
    path = write_config(directory, **kw)
    path.write_text(path.read_text() + extra)
    (directory / "device-tokens.txt").write_text(f"# device tokens\n{DEVICE_A}\n\n{DEVICE_B}\n")
    return path


def start_tls_server(directory: Path, pki: Path, *, mutual: bool, extra: str = AUTH_SECTION) -> ServerProcess:
    """A started server with `extra` (tokens by default) and TLS from `pki`; mutual TLS if `mutual`."""
    # Paths in [server.tls] are relative to the config file's folder.
    certs = directory / "certs"
    certs.mkdir()
    for name in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(pki / name, certs / name)
    tls = '\n[server.tls]\ncert_file = "certs/server.pem"\nkey_file = "certs/server.key"\n'
    if mutual:
        tls += 'client_ca_file = "certs/ca.pem"\n'
    return ServerProcess(write_secure_config(directory, extra=extra + tls), directory / "data").start()


def md(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class Stubs:
    """Selection and catalog stubs on one channel; each call names its token."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.sel = sel_grpc.SelectionServiceStub(channel)
        self.cat = cat_grpc.CatalogServiceStub(channel)

    def select(self, token: str | None = DEVICE_A, **kw) -> selection_pb2.SelectResponse:
        kw.setdefault("space", "vision")
        kw.setdefault("device_features", PHONE)
        return self.sel.Select(selection_pb2.SelectRequest(**kw), metadata=md(token), timeout=10)

    def feedback(
        self, event_id: str, reward: float, token: str | None = DEVICE_A
    ) -> selection_pb2.FeedbackResponse:
        request = selection_pb2.FeedbackRequest(event_id=event_id, reward=reward)
        return self.sel.Feedback(request, metadata=md(token), timeout=10)

    def export(self, space: str = "vision", token: str | None = ADMIN) -> bytes:
        request = catalog_pb2.ExportStateRequest(space=space)
        return self.cat.ExportState(request, metadata=md(token), timeout=10).state

    def total_updates(self, space: str = "vision", token: str | None = ADMIN) -> int:
        request = catalog_pb2.GetArmStatsRequest(space=space)
        return self.cat.GetArmStats(request, metadata=md(token), timeout=10).total_updates


@contextmanager
def stubs_for(target: str, credentials: grpc.ChannelCredentials | None = None) -> Iterator[Stubs]:
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials)
    with channel:
        yield Stubs(channel)


def code_of(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def json_logs(proc: ServerProcess) -> list[dict]:
    out = []
    for line in proc.stderr_lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def tracebacks(proc: ServerProcess) -> list[str]:
    return [line for line in proc.stderr_lines if "Traceback" in line or '"exc":' in line]

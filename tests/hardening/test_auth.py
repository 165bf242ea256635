"""Bearer tokens, roles, feedback bound to its token, rate limits and the exposed-without-security warning."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel_server.config import ConfigError, parse_config
from edgesel_server.security import RateLimiter, Role, TokenRegistry, bearer_token, principal_of
from tests.hardening.support import (
    ADMIN,
    DEVICE_A,
    DEVICE_B,
    code_of,
    md,
    stubs_for,
    write_secure_config,
)
from tests.server.serverproc import ROOT, ServerProcess

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

CATALOG_CALLS = {
    "ListSpaces": catalog_pb2.ListSpacesRequest(),
    "ListModels": catalog_pb2.ListModelsRequest(space="vision"),
    "AddModel": catalog_pb2.AddModelRequest(space="second"),
    "UpdateModel": catalog_pb2.UpdateModelRequest(space="vision"),
    "RetireModel": catalog_pb2.RetireModelRequest(space="vision", model_id="tiny"),
    "GetArmStats": catalog_pb2.GetArmStatsRequest(space="vision"),
    "ExportState": catalog_pb2.ExportStateRequest(space="vision"),
    "ImportState": catalog_pb2.ImportStateRequest(space="vision"),
    "ResetState": catalog_pb2.ResetStateRequest(space="vision"),
}


def test_tokens_and_roles(secure_server: ServerProcess) -> None:
    with stubs_for(secure_server.target) as s:
        select = selection_pb2.SelectRequest(space="vision", device_features={"ram_gb": 2.0})
        assert code_of(lambda: s.sel.Select(select, timeout=5)) == UNAUTHENTICATED
        for bad in (
            md("not-a-known-token"),
            md(DEVICE_A + "x"),
            (("authorization", f"Basic {DEVICE_A}"),),
            (("authorization", "Bearer"),),
            (("authorization", f"Bearer {DEVICE_A}"), ("authorization", f"Bearer {DEVICE_B}")),
        ):
            assert code_of(lambda bad=bad: s.sel.Select(select, metadata=bad, timeout=5)) == UNAUTHENTICATED
        # Device tokens: selection only. Every admin RPC is refused before its request is even looked at.
        r = s.select(DEVICE_A)
        assert s.feedback(r.event_id, 0.5, DEVICE_A).status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
        for name, request in CATALOG_CALLS.items():
            call = getattr(s.cat, name)
            assert code_of(lambda c=call, q=request: c(q, metadata=md(DEVICE_B), timeout=5)) == DENIED, name
            assert code_of(lambda c=call, q=request: c(q, timeout=5)) == UNAUTHENTICATED, name
        # Admin tokens: everything.
        spaces = s.cat.ListSpaces(catalog_pb2.ListSpacesRequest(), metadata=md(ADMIN), timeout=5)
        assert [sp.name for sp in spaces.spaces] == ["vision", "second"]
        assert s.select(ADMIN).model.model_id
        # Health and reflection stay open.
        health = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(s.channel)
        answers = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {svc.name for svc in answers[0].list_services_response.service}
        assert "edgesel.v1.SelectionService" in names and "edgesel.v1.CatalogService" in names
    assert not any(t in line for line in secure_server.stderr_lines for t in (DEVICE_A, DEVICE_B, ADMIN))


def test_feedback_only_from_the_token_that_selected(secure_server: ServerProcess, tmp_path: Path) -> None:
    with stubs_for(secure_server.target) as s:
        r = s.select(DEVICE_A)
        assert code_of(lambda: s.feedback(r.event_id, 0.9, DEVICE_B)) == DENIED
        assert code_of(lambda: s.feedback(r.event_id, 0.9, ADMIN)) == DENIED
        # The principal comes from the verified token, never from metadata a client could forge.
        forged = (*md(DEVICE_B), ("x-edgesel-principal", principal_of(DEVICE_A)))
        request = selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.9)
        assert code_of(lambda: s.sel.Feedback(request, metadata=forged, timeout=5)) == DENIED
        pending = s.select(DEVICE_A)  # stays open across the restart below
        assert s.feedback(r.event_id, 0.9, DEVICE_A).status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
        assert s.total_updates() == 1
    # The binding is durable: a decision reloaded after a crash still belongs to its token.
    secure_server.kill()
    secure_server.start()
    with stubs_for(secure_server.target) as s:
        assert code_of(lambda: s.feedback(pending.event_id, 0.1, DEVICE_B)) == DENIED
        assert s.feedback(pending.event_id, 0.1, DEVICE_A).status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
        assert s.total_updates() == 2


def test_rate_limit_per_token(tmp_path: Path, admin_env: None) -> None:
    cfg = write_secure_config(tmp_path)
    cfg.write_text(
        cfg.read_text().replace("[server]\n", "[server]\nrate_limit_per_s = 4\nrate_burst = 6\n", 1)
    )
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with stubs_for(proc.target) as s:
            codes = [code_of(lambda: s.select(DEVICE_A)) for _ in range(12)]
            assert codes[:6] == [grpc.StatusCode.OK] * 6, codes
            assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[6:], codes
            assert code_of(lambda: s.select(DEVICE_B)) == grpc.StatusCode.OK  # its own bucket
            time.sleep(0.6)  # refills at 4/s
            assert code_of(lambda: s.select(DEVICE_A)) == grpc.StatusCode.OK
            health = health_pb2_grpc.HealthStub(s.channel)
            for _ in range(20):  # health checks are never limited
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        proc.kill()


def test_exposed_without_tls_or_tokens_warns(tmp_path: Path) -> None:
    cfg = write_secure_config(tmp_path, extra="")
    proc = ServerProcess(cfg, tmp_path / "data", extra=["--listen", "0.0.0.0:0"]).start()
    try:
        time.sleep(0.3)
        assert any(line.startswith("edgesel-server: WARNING") for line in proc.stderr_lines), (
            proc.stderr_lines
        )
        assert any(
            '"level":"warning"' in line and "without TLS and bearer tokens" in line
            for line in proc.stderr_lines
        )
    finally:
        proc.kill()
    loopback = ServerProcess(cfg, tmp_path / "data2").start()
    try:
        time.sleep(0.3)
        assert not any("WARNING" in line for line in loopback.stderr_lines)
    finally:
        loopback.kill()


def test_unreadable_token_file_fails_fast(tmp_path: Path) -> None:
    cfg = write_secure_config(tmp_path, extra='\n[server.auth]\ndevice_tokens_file = "missing.txt"\n')
    done = subprocess.run(
        [sys.executable, "-m", "edgesel_server.cli", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "missing.txt" in done.stderr


def test_config_keys_are_checked(tmp_path: Path) -> None:
    base = {"space": [{"name": "s", "device_features": [{"name": "f", "min": 0, "max": 1}]}]}
    cfg = parse_config(
        {
            "server": {
                "tls": {"cert_file": "c.pem", "key_file": "k.pem", "client_ca_file": "ca.pem"},
                "auth": {"admin_tokens_env": "X", "bind_feedback_to_token": True},
                "metrics": {"listen": "127.0.0.1:9464"},
                "rate_limit_per_s": 10,
            },
            **base,
        },
        base_dir=tmp_path,
    )
    assert cfg.tls is not None and cfg.tls.client_ca_file == tmp_path / "ca.pem"
    assert cfg.auth is not None and cfg.auth.bind_feedback_to_token and cfg.rate_limit_per_s == 10.0
    assert cfg.metrics_listen == "127.0.0.1:9464"
    for server, message in (
        ({"tls": {"cert_file": "c.pem"}}, "key_file"),
        ({"auth": {}}, "at least one token"),
        ({"auth": {"admin_tokens": "oops"}}, "unknown key"),
        ({"metrics": {"listen": "9464"}}, "HOST:PORT"),
        ({"rate_limit_per_s": -1}, "rate_limit_per_s"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"server": server, **base})


def test_token_registry_and_rate_limiter_units() -> None:
    reg = TokenRegistry([DEVICE_A, DEVICE_B], [ADMIN, DEVICE_B])
    assert reg.authenticate(DEVICE_A) == (Role.DEVICE, principal_of(DEVICE_A))
    assert reg.authenticate(DEVICE_B) == (Role.ADMIN, principal_of(DEVICE_B))  # listed as both: admin
    assert reg.authenticate("") is None and reg.authenticate(DEVICE_A[:-1]) is None
    assert DEVICE_A not in principal_of(DEVICE_A) and principal_of(DEVICE_A) != principal_of(DEVICE_B)
    assert bearer_token([("authorization", f"bearer  {ADMIN} ")]) == ADMIN
    with pytest.raises(ConfigError):
        TokenRegistry([], [])
    limiter = RateLimiter(2.0, burst=3, max_keys=2)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("a", now=0.5) and not limiter.allow("a", now=0.5)
    limiter.allow("b", now=0.5)
    limiter.allow("c", now=0.5)  # evicts "a", the least recently seen
    assert len(limiter._buckets) == 2

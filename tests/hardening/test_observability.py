"""Prometheus metrics on their own port, one JSON log line per RPC with its request id, never a token."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.hardening.support import (
    ADMIN,
    ALL_TOKENS,
    AUTH_SECTION,
    DEVICE_A,
    DEVICE_B,
    code_of,
    json_logs,
    stubs_for,
    write_secure_config,
)
from tests.server.serverproc import ServerProcess, write_config


def scrape(proc: ServerProcess) -> dict[str, float]:
    listen = next(e["metrics_listen"] for e in json_logs(proc) if "metrics_listen" in e)
    text = urllib.request.urlopen(f"http://{listen}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@pytest.mark.usefixtures("admin_env")
def test_metrics_and_request_logs(tmp_path: Path) -> None:
    cfg = write_secure_config(tmp_path, extra=AUTH_SECTION + '\n[server.metrics]\nlisten = "127.0.0.1:0"\n')
    proc = ServerProcess(cfg, tmp_path / "data", extra=["--log-level", "debug"]).start()
    try:
        with stubs_for(proc.target) as s:
            events = [s.select(DEVICE_A, request_id=f"req-{i}").event_id for i in range(4)]
            for event_id in events[:3]:
                s.feedback(event_id, 0.5)
            s.feedback(events[0], 0.5)  # duplicate
            assert code_of(lambda: s.select(DEVICE_B, space="nope")) == grpc.StatusCode.NOT_FOUND
            assert code_of(lambda: s.select("wrong-token")) == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: s.export(token=DEVICE_A)) == grpc.StatusCode.PERMISSION_DENIED
            s.export(token=ADMIN)
        m = scrape(proc)
        sel = 'grpc_method="Select",grpc_service="edgesel.v1.SelectionService"'
        assert m[f'edgesel_grpc_server_handled_total{{grpc_code="OK",{sel}}}'] == 4
        assert m[f'edgesel_grpc_server_handled_total{{grpc_code="NOT_FOUND",{sel}}}'] == 1
        assert m[f'edgesel_grpc_server_handled_total{{grpc_code="UNAUTHENTICATED",{sel}}}'] == 1
        assert m[f'edgesel_grpc_server_handling_seconds_count{{grpc_code="OK",{sel}}}'] == 4
        assert m['edgesel_decisions_total{space="vision"}'] == 4
        assert m['edgesel_feedback_total{space="vision"}'] == 3
        assert m['edgesel_feedback_duplicates_total{space="vision"}'] == 1
        assert m['edgesel_feedback_join_ratio{space="vision"}'] == 0.75
        assert 0 <= m['edgesel_exploration_ratio{space="vision"}'] <= 1
        assert m['edgesel_pending_decisions{space="vision"}'] == 1
        assert m['edgesel_decisions_expired_total{space="vision"}'] == 0
        assert m['edgesel_snapshot_age_seconds{space="vision"}'] >= 0
        # Startup writes the catalog, every Select a decision and every Feedback an event: at least 8 commits.
        assert m['edgesel_store_commit_seconds_count{outcome="ok"}'] >= 8
        assert m["process_resident_memory_bytes"] > 0

        time.sleep(0.2)  # the last RPC's log line is written just after its reply
        rpcs = [e for e in json_logs(proc) if e.get("msg") == "rpc"]
        selects = [
            e for e in rpcs if e["rpc"] == "/edgesel.v1.SelectionService/Select" and e["status"] == "OK"
        ]
        assert sorted(e["request_id"] for e in selects) == [f"req-{i}" for i in range(4)]
        for e in rpcs:
            assert e["request_id"] and e["duration_ms"] >= 0 and e["peer"]
        by_status = {e["status"]: e for e in rpcs}
        assert by_status["UNAUTHENTICATED"]["principal"] == ""
        assert by_status["PERMISSION_DENIED"]["principal"].startswith("tok-")
        assert by_status["NOT_FOUND"]["level"] == "info" and selects[0]["level"] == "debug"
        assert not [
            line for line in proc.stderr_lines if any(t in line for t in (*ALL_TOKENS, "wrong-token"))
        ]
    finally:
        proc.kill()


def test_no_metrics_port_unless_configured(tmp_path: Path) -> None:
    proc = ServerProcess(write_config(tmp_path), tmp_path / "data").start()
    try:
        time.sleep(0.2)
        assert not any("metrics_listen" in e for e in json_logs(proc))
    finally:
        proc.kill()

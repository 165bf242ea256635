"""`edgesel-server --workers N`: N real worker processes on one port (SO_REUSEPORT) on a real Redis, each a
replica with the full learned state; the supervisor's refusal without Redis, restart after kill -9, SIGTERM.

A worker is reached individually over a new TCP connection (a channel with its own subchannel pool): the
kernel hashes each connection to one of the listening workers, and every CatalogService reply names the
worker that answered (`edgesel-worker-pid` initial metadata). Every wait is on a condition, with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import redis

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.workers import worker_metrics_listen
from tests.hardening.support import json_logs
from tests.redis.conftest import RedisServer, requires_redis
from tests.redis.test_replicas import DEVICES, DUPLICATE, Load, feedback_claims
from tests.server.serverproc import ROOT, ServerProcess, write_config

ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # a new channel = a new TCP connection
METRICS = '\n[server.metrics]\nlisten = "127.0.0.1:0"\n'
# One worker's count of the SelectionService RPCs it completed, by method.
HANDLED = (
    'edgesel_grpc_server_handled_total{grpc_code="OK",grpc_method="%s",'
    'grpc_service="edgesel.v1.SelectionService"}'
)


def start_workers(tmp_path: Path, redis_server: RedisServer, n: int = 2, **cfg_kw) -> ServerProcess:
    cfg = write_config(tmp_path, store=redis_server.url, **cfg_kw)
    cfg.write_text(cfg.read_text() + METRICS)
    proc = ServerProcess(cfg, tmp_path / "data", extra=["--workers", str(n)]).start(timeout=120)
    # The supervisor logs its line once every worker has logged its own; the first such line that start()
    # saw may have been a worker's.
    wait_for(
        lambda: [e for e in worker_events(proc, "edgesel server listening") if "workers" in e],
        "the supervisor did not log that it listens",
    )
    return proc


def worker_exports(target: str, n: int, space: str = "vision", timeout: float = 60.0) -> dict[int, tuple]:
    """(state, policy_version, total_updates) of each of the `n` workers, by pid: new connections until `n`
    different workers have answered."""
    got: dict[int, tuple] = {}
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"only workers {sorted(got)} answered of {n}"
        with grpc.insecure_channel(target, options=OWN_CONNECTION) as ch:
            stub = cat_grpc.CatalogServiceStub(ch)
            r, call = stub.ExportState.with_call(catalog_pb2.ExportStateRequest(space=space), timeout=10)
            stats, call2 = stub.GetArmStats.with_call(catalog_pb2.GetArmStatsRequest(space=space), timeout=10)
            pid = int(dict(call.initial_metadata())["edgesel-worker-pid"])
            assert int(dict(call2.initial_metadata())["edgesel-worker-pid"]) == pid  # one connection
            got[pid] = (r.state, r.policy_version, stats.total_updates)
    return got


def converge_workers(target: str, n: int, r: redis.Redis, timeout: float = 60.0) -> dict[int, tuple]:
    """Wait until each of the `n` workers has applied the whole Redis log; returns their exports."""
    want = str(int(r.get("edgesel:{vision}:seq") or 0))  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    while True:
        exports = worker_exports(target, n, timeout=timeout)
        if all(e[1] == want for e in exports.values()):
            return exports
        assert time.monotonic() < deadline, f"workers did not reach seq {want}: {exports.keys()}"
        time.sleep(0.05)


def worker_events(proc: ServerProcess, msg: str) -> list[dict]:
    return [e for e in json_logs(proc) if e.get("msg") == msg]


def wait_for(condition, what: str, timeout: float = 60.0):  # noqa: ANN001, ANN201 - a test helper
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


def scrape(listen: str) -> dict[str, float]:
    """The worker's /metrics as {sample with labels: value}."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_workers_need_the_redis_store(tmp_path: Path) -> None:
    """The embedded SQLite store has one in-process writer: several processes would not see each other's
    updates. The server refuses before it serves anything."""
    cfg = write_config(tmp_path)  # store = "sqlite"
    cmd = [sys.executable, "-m", "edgesel_server.cli", "--config", str(cfg), "--listen", "127.0.0.1:0",
           "--data-dir", str(tmp_path / "data"), "--workers", "2"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "LISTENING" not in done.stdout
    assert "--workers 2 requires the Redis store" in done.stderr, done.stderr
    assert "--store redis://" in done.stderr and "--workers 1" in done.stderr, done.stderr
    assert not (tmp_path / "data" / "edgesel.sqlite3").exists()


def test_worker_metrics_ports_follow_the_configured_one() -> None:
    assert worker_metrics_listen("127.0.0.1:9464", 0) == "127.0.0.1:9464"
    assert worker_metrics_listen("127.0.0.1:9464", 3) == "127.0.0.1:9467"
    assert worker_metrics_listen("[::1]:9464", 1) == "[::1]:9465"
    assert worker_metrics_listen("127.0.0.1:0", 2) == "127.0.0.1:0"  # each worker picks its own


@requires_redis
def test_workers_share_one_port_and_hold_the_same_learned_state(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Select + Feedback over many connections to one port: both workers served some, and both hold the
    bit-identical state of every acknowledged Feedback, applied in log order. SIGTERM stops them cleanly."""
    r = redis_server.client()
    proc = start_workers(tmp_path, redis_server, 2)
    try:
        assert proc.port != 0
        started = worker_events(proc, "worker started")
        assert sorted(e["worker"] for e in started) == [0, 1]
        pids = {e["pid"] for e in started}
        listening = worker_events(proc, "edgesel server listening")
        # Each worker logs its index and pid, and listens on the supervisor's (real) port.
        assert {(e["worker"], e["pid"]) for e in listening if "worker" in e} == {
            (e["worker"], e["pid"]) for e in started
        }
        assert {e["listen"] for e in listening} == {proc.target}
        metrics = {e["pid"]: e["metrics_listen"] for e in worker_events(proc, "metrics listening")}
        assert set(metrics) == pids and len(set(metrics.values())) == 2
        acked: list[tuple[str, float]] = []
        for i in range(120):
            with grpc.insecure_channel(proc.target, options=OWN_CONNECTION) as ch:
                stub = sel_grpc.SelectionServiceStub(ch)
                d = stub.Select(
                    selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 8]), timeout=10
                )
            # The Feedback on a connection of its own: often another worker than the one that decided.
            reward = (i % 11) / 10
            with grpc.insecure_channel(proc.target, options=OWN_CONNECTION) as ch:
                fb = sel_grpc.SelectionServiceStub(ch).Feedback(
                    selection_pb2.FeedbackRequest(event_id=d.event_id, reward=reward), timeout=10
                )
            assert fb.status == ACCEPTED
            acked.append((d.event_id, reward))
        exports = converge_workers(proc.target, 2, r)
        assert set(exports) == pids
        states = {e[0] for e in exports.values()}
        assert len(states) == 1, "the workers hold different learned states"
        assert [e[2] for e in exports.values()] == [len(acked)] * 2
        assert {e for e, _ in acked} <= feedback_claims(r)
        # The kernel spread the connections: each worker answered Selects and Feedbacks itself (its counters
        # count the RPCs it served), and each applied the whole log (its policy version).
        seq = int(r.get("edgesel:{vision}:seq"))  # type: ignore[arg-type]
        per_worker = {pid: scrape(listen) for pid, listen in metrics.items()}
        for pid, m in per_worker.items():
            assert m.get(HANDLED % "Select", 0) > 0 and m.get(HANDLED % "Feedback", 0) > 0, (pid, m)
            assert m['edgesel_policy_version{space="vision"}'] == seq
        for what in ("Select", "Feedback"):
            assert sum(m[HANDLED % what] for m in per_worker.values()) == len(acked)
        assert sum(m['edgesel_feedback_total{space="vision"}'] for m in per_worker.values()) == len(acked)
    finally:
        code = proc.terminate(timeout=120) if proc.alive() else None
    assert code == 0, "\n".join(proc.stderr_lines[-30:])
    stopped = worker_events(proc, "stopped cleanly")
    assert {e.get("pid") for e in stopped} >= pids, "a worker did not stop gracefully"
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"


@requires_redis
def test_a_killed_worker_is_restarted_and_no_acknowledged_feedback_is_lost(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """kill -9 of one worker under load: the supervisor logs it and starts a new one on the same port, which
    catches up from Redis; every acknowledged Feedback is in the log and learned by both workers."""
    r = redis_server.client()
    proc = start_workers(tmp_path, redis_server, 2, snapshot_every=30)
    try:
        started = {e["worker"]: e["pid"] for e in worker_events(proc, "worker started")}
        victim_index, victim = 1, started[1]
        # 18 connections of their own (6 threads x 3 stubs): the kernel spreads them over both workers.
        with Load([proc.target] * 3, workers=6, channel_options=OWN_CONNECTION) as load:
            load.wait_acked(150, timeout=120)
            os.kill(victim, signal.SIGKILL)
            restarted = wait_for(
                lambda: [
                    e for e in worker_events(proc, "worker started") if e["pid"] not in started.values()
                ],
                "the supervisor did not restart the killed worker",
                timeout=120,
            )
            assert [(e["worker"], e["restart"]) for e in restarted] == [(victim_index, 1)]
            died = worker_events(proc, "worker died")
            assert [(e["worker"], e["pid"], e["signal"]) for e in died] == [(victim_index, victim, "SIGKILL")]
            new_pid = restarted[0]["pid"]
            wait_for(
                lambda: any(e.get("pid") == new_pid for e in worker_events(proc, "edgesel server listening")),
                "the restarted worker did not listen",
                timeout=120,
            )
            n = len(load.acked)
            load.wait_acked(n + 150, timeout=120)  # the load goes on
        assert proc.alive()
        exports = converge_workers(proc.target, 2, r)
        assert set(exports) == {started[0], new_pid}
        assert len({e[0] for e in exports.values()}) == 1, "the restarted worker diverged"
        claims = feedback_claims(r)
        missing = [e for e, _ in load.acked if e not in claims]
        assert not missing, f"{len(missing)} acknowledged feedback(s) lost with the worker"
        assert {e[2] for e in exports.values()} == {len(claims)}
        # Every acknowledged Feedback again, each on a new connection: both workers, the restarted one too,
        # know every claim.
        for event_id, reward in load.acked:
            with grpc.insecure_channel(proc.target, options=OWN_CONNECTION) as ch:
                fb = sel_grpc.SelectionServiceStub(ch).Feedback(
                    selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=10
                )
            assert fb.status == DUPLICATE, event_id
        new_metrics = [
            e["metrics_listen"] for e in worker_events(proc, "metrics listening") if e["pid"] == new_pid
        ]
        assert scrape(new_metrics[0]).get(HANDLED % "Feedback", 0) > 0, (
            "the restarted worker served no connection"
        )
    finally:
        code = proc.terminate(timeout=120) if proc.alive() else None
    assert code == 0, "\n".join(proc.stderr_lines[-30:])


@requires_redis
def test_sigterm_to_the_supervisor_stops_every_worker_gracefully(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    proc = start_workers(tmp_path, redis_server, 3)
    pids = {e["pid"] for e in worker_events(proc, "worker started")}
    assert len(pids) == 3
    code = proc.terminate(timeout=120)
    assert code == 0, "\n".join(proc.stderr_lines[-30:])
    logs = json_logs(proc)
    assert {e["pid"] for e in logs if e.get("msg") == "stopped cleanly" and "worker" in e} == pids
    assert [e for e in logs if e.get("msg") == "workers stopped"] != []
    assert not [e for e in logs if e.get("msg") == "worker died"]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_must_be_a_positive_integer(tmp_path: Path, value: str) -> None:
    cfg = write_config(tmp_path)
    cmd = [sys.executable, "-m", "edgesel_server.cli", "--config", str(cfg), "--workers", value]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--workers" in done.stderr, done.stderr


@requires_redis
def test_a_port_in_use_is_refused_not_shared(tmp_path: Path, redis_server: RedisServer) -> None:
    """SO_REUSEPORT lets the workers of one supervisor share a port; nothing else may join it: neither a
    single server (which does not set it) nor a second supervisor (which probes the port first)."""
    proc = start_workers(tmp_path, redis_server, 2)
    try:
        cfg = tmp_path / "edgesel.toml"
        for extra in ([], ["--workers", "2"]):
            cmd = [sys.executable, "-m", "edgesel_server.cli", "--config", str(cfg), "--listen", proc.target,
                   "--data-dir", str(tmp_path / "other"), *extra]  # fmt: skip
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1, (extra, done.stdout, done.stderr[-2000:])
            assert "LISTENING" not in done.stdout and "cannot listen on" in done.stderr, done.stderr[-2000:]
    finally:
        assert proc.terminate(timeout=120) == 0


@requires_redis
def test_the_bench_sums_the_workers_cpu_under_the_supervisor_pid(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """`edgesel-bench --server-pid <supervisor>`: the workers' CPU is counted (they are its children), and
    each process's share is reported."""
    proc = start_workers(tmp_path, redis_server, 2)
    try:
        assert proc.proc is not None
        workers = {e["pid"] for e in worker_events(proc, "worker started")}
        out = tmp_path / "bench.json"
        cmd = [sys.executable, "-m", "edgesel_tools.bench.cli", "--config", str(tmp_path / "edgesel.toml"),
               "--space", "vision", "--phases", "select,feedback", "--duration", "1.5", "--concurrency", "8",
               "--processes", "2", *(["--target", proc.target] * 4), "--server-pid", str(proc.proc.pid),
               "--json", str(out)]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(out.read_text())
        for kind in ("select", "feedback"):
            r = report[kind]
            by_pid = {int(p): c for p, c in r["server_cpu_cores_by_pid"].items()}
            assert set(by_pid) == workers | {proc.proc.pid}, (kind, by_pid)
            assert abs(sum(by_pid.values()) - r["server_cpu_cores"]) <= 0.01, (kind, r)
        # Every worker applies every Feedback (whichever served it), so each has CPU of its own in that
        # phase, however the kernel spread the connections; the supervisor only waits.
        fb = {int(p): c for p, c in report["feedback"]["server_cpu_cores_by_pid"].items()}
        assert min(fb[w] for w in workers) > fb[proc.proc.pid], fb
        assert report["errors"] == {}
        assert "server cores by process" in done.stdout
    finally:
        assert proc.terminate(timeout=120) == 0

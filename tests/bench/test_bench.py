"""edgesel-bench end to end: a short run against a server it starts, and the JSON other tools read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_the_promised_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    config = str(ROOT / "examples/edgesel.toml")
    cmd = [sys.executable, "-m", "edgesel_tools.bench.cli", "--config", config, "--duration", "1.5",
           "--concurrency", "4", "--json", str(out), "--catalog-sizes", "8,40"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for kind in ("select", "feedback", "floor"):
        r = report[kind]
        assert r["count"] > 0 and r["rps"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert report["errors"] == {}
    assert 0 < report["select"]["rps_vs_floor"] and 0 < report["feedback"]["p99_vs_floor"]
    learning = report["learning"]
    assert learning["decisions"] > 0 and 0 < learning["mean_qoe"] <= learning["oracle_mean_qoe"] + 1e-9
    assert set(report["catalog_scaling"]["select_rps"]) == {"8", "40"}
    assert report["server_rss_mb"]["start"] > 0
    assert "req/s" in proc.stdout and "learning:" in proc.stdout
    check_cpu_figures(report, proc.stdout)


def check_cpu_figures(report: dict, stdout: str) -> None:
    """Server and client CPU per call from process accounting: present for every phase, and plausible (a
    gRPC call on loopback costs a server somewhere between a microsecond and a second of CPU)."""
    for kind in ("floor", "select", "feedback", "mixed_cpu"):
        r = report[kind]
        assert 1 <= r["server_cpu_us_per_call"] < 1e6, (kind, r)
        assert 1 <= r["client_cpu_us_per_call"] < 1e6, (kind, r)
        assert 0 < r["server_cpu_cores"] and 0 < r["client_cpu_cores_per_process"]
        # The load generator's ceiling is what its CPU per call allows on one core per process.
        expected = report["settings"]["processes"] * 1e6 / r["client_cpu_us_per_call"]
        assert abs(r["client_ceiling_rps"] - expected) <= 0.01 * expected + 1, (kind, r)
        assert r["client_bound"] == (r["client_cpu_cores_per_process"] >= 0.85)
    for kind in ("select", "feedback", "mixed_cpu"):
        over = report[kind]["server_cpu_us_per_call"] - report["floor"]["server_cpu_us_per_call"]
        assert abs(report[kind]["server_cpu_us_per_call_vs_floor_us"] - over) <= 0.2
    assert report["client"]["ceiling_rps"] == report["floor"]["client_ceiling_rps"] > 0
    assert "CPU/call" in stdout and "load generator ceiling:" in stdout


def test_process_cpu_counts_a_busy_child_and_its_descendants(tmp_path: Path) -> None:
    """/proc accounting of another process: a child that burns CPU in a grandchild is charged for it."""
    from edgesel_tools.bench.cpu import process_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(30)"
    parent = (
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\ntime.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        cpu = 0.0
        while time.monotonic() < deadline:
            cpu = process_cpu_s([proc.pid]) or 0.0
            if cpu >= 0.6:
                break
            time.sleep(0.05)
        assert 0.6 <= cpu < 5.0, cpu
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the grandchild too
        proc.wait()
    assert process_cpu_s([proc.pid]) is None  # reaped: nothing to read


def test_mixed_phase_errors_name_the_call_that_failed(tmp_path: Path) -> None:
    """A space whose rewards stop at 0.5 refuses the bench's higher ones: those are Feedback errors (a mixed
    phase once filed every error under Select), and the report shows the first one's reason."""
    config = tmp_path / "edgesel.toml"
    text = (ROOT / "examples/edgesel.toml").read_text()
    config.write_text(text.replace("[space.qoe]\n", "[space.qoe]\nreward_max = 0.5\n", 1))
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "edgesel_tools.bench.cli", "--config", str(config), "--duration", "1.5",
           "--concurrency", "4", "--phases", "mixed", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["errors"]) == {"feedback:INVALID_ARGUMENT"}, report["errors"]
    assert report["errors"]["feedback:INVALID_ARGUMENT"] > 0
    assert "reward" in report["error_examples"]["feedback:INVALID_ARGUMENT"]
    assert "first feedback:INVALID_ARGUMENT:" in proc.stdout

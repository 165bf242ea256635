"""edgesel-bench end to end: a short run against a server it starts, and the JSON other tools read."""

from __future__ import annotations

import json
import subprocess
import sys
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

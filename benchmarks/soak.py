"""Soak: a real edgesel server under full load for long; its memory must stay flat and no call may fail.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--concurrency 16] [--config examples/edgesel.toml]

Starts `edgesel-server` (embedded SQLite store, a fresh data dir), runs `edgesel-bench --phases mixed`
against it for --duration seconds (simulated devices doing Select then Feedback, so decisions are both made
and closed), and samples the server's resident memory (VmRSS from /proc/<pid>/status) every --sample-s
seconds meanwhile. Prints the RSS series, the first/last-third medians and their ratio, the least-squares
slope in MB per minute, the bench's throughput and its error counts, and writes everything to --json.
"Flat" is judged from the second half only: the first minutes include warm-up (allocator arenas, caches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgesel_server.process import server_command, start_listening, stop


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    ts = [t for t, _ in samples]
    ms = [m for _, m in samples]
    t_mean, m_mean = statistics.fmean(ts), statistics.fmean(ms)
    var = sum((t - t_mean) ** 2 for t in ts)
    return 60.0 * sum((t - t_mean) * (m - m_mean) for t, m in samples) / var if var else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="examples/edgesel.toml")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of full load")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--json", default="out/soak.json")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="edgesel-soak-") as tmp:
        proc, target = start_listening(server_command(args.config, Path(tmp) / "data"))
        samples: list[tuple[float, float]] = []
        done = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
                done.wait(args.sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        bench_json = Path(tmp) / "bench.json"
        bench = [sys.executable, "-m", "edgesel_tools.bench.cli", "--target", target, "--config", args.config,
                 "--server-pid", str(proc.pid), "--phases", "mixed", "--duration", str(args.duration),
                 "--concurrency", str(args.concurrency), "--json", str(bench_json)]  # fmt: skip
        try:
            rc = subprocess.run(bench, check=False).returncode
        finally:
            done.set()
            sampler.join()
            samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
            stop(proc)
        result = json.loads(bench_json.read_text()) if bench_json.exists() else {}

    third = max(1, len(samples) // 3)
    first = statistics.median(m for _, m in samples[:third])
    last = statistics.median(m for _, m in samples[-third:])
    second_half = samples[len(samples) // 2 :]
    report = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "bench_rc": rc,
        "rss_mb": [[round(t, 1), round(m, 2)] for t, m in samples],
        "rss_first_third_median_mb": first,
        "rss_last_third_median_mb": last,
        "rss_last_vs_first": last / first,
        "rss_slope_mb_per_min_second_half": slope_mb_per_min(second_half),
        "mixed": result.get("mixed"),
        "errors": result.get("errors"),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print("RSS (s, MB):", " ".join(f"{t:.0f}:{m:.1f}" for t, m in samples))
    print(f"RSS median first third {first:.1f} MB, last third {last:.1f} MB (x{last / first:.3f}); "
          f"slope over the second half {report['rss_slope_mb_per_min_second_half']:+.3f} MB/min")  # fmt: skip
    print("mixed:", json.dumps(result.get("mixed")))
    print("errors:", json.dumps(result.get("errors")))
    print(f"bench exit code {rc}; report in {args.json}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

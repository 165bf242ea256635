"""Soak: a real edgesel server under full load for long; its memory must stay flat and no call may fail.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--concurrency 16] [--config examples/edgesel.toml]

Starts `edgesel-server` (embedded SQLite store, a fresh data dir), runs `edgesel-bench --phases mixed`
against it for --duration seconds (simulated devices doing Select then Feedback, so decisions are both made
and closed), and samples the server's resident memory (VmRSS from /proc/<pid>/status) every --sample-s
seconds meanwhile. Prints the RSS series, the first/last-third medians and their ratio, the least-squares
slope in MB per minute, the bench's throughput and its error counts, and writes everything to --json.
"Flat" is judged from the second half only: the first minutes include warm-up (allocator arenas, caches).

To tell a leak from a cache filling up, the server runs with a sampler thread of this script inside it
(`--serve` below; the server itself is unchanged) that also records, every --sample-s: SQLite's own heap
(`sqlite3_memory_used`, from the libsqlite3 the sqlite3 module uses: its page caches, bounded by
`cache_size` per connection), the Python allocator's live blocks (`sys.getallocatedblocks`: a leak of Python
objects grows it), and the open SQLite connections. Their first/last-third medians are in the report.
`--tracemalloc FRAMES` also traces the server's Python allocations and reports what grew between 1/5 and 4/5
of the run, by traceback (the server then runs several times slower: use it to find a leak, not to soak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgesel_server.process import server_command, start_listening, stop

MEMORY_FILE_ENV = "EDGESEL_SOAK_MEMORY"


def serve(argv: list[str]) -> int:
    """Inside the server process: start the sampler thread, then run the server as `edgesel-server` does."""
    import ctypes
    import ctypes.util
    import gc
    import os
    import sqlite3

    lib_name = ctypes.util.find_library("sqlite3")
    lib = ctypes.CDLL(lib_name) if lib_name else None
    if lib is not None:
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    out = Path(os.environ[MEMORY_FILE_ENV])
    every = float(os.environ.get("EDGESEL_SOAK_SAMPLE_S", "10"))

    def sample() -> None:
        t0 = time.monotonic()
        while True:
            row = {
                "t": round(time.monotonic() - t0, 1),
                "sqlite_heap_mb": None if lib is None else lib.sqlite3_memory_used() / 1e6,
                "python_blocks": sys.getallocatedblocks(),
                "sqlite_connections": sum(isinstance(o, sqlite3.Connection) for o in gc.get_objects()),
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            time.sleep(every)

    threading.Thread(target=sample, name="soak-sampler", daemon=True).start()
    frames = int(os.environ.get("EDGESEL_SOAK_TRACEMALLOC", "0"))
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
        at = [float(v) for v in os.environ["EDGESEL_SOAK_TRACEMALLOC_AT"].split(",")]

        def compare() -> None:
            # Two snapshots of the loaded server (after warm-up, near the end): what grew, by traceback.
            time.sleep(at[0])
            gc.collect()
            first = tracemalloc.take_snapshot()
            time.sleep(at[1] - at[0])
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(first, "traceback")
            total = sum(d.size_diff for d in grown) / 1024
            lines = [f"total {total:+.1f} KiB from {at[0]:.0f} s to {at[1]:.0f} s"]
            for d in grown[:12]:
                lines.append(f"{d.size_diff / 1024:+.1f} KiB {d.count_diff:+d} blocks")
                lines += ["    " + line for line in d.traceback.format()[-12:]]
            out.with_suffix(".tracemalloc.txt").write_text("\n".join(lines) + "\n")

        threading.Thread(target=compare, name="soak-tracemalloc", daemon=True).start()
    from edgesel_server import cli

    return cli.main(argv)


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
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="trace the server's Python allocations (FRAMES deep; slows it several times) and "
                    "report what grew between 1/5 and 4/5 of the run, by traceback")  # fmt: skip
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="edgesel-soak-") as tmp:
        memory_file = Path(tmp) / "memory.jsonl"
        os.environ[MEMORY_FILE_ENV] = str(memory_file)
        os.environ["EDGESEL_SOAK_SAMPLE_S"] = str(args.sample_s)
        os.environ["EDGESEL_SOAK_TRACEMALLOC"] = str(args.tracemalloc)
        os.environ["EDGESEL_SOAK_TRACEMALLOC_AT"] = f"{args.duration / 5},{args.duration * 4 / 5}"
        cmd = server_command(args.config, Path(tmp) / "data")
        cmd[1:3] = [__file__, "--serve", "--"]  # python -m edgesel_server.cli ... -> this script's serve()
        proc, target = start_listening(cmd)
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
        inside = (
            [json.loads(line) for line in memory_file.read_text().splitlines()]
            if memory_file.exists()
            else []
        )
        traced = memory_file.with_suffix(".tracemalloc.txt")
        grown = traced.read_text() if traced.exists() else None

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
        "inside": inside,
    }
    if args.tracemalloc:
        report["tracemalloc"] = grown  # None: the server stopped before the second snapshot
    k = max(1, len(inside) // 3)
    for key in ("sqlite_heap_mb", "python_blocks", "sqlite_connections"):
        values = [row[key] for row in inside if row[key] is not None]
        if values:
            report[f"{key}_first_third_median"] = statistics.median(values[:k])
            report[f"{key}_last_third_median"] = statistics.median(values[-k:])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print("RSS (s, MB):", " ".join(f"{t:.0f}:{m:.1f}" for t, m in samples))
    print(f"RSS median first third {first:.1f} MB, last third {last:.1f} MB (x{last / first:.3f}); "
          f"slope over the second half {report['rss_slope_mb_per_min_second_half']:+.3f} MB/min")  # fmt: skip
    for key in ("sqlite_heap_mb", "python_blocks", "sqlite_connections"):
        if f"{key}_first_third_median" in report:
            print(f"{key}: median first third {report[f'{key}_first_third_median']:.6g}, "
                  f"last third {report[f'{key}_last_third_median']:.6g}")  # fmt: skip
    if args.tracemalloc:
        print("what grew (tracemalloc):\n" + (grown or "no second snapshot: run longer"))
    print("mixed:", json.dumps(result.get("mixed")))
    print("errors:", json.dumps(result.get("errors")))
    print(f"bench exit code {rc}; report in {args.json}")
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        raise SystemExit(serve(sys.argv[3:]))
    raise SystemExit(main())

"""CPU time per call, from the kernel's process accounting.

Throughput on a shared machine swings with whatever else runs; the CPU a process spends per completed call
does not (much): it is what a call costs, whoever else is busy. The bench reads the server's utime + stime
from /proc/<pid>/stat before and after each phase, and each load-generator process measures its own
(`time.process_time`, the same accounting), so a result can say "server µs per call" and whether the load
generator, not the server, was the limit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A load-generator process busy at least this share of one core is at its own ceiling: the phase measured
# how fast the client can issue calls, not how fast the server answers them.
CLIENT_BOUND_AT = 0.85


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for c in children:
            out.append(int(c))
            out.extend(_descendants(int(c)))
    return out


def _own_cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def process_cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """utime + stime, in seconds, of each of these processes and of their live descendants (e.g. the workers
    of `edgesel-server --workers N` under its supervisor), by pid; those not readable are left out."""
    out: dict[int, float] = {}
    for pid in {p for root in pids for p in (root, *_descendants(root))}:
        s = _own_cpu_s(pid)
        if s is not None:
            out[pid] = s
    return out


def process_cpu_s(pids: list[int]) -> float | None:
    """utime + stime, in seconds, of these processes and their live descendants (None if none is readable,
    e.g. no /proc on this system)."""
    by_pid = process_cpu_by_pid(pids)
    return sum(by_pid.values()) if by_pid else None


def cpu_figures(
    calls: int,
    elapsed_s: float,
    server_cpu_s: float | None,
    client_cpu_s: float,
    processes: int,
    server_cpu_by_pid: dict[int, float] | None = None,
) -> dict[str, Any]:
    """Per-call CPU of one phase, the server's and the load generator's; and whether the latter was the
    limit. With several server processes (replicas, or a supervisor and its workers), also each one's share
    of a core (`server_cpu_cores_by_pid`): the per-call figure is their sum, the CPU one call costs whichever
    process served it."""
    out: dict[str, Any] = {}
    if calls <= 0 or elapsed_s <= 0:
        return out
    if server_cpu_s is not None:
        out["server_cpu_us_per_call"] = round(server_cpu_s / calls * 1e6, 1)
        out["server_cpu_cores"] = round(server_cpu_s / elapsed_s, 3)
    if server_cpu_by_pid and len(server_cpu_by_pid) > 1:
        out["server_cpu_cores_by_pid"] = {
            str(pid): round(s / elapsed_s, 3) for pid, s in sorted(server_cpu_by_pid.items())
        }
    out["client_cpu_us_per_call"] = round(client_cpu_s / calls * 1e6, 1)
    busy = client_cpu_s / elapsed_s / max(1, processes)
    out["client_cpu_cores_per_process"] = round(busy, 3)
    # What the load generator could issue if every one of its processes had a whole core to itself.
    if client_cpu_s > 0:
        out["client_ceiling_rps"] = round(processes * calls / client_cpu_s, 1)
    out["client_bound"] = busy >= CLIENT_BOUND_AT
    return out

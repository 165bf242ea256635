"""Cost of the pending-decision bookkeeping per Select with 0 and 200k decisions waiting for feedback.

    .venv/bin/python benchmarks/pending_bench.py [--pending 200000]

Each round is what one Select and one background sweep tick do: add a decision (evicting the oldest at the
bound), and sweep expired ones. `PendingDecisions` (server/edgesel_server/pending.py) is timed beside the
plain-dict version it replaced (a copy of the old code is below), interleaved in one process; the numbers
are µs per round, median of 5 repeats, and the ratio to the same structure with nothing pending.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edgesel_server.pending import PendingDecisions
from edgesel_server.store.base import Decision


class PlainDictPending:
    """The structure before issue 14 (dict, copy-then-scan sweep, next(iter()) eviction)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, Decision] = {}

    def add(self, d: Decision) -> list[Decision]:
        evicted = []
        while len(self._open) >= self.limit:
            evicted.append(self._open.pop(next(iter(self._open))))
        self._open[d.event_id] = d
        return evicted

    def pop_expired(self, now: float) -> list[Decision]:
        out = []
        for event_id, d in list(self._open.items()):
            if d.deadline > now:
                break
            out.append(self._open.pop(event_id))
        return out


def run(cls, pending: int, rounds: int) -> float:
    x = np.zeros(4)
    p = cls(max(pending, 1))
    for i in range(pending):
        p.add(Decision(f"w{i}", "s", "m", x, 0.0, 1e12))
    start = time.perf_counter()
    for i in range(rounds):
        p.add(Decision(f"n{i}", "s", "m", x, 0.0, 1e12))
        if i % 50 == 0:  # ~one sweep per 50 Selects (0.5 s at 100 Selects/s per space)
            p.pop_expired(0.0)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pending", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5_000)
    args = ap.parse_args()
    res: dict[tuple[str, int], list[float]] = {}
    for _ in range(5):
        for cls in (PendingDecisions, PlainDictPending):
            for n in (0, args.pending):
                res.setdefault((cls.__name__, n), []).append(run(cls, n, args.rounds))
    print(f"{'structure':<18} {'pending':>8} {'µs/round':>9} {'vs none':>8}")
    for cls in (PendingDecisions, PlainDictPending):
        base = statistics.median(res[(cls.__name__, 0)])
        for n in (0, args.pending):
            v = statistics.median(res[(cls.__name__, n)])
            print(f"{cls.__name__:<18} {n:>8} {v:9.2f} {v / base:8.2f}")


if __name__ == "__main__":
    main()

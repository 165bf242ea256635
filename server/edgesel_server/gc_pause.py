"""Pausing Python's cyclic garbage collector around bulk decoding of the log.

A page of a replica's log read (up to 2,048 entries) is ~35k Python objects built by hiredis and then
~2,000 LogEvents; allocating them runs dozens of young-generation collections and, as survivors pile up,
older ones that walk the whole heap. None of these objects is part of a reference cycle (bytes, flat lists,
dataclasses of scalars), so the collections find nothing: measured ~2 µs per event of a replica's catch-up
(benchmarks/replica_bench.py), as much as the decoding itself. The collector is process-wide, so the pause
is counted across threads: it ends when the last section that paused it ends, and a collector that was
already disabled (by the embedding program) stays disabled. A section must not block for long (a pause
only delays collecting cyclic garbage; nothing is lost), so callers pause only reads that return at once.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False  # whether the last section to end re-enables the collector


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """The cyclic GC is disabled inside (if `pause`), and re-enabled when the last such section ends if it
    was enabled when the first began."""
    global _depth, _resume
    if not pause:
        yield
        return
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()

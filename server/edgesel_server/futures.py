"""Handing the store's results back to the event loop in bulk.

`asyncio.wrap_future` wakes the loop once per future (a write to its self-pipe each). The store's writer
resolves a whole group commit at once, so `LoopBridge` queues the finished futures and wakes the loop once for
all of them.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import Future
from typing import Any


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: collections.deque[tuple[asyncio.Future, Future]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def wrap(self, fut: Future) -> asyncio.Future:
        """An asyncio future on this bridge's loop that completes like `fut` (resolved by any thread)."""
        waiter = self.loop.create_future()
        fut.add_done_callback(lambda f: self._done(waiter, f))
        return waiter

    def _done(self, waiter: asyncio.Future, fut: Future) -> None:
        self._ready.append((waiter, fut))
        with self._lock:
            if self._scheduled:
                return  # a flush is already on its way and will see this one
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._scheduled = False
        while self._ready:
            waiter, fut = self._ready.popleft()
            if waiter.done():  # the awaiting RPC was cancelled
                continue
            exc: Any = fut.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(fut.result())

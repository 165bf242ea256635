"""LoopBridge: store futures resolved on another thread reach their asyncio waiters, in bulk, intact."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from edgesel_server.futures import LoopBridge


async def test_results_and_errors_from_another_thread_reach_every_waiter() -> None:
    bridge = LoopBridge(asyncio.get_running_loop())
    futs: list[Future] = [Future() for _ in range(500)]
    waiters = [bridge.wrap(f) for f in futs]
    waiters[7].cancel()  # an RPC that went away: its result is dropped, the others still arrive

    def resolve() -> None:
        for i, f in enumerate(futs):
            if i % 10 == 3:
                f.set_exception(KeyError(i))
            else:
                f.set_result(i * 2)

    t = threading.Thread(target=resolve)
    t.start()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    t.join()
    for i, r in enumerate(results):
        if i == 7:
            assert isinstance(r, asyncio.CancelledError)
        elif i % 10 == 3:
            assert isinstance(r, KeyError) and r.args == (i,)
        else:
            assert r == i * 2


async def test_an_already_finished_future_completes_too() -> None:
    bridge = LoopBridge(asyncio.get_running_loop())
    f: Future = Future()
    f.set_result("done")
    assert await bridge.wrap(f) == "done"
    g: Future = Future()
    g.set_exception(ValueError("nope"))
    with pytest.raises(ValueError, match="nope"):
        await bridge.wrap(g)

"""The Select handler's own CPU cost, in one process: the RPC guard, the servicer and the engine, no gRPC.

    .venv/bin/python benchmarks/select_handler.py [--calls 20000] [--profile]

A real Engine on examples/edgesel.toml (a fresh data directory) with the decision store taken out
(`Engine._persist_decision` returns at once: this measures the handler, not durability), its Select wrapped
by the same `RpcGuard` the server installs (raw bytes in, parsed there; metrics observed), called with 64
different serialized SelectRequests and the response serialized, as gRPC would. Prints µs per Select;
`--profile` adds a cProfile listing by cumulative time. Inside a loaded server the same code costs ~2.5x this
(docs/performance.md), so use it to compare versions of the handler side by side, not to size a server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import pstats
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from edgesel.v1 import selection_pb2
from edgesel_server.config import load_config
from edgesel_server.engine import Decision, Engine
from edgesel_server.metrics import Metrics
from edgesel_server.rpc_guard import RpcGuard, _unary_handlers
from edgesel_server.schema import FeatureSpec
from edgesel_server.servicers import SelectionServicer

ROOT = Path(__file__).resolve().parents[1]


class Context:
    """What the guard and the servicer read from a grpc.aio context on the success path."""

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def code(self) -> None:
        return None


async def run(calls: int, profile: bool) -> None:
    cfg = load_config(ROOT / "examples" / "edgesel.toml")
    with tempfile.TemporaryDirectory(prefix="edgesel-handler-") as tmp:
        engine = Engine(dataclasses.replace(cfg, data_dir=Path(tmp)))
        engine.start()

        async def not_stored(d: Decision) -> None:
            return None

        engine._persist_decision = not_stored  # type: ignore[method-assign]
        service = selection_pb2.DESCRIPTOR.services_by_name["SelectionService"]
        handler = _unary_handlers(service, SelectionServicer(engine))["Select"]
        call = RpcGuard(metrics=Metrics(engine))._wrap(handler, service.full_name, "Select", True)
        serialize: Any = handler.response_serializer
        name, space = next(iter(engine.spaces.items()))
        numeric = [f for f in space.device_schema.specs if isinstance(f, FeatureSpec)]
        rng = random.Random(0)
        requests = [
            selection_pb2.SelectRequest(
                space=name, device_features={f.name: rng.uniform(f.min, f.max) for f in numeric}
            ).SerializeToString()
            for _ in range(64)
        ]
        ctx: Any = Context()  # the guard reads no more of a context than this

        async def loop(n: int) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                serialize(await call(requests[i % 64], ctx))
            return (time.perf_counter() - t0) / n * 1e6

        await loop(min(2000, calls))  # warm-up
        print(f"{await loop(calls):.1f} us per Select (guard + servicer + engine + serialization)")
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            await loop(calls)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        await engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    asyncio.run(run(args.calls, args.profile))


if __name__ == "__main__":
    main()

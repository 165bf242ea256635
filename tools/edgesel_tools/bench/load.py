"""Load generation: worker processes, each running many asyncio "devices" against one target.

A phase is one kind of call ("floor", "select", "feedback", "mixed") for a fixed duration at a fixed number of
calls in flight. Workers report every call's latency and status back to the parent, which aggregates them.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from edgesel.v1 import selection_pb2
from edgesel_tools.bench.cpu import process_cpu_by_pid
from edgesel_tools.bench.floor import METHOD as FLOOR_METHOD

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class PhaseSpec:
    kind: str  # floor | select | feedback | mixed
    targets: list[str]
    duration_s: float
    concurrency: int  # in flight per worker process
    space: str
    devices: list[dict[str, float]]
    fleet: Any = None  # mixed phase: an object with .sample(rng) -> (features, reward_fn)
    seed: int = 0


@dataclass
class PhaseResult:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)  # "kind:CODE" -> the first one's details
    rewards: list[float] = field(default_factory=list)
    regrets: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0  # the load generator's own CPU (all its worker processes) during the phase
    server_cpu_s: float | None = None  # the server processes' CPU over the phase (run_phase's server_pids)
    server_cpu_by_pid: dict[int, float] = field(default_factory=dict)  # the same, each process's own

    def merge(self, other: PhaseResult) -> None:
        for k, v in other.latencies_ms.items():
            self.latencies_ms.setdefault(k, []).extend(v)
        self.errors.update(other.errors)
        for key, example in other.error_examples.items():
            self.error_examples.setdefault(key, example)
        self.rewards.extend(other.rewards)
        self.regrets.extend(other.regrets)
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.client_cpu_s += other.client_cpu_s

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.latencies_ms.values())


class RegisteredSelectionStub:
    """SelectionService's Select and Feedback as methods registered with the channel, as the stubs of
    grpcio-tools >= 1.63 make them. The committed stubs come from grpcio-tools 1.49.1 so that the SDK runs on
    old device runtimes; their calls are unregistered, which looked a little costlier for the bench's own
    client (Select throughput with them 0.79-1.16x, median 0.88x, over 8 interleaved 5 s runs on the loaded
    2-core machine). The bench measures the server, so it keeps the client path it was measured with.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        service = "/edgesel.v1.SelectionService/"
        self.Select = channel.unary_unary(
            service + "Select",
            request_serializer=selection_pb2.SelectRequest.SerializeToString,
            response_deserializer=selection_pb2.SelectResponse.FromString,
            _registered_method=True,  # type: ignore[call-arg]  # what generated stubs pass
        )
        self.Feedback = channel.unary_unary(
            service + "Feedback",
            request_serializer=selection_pb2.FeedbackRequest.SerializeToString,
            response_deserializer=selection_pb2.FeedbackResponse.FromString,
            _registered_method=True,  # type: ignore[call-arg]  # what generated stubs pass
        )


async def _run_phase(spec: PhaseSpec, worker: int, progress: Any, event_ids: list[str]) -> PhaseResult:
    result = PhaseResult()
    rng = random.Random(spec.seed * 1000 + worker)
    # Each channel its own TCP connection, even to a target named twice: the workers of `edgesel-server
    # --workers N` share one port, and the kernel spreads connections, not calls, over them.
    channels = [grpc.aio.insecure_channel(t, options=OWN_CONNECTION) for t in spec.targets]
    stubs = [RegisteredSelectionStub(c) for c in channels]
    echoes = [
        c.unary_unary(
            FLOOR_METHOD,
            request_serializer=selection_pb2.SelectRequest.SerializeToString,
            response_deserializer=selection_pb2.SelectResponse.FromString,
        )
        for c in channels
    ]
    end = time.monotonic() + spec.duration_s
    lat: dict[str, list[float]] = {"select": [], "feedback": [], "floor": []}
    ids = list(event_ids)
    pending = [0]

    def record(kind: str, t0: float, code: str | None, details: str = "") -> None:
        lat[kind].append((time.perf_counter() - t0) * 1000)
        if code is not None:
            result.errors[f"{kind}:{code}"] += 1
            result.error_examples.setdefault(f"{kind}:{code}", details[:200])
        pending[0] += 1
        if pending[0] >= 25:  # the shared counter takes a lock: touch it rarely
            with progress.get_lock():
                progress.value += pending[0]
            pending[0] = 0

    async def device(d: int) -> None:
        i = d
        while time.monotonic() < end:
            i += spec.concurrency
            which = i % len(spec.targets)
            t0 = time.perf_counter()
            kind = spec.kind if spec.kind in ("floor", "feedback") else "select"  # the call in flight
            try:
                if spec.kind == "floor":
                    feats = spec.devices[i % len(spec.devices)]
                    await echoes[which](
                        selection_pb2.SelectRequest(space=spec.space, device_features=feats), timeout=10
                    )
                    record("floor", t0, None)
                elif spec.kind == "select":
                    feats = spec.devices[i % len(spec.devices)]
                    r = await stubs[which].Select(
                        selection_pb2.SelectRequest(space=spec.space, device_features=feats), timeout=10
                    )
                    ids.append(r.event_id)
                    record("select", t0, None)
                elif spec.kind == "feedback":
                    if not ids:
                        return
                    eid = ids.pop()
                    await stubs[which].Feedback(
                        selection_pb2.FeedbackRequest(event_id=eid, reward=rng.random()), timeout=10
                    )
                    record("feedback", t0, None)
                else:
                    feats, reward_of, best = spec.fleet.sample(rng)
                    r = await stubs[which].Select(
                        selection_pb2.SelectRequest(space=spec.space, device_features=feats), timeout=10
                    )
                    record("select", t0, None)
                    reward, expected = reward_of(r.model.model_id)
                    t0 = time.perf_counter()
                    kind = "feedback"
                    await stubs[(which + 1) % len(stubs)].Feedback(
                        selection_pb2.FeedbackRequest(event_id=r.event_id, reward=reward), timeout=10
                    )
                    record("feedback", t0, None)
                    result.rewards.append(expected)
                    result.regrets.append(best - expected)
            except grpc.aio.AioRpcError as e:
                record(kind, t0, e.code().name, e.details() or "")
                await asyncio.sleep(0.01)

    t_start = time.perf_counter()
    cpu_start = time.process_time()  # this whole process: the asyncio loop and gRPC's C-core threads
    await asyncio.gather(*(device(d) for d in range(spec.concurrency)))
    result.elapsed_s = time.perf_counter() - t_start
    result.client_cpu_s = time.process_time() - cpu_start
    for c in channels:
        await c.close()
    result.latencies_ms = {k: v for k, v in lat.items() if v}
    event_ids[:] = ids
    return result


def _worker(
    spec: PhaseSpec, worker: int, progress: Any, ids_in: list[str], out: Any, ready: Any, go: Any
) -> None:
    ids = list(ids_in)
    # Start together, once every worker has imported and the parent has read the server's CPU counters.
    with ready.get_lock():
        ready.value += 1
    go.wait()
    res = asyncio.run(_run_phase(spec, worker, progress, ids))
    out.put((worker, res, ids))


def run_phase(
    spec: PhaseSpec,
    processes: int,
    ids_by_worker: list[list[str]] | None = None,
    *,
    label: str = "",
    quiet: bool = False,
    on_tick: Callable[[float], str] | None = None,
    server_pids: list[int] | None = None,
) -> tuple[PhaseResult, list[list[str]]]:
    """Run a phase in `processes` worker processes with a live progress line; returns the merged result and
    the event ids each worker holds afterwards (select phases produce them, feedback phases consume them).
    `on_tick(elapsed_s)` is called about once a second; what it returns is appended to the progress line.
    With `server_pids`, the result's server_cpu_s is those processes' CPU from the start of the load (all
    workers ready) to the last worker's result."""
    ctx = mp.get_context("spawn")
    progress = ctx.Value("q", 0)
    ready = ctx.Value("i", 0)
    go = ctx.Event()
    out = ctx.Queue()
    ids_by_worker = ids_by_worker or [[] for _ in range(processes)]
    procs = [
        ctx.Process(target=_worker, args=(spec, w, progress, ids_by_worker[w], out, ready, go), daemon=True)
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    while ready.value < processes:
        if not all(p.is_alive() for p in procs):
            raise RuntimeError("a bench worker died before the phase started")
        time.sleep(0.01)
    server_cpu0 = process_cpu_by_pid(server_pids) if server_pids else None
    go.set()
    t0 = time.monotonic()
    results: dict[int, tuple[PhaseResult, list[str]]] = {}
    while len(results) < processes:
        try:
            w, res, ids = out.get(timeout=1.0)
            results[w] = (res, ids)
        except Exception:  # noqa: BLE001 - queue.Empty: time to print progress
            if not any(p.is_alive() for p in procs) and out.empty():
                raise RuntimeError("a bench worker died") from None
        el = time.monotonic() - t0
        extra = on_tick(el) if on_tick is not None else ""
        if not quiet:
            n = progress.value
            print(
                f"\r  {label:<9} {min(el, spec.duration_s):5.1f}/{spec.duration_s:.0f}s  {n:>8} calls  "
                f"{n / max(el, 1e-9):8.0f}/s  {extra}",
                end="",
                flush=True,
            )
    server_cpu1 = process_cpu_by_pid(server_pids) if server_pids else None
    if not quiet:
        print()
    for p in procs:
        p.join(timeout=10)
    merged = PhaseResult()
    for w in sorted(results):
        merged.merge(results[w][0])
    if server_cpu0 and server_cpu1:
        # Processes alive at both ends (a worker restarted meanwhile is left out).
        merged.server_cpu_by_pid = {
            p: server_cpu1[p] - server_cpu0[p] for p in server_cpu1 if p in server_cpu0
        }
        merged.server_cpu_s = sum(merged.server_cpu_by_pid.values())
    return merged, [results[w][1] for w in sorted(results)]

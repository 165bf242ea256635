"""`edgesel-bench`: load-test a running edgesel server, or one it starts itself, against this machine's floor.

    edgesel-bench --config examples/edgesel.toml --duration 10 --concurrency 16 --json out/bench.json
    edgesel-bench --target 127.0.0.1:50051 --space image-classification --duration 30

Phases, each for --duration seconds at --concurrency calls in flight (split over --processes workers):
  floor     a do-nothing unary RPC on the same grpc.aio stack: a SelectRequest in, a canned SelectResponse out
  select    Select only
  feedback  Feedback (durable) for the decisions the select phase made
  mixed     simulated devices doing Select then Feedback with a hidden ground-truth QoE (learning quality)
Results are printed and, with --json, written as {"select": {"rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"},
"feedback": {...}, "floor": {...}, "errors": {...} (by call and status; "error_examples": the first
one's details of each), "learning": {...}, "server_rss_mb": {...}}.

CPU per call (bench/cpu.py), in each phase's entry (mixed: "mixed_cpu"): server_cpu_us_per_call (the server's
utime + stime from /proc over the phase, per completed call, summed over the server processes and their
descendants, e.g. the workers under an `edgesel-server --workers N` supervisor, whose pid is enough; the
floor's is the floor server's; with several processes also server_cpu_cores_by_pid) and
server_cpu_us_per_call_vs_floor_us (that minus the floor's: edgesel's own work per call), server_cpu_cores,
client_cpu_us_per_call and client_cpu_cores_per_process (the load generator's own processes),
client_ceiling_rps and client_bound (true when the load generator was busy >= 85% of a core per process: the
phase then measured the client). "client": {"ceiling_rps"} is the floor phase's: the most calls per second
this load generator can issue at all. Without a server pid (--target without --server-pid) there are no
server figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgesel_server.config import load_config
from edgesel_server.process import server_command, start_listening, stop
from edgesel_server.schema import FeatureSchema, FeatureSpec
from edgesel_tools.bench.cpu import cpu_figures
from edgesel_tools.bench.fleet import BenchFleet
from edgesel_tools.bench.load import PhaseResult, PhaseSpec, run_phase


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - psutil missing or process gone: just no memory figure
        return None


class MemorySampler:
    """The server's RSS every few seconds of each phase, to show that memory stays flat on long runs."""

    def __init__(self, pid: int | None, every_s: float = 5.0) -> None:
        self.pid = pid
        self.every_s = every_s
        self.timeline: dict[str, list[list[float]]] = {}

    def tick(self, phase: str) -> Callable[[float], str]:
        points = self.timeline.setdefault(phase, [])

        def sample(elapsed: float) -> str:
            if self.pid is None:
                return ""
            if not points or elapsed - points[-1][0] >= self.every_s:
                mb = _rss_mb(self.pid)
                if mb is not None:
                    points.append([round(elapsed, 1), round(mb, 1)])
            return f"server RSS {points[-1][1]:.0f} MB" if points else ""

        return sample


def summarize(latencies: list[float], elapsed: float, errors: int = 0) -> dict[str, float]:
    if not latencies:
        return {"rps": 0.0, "count": 0, "errors": errors}
    a = np.asarray(latencies)
    return {
        "rps": round(len(a) / elapsed, 1),
        "count": int(len(a)),
        "errors": errors,
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def _errors(res: PhaseResult, kind: str) -> int:
    return sum(v for k, v in res.errors.items() if k.startswith(kind + ":"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="edgesel-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--target",
        action="append",
        help="HOST:PORT of a running server (repeat for replicas); give --config too for its schema",
    )
    p.add_argument("--config", required=True, help="the server config; without --target the bench starts it")
    p.add_argument(
        "--catalog-sizes",
        default="",
        help="e.g. 8,128: also measure Select throughput with catalogs of these sizes (zoo models added over "
        "CatalogService), each on a fresh server, and report the ratio",
    )
    p.add_argument("--space", help="the space to use (default: the config's first)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight, all workers together")
    p.add_argument("--processes", type=int, default=1, help="worker processes generating load")
    p.add_argument("--phases", default="floor,select,feedback,mixed")
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        help="with --target: the server's pid, to report its memory and CPU per call (repeat for replicas; "
        "CPU is summed over them, memory is the first one's)",
    )
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(phases) - {"floor", "select", "feedback", "mixed"}
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if args.concurrency < args.processes:
        p.error("--concurrency must be at least --processes")

    procs: list[subprocess.Popen] = []
    tmp = tempfile.mkdtemp(prefix="edgesel-bench-")
    try:
        cfg = load_config(args.config)
        space_cfg = (
            next((sp for sp in cfg.spaces if sp.name == args.space), None) if args.space else cfg.spaces[0]
        )
        if space_cfg is None:
            p.error(f"space {args.space!r} is not in {args.config}")
        if args.target:
            targets, server_pids = args.target, list(args.server_pid or [])
        else:
            server, target = start_listening(server_command(args.config, os.path.join(tmp, "data")))
            procs.append(server)
            targets, server_pids = [target], [server.pid]
        server_pid = server_pids[0] if server_pids else None
        fleet = BenchFleet(space_cfg, seed=args.seed)
        space = space_cfg.name
        devices = fleet.device_feature_samples(64)
        per_worker = max(1, args.concurrency // args.processes)
        report: dict[str, Any] = {
            "settings": {
                "targets": targets,
                "space": space,
                "duration_s": args.duration,
                "concurrency": per_worker * args.processes,
                "processes": args.processes,
                "cpu_count": os.cpu_count(),
            },
            "errors": {},
        }
        rss: dict[str, float | None] = {"start": _rss_mb(server_pid)}
        sampler = MemorySampler(server_pid)
        ids: list[list[str]] | None = None
        print(
            f"edgesel-bench: {len(targets)} target(s), space {space!r}, "
            f"{per_worker * args.processes} in flight, "
            f"{args.duration:g}s per phase"
        )
        errors: Counter = Counter()
        error_examples: dict[str, str] = {}
        for phase in phases:
            spec = PhaseSpec(
                kind=phase,
                targets=targets,
                duration_s=args.duration,
                concurrency=per_worker,
                space=space,
                devices=devices,
                fleet=fleet,
                seed=args.seed,
            )
            if phase == "floor":
                floor, ftarget = start_listening(
                    [sys.executable, "-m", "edgesel_tools.bench.floor", "--listen", "127.0.0.1:0"]
                )
                procs.append(floor)
                spec.targets = [ftarget]
                res, _ = run_phase(
                    spec, args.processes, label="floor", on_tick=sampler.tick(phase), server_pids=[floor.pid]
                )
                stop(floor)
                report["floor"] = summarize(
                    res.latencies_ms.get("floor", []), res.elapsed_s, _errors(res, "floor")
                )
            elif phase == "feedback":
                if not ids:
                    print("  feedback phase skipped: run the select phase first")
                    continue
                res, ids = run_phase(
                    spec, args.processes, ids, label="feedback", on_tick=sampler.tick(phase),
                    server_pids=server_pids,
                )  # fmt: skip
                report["feedback"] = summarize(
                    res.latencies_ms.get("feedback", []), res.elapsed_s, _errors(res, "feedback")
                )
            elif phase == "select":
                res, ids = run_phase(
                    spec, args.processes, label="select", on_tick=sampler.tick(phase), server_pids=server_pids
                )
                report["select"] = summarize(
                    res.latencies_ms.get("select", []), res.elapsed_s, _errors(res, "select")
                )
            else:
                if fleet is None:
                    print(
                        "  mixed phase skipped: it needs --config (its ground truth comes from the catalog)"
                    )
                    continue
                res, _ = run_phase(
                    spec, args.processes, label="mixed", on_tick=sampler.tick(phase), server_pids=server_pids
                )
                report["mixed"] = {
                    k: summarize(v, res.elapsed_s, _errors(res, k)) for k, v in res.latencies_ms.items()
                }
                report["learning"] = fleet.learning_report(res.rewards, res.regrets)
            cpu = cpu_figures(
                res.calls,
                res.elapsed_s,
                res.server_cpu_s,
                res.client_cpu_s,
                args.processes,
                res.server_cpu_by_pid,
            )
            report.setdefault("mixed_cpu" if phase == "mixed" else phase, {}).update(cpu)
            errors.update(res.errors)
            for k, v in res.error_examples.items():
                error_examples.setdefault(k, v)
            rss[f"after_{phase}"] = _rss_mb(server_pid)
        sizes = [int(x) for x in args.catalog_sizes.split(",") if x.strip()]
        if sizes:
            report["catalog_scaling"] = catalog_scaling(args, space_cfg, devices, sizes, per_worker, tmp)
            errors.update(report["catalog_scaling"].pop("_errors"))
        report["errors"] = dict(errors)
        if error_examples:
            report["error_examples"] = error_examples
        report["server_rss_mb"] = rss
        if sampler.timeline:
            report["server_rss_mb_timeline"] = sampler.timeline
        if "floor" in report:
            fl = report["floor"]
            for kind in ("select", "feedback"):
                if kind in report and fl.get("rps"):
                    report[kind]["rps_vs_floor"] = round(report[kind]["rps"] / fl["rps"], 3)
                    if "p99_ms" in report[kind]:
                        report[kind]["p99_vs_floor"] = round(report[kind]["p99_ms"] / fl["p99_ms"], 3)
            floor_us = fl.get("server_cpu_us_per_call")
            for kind in ("select", "feedback", "mixed_cpu"):
                mine = report.get(kind, {}).get("server_cpu_us_per_call")
                if mine is not None and floor_us is not None:
                    report[kind]["server_cpu_us_per_call_vs_floor_us"] = round(mine - floor_us, 1)
            if "client_ceiling_rps" in fl:
                report["client"] = {
                    "ceiling_rps": fl["client_ceiling_rps"],
                    "floor_client_cpu_us_per_call": fl["client_cpu_us_per_call"],
                    "processes": args.processes,
                }
        print_report(report)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))
            print(f"wrote {args.json}")
        return 0
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def catalog_scaling(
    args: argparse.Namespace,
    space_cfg: Any,
    devices: list[dict[str, float]],
    sizes: list[int],
    per_worker: int,
    tmp: str,
) -> dict[str, Any]:
    """Select throughput at each catalog size, each on a fresh server started from the same config."""
    out: dict[str, Any] = {"select_rps": {}, "_errors": Counter()}
    for k in sizes:
        server, target = start_listening(server_command(args.config, os.path.join(tmp, f"data-k{k}")))
        try:
            set_catalog_size(target, space_cfg, k)
            spec = PhaseSpec(
                kind="select", targets=[target], duration_s=args.duration, concurrency=per_worker,
                space=space_cfg.name, devices=devices, seed=args.seed,
            )  # fmt: skip
            res, _ = run_phase(spec, args.processes, label=f"K={k}")
            out["select_rps"][str(k)] = summarize(res.latencies_ms.get("select", []), res.elapsed_s)["rps"]
            out["_errors"].update(res.errors)
        finally:
            stop(server)
    rps = out["select_rps"]
    if len(sizes) >= 2 and rps[str(sizes[0])]:
        out["ratio_largest_vs_smallest"] = round(rps[str(sizes[-1])] / rps[str(sizes[0])], 3)
    return out


def set_catalog_size(target: str, space_cfg: Any, k: int) -> None:
    """Make the space hold exactly k active models: retire extras, add ImageNet-zoo models as needed."""
    import csv
    import importlib.resources

    import grpc

    from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, types_pb2

    names = {s.name for s in space_cfg.model_features if isinstance(s, FeatureSpec)}
    with grpc.insecure_channel(target) as ch:
        stub = catalog_pb2_grpc.CatalogServiceStub(ch)
        listed = stub.ListModels(catalog_pb2.ListModelsRequest(space=space_cfg.name)).models
        active = [m.model_id for m in listed]
        for mid in active[k:]:
            stub.RetireModel(catalog_pb2.RetireModelRequest(space=space_cfg.name, model_id=mid))
        zoo = importlib.resources.files("edgesel_tools.data").joinpath("imagenet_model_zoo.csv")
        with zoo.open() as fh:
            rows = list(csv.DictReader(fh))
        schema = FeatureSchema(space_cfg.model_features, kind="model")
        usable = []
        for r in rows:  # only zoo models the space's schema accepts (e.g. within its GFLOPs range)
            feats = {n: float(r[n]) for n in names if r.get(n)}
            try:
                schema.vector(feats)
            except ValueError:
                continue
            usable.append((r, feats))
        for i in range(k - min(k, len(active))):
            r, feats = usable[i % len(usable)]
            model = types_pb2.Model(model_id=f"bench-{i}-{r['model']}-{r['weights']}", features=feats)
            stub.AddModel(catalog_pb2.AddModelRequest(space=space_cfg.name, model=model))


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\n{'call':<10}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
        f"{'rps/floor':>11}{'p99/floor':>11}"
    )
    rows: list[tuple[str, Any]] = [(k, report[k]) for k in ("floor", "select", "feedback") if k in report]
    rows += [(f"mixed:{k}", v) for k, v in report.get("mixed", {}).items()]
    for name, r in rows:
        if not r.get("count"):
            print(f"{name:<10}{'-':>10}")
            continue
        print(
            f"{name:<10}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['max_ms']:>9.1f}{r['errors']:>8}{r.get('rps_vs_floor', float('nan')):>11.2f}"
            f"{r.get('p99_vs_floor', float('nan')):>11.2f}"
        )
    print_cpu(report)
    if report.get("errors"):
        print(f"errors by status: {report['errors']}")
        for k, v in report.get("error_examples", {}).items():
            print(f"  first {k}: {v}")
    if "learning" in report:
        lr = report["learning"]
        print(
            f"learning: mean QoE {lr['mean_qoe']:.3f} (first quarter {lr['mean_qoe_first_quarter']:.3f}, "
            f"last quarter {lr['mean_qoe_last_quarter']:.3f}); oracle {lr['oracle_mean_qoe']:.3f}, "
            f"best single model {lr['common_model_mean_qoe']:.3f}"
        )
    if "catalog_scaling" in report:
        cs = report["catalog_scaling"]
        sizes = ", ".join(f"K={k}: {v:.0f}" for k, v in cs["select_rps"].items())
        ratio = cs.get("ratio_largest_vs_smallest")
        print(
            f"catalog scaling, Select req/s: {sizes}" + (f" (largest/smallest {ratio:.2f})" if ratio else "")
        )
    rss = {k: v for k, v in report.get("server_rss_mb", {}).items() if v is not None}
    if rss:
        print("server RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))


def print_cpu(report: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        (k.replace("_cpu", ""), report[k])
        for k in ("floor", "select", "feedback", "mixed_cpu")
        if "client_cpu_us_per_call" in report.get(k, {})
    ]
    if not rows:
        return
    print(
        f"\n{'CPU/call':<10}{'server us':>11}{'over floor':>12}{'server cores':>14}{'client us':>11}"
        f"{'client cores/proc':>19}{'client ceiling/s':>18}  client-bound"
    )
    for name, r in rows:
        server = f"{r['server_cpu_us_per_call']:>11.0f}" if "server_cpu_us_per_call" in r else f"{'-':>11}"
        over = r.get("server_cpu_us_per_call_vs_floor_us")
        cores = r.get("server_cpu_cores")
        print(
            f"{name:<10}{server}{'-' if over is None else f'{over:+.0f}':>12}"
            f"{'-' if cores is None else f'{cores:.2f}':>14}{r['client_cpu_us_per_call']:>11.0f}"
            f"{r['client_cpu_cores_per_process']:>19.2f}{r.get('client_ceiling_rps', 0):>18.0f}  "
            f"{'YES: the load generator was the limit' if r['client_bound'] else 'no'}"
        )
    for name, r in rows:  # several server processes (replicas, workers): each one's share
        if "server_cpu_cores_by_pid" in r:
            shares = ", ".join(f"pid {p} {c:.2f}" for p, c in r["server_cpu_cores_by_pid"].items())
            print(f"  {name}: server cores by process: {shares}")
    if "client" in report:
        c = report["client"]
        print(
            f"load generator ceiling: {c['ceiling_rps']:.0f} calls/s ({c['processes']} process(es), "
            f"{c['floor_client_cpu_us_per_call']:.0f} us of client CPU per floor call)"
        )


if __name__ == "__main__":
    sys.exit(main())

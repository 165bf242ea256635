"""`edgesel-server --config edgesel.toml [--listen HOST:PORT] [--data-dir DIR] [--workers N]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edgesel_server.config import ConfigError, load_config
from edgesel_server.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgesel-server", description=__doc__)
    p.add_argument("--config", required=True, help="the server's TOML config (see examples/edgesel.toml)")
    p.add_argument("--listen", help="address to listen on, e.g. 127.0.0.1:50051 (port 0 picks a free one)")
    p.add_argument("--data-dir", help="where the embedded store keeps its database")
    p.add_argument("--store", help="'sqlite' or a redis://host:port/db URL (overrides the config)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--export-log", metavar="FILE", help="instead of serving, write --space's decision log (JSONL)"
    )
    p.add_argument("--space", help="with --export-log: the space to export")
    p.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port (SO_REUSEPORT), each with the full learned state; "
        "N > 1 needs the Redis store. Worker i's metrics port is the configured one + i",
    )
    # Set by the supervisor of --workers N on each worker it starts.
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    worker = args.worker_index
    setup_logging(args.log_level, None if worker is None else {"worker": worker, "pid": os.getpid()})
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"edgesel-server: {e}", file=sys.stderr)
        return 2
    if args.listen:
        cfg.listen = args.listen
    if args.data_dir:
        cfg.data_dir = Path(args.data_dir)
    if args.store:
        cfg.store = args.store
    if args.export_log:
        from edgesel_server.export_log import export_decision_log

        if not args.space:
            p.error("--export-log needs --space")
        n = export_decision_log(cfg, args.space, Path(args.export_log))
        print(f"wrote {n} decisions of space {args.space!r} to {args.export_log}")
        return 0
    if worker is not None:
        from edgesel_server.workers import exit_with_supervisor, worker_metrics_listen

        exit_with_supervisor()
        if cfg.metrics_listen:
            cfg.metrics_listen = worker_metrics_listen(cfg.metrics_listen, worker)
    elif args.workers > 1:
        from edgesel_server.workers import sqlite_refusal, supervise

        if cfg.store == "sqlite":
            print(sqlite_refusal(args.workers), file=sys.stderr)
            return 2
        return supervise(list(sys.argv[1:] if argv is None else argv), args.workers, cfg.listen)
    from edgesel_server.app import run

    return run(cfg, worker_index=worker)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


if __name__ == "__main__":
    sys.exit(main())

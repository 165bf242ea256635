"""`edgesel-server --config edgesel.toml [--listen HOST:PORT] [--data-dir DIR]`."""

from __future__ import annotations

import argparse
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
    args = p.parse_args(argv)
    setup_logging(args.log_level)
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
    from edgesel_server.app import run

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())

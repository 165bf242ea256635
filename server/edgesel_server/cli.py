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
    from edgesel_server.app import run

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())

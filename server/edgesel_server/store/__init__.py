"""Durable stores behind one interface: SQLite (embedded default) and Redis (several replicas)."""

from edgesel_server.store.base import (
    Decision,
    DuplicateEvent,
    LogEvent,
    Snapshot,
    Store,
    StoreUnavailable,
)

__all__ = ["Decision", "DuplicateEvent", "LogEvent", "Snapshot", "Store", "StoreUnavailable", "open_store"]


def open_store(url: str, data_dir, *, durability: str = "fsync") -> Store:
    """The store a config names: "sqlite" (under data_dir) or "redis://host:port/db"."""
    if url == "sqlite":
        from edgesel_server.store.sqlite import SqliteStore

        return SqliteStore(data_dir, durability=durability)
    if url.startswith("redis://"):
        from edgesel_server.store.redis import RedisStore  # type: ignore[import-not-found]

        return RedisStore(url, data_dir)
    raise ValueError(f"unknown store {url!r}: use 'sqlite' or a redis:// URL")

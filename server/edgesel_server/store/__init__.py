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


def open_store(
    url: str,
    data_dir,
    *,
    durability: str = "fsync",
    retention_s: float = 7 * 24 * 3600.0,
    commit_delay_s: float = 0.0,
) -> Store:
    """The store a config names: "sqlite" (under data_dir) or "redis://host:port/db".

    `retention_s` is how long Redis keeps the exactly-once claim of a feedback event id; `commit_delay_s` how
    long a busy writer waits for more writes to share a commit (WriteQueue)."""
    if url == "sqlite":
        from edgesel_server.store.sqlite import SqliteStore

        return SqliteStore(data_dir, durability=durability, commit_delay_s=commit_delay_s)
    if url.startswith("redis://"):
        from edgesel_server.store.redis import RedisStore

        return RedisStore(url, data_dir, retention_s=retention_s, commit_delay_s=commit_delay_s)
    raise ValueError(f"unknown store {url!r}: use 'sqlite' or a redis:// URL")

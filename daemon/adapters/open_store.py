"""From a `--store` / TICKD_STORE location to an open Store."""

from __future__ import annotations

from daemon.adapters.memory_store import MemoryStore
from daemon.adapters.sqlite_store import SqliteStore
from daemon.errors import StoreLocationError
from daemon.ports import Store


async def open_store(location: str) -> Store:
    """Open the store at `location`:

    - ":memory:" or "memory://…": a fresh MemoryStore (nothing is kept);
    - "sqlite:///path/to/tickd.db" or a plain file path: a SQLite store, created if new;
    - anything else with a "scheme://" is refused with StoreLocationError.
    """
    if location == ":memory:" or location.startswith("memory://"):
        return MemoryStore()
    scheme, separator, rest = location.partition("://")
    if not separator:
        return await SqliteStore.open(location)
    if scheme == "sqlite" and rest:
        return await SqliteStore.open(rest)
    if scheme in ("postgresql", "postgres"):
        raise StoreLocationError(
            location, "PostgreSQL stores are not supported yet; use a SQLite file path"
        )
    raise StoreLocationError(
        location, f"unknown scheme {scheme!r}; use a file path, sqlite:///path or memory://"
    )

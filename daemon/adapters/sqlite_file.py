"""A SQLite file as a tickd store: refusing what is not ours (before writing a byte),
creating new files private, connection pragmas, numbered migrations, and BEGIN IMMEDIATE
that waits out other processes."""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
from collections.abc import Sequence
from contextlib import suppress
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from daemon.adapters.sqlite_checkpoint import BACKSTOP_BYTES
from daemon.errors import (
    NotATickdStoreError,
    StoreBusyError,
    StoreError,
    StoreFullError,
    StoreLocationError,
    StoreTooNewError,
)

APPLICATION_ID = 0x7469636B  # "tick", in the file header at offset 68
BUSY_TIMEOUT_MS = 5000
BEGIN_ATTEMPTS = 4  # each waits up to BUSY_TIMEOUT_MS inside SQLite, then we back off
_SQLITE_MAGIC = b"SQLite format 3\x00"


# ---- migrations ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """The statements of a .sql script (triggers with inner semicolons stay whole)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    leftover = "\n".join(
        ln for ln in pending.splitlines() if ln.strip() and not ln.strip().startswith("--")
    )
    if leftover:
        raise ValueError(f"unterminated SQL statement: {leftover[:80]!r}")
    return tuple(statements)


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """The numbered .sql files of daemon/adapters/sql/sqlite, in order (1, 2, …)."""
    folder = resources.files("daemon.adapters").joinpath("sql", "sqlite")
    found = sorted(
        (int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    if [version for version, _, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[n for _, n, _ in found]}")
    return tuple(Migration(v, name, split_statements(text)) for v, name, text in found)


LATEST_VERSION = len(migrations())


# ---- opening a file ----------------------------------------------------------------------


def _prepare_file(path: Path, location: str) -> Path:
    """Make sure `path` is a fresh file (created 0600) or a tickd store we can migrate.

    Runs before any SQLite connection writes, so a file we refuse is left as it was: the
    decision comes from the 100-byte header, and from a read-only connection only when the
    header cannot tell (no application id yet: a new tickd file, or someone else's)."""
    path = path.expanduser()
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreLocationError(
            location,
            f"cannot create directory {parent} ({e.strerror}); create it yourself "
            "or choose another --store path",
        ) from e
    if not parent.is_dir():
        raise StoreLocationError(location, f"{parent} is not a directory")
    if path.is_dir():
        raise StoreLocationError(location, "it is a directory; give a file path such as tickd.db")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreLocationError(
            location, f"cannot create the file ({e.strerror}); check the permissions of {parent}"
        ) from e
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(parent, os.W_OK):
        raise StoreLocationError(
            location, f"{path} or its directory is not writable; check their permissions"
        )
    with path.open("rb") as f:
        header = f.read(100)
    if not header:
        return path  # empty: ours to initialize
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise NotATickdStoreError(location, "not a SQLite database")
    app_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if app_id == APPLICATION_ID:
        if version > LATEST_VERSION:
            raise StoreTooNewError(location, version, LATEST_VERSION)
        return path  # a newer version still in the WAL is caught again after connecting
    if app_id != 0:
        raise NotATickdStoreError(location, f"a SQLite database with application_id {app_id:#x}")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        ro = sqlite3.connect(uri, uri=True)
        try:
            _check_identity(ro, location)
        finally:
            ro.close()
    except sqlite3.DatabaseError as e:
        raise NotATickdStoreError(location, f"SQLite cannot read it: {e}") from e
    return path


def _check_identity(conn: sqlite3.Connection, location: str) -> int:
    """The file's schema version, after checking that it is (or may become) ours."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0:
        (objects,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if objects:
            raise NotATickdStoreError(
                location, "a SQLite database of another application (tables, no tickd id)"
            )
    elif app_id != APPLICATION_ID:
        raise NotATickdStoreError(location, f"a SQLite database with application_id {app_id:#x}")
    if version > LATEST_VERSION:
        raise StoreTooNewError(location, version, LATEST_VERSION)
    return int(version)


def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


async def begin_immediate(conn: aiosqlite.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock: busy_timeout inside
    SQLite, then a few retries with backoff, so "database is locked" does not escape."""
    delay = 0.02
    for attempt in range(BEGIN_ATTEMPTS):
        try:
            await conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if not _is_busy(e) or attempt == BEGIN_ATTEMPTS - 1:
                raise
        await anyio.sleep(delay)
        delay *= 4


async def rollback(conn: aiosqlite.Connection) -> None:
    """Roll back whatever is open. Always sent, never skipped on `in_transaction`: a
    statement whose caller was cancelled may still be running on aiosqlite's thread (a
    BEGIN, say), and the ROLLBACK queued behind it must undo it. Run it shielded."""
    with suppress(sqlite3.Error):  # "no transaction is active" is fine
        await conn.execute("ROLLBACK")


def store_error(e: sqlite3.Error, location: str) -> StoreError:
    """The StoreError to raise for a SQLite error."""
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return StoreFullError(location, str(e))
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusyError(location, BEGIN_ATTEMPTS * BUSY_TIMEOUT_MS / 1000)
    if code == sqlite3.SQLITE_READONLY:
        return StoreLocationError(location, f"{e}; check the file's permissions")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreError(f"store {location} is damaged ({e}); restore a backup")
    return StoreError(f"store {location}: {e}")


async def connect(path: str | Path) -> aiosqlite.Connection:
    """A connection to the tickd store at `path`, created and migrated as needed."""
    location = str(path)
    if location in (":memory:", ""):
        raise StoreLocationError(location, "SqliteStore needs a file; use MemoryStore")
    file = await anyio.to_thread.run_sync(_prepare_file, Path(path), location)
    conn = await aiosqlite.connect(file, isolation_level=None)
    try:
        await _configure(conn, location)
        await _migrate(conn)
    except sqlite3.Error as e:
        with anyio.CancelScope(shield=True):
            await conn.close()
        raise store_error(e, location) from e
    except BaseException:
        with anyio.CancelScope(shield=True):
            await conn.close()
        raise
    return conn


async def _configure(conn: aiosqlite.Connection, location: str) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Identity again, on the connection we keep: a version newer than ours may have been
    # waiting in another process's WAL when the header was read.
    app_id = await scalar(conn, "PRAGMA application_id")
    version = await scalar(conn, "PRAGMA user_version")
    if app_id not in (0, APPLICATION_ID):
        raise NotATickdStoreError(location, f"a SQLite database with application_id {app_id:#x}")
    if version > LATEST_VERSION:
        raise StoreTooNewError(location, version, LATEST_VERSION)
    # Pages stay SQLite's 4 KiB: 16 KiB ones made a 10,000-schedule boundary's commit
    # ~25 ms faster but every small commit (the dispatcher's) write four times the bytes,
    # and the queue drained ~10 % slower.
    mode = await scalar(conn, "PRAGMA journal_mode = WAL")
    if str(mode).lower() != "wal":
        raise StoreLocationError(location, f"cannot use WAL (journal mode {mode})")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a
    # lost commit can be a run that already ran (its side effects happened) but comes back
    # QUEUED, or a tick that creates its runs again. FULL costs one fsync of the WAL per
    # commit (~0.2 ms here), small next to a tick.
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
    # The store's checkpointer thread copies the log back after commits (sqlite_checkpoint);
    # a commit checkpoints itself only past this backstop.
    page_size = await scalar(conn, "PRAGMA page_size")  # a file made elsewhere may differ
    await conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_BYTES // page_size}")


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Apply the pending migrations, each in its own transaction; another process may be
    migrating the same file, so the version is read again once the write lock is ours."""
    for migration in migrations():
        await begin_immediate(conn)
        try:
            if await scalar(conn, "PRAGMA user_version") >= migration.version:
                await conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {migration.version}")
            await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            await conn.execute("COMMIT")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await rollback(conn)
            raise

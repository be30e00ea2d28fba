"""Copying the write-ahead log back into the database file, off the commit path.

Left to itself, SQLite checkpoints inside the commit that grows the log past 1,000 pages:
that commit waits while the pages are copied and the file is synced (~10 ms on a 2,000-key
sensor tick here; ~60 ms on the commit of a 10,000-schedule boundary). So the store's own
connection checkpoints only past BACKSTOP_BYTES of log, and a thread with a connection of its own
checkpoints instead, once commits pause for QUIET_S (a burst of commits is not slowed by
a copy competing for the CPU), or at the latest QUIET_ROUNDS pauses' worth after the first
commit not yet copied. Its checkpoints are PASSIVE: they copy what no reader still needs
and never wait for, nor block, a writer.
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger("tickd.store")

BACKSTOP_BYTES = 40 * 2**20  # of log: past this a commit checkpoints itself
QUIET_S = 0.1
QUIET_ROUNDS = 20  # a checkpoint waits for a pause at most this many QUIET_S (2 s)


class Checkpointer:
    """A thread checkpointing the store at `path` after `poke()`, until `close()`. The
    thread starts at the first poke (a process that only reads never starts it)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._poked = threading.Event()
        self._stopped = threading.Event()
        self.checkpoints = 0  # done so far (tests watch it)
        self.last: tuple[int, int] | None = None  # (frames in the log, frames copied)
        self.thread: threading.Thread | None = None

    def poke(self) -> None:
        """A commit added to the log (called from one thread: the store's event loop)."""
        if self.thread is None and not self._stopped.is_set():
            self.thread = threading.Thread(target=self._run, name="tickd-checkpoint", daemon=True)
            self.thread.start()
        self._poked.set()

    def close(self) -> None:
        """Stop after the checkpoint in progress, if any."""
        self._stopped.set()
        self._poked.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:  # the store's own connection checkpoints at the backstop
            log.warning("store.checkpointer_failed", error=str(e))
            return
        try:
            while True:
                self._poked.wait()
                for _ in range(QUIET_ROUNDS):  # until the commits pause
                    self._poked.clear()
                    if self._stopped.wait(QUIET_S):
                        return
                    if not self._poked.is_set():
                        break
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:  # a full disk, say: the next poke tries again
            log.warning("store.checkpoint_failed", error=str(e))
            return
        self.last = (frames, copied)
        self.checkpoints += 1

"""The cache index: one SQLite file in the cache directory, like Glance's sqlite driver.

Two tables. ``cache_entries`` has one row per image with data in the cache, either
``incomplete`` (a fill is writing ``incomplete/<fill_name>``) or ``complete`` (the
verified file ``<image_id>``, with the inode, size and mtime it had when committed,
so a file changed behind the cache's back is noticed). ``cache_queue`` holds the
images queued for prefetching.

Every change to the cache directory happens inside a write transaction of this
index (``BEGIN IMMEDIATE``), so the worker processes of one node, and a ``glimpse
cache`` command run beside them, never see a file without its row or act on the
same entry at once. Calls block: the cache runs them on worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

COMPLETE = "complete"
INCOMPLETE = "incomplete"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    image_id TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    last_accessed REAL NOT NULL DEFAULT 0,
    last_modified REAL NOT NULL,
    fill_name TEXT,
    fill_pid INTEGER,
    inode INTEGER,
    mtime_ns INTEGER
);
CREATE INDEX IF NOT EXISTS cache_entries_lru ON cache_entries (state, last_accessed);
CREATE TABLE IF NOT EXISTS cache_queue (
    image_id TEXT PRIMARY KEY,
    queued_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    image_id: str
    checksum: str
    size: int
    state: str
    hits: int
    last_accessed: float
    last_modified: float
    fill_name: str | None
    fill_pid: int | None
    inode: int | None
    mtime_ns: int | None


_COLUMNS = (
    "image_id, checksum, size, state, hits, last_accessed, last_modified, fill_name, "
    "fill_pid, inode, mtime_ns"
)


class CacheIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """One write transaction; other writers (threads or processes) wait."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        with self._lock:
            yield Transaction(self._connection())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the cache index is not open")
        return self._conn


class Transaction:
    """The queries of the index, run on one connection inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def entry(self, image_id: str) -> Entry | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM cache_entries WHERE image_id = ?", (image_id,)
        ).fetchone()
        return Entry(*row) if row else None

    def entries(self, state: str | None = None) -> list[Entry]:
        if state is None:
            rows = self.conn.execute(f"SELECT {_COLUMNS} FROM cache_entries ORDER BY image_id")
        else:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM cache_entries WHERE state = ? ORDER BY image_id",
                (state,),
            )
        return [Entry(*row) for row in rows]

    def least_recently_used(self) -> Entry | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM cache_entries WHERE state = ? "
            "ORDER BY last_accessed, last_modified, image_id LIMIT 1",
            (COMPLETE,),
        ).fetchone()
        return Entry(*row) if row else None

    def complete_size(self) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM cache_entries WHERE state = ?", (COMPLETE,)
        ).fetchone()
        return int(row[0])

    def start_fill(
        self, image_id: str, checksum: str, size: int, fill_name: str, pid: int, now: float
    ) -> None:
        self.conn.execute(
            "INSERT INTO cache_entries (image_id, checksum, size, state, last_modified, "
            "fill_name, fill_pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (image_id, checksum, size, INCOMPLETE, now, fill_name, pid),
        )

    def complete_fill(
        self, image_id: str, size: int, inode: int, mtime_ns: int, now: float
    ) -> None:
        self.conn.execute(
            "UPDATE cache_entries SET state = ?, size = ?, inode = ?, mtime_ns = ?, "
            "last_modified = ?, last_accessed = ?, hits = 0, fill_name = NULL, "
            "fill_pid = NULL WHERE image_id = ?",
            (COMPLETE, size, inode, mtime_ns, now, now, image_id),
        )

    def record_hit(self, image_id: str, now: float) -> None:
        self.conn.execute(
            "UPDATE cache_entries SET hits = hits + 1, last_accessed = ? WHERE image_id = ?",
            (now, image_id),
        )

    def delete(self, image_id: str) -> None:
        self.conn.execute("DELETE FROM cache_entries WHERE image_id = ?", (image_id,))

    def queued(self) -> list[str]:
        rows = self.conn.execute("SELECT image_id FROM cache_queue ORDER BY queued_at, image_id")
        return [row[0] for row in rows]

    def is_queued(self, image_id: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM cache_queue WHERE image_id = ?", (image_id,)
        ).fetchone()
        return row is not None

    def enqueue(self, image_id: str, now: float) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO cache_queue (image_id, queued_at) VALUES (?, ?)",
            (image_id, now),
        )

    def dequeue(self, image_id: str) -> bool:
        cursor = self.conn.execute("DELETE FROM cache_queue WHERE image_id = ?", (image_id,))
        return cursor.rowcount > 0

    def clear_queue(self) -> int:
        return self.conn.execute("DELETE FROM cache_queue").rowcount

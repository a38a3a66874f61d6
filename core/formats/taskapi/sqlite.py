"""The ``tasks`` table in an SQLite file, read strictly read-only.

Opened through the shared read-only opener (``core.sources.sqlite_ro``, as Octopoid's
state.db): ``mode=ro`` + ``query_only``, ``immutable=1`` for an idle WAL file, a private copy
for a crashed writer's -wal, so no -wal, -shm or journal file ever appears beside the DB and
its bytes and mtime never change. The change marker is ``PRAGMA data_version`` plus the
files' stat; a row's change key is the hash of the columns read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from qwarden.core import safeio
from qwarden.core.formats.taskapi.kinds import COLUMNS, REQUIRED, TABLE
from qwarden.core.sources.errors import SourceError
from qwarden.core.sources.sqlite_ro import DB_ERRORS, ReadOnlySQLite, _db_message

SQLITE_MAGIC = b"SQLite format 3\x00"


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def looks_like_sqlite(path: Path | str) -> bool:
    """A regular file starting with SQLite's header (no FIFO, no device is opened)."""
    try:
        return safeio.read_prefix(Path(path), 16) == SQLITE_MAGIC
    except (OSError, ValueError):
        return False


class SqliteTasks(ReadOnlySQLite):
    """One SQLite file's ``tasks`` table: rows in ``kinds.COLUMNS`` order, change keys, the
    change marker. Holds one read-only connection, reopened when the file's mode changes."""

    def __init__(self, path: Path | str, busy_timeout_ms: int = 2000,
                 busy_retries: int = 5) -> None:
        self.db_path = Path(os.path.abspath(path))
        self.root_real = os.path.realpath(self.db_path.parent)
        self.busy_timeout_ms = busy_timeout_ms
        self.busy_retries = busy_retries
        self.connected_uri = None
        self.label = str(self.db_path)
        self.table_columns: tuple[str, ...] = ()
        self._conn: sqlite3.Connection | None = None
        self._conn_fp: tuple[object, ...] = ()
        self.progress = ""

    # -- connection ----------------------------------------------------------------------
    def _check_schema(self, conn: sqlite3.Connection) -> None:
        cols = self._retry(lambda: [r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")])
        if not cols:
            raise SourceError(f"{self.db_path}: not a task API database (no {TABLE} table)")
        missing = sorted(REQUIRED - set(cols))
        if missing:
            raise SourceError(f"{self.db_path}: not a task API database ({TABLE} lacks "
                              f"{', '.join(missing)})")
        self.table_columns = tuple(cols)

    @property
    def has_check_results(self) -> bool:
        return "check_results" in self.table_columns

    def conn(self) -> sqlite3.Connection:
        conn = self.held()
        if conn is None:
            if not os.path.lexists(self.db_path):
                raise SourceError(f"{self.db_path}: database missing")
            if not looks_like_sqlite(self.db_path):
                raise SourceError(f"{self.db_path}: not an SQLite database")
            conn = self.hold()
        return conn

    # -- rows ----------------------------------------------------------------------------
    def _select(self) -> str:
        have = set(self.table_columns)
        return "SELECT " + ", ".join(_q(c) if c in have else "NULL" for c in COLUMNS) \
            + f" FROM {TABLE}"

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self.conn()
        try:
            return self._retry(lambda: fn(conn))
        except DB_ERRORS as exc:
            if "decode" in str(exc).lower() and conn.text_factory is not _lenient:
                conn.text_factory = _lenient  # one bad cell is not a bad database
                return self._run(fn)
            raise SourceError(f"{self.db_path}: {_db_message(exc)}") from None

    def read_rows(self, ids: Iterable[str] | None = None
                  ) -> list[tuple[tuple[Any, ...], Hashable]]:
        """Every row (ids None) or those rows, each with its change key."""
        sql = self._select()
        if ids is None:
            self.progress = f"reading {self.db_path.name}"
            rows = self._run(lambda c: c.execute(sql).fetchall())
            self.progress = ""
            return [(r, hash(r)) for r in rows]
        out: list[tuple[Any, ...]] = []
        wanted = list(ids)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            q = sql + f" WHERE task_id IN ({','.join('?' * len(chunk))})"
            def some(c: sqlite3.Connection, q: str = q, chunk: list[str] = chunk) -> Any:
                return c.execute(q, chunk).fetchall()
            out += self._run(some)
        return [(r, hash(r)) for r in out]

    def change_keys(self) -> dict[str, Hashable]:
        sql = self._select()
        rows = self._run(lambda c: c.execute(sql).fetchall())
        return {str(r[0]): hash(r) for r in rows if r[0] is not None}

    def raw_row(self, task_id: str) -> tuple[list[str], tuple[Any, ...]] | None:
        def one(c: sqlite3.Connection) -> Any:
            cur = c.execute(f"SELECT * FROM {TABLE} WHERE task_id = ?", (task_id,))
            row = cur.fetchone()
            return None if row is None else ([d[0] for d in cur.description], row)
        got: tuple[list[str], tuple[Any, ...]] | None = self._run(one)
        return got

    @contextlib.asynccontextmanager
    async def marker(self) -> AsyncIterator[Callable[[], Awaitable[Hashable]]]:
        async with self.data_version_marker() as read:
            yield read


def _lenient(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")

"""The ``tasks`` table in PostgreSQL, read through asyncpg, read-only for real.

- Every connection is opened with ``default_transaction_read_only = on`` (the server refuses
  any write on it, whatever the role may do), and every read is one ``READ ONLY``
  ``REPEATABLE READ`` transaction (a full scan sees one consistent state).
- The source's methods are synchronous (the engine calls them in a worker thread); they run
  their coroutine on this reader's own event loop, in a thread of its own, so one
  connection serves every call.
- A lost connection (the server restarted, ``pg_terminate_backend``, a network cut) is
  reconnected once and the read retried; if that fails too, ``SourceError`` says why (the
  engine keeps the last good snapshot, shows the error, and retries with a back-off).

The change marker (``marker``), polled every second in the engine's own loop through a
connection of its own, costs O(1) while nothing is written anywhere:
``pg_current_wal_insert_lsn()`` (every INSERT, UPDATE or DELETE of a logged table writes WAL,
so an unchanged position proves nothing was written; on a standby, the replay position).
Only when the position moved does it read the table's own stamp, ``count(*)`` and
``sum(xmin)``: a row's ``xmin`` is the transaction that wrote its current version, so any
insert, update or delete changes the pair (a max of xmin would miss a long transaction that
commits after a younger one), and other databases' or tables' writes move the WAL but not
the stamp. The read after a move is repeated once more a second later, so a commit whose WAL
was logged but not yet visible is never missed. No trigger, no LISTEN, no table of qwarden's
own on the user's database. (``pg_stat_user_tables`` counters lag by up to the stats flush
interval; a ``count, max(updated_at), sum(hashtext(...))`` detoasts every row each second.)
An UNLOGGED table writes no WAL: then the stamp is read every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterable
from typing import Any, TypeVar

from qwarden.core.config import TaskApiOptions
from qwarden.core.formats.taskapi.kinds import COLUMNS, REQUIRED, TABLE
from qwarden.core.formats.taskapi.layout import redact
from qwarden.core.sources.errors import SourceError
from qwarden.core.textsafe import clean_line

T = TypeVar("T")
BATCH = 10_000  # rows per cursor fetch (progress, and bounded buffers)
SERVER_SETTINGS = {"default_transaction_read_only": "on", "application_name": "qwarden"}
# the insert position: it moves when a write is logged, before its commit is visible (hence
# the read once more after a move); the write position lags behind it by up to the WAL
# writer's delay under synchronous_commit = off, past the commit's visibility
WAL_POSITION = ("SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_insert_lsn() END)::text")
TABLE_STAMP = f"SELECT count(*), coalesce(sum(xmin::text::bigint), 0) FROM {TABLE}"


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _lost(exc: BaseException) -> bool:
    """A connection that went away (retry on a new one), not an error of the query."""
    import asyncpg

    # (InternalClientError: a connection the server ended while it sat idle answers the
    # next query with "cannot switch to state ..."; it is as gone as a closed one)
    return isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.exceptions.InternalClientError,
                            asyncpg.exceptions.AdminShutdownError,
                            asyncpg.exceptions.CannotConnectNowError,
                            ConnectionError, TimeoutError, OSError))


def _message(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        msg = "timed out"
    return clean_line(msg, 300)


async def open_connection(dsn: str, opts: TaskApiOptions) -> Any:
    """A read-only connection (``default_transaction_read_only``), or SourceError."""
    import asyncpg

    try:
        return await asyncpg.connect(
            dsn, timeout=opts.connect_timeout_s, command_timeout=opts.statement_timeout_s,
            server_settings=dict(SERVER_SETTINGS,
                                 statement_timeout=str(int(opts.statement_timeout_s * 1000))))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError,
            ValueError) as exc:
        raise SourceError(f"{redact(dsn)}: cannot connect: {_message(exc)}") from None


class PgTasks:
    """One PostgreSQL database's ``tasks`` table: rows in ``kinds.COLUMNS`` order, each with
    its ``xmin`` as change key, and the change marker."""

    def __init__(self, dsn: str, opts: TaskApiOptions | None = None) -> None:
        self.dsn = dsn
        self.opts = opts or TaskApiOptions()
        self.label = redact(dsn)
        self.progress = ""
        self.table_columns: tuple[str, ...] = ()
        self._unlogged = False
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.server_pid: int | None = None  # of the reading connection (tests end it)

    # -- the private loop ------------------------------------------------------------------
    def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="qwarden-pg",
                                            daemon=True)
            self._thread.start()
            self._loop = loop
        fut = asyncio.run_coroutine_threadsafe(make(), self._loop)
        limit = self.opts.connect_timeout_s + self.opts.statement_timeout_s + 5
        try:
            return fut.result(limit)
        except TimeoutError:  # (asyncpg's own timeouts come first: a hang guard only)
            fut.cancel()
            raise SourceError(f"{self.label}: no answer in {limit:.0f} s") from None

    async def _connect(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await open_connection(self.dsn, self.opts)
        try:
            await self._check_schema(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.server_pid = conn.get_server_pid()
        return conn

    async def _check_schema(self, conn: Any) -> None:
        import asyncpg

        try:
            cols = [r[0] for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", TABLE)]
            persistence = await conn.fetchval(
                "SELECT relpersistence FROM pg_class WHERE oid = to_regclass($1)", TABLE)
        except asyncpg.PostgresError as exc:
            raise SourceError(f"{self.label}: {_message(exc)}") from None
        if not cols:
            raise SourceError(f"{self.label}: not a task API database (no {TABLE} table "
                              "in the search path)")
        missing = sorted(REQUIRED - set(cols))
        if missing:
            raise SourceError(f"{self.label}: not a task API database ({TABLE} lacks "
                              f"{', '.join(missing)})")
        self.table_columns = tuple(cols)
        self._unlogged = persistence == "u"

    def _read(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(conn)`` on the connection; a lost connection is reopened and the work
        retried once. Raises SourceError with the server's words."""
        import asyncpg

        async def attempt() -> T:
            for tries in (1, 2):
                conn = await self._connect()
                try:
                    return await work(conn)
                except SourceError:
                    raise
                except Exception as exc:
                    if _lost(exc):
                        await self._drop()
                        if tries == 1:
                            continue
                        raise SourceError(f"{self.label}: connection lost: "
                                          f"{_message(exc)}") from None
                    if isinstance(exc, asyncpg.PostgresError):
                        raise SourceError(f"{self.label}: {_message(exc)}") from None
                    raise
            raise AssertionError("unreachable")

        return self._run(attempt)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    def conn(self) -> Any:
        """Connect now (and check the schema): SourceError if the server cannot be read."""
        return self._run(self._connect)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_conn(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):
            loop.close()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()

    @property
    def has_check_results(self) -> bool:
        return "check_results" in self.table_columns

    # -- rows ------------------------------------------------------------------------------
    def _select(self) -> str:
        have = set(self.table_columns)
        cols = ", ".join(_q(c) if c in have else "NULL" for c in COLUMNS)
        return f"SELECT {cols}, xmin::text FROM {TABLE}"

    def batch_read(self, rows_so_far: int) -> None:
        """A batch of a full scan is in (the scan's progress, for a console)."""
        self.progress = f"reading {TABLE}: {rows_so_far} rows"

    def read_rows(self, ids: Iterable[str] | None = None
                  ) -> list[tuple[tuple[Any, ...], Hashable]]:
        """Every row (ids None) or those rows, each with its xmin, in one read-only
        snapshot."""
        wanted = None if ids is None else list(ids)

        async def work(conn: Any) -> list[tuple[tuple[Any, ...], Hashable]]:
            out: list[tuple[tuple[Any, ...], Hashable]] = []
            n = len(COLUMNS)
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                if wanted is None:
                    cur = await conn.cursor(self._select())
                    while batch := await cur.fetch(BATCH):
                        out += [(tuple(r[:n]), r[n]) for r in batch]
                        self.batch_read(len(out))
                else:
                    rows = await conn.fetch(self._select() + " WHERE task_id = ANY($1::text[])",
                                            wanted)
                    out += [(tuple(r[:n]), r[n]) for r in rows]
            return out

        try:
            return self._read(work)
        finally:
            self.progress = ""

    def change_keys(self) -> dict[str, Hashable]:
        async def work(conn: Any) -> dict[str, Hashable]:
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                rows = await conn.fetch(f"SELECT task_id, xmin::text FROM {TABLE}")
            return {str(r[0]): r[1] for r in rows if r[0] is not None}

        return self._read(work)

    def raw_row(self, task_id: str) -> tuple[list[str], tuple[Any, ...]] | None:
        async def work(conn: Any) -> tuple[list[str], tuple[Any, ...]] | None:
            async with conn.transaction(readonly=True):
                row = await conn.fetchrow(f"SELECT * FROM {TABLE} WHERE task_id = $1", task_id)
            return None if row is None else (list(row.keys()), tuple(row.values()))

        return self._read(work)

    def setting(self, name: str) -> str:
        """A server setting as the reading connection sees it (``SHOW``)."""
        async def work(conn: Any) -> str:
            return str(await conn.fetchval("SELECT current_setting($1)", name))

        return self._read(work)

    # -- the change marker -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def marker(self) -> AsyncIterator[Callable[[], Awaitable[Hashable]]]:
        """The change marker, on a connection of its own in the caller's loop (closed however
        the watch ends). Raises (a lost connection) for the engine to back off and reopen."""
        import asyncpg

        conn = await open_connection(self.dsn, self.opts)
        state: dict[str, Any] = {"lsn": None, "stamp": None, "again": False, "wal": True}

        async def read() -> Hashable:
            lsn = None
            if state["wal"] and not self._unlogged:
                try:
                    lsn = await conn.fetchval(WAL_POSITION)
                except asyncpg.InsufficientPrivilegeError:
                    state["wal"] = False  # (a role denied it: read the stamp every time)
            moved = lsn is None or lsn != state["lsn"]
            if moved or state["again"] or state["stamp"] is None:
                async with conn.transaction(readonly=True):
                    row = await conn.fetchrow(TABLE_STAMP)
                state["stamp"] = (row[0], row[1])
                state["again"] = moved  # once more next time: a commit not yet visible
            state["lsn"] = lsn
            return state["stamp"]  # type: ignore[no-any-return]

        try:
            yield read
        finally:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()

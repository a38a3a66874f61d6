"""An SQLite database opened strictly read-only, leaving no file beside it: the machinery any
format reading an SQLite file shares (Octopoid's ``state.db``, a task API's ``tasks`` DB).

- ``mode=ro`` plus ``PRAGMA query_only``; ``immutable=1`` for an idle WAL database (even a
  ``mode=ro`` reader would create its -wal and -shm), and a private copy outside the root for
  a crashed writer's -wal without its -shm (any reader would create the -shm).
- The change marker: ``PRAGMA data_version`` (another connection committed) plus the files'
  stat (``db_fingerprint``), which also notices what an immutable reader cannot see.

A subclass sets ``db_path``, ``root_real`` (the tree a private copy must stay out of),
``busy_timeout_ms``, ``busy_retries`` and ``connected_uri = None``, and implements
``_check_schema`` (raise ``SourceError`` when the DB is not its format's).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from qwarden.core import safeio
from qwarden.core.sources.errors import SourceError


class ReadOnlySQLite:
    db_path: Path
    root_real: str
    busy_timeout_ms: int
    busy_retries: int
    connected_uri: str | None

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """The format's check that this is its database (raise ``SourceError`` if not)."""

    def db_uri(self) -> str:
        """Read-only URI. A WAL-mode DB nobody has open has no -wal/-shm files, and even a
        ``mode=ro`` reader would create them; then nothing uncommitted can exist, so the main
        file alone is the whole truth and ``immutable=1`` reads it without creating a file.

        A ``-wal`` without its ``-shm`` is what a crashed writer leaves: the log may hold
        committed transactions, and any reader (``mode=ro`` included) would create the -shm
        to index it. Then the DB and its log are copied to a private directory outside the
        root and read there (``COPY_MARK``): every committed frame is seen, nothing is
        written beside the queue. The copy is immutable, so it is reopened when the files
        change, like any immutable reader."""
        uri = f"file:{quote(str(self.db_path))}?mode=ro"
        try:
            header = safeio.read_prefix(self.db_path, 20)
        except OSError:
            return uri
        wal = os.path.lexists(str(self.db_path) + "-wal")
        if wal and not os.path.lexists(str(self.db_path) + "-shm"):
            # (whatever the header says: SQLite even deletes the -wal of an empty file)
            return uri + "&immutable=1" + COPY_MARK
        if not wal and len(header) == 20 and header[18] == 2:  # WAL mode, nobody in it
            return uri + "&immutable=1"
        return uri

    def db_fingerprint(self) -> tuple[tuple[int, int, int] | None, ...]:
        """(mtime, size, inode) of the DB file and its -wal: notices writes an immutable reader
        can't, and a DB file replaced by another."""
        out: list[tuple[int, int, int] | None] = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(str(self.db_path) + suffix)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def connect(self) -> sqlite3.Connection:
        """Open the DB read-only: ``mode=ro`` URI plus ``PRAGMA query_only``, then the
        format's own schema check (``_check_schema``)."""
        if not os.path.lexists(self.db_path):
            raise SourceError(f"{self.db_path}: database missing")
        try:  # a FIFO or device named state.db would hang or flood SQLite's own open
            os.close(safeio.open_regular(self.db_path)[0])
        except OSError as exc:
            raise SourceError(f"{self.db_path}: cannot read: {exc.strerror}") from None
        copy_dir: str | None = None
        try:
            for _ in range(3):
                uri = open_uri = self.db_uri()
                if COPY_MARK not in uri:
                    break
                copy_dir = self._private_copy()
                if copy_dir is not None:
                    open_uri = (f"file:{quote(os.path.join(copy_dir, self.db_path.name))}"
                                "?mode=ro&immutable=1")
                    break
                # None: the -wal went or its -shm came back meanwhile (a writer closing or
                # opening): decide again how to read
            else:
                raise SourceError(f"{self.db_path}: its -wal and -shm keep coming and going; "
                                  "try again when the writer is done")
            self.connected_uri = uri
            conn = sqlite3.connect(open_uri, uri=True, timeout=self.busy_timeout_ms / 1000,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._check_schema(conn)
        except DB_ERRORS as exc:
            raise SourceError(f"{self.db_path}: {_db_message(exc)}") from None
        finally:
            if copy_dir is not None:  # the open connection keeps the copy's inode
                shutil.rmtree(copy_dir, ignore_errors=True)
        return conn

    def _private_copy(self) -> str | None:
        """Copy the DB file and its -wal (a crashed writer's, no -shm) into a new private
        directory outside the root, fold the log into the copy there, and return the
        directory. The copy is taken again if either file changed while it was copied; None
        if the DB is no longer in that state (the -wal gone, or a -shm back)."""
        # a new directory of our own (mkdir fails rather than reuse one): it is removed whole
        tmp = os.path.join(tempfile.gettempdir(), f"qwarden-db-{secrets.token_hex(8)}")
        os.mkdir(tmp, 0o700)
        try:
            if safeio.within(self.root_real, tmp):
                raise SourceError(f"{self.db_path}: a crashed writer left a -wal without its "
                                  "-shm, and the temp dir (TMPDIR) is inside the root: it "
                                  "cannot be read without writing there")
            dst = os.path.join(tmp, self.db_path.name)
            for _ in range(3):
                before = self.db_fingerprint()
                for suffix in ("", "-wal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(dst + suffix)  # (an earlier attempt's)
                    try:
                        _copy_regular(str(self.db_path) + suffix, dst + suffix)
                    except FileNotFoundError:
                        shutil.rmtree(tmp, ignore_errors=True)
                        return None
                if os.path.lexists(str(self.db_path) + "-shm"):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return None
                if self.db_fingerprint() == before:
                    break
            else:
                raise SourceError(f"{self.db_path}: changed on every copy of its -wal; "
                                  "try again when the writer is done")
            conn = sqlite3.connect(dst, isolation_level=None)  # the copy, in the private dir
            try:
                conn.execute("PRAGMA journal_mode = DELETE")  # checkpoints committed frames
            finally:
                conn.close()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def _retry(self, fn: Any) -> Any:
        delay = 0.05
        for attempt in range(self.busy_retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" in msg or "busy" in msg) and attempt < self.busy_retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise

    def data_version(self, conn: sqlite3.Connection) -> int:
        return int(self._retry(lambda: conn.execute("PRAGMA data_version").fetchone()[0]))

    # the connection a source keeps between reads (``held``), and the files' stat it saw
    _conn: sqlite3.Connection | None = None
    _conn_fp: tuple[object, ...] = ()

    def held(self) -> sqlite3.Connection | None:
        """The kept connection, or None: dropped first when the files changed under it
        (``needs_reopen``: -wal appeared or vanished, or an immutable reader's file was
        rewritten by a writer that came and went), so the next ``hold`` reads the new state."""
        if self._conn is not None and self.needs_reopen(self.connected_uri, self._conn_fp):
            self._conn.close()
            self._conn = None
        return self._conn

    def hold(self) -> sqlite3.Connection:
        """Open the connection to keep (read-only, as ``connect`` opens it)."""
        self._conn_fp = self.db_fingerprint()
        self._conn = self.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def needs_reopen(self, conn_uri: str | None, conn_fp: tuple[object, ...]) -> bool:
        """Whether a connection opened at ``conn_uri`` when the files had ``conn_fp`` must be
        reopened: the -wal appeared or vanished (another read-only mode is needed), or an
        immutable reader's file changed under it (it never sees a write)."""
        uri = conn_uri or ""
        return self.db_uri() != uri or (
            "immutable=1" in uri and self.db_fingerprint() != conn_fp)

    @contextlib.asynccontextmanager
    async def data_version_marker(self) -> AsyncIterator[Callable[[], Awaitable[Hashable]]]:
        """PRAGMA data_version (another connection committed) plus the DB files' stat,
        through aiosqlite so the event loop never blocks on a busy DB. The connection lives
        as long as the engine's watch does and is closed however that ends."""
        import aiosqlite

        held: dict[str, Any] = {}

        async def close() -> None:
            db = held.pop("db", None)
            if db is not None:
                with contextlib.suppress(Exception):
                    await db.close()

        async def read() -> Hashable:
            uri = self.db_uri()
            if held.get("uri") != uri:  # -wal appeared or vanished: reopen in that mode
                await close()
                held["uri"] = uri
                held["db"] = aiosqlite.connect(uri, uri=True)  # kept before it is awaited
                await held["db"]
                await held["db"].execute("PRAGMA query_only = ON")
            # the cursor closed at once: an open statement would hold a read lock that
            # makes a writer's commit wait
            async with held["db"].execute("PRAGMA data_version") as cur:
                row = await cur.fetchone()
            return (uri, row[0] if row else None, self.db_fingerprint())

        try:
            yield read
        finally:
            await close()


def _db_message(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return ("not a readable SQLite database (its schema is not valid UTF-8: "
                f"byte {exc.start})")
    msg = str(exc)
    low = msg.lower()
    if "not a database" in low or "malformed" in low:
        return f"not a readable SQLite database ({msg})"
    if "locked" in low or "busy" in low:
        return f"database stayed locked ({msg})"
    if "unable to open" in low:
        return f"cannot open the database ({msg})"
    return msg


def _copy_regular(src: str, dst: str) -> None:
    """Copy a regular file (refusing a FIFO or device) into a new private file."""
    fd, _ = safeio.open_regular(src)
    try:
        with os.fdopen(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out, \
                os.fdopen(fd, "rb", closefd=False) as inp:
            shutil.copyfileobj(inp, out, 1024 * 1024)
    finally:
        os.close(fd)


# What reading a hostile DB can raise: SQLite's errors, and the UnicodeDecodeError Python
# raises instead when SQLite's own error message quotes a schema that is not UTF-8.
DB_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)
COPY_MARK = "&qwarden=private-copy"  # not an SQLite parameter: marks a URI read via a copy



"""``--direct-db``: the task API's calls as SQL on the DB, journaled and undoable.

SQLite (a DB file: ``BEGIN IMMEDIATE`` is the write lock) or PostgreSQL (a
``postgresql://`` root, through asyncpg: the touched rows are locked with ``SELECT ... FOR
UPDATE`` inside the transaction, times are ``timestamptz``, ``completed`` a boolean; the id of
a row a split adds comes from the table's sequence).

Only when the operator asks (the API is the system's normal path). Each call has the column
effects the API gives it (``effect``: comic-pile a28e4ef8, ``../shared/formats-ahead.md``), so a
direct write leaves the row as the API would have, times included (naive UTC in the columns,
aware ISO times in the notes).

Apply, as Octopoid's applier (``core.actions.apply``):

1. the rows are read and compared with the plan's (the full row, every column, typed): a row
   that moved is ``StalePlan``, nothing journaled;
2. the after rows are computed (the times of now), and the journal records the intent, the
   before rows (the backups) and the after rows, durably, before the DB is touched;
3. a transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL rows read ``FOR UPDATE``): the rows
   are compared again under the write lock (no worker can change them until COMMIT), then
   every touched row is written whole and COMMIT;
4. the journal says done.

``undo`` is the same backwards: its own journal entry first, then inside the transaction the
rows must still be exactly what the action wrote (else refused, nothing changed), and each is
restored to its before row, every column (SQLite: ``iterdump`` of the DB equals the one before
the action), rows the action inserted deleted. ``recover`` settles an entry a crash (or a lost
connection) left ``applying``: all rows as written (done), all as before (rolled back), else
failed (a third version: left alone). ``QWARDEN_CRASH_AT=db:intent|db:rows|db:commit|db:done``
(and ``api:send:N``, ``api:answered:N`` for the API path) SIGKILLs there.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qwarden.core.actions.interface import Refused, StalePlan
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan
from qwarden.core.formats.taskapi.api import Call

CRASH_ENV = "QWARDEN_CRASH_AT"
BUSY_TIMEOUT_MS = 5000
VALID_STATUSES = ("pending", "in_progress", "blocked", "in_review", "done")


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ values and rows

def enc(v: Any) -> Any:
    """A column value as JSON keeps it, typed (bytes and times tagged; 1, 1.0 and True stay
    apart). A type qwarden could not write back exactly is refused."""
    if v is None or isinstance(v, (str, int, float)):
        return v
    if isinstance(v, bytes):
        return {"$b64": base64.b64encode(v).decode()}
    if isinstance(v, datetime):
        return {"$ts": v.isoformat()}
    raise Refused(f"a tasks column holds a {type(v).__name__} ({v!r:.40}): --direct-db "
                  "cannot write it back exactly, so it writes nothing")


def dec(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"$b64"}:
        return base64.b64decode(v["$b64"])
    if isinstance(v, dict) and set(v) == {"$ts"}:
        return datetime.fromisoformat(v["$ts"])
    return v


def enc_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: enc(v) for k, v in row.items()}


def dec_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: dec(v) for k, v in row.items()}


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal rows, column by column, type included (JSON of the encoded values)."""
    return json.dumps(enc_row(a), sort_keys=True) == json.dumps(enc_row(b), sort_keys=True)


def open_db(db: Path, timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """The one read-write connection ``--direct-db`` opens on a SQLite DB."""
    db = Path(db)
    if not db.is_file():
        raise Refused(f"{db}: no SQLite database to write (--direct-db needs the DB file)")
    try:
        conn = sqlite3.connect(db, timeout=timeout_ms / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        conn.execute("SELECT id, task_id, status FROM tasks LIMIT 0")
    except sqlite3.Error as exc:
        raise Refused(f"{db}: not a task API database ({exc})") from None
    return conn


def _dict(cur: sqlite3.Cursor) -> dict[str, Any] | None:
    r = cur.fetchone()
    return None if r is None else dict(zip([d[0] for d in cur.description], r, strict=True))


class SqliteTasks:
    """The tasks table of a SQLite DB: ``BEGIN IMMEDIATE`` is the write lock (every worker's
    write waits until COMMIT)."""

    dialect = "sqlite"

    def __init__(self, db: Path | str, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        self.where = str(db)
        self.conn = open_db(Path(db), int(timeout_s * 1000))
        self._local_next = 0

    def read_row(self, task_id: str) -> dict[str, Any] | None:
        return _dict(self.conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)))

    def read_by_id(self, rid: int) -> dict[str, Any] | None:
        return _dict(self.conn.execute("SELECT * FROM tasks WHERE id = ?", (rid,)))

    def next_id(self) -> int:
        """The id of the next row qwarden adds: after the highest, one more per row (the
        insert checks it is still free, inside the transaction)."""
        top = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM tasks").fetchone()[0])
        self._local_next = max(top, self._local_next) + 1
        return self._local_next - 1

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def execute(self, sql: str, args: list[Any]) -> int:
        return self.conn.execute(sql.replace("$?", "?"), args).rowcount

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteTasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tasks(root: Path | str, timeout_s: float = BUSY_TIMEOUT_MS / 1000
               ) -> SqliteTasks | PgTasks:
    """The tasks table ``--direct-db`` writes: a SQLite file, or a PostgreSQL URL."""
    s = str(root)
    if s.startswith(("postgres://", "postgresql://")):
        return PgTasks(s, timeout_s)
    return SqliteTasks(root, timeout_s)


def safe_dsn(dsn: str) -> str:
    """A PostgreSQL URL without its password (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        u = urlsplit(dsn)
        if u.password is None:
            return dsn
        netloc = u.netloc.replace(f":{u.password}@", ":***@", 1)
        return urlunsplit(u._replace(netloc=netloc))
    except ValueError:
        return "(a PostgreSQL URL)"


class PgTasks:
    """The tasks table of a PostgreSQL DB through asyncpg, driven from synchronous code on an
    event loop of its own (a thread), so it works from inside a running loop too. The write
    lock is the rows' own (``SELECT ... FOR UPDATE`` inside the transaction: a worker's
    update of them waits until COMMIT); a row qwarden inserts is guarded by the task_id's
    unique index."""

    dialect = "pg"

    def __init__(self, dsn: str, timeout_s: float = 10.0) -> None:
        import asyncio
        import threading

        import asyncpg

        self.where = safe_dsn(dsn)
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="qwarden-taskapi-pg")
        self._thread.start()
        self._tx: Any = None
        self._local_next = 0
        self._errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
            OSError, TimeoutError)  # a lost connection is one of the last four
        try:
            self.conn = self._run(lambda: asyncpg.connect(dsn, timeout=timeout_s,
                                                  command_timeout=timeout_s))
            self._run(lambda: self.conn.fetch("SELECT id, task_id, status FROM tasks "
                                              "LIMIT 0"))
        except Exception as exc:
            self._stop()
            raise Refused(f"{self.where}: cannot open the tasks table for writing "
                          f"({type(exc).__name__}: {exc})") from None

    def _run(self, make: Any) -> Any:
        """Run ``make()`` (it returns an awaitable) on the connection's loop and wait. asyncpg
        checks a closed connection when the call is made, not awaited, so ``make`` runs on the
        loop too and every error of a lost connection becomes a ``PgError``."""
        import asyncio

        async def go() -> Any:
            return await make()

        fut = asyncio.run_coroutine_threadsafe(go(), self._loop)
        try:
            return fut.result(self.timeout_s + 5)
        except self._errors as exc:
            raise PgError(f"{self.where}: {type(exc).__name__}: {exc}") from None

    def _fetch_one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        r = self._run(lambda: self.conn.fetchrow(sql, *args))
        return None if r is None else dict(r)

    def read_row(self, task_id: str) -> dict[str, Any] | None:
        lock = " FOR UPDATE" if self._tx is not None else ""
        return self._fetch_one(f"SELECT * FROM tasks WHERE task_id = $1{lock}", task_id)

    def read_by_id(self, rid: int) -> dict[str, Any] | None:
        lock = " FOR UPDATE" if self._tx is not None else ""
        return self._fetch_one(f"SELECT * FROM tasks WHERE id = $1{lock}", rid)

    def next_id(self) -> int:
        seq = self._run(lambda: self.conn.fetchval(
            "SELECT pg_get_serial_sequence('tasks', 'id')"))
        if seq:
            return int(self._run(lambda: self.conn.fetchval("SELECT nextval($1::regclass)",
                                                            seq)))
        # no sequence (a plain integer key): after the highest, one more per row added
        top = int(self._run(lambda: self.conn.fetchval(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM tasks")))
        self._local_next = max(top, self._local_next) + 1
        return self._local_next - 1

    def begin(self) -> None:
        self._tx = self.conn.transaction()
        self._run(lambda: self._tx.start())

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        self._run(lambda: tx.commit())

    def rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            try:
                self._run(lambda: tx.rollback())
            except PgError:
                pass  # the connection is gone: the server rolled back

    def execute(self, sql: str, args: list[Any]) -> int:
        n = 0

        def num(_m: Any) -> str:
            nonlocal n
            n += 1
            return f"${n}"

        status = self._run(lambda: self.conn.execute(re.sub(r"\$\?", num, sql), *args))
        try:
            return int(str(status).split()[-1])
        except (ValueError, IndexError):
            return 0

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def close(self) -> None:
        try:
            self._run(lambda: self.conn.close(timeout=self.timeout_s))
        except PgError:
            pass
        finally:
            self._stop()

    def __enter__(self) -> PgTasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PgError(Exception):
    """A PostgreSQL error or a lost connection during a direct write."""


Tasks = SqliteTasks | PgTasks
DB_ERRORS = (sqlite3.Error, PgError)


# ------------------------------------------------------------------ the API's effects

def db_time(t: datetime) -> str:
    """A time as the API stores it in SQLite (SQLAlchemy: naive UTC, microseconds)."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def col_time(t: datetime, dialect: str) -> Any:
    """A time as the API's ORM writes it: SQLite text (naive UTC), a PostgreSQL timestamptz."""
    if dialect == "sqlite":
        return db_time(t)
    return t.astimezone(UTC)


def _set(row: dict[str, Any], stamp: Any, **cols: Any) -> dict[str, Any]:
    """The columns set; ``updated_at`` moves only if one changed (SQLAlchemy's onupdate)."""
    changed = {k: v for k, v in cols.items() if row.get(k) != v}
    if not changed:
        return dict(row)
    return {**row, **changed, "updated_at": stamp}


def effect(c: Call, row: dict[str, Any] | None, now: datetime, admin: str = "admin",
           new_id: int | None = None, dialect: str = "sqlite") -> dict[str, Any]:
    """The row after the API served ``c`` (the row before: ``row``; None for a create),
    the values typed as the DB holds them (``dialect``: sqlite | pg). Raises ``Refused``
    where the API would refuse (the same words)."""
    verb = c.path.rsplit("/", 1)[-1] if c.path.count("/") > 3 else ""
    b = c.body or {}
    iso = now.astimezone(UTC).isoformat()
    stamp = col_time(now, dialect)
    yes, no = (1, 0) if dialect == "sqlite" else (True, False)
    if c.method == "POST" and c.path == "/api/tasks/":
        if row is not None:
            raise Refused(f"Task {b['task_id']} already exists")
        return {"id": new_id, "task_id": b["task_id"], "title": b["title"],
                "priority": b.get("priority") or "MEDIUM", "status": "pending",
                "dependencies": b.get("dependencies"), "assigned_agent": None,
                "worktree": None, "status_notes": None,
                "estimated_effort": b["estimated_effort"], "completed": no,
                "created_at": stamp, "updated_at": stamp, "blocked_reason": None,
                "blocked_by": None, "last_heartbeat": None,
                "instructions": b.get("instructions"), "description": b.get("description")}
    if row is None:
        raise Refused(f"Task {c.path.split('/')[3]} not found")
    if verb == "unclaim":
        agent = b["agent_name"]
        if row.get("assigned_agent") != agent and agent != admin:
            raise Refused(f"Task not assigned to {agent}. Assigned to {row.get('assigned_agent')}")
        status = row["status"] if row["status"] == "in_review" else "pending"
        notes = (row.get("status_notes") or "") + f"\n[{iso}] Unclaimed by {agent}"
        return _set(row, stamp, status=status, assigned_agent=None, worktree=None,
                    status_notes=notes)
    if verb == "claim":
        if row.get("assigned_agent"):
            raise Refused(f"Task already claimed by {row['assigned_agent']}")
        return _set(row, stamp, status="in_progress", assigned_agent=b["agent_name"],
                    worktree=b["worktree"],
                    status_notes=f"Claimed by {b['agent_name']} at {iso}")
    if verb == "set-status":
        if b["status"] not in VALID_STATUSES:
            raise Refused(f"Invalid status. Must be one of: {', '.join(VALID_STATUSES)}")
        cols: dict[str, Any] = {"status": b["status"]}
        if b["status"] == "done":
            cols["completed"] = yes
        elif b["status"] == "blocked":
            cols.update(blocked_reason=b.get("blocked_reason"), blocked_by=b.get("blocked_by"))
        else:
            cols.update(blocked_reason=None, blocked_by=None)
        return _set(row, stamp, **cols)
    if verb == "update-notes":
        notes = (row.get("status_notes") or "") + f"\n[{iso}] {b['notes']}"
        return _set(row, stamp, status_notes=notes)
    raise Refused(f"--direct-db has no SQL for {c.method} {c.path}")


def call_task(c: Call) -> str:
    """The task id a call is about (a create: the one it creates)."""
    if c.path == "/api/tasks/":
        return str((c.body or {})["task_id"])
    from urllib.parse import unquote

    return unquote(c.path.split("/")[3])


def simulate(calls: tuple[Call, ...], rows: dict[str, dict[str, Any] | None], now: datetime,
             admin: str, next_ids: Any, dialect: str = "sqlite"
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The changes ``calls`` make to ``rows`` (task id -> row before, None: absent): a list of
    {op: update|insert, id, task_id, before, after} (encoded rows), in first-touch order.
    ``next_ids()`` gives the id of each row a create adds."""
    cur = {k: (None if v is None else dict(v)) for k, v in rows.items()}
    order: list[str] = []
    for c in calls:
        tid = call_task(c)
        if tid not in order:
            order.append(tid)
        nid = next_ids() if c.path == "/api/tasks/" else None
        cur[tid] = effect(c, cur.get(tid), now, admin, nid, dialect)
    out = []
    for tid in order:
        before, after = rows.get(tid), cur[tid]
        assert after is not None
        out.append({"op": "insert" if before is None else "update", "id": after["id"],
                    "task_id": tid, "before": enc_row(before), "after": enc_row(after)})
    return out, cur


# ------------------------------------------------------------------ apply, undo, recover

def _write(t: Tasks, ch: dict[str, Any], forward: bool = True) -> None:
    """Make the row what the change says (``forward``: its after; else its before), every
    column written (so a restore is the before row exactly)."""
    target = dec_row(ch["after"] if forward else ch["before"])
    if target is None:
        if t.execute("DELETE FROM tasks WHERE id = $?", [ch["id"]]) != 1:
            raise StalePlan(f"{ch['task_id']}: its row is gone")
        return
    if (ch["before"] if forward else ch["after"]) is None:  # the row is new
        cols = list(target)
        names = ", ".join(_q(c) for c in cols)
        t.execute(f'INSERT INTO tasks ({names}) VALUES ({", ".join(["$?"] * len(cols))})',
                  [target[c] for c in cols])
        return
    cols = [c for c in target if c != "id"]
    sets = ", ".join(f"{_q(c)} = $?" for c in cols)
    if t.execute(f"UPDATE tasks SET {sets} WHERE id = $?",
                 [*(target[c] for c in cols), ch["id"]]) != 1:
        raise StalePlan(f"{ch['task_id']}: its row is gone")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check(t: Tasks, changes: list[dict[str, Any]], side: str, what: str) -> None:
    """Every row is what ``side`` (before / after) of each change says, else ``StalePlan``
    (inside a transaction on PostgreSQL the rows read are locked until COMMIT)."""
    for ch in changes:
        want = ch[side]
        now = t.read_by_id(ch["id"])
        if want is None:
            if now is not None or t.read_row(ch["task_id"]) is not None:
                raise StalePlan(f"{ch['task_id']}: a task with this id (or row {ch['id']}) "
                                f"exists already {what}")
            continue
        if now is None:
            raise StalePlan(f"{ch['task_id']}: its row is gone {what}")
        if not same(now, dec_row(want)):
            cols = [k for k in set(now) | set(want)
                    if json.dumps(enc(now.get(k))) != json.dumps(want.get(k))]
            c = sorted(cols)[0]
            raise StalePlan(f"{ch['task_id']}: tasks.{c} changed {what} "
                            f"({_short(dec(want.get(c)))} -> {_short(now.get(c))})")


def _short(v: Any, n: int = 60) -> str:
    s = "NULL" if v is None else v.isoformat() if isinstance(v, datetime) else repr(v)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


def apply(t: Tasks, j: Journal, jplan: Plan, changes: list[dict[str, Any]]) -> int:
    """Journal ``changes`` (their before rows as the backups), then write them in one DB
    transaction after checking, under its write lock, that the rows are still as planned.
    The caller holds the journal's lock and checked the rows once already."""
    _check(t, changes, "before", "since the plan was made")
    pre = {f"tasks:{c['task_id']}": c["before"] for c in changes}
    # the backups: each before row, encoded (times and bytes tagged, see ``enc``)
    aid = j.begin(jplan, pre, {}, {f"tasks:{c['task_id']}": c["before"] for c in changes})
    j.audit("intent", aid, kind=jplan.kind, task_id=jplan.task_id, actor=jplan.actor,
            note=jplan.note, changes=jplan.describe()[1:], via="direct-db")
    crash_point("db:intent")
    try:
        t.begin()
        try:
            _check(t, changes, "before", "since the plan was made")
            for ch in changes:
                _write(t, ch, forward=True)
            crash_point("db:rows")
            t.commit()
        except BaseException:
            t.rollback()
            raise
        crash_point("db:commit")
    except StalePlan as exc:
        j.set_state(aid, "rolled_back", str(exc))
        j.audit("rolled_back", aid, kind=jplan.kind, task_id=jplan.task_id, error=str(exc))
        raise
    except DB_ERRORS as exc:
        # a failed statement or COMMIT leaves the rows as before (one transaction); a lost
        # connection during COMMIT may not: recovery reads the rows to tell
        j.audit("failed", aid, kind=jplan.kind, task_id=jplan.task_id, error=str(exc))
        try:
            state = _settled(t, changes)
            j.set_state(aid, state, f"{exc}" if state != "done" else
                        f"{exc} (the rows show the commit happened)")
        except DB_ERRORS:
            pass  # left applying: the next apply, undo or recover settles it
        raise Refused(f"{t.where}: the write failed ({exc}); qwarden settles it from the "
                      "rows on the next action") from None
    j.set_state(aid, "done")
    if jplan.undoes is not None:
        j.mark_undone(jplan.undoes, aid)
    j.audit("done", aid, kind=jplan.kind, task_id=jplan.task_id, via="direct-db")
    crash_point("db:done")
    return aid


def inverse(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes that take the rows from after back to before (in reverse order)."""
    return [{"op": "delete" if c["before"] is None else "update", "id": c["id"],
             "task_id": c["task_id"], "before": c["after"], "after": c["before"]}
            for c in reversed(changes)]


def recover(t: Tasks, j: Journal) -> list[tuple[int, str]]:
    """Settle the direct-db entries a crash (or a lost connection) left unfinished: the
    caller holds the journal's lock."""
    out = []
    for row in j.unfinished():
        ex = row.plan.extra
        if ex.get("format") != "taskapi" or ex.get("via") != "db":
            continue
        state = _settled(t, ex.get("changes") or [])
        if state == "done":
            j.set_state(row.id, "done", "recovered: the DB commit had happened")
            if row.undoes is not None:
                j.mark_undone(row.undoes, row.id)
        elif state == "rolled_back":
            j.set_state(row.id, "rolled_back", "recovered: interrupted before the DB commit")
        else:
            j.set_state(row.id, "failed", "recovery: the rows hold neither the before nor the "
                        "after version (changed by someone else); left as they are")
        j.audit("recovered", row.id, kind=row.kind, task_id=row.task_id, outcome=state)
        out.append((row.id, state))
    return out


def _settled(t: Tasks, changes: list[dict[str, Any]]) -> str:
    for side, state in (("after", "done"), ("before", "rolled_back")):
        try:
            _check(t, changes, side, "")
        except StalePlan:
            continue
        return state
    return "failed"

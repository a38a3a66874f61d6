"""``--direct-db``: the task API's calls as SQL on the SQLite DB, journaled and undoable.

Only when the operator asks (the API is the system's normal path). Each call has the column
effects the API gives it (``effect``: comic-pile a28e4ef8, ``../shared/formats-ahead.md``), so a
direct write leaves the row as the API would have, times included (naive UTC in the columns,
aware ISO times in the notes).

Apply, as Octopoid's applier (``core.actions.apply``):

1. the rows are read and compared with the plan's (the full row, every column, typed): a row
   that moved is ``StalePlan``, nothing journaled;
2. the after rows are computed (the times of now), and the journal records the intent, the
   before rows (the backups) and the after rows, durably, before the DB is touched;
3. ``BEGIN IMMEDIATE`` on the DB: the rows are compared again under the write lock (no worker
   can change them until COMMIT), then every touched row is written whole and COMMIT;
4. the journal says done.

``undo`` is the same backwards: its own journal entry first, then inside ``BEGIN IMMEDIATE`` the
rows must still be exactly what the action wrote (else refused, nothing changed), and each is
restored to its before row, every column (``iterdump`` of the DB equals the one before the
action), rows the action inserted deleted. ``recover`` settles an entry a crash left
``applying``: all rows as written (done), all as before (rolled back), else failed (a third
version: left alone). ``QWARDEN_CRASH_AT=db:intent|db:rows|db:commit|db:done`` (and ``api:send:N``,
``api:answered:N`` for the API path) SIGKILLs there.
"""

from __future__ import annotations

import base64
import json
import os
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
    """A column value as JSON keeps it, typed (bytes tagged; 1 and 1.0 stay apart)."""
    if isinstance(v, bytes):
        return {"$b64": base64.b64encode(v).decode()}
    return v


def dec(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"$b64"}:
        return base64.b64decode(v["$b64"])
    return v


def enc_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: enc(v) for k, v in row.items()}


def dec_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: dec(v) for k, v in row.items()}


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal rows, column by column, type included (JSON of the encoded values)."""
    return json.dumps(enc_row(a), sort_keys=True) == json.dumps(enc_row(b), sort_keys=True)


def open_db(db: Path, timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """The one read-write connection ``--direct-db`` opens."""
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


def read_row(conn: sqlite3.Connection, task_id: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
    r = cur.fetchone()
    return None if r is None else dict(zip([d[0] for d in cur.description], r, strict=True))


def read_by_id(conn: sqlite3.Connection, rid: int) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM tasks WHERE id = ?", (rid,))
    r = cur.fetchone()
    return None if r is None else dict(zip([d[0] for d in cur.description], r, strict=True))


def task_ids(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT task_id FROM tasks")}


# ------------------------------------------------------------------ the API's effects

def db_time(t: datetime) -> str:
    """A time as the API stores it in SQLite (SQLAlchemy: naive UTC, microseconds)."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _set(row: dict[str, Any], now: datetime, **cols: Any) -> dict[str, Any]:
    """The columns set; ``updated_at`` moves only if one changed (SQLAlchemy's onupdate)."""
    changed = {k: v for k, v in cols.items() if row.get(k) != v}
    if not changed:
        return dict(row)
    return {**row, **changed, "updated_at": db_time(now)}


def effect(c: Call, row: dict[str, Any] | None, now: datetime, admin: str = "admin",
           new_id: int | None = None) -> dict[str, Any]:
    """The row after the API served ``c`` (the row before: ``row``; None for a create).
    Raises ``Refused`` where the API would refuse (the same words)."""
    verb = c.path.rsplit("/", 1)[-1] if c.path.count("/") > 3 else ""
    b = c.body or {}
    iso = now.astimezone(UTC).isoformat()
    if c.method == "POST" and c.path == "/api/tasks/":
        if row is not None:
            raise Refused(f"Task {b['task_id']} already exists")
        stamp = db_time(now)
        return {"id": new_id, "task_id": b["task_id"], "title": b["title"],
                "priority": b.get("priority") or "MEDIUM", "status": "pending",
                "dependencies": b.get("dependencies"), "assigned_agent": None,
                "worktree": None, "status_notes": None,
                "estimated_effort": b["estimated_effort"], "completed": 0,
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
        return _set(row, now, status=status, assigned_agent=None, worktree=None,
                    status_notes=notes)
    if verb == "claim":
        if row.get("assigned_agent"):
            raise Refused(f"Task already claimed by {row['assigned_agent']}")
        return _set(row, now, status="in_progress", assigned_agent=b["agent_name"],
                    worktree=b["worktree"],
                    status_notes=f"Claimed by {b['agent_name']} at {iso}")
    if verb == "set-status":
        if b["status"] not in VALID_STATUSES:
            raise Refused(f"Invalid status. Must be one of: {', '.join(VALID_STATUSES)}")
        cols: dict[str, Any] = {"status": b["status"]}
        if b["status"] == "done":
            cols["completed"] = 1
        elif b["status"] == "blocked":
            cols.update(blocked_reason=b.get("blocked_reason"), blocked_by=b.get("blocked_by"))
        else:
            cols.update(blocked_reason=None, blocked_by=None)
        return _set(row, now, **cols)
    if verb == "update-notes":
        notes = (row.get("status_notes") or "") + f"\n[{iso}] {b['notes']}"
        return _set(row, now, status_notes=notes)
    raise Refused(f"--direct-db has no SQL for {c.method} {c.path}")


def call_task(c: Call) -> str:
    """The task id a call is about (a create: the one it creates)."""
    if c.path == "/api/tasks/":
        return str((c.body or {})["task_id"])
    from urllib.parse import unquote

    return unquote(c.path.split("/")[3])


def simulate(calls: tuple[Call, ...], rows: dict[str, dict[str, Any] | None], now: datetime,
             admin: str, next_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The changes ``calls`` make to ``rows`` (task id -> row before, None: absent): a list of
    {op: update|insert, id, task_id, before, after} (encoded rows), in first-touch order."""
    cur = {k: (None if v is None else dict(v)) for k, v in rows.items()}
    order: list[str] = []
    for c in calls:
        tid = call_task(c)
        if tid not in order:
            order.append(tid)
        nid = None
        if c.path == "/api/tasks/":
            nid = next_id
            next_id += 1
        cur[tid] = effect(c, cur.get(tid), now, admin, nid)
    out = []
    for tid in order:
        before, after = rows.get(tid), cur[tid]
        assert after is not None
        out.append({"op": "insert" if before is None else "update", "id": after["id"],
                    "task_id": tid, "before": enc_row(before), "after": enc_row(after)})
    return out, cur


# ------------------------------------------------------------------ apply, undo, recover

def _write(conn: sqlite3.Connection, ch: dict[str, Any], forward: bool = True) -> None:
    """Make the row what the change says (``forward``: its after; else its before)."""
    target = dec_row(ch["after"] if forward else ch["before"])
    if target is None:
        cur = conn.execute("DELETE FROM tasks WHERE id = ?", (ch["id"],))
        if cur.rowcount != 1:
            raise StalePlan(f"{ch['task_id']}: its row is gone")
        return
    if (ch["before"] if forward else ch["after"]) is None:  # the row is new
        cols = list(target)
        names = ", ".join(_q(c) for c in cols)
        conn.execute(f'INSERT INTO tasks ({names}) VALUES ({", ".join("?" * len(cols))})',
                     [target[c] for c in cols])
        return
    cols = [c for c in target if c != "id"]
    sets = ", ".join(f"{_q(c)} = ?" for c in cols)
    cur = conn.execute(f"UPDATE tasks SET {sets} WHERE id = ?",
                       [*(target[c] for c in cols), ch["id"]])
    if cur.rowcount != 1:
        raise StalePlan(f"{ch['task_id']}: its row is gone")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check(conn: sqlite3.Connection, changes: list[dict[str, Any]], side: str,
           what: str) -> None:
    """Every row is what ``side`` (before / after) of each change says, else ``StalePlan``."""
    for ch in changes:
        want = ch[side]
        now = read_by_id(conn, ch["id"])
        if want is None:
            if now is not None or read_row(conn, ch["task_id"]) is not None:
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
    s = "NULL" if v is None else repr(v)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


def apply(db: Path, j: Journal, jplan: Plan, changes: list[dict[str, Any]]) -> int:
    """Journal ``changes`` (their before rows as the backups), then write them in one DB
    transaction after checking, under its write lock, that the rows are still as planned.
    The caller holds the journal's lock and checked the rows once already."""
    conn = open_db(db)
    try:
        _check(conn, changes, "before", "since the plan was made")
        pre = {f"tasks:{c['task_id']}": c["before"] for c in changes}
        aid = j.begin(jplan, pre, {}, {f"tasks:{c['task_id']}": dec_row(c["before"])
                                       for c in changes})
        j.audit("intent", aid, kind=jplan.kind, task_id=jplan.task_id, actor=jplan.actor,
                note=jplan.note, changes=jplan.describe()[1:], via="direct-db")
        crash_point("db:intent")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _check(conn, changes, "before", "since the plan was made")
                for ch in changes:
                    _write(conn, ch, forward=True)
                crash_point("db:rows")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            crash_point("db:commit")
        except StalePlan as exc:
            j.set_state(aid, "rolled_back", str(exc))
            j.audit("rolled_back", aid, kind=jplan.kind, task_id=jplan.task_id, error=str(exc))
            raise
        except sqlite3.Error as exc:
            j.set_state(aid, "failed", str(exc))
            j.audit("failed", aid, kind=jplan.kind, task_id=jplan.task_id, error=str(exc))
            raise Refused(f"{db}: the write failed, nothing changed ({exc})") from None
        j.set_state(aid, "done")
        if jplan.undoes is not None:
            j.mark_undone(jplan.undoes, aid)
        j.audit("done", aid, kind=jplan.kind, task_id=jplan.task_id, via="direct-db")
        crash_point("db:done")
        return aid
    finally:
        conn.close()


def inverse(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes that take the rows from after back to before (in reverse order)."""
    return [{"op": "delete" if c["before"] is None else "update", "id": c["id"],
             "task_id": c["task_id"], "before": c["after"], "after": c["before"]}
            for c in reversed(changes)]


def recover(db: Path, j: Journal) -> list[tuple[int, str]]:
    """Settle the direct-db entries a crash left unfinished (the caller holds the lock)."""
    out = []
    for row in j.unfinished():
        ex = row.plan.extra
        if ex.get("format") != "taskapi" or ex.get("via") != "db":
            continue
        changes = ex.get("changes") or []
        try:
            conn = open_db(db)
        except Refused as exc:
            j.set_state(row.id, "failed", f"recovery: {exc}")
            out.append((row.id, "failed"))
            continue
        try:
            state = _settled(conn, changes)
        finally:
            conn.close()
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


def _settled(conn: sqlite3.Connection, changes: list[dict[str, Any]]) -> str:
    for side, state in (("after", "done"), ("before", "rolled_back")):
        try:
            _check(conn, changes, side, "")
        except StalePlan:
            continue
        return state
    return "failed"

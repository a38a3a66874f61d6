"""The one write path: check -> journal intent + backups -> files -> DB commit -> journal done.

Order and why:
1. Preconditions against the state the plan was made from (full row values, file sha256), so a
   plan made before an agent moved on is refused (``StalePlan``), never half-applied.
2. Journal the intent and back up every touched file (bytes) and row (JSON), durably.
3. ``BEGIN IMMEDIATE`` on state.db and re-check the rows under the write lock (no agent can
   change them until we commit), then the file operations (temp file in the same dir, fsync,
   ``os.replace`` / ``os.link``, fsync of the dir), each re-checking its source hash just before.
4. The DB statements and COMMIT: the point of no return. Before it, recovery rolls the files
   back; after it, recovery rolls forward (the files are already done, it only verifies).
5. Journal done.

``recover(root)`` runs that decision for every unfinished journal entry; ``undo`` builds the
inverse plan of a finished action and applies it through this same path. ``QWARDEN_CRASH_AT``
(a step name) SIGKILLs the process at that step: the crash-safety tests use it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwarden.core.actions.journal import ActionRow, Journal
from qwarden.core.actions.plan import (
    ACTION_FILE_MAX_BYTES,
    FileOp,
    Plan,
    Refused,
    RowOp,
    StalePlan,
    check_inside_root,
    sha256,
)
from qwarden.core.atomicfile import existing_mode, temp_name, unlink_durable, write_atomic
from qwarden.core.safeio import read_whole

CRASH_ENV = "QWARDEN_CRASH_AT"
BUSY_TIMEOUT_MS = 5000


class RecoveryConflict(Exception):
    """Recovery found a third version (neither before nor after): it leaves it alone."""


def marker(aid: int) -> str:
    """Appended to the details of each task_history row an action writes: ties the row to
    the journal, so recovery can tell whether the DB commit happened and undo can find it."""
    return f"[qwarden#{aid}]"


def _crash(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ state db access

def open_rw(root: Path, timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """The only read-write connection to Octopoid's state.db qwarden ever opens."""
    db = Path(root) / "state.db"
    if not db.is_file():
        raise Refused(f"{db}: no database to write")
    conn = sqlite3.connect(db, timeout=timeout_ms / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
    return conn


def read_row(conn: sqlite3.Connection, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    (col, val), = key.items()
    cur = conn.execute(f'SELECT * FROM "{table}" WHERE "{col}" = ?', (val,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _history_rows(conn: sqlite3.Connection, aid: int) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT * FROM task_history WHERE details LIKE ? ORDER BY id",
                       (f"%{marker(aid)}",))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _check_rows(conn: sqlite3.Connection, plan: Plan) -> None:
    for r in plan.rows:
        if r.op == "insert" and r.table == "task_history":
            continue  # a new history row: nothing to compare
        cur = read_row(conn, r.table, r.key)
        if r.before is None:
            if cur is not None:
                raise StalePlan(f"TASK-{plan.task_id}: a {r.table} row {r.key} appeared "
                                "since the plan was made")
            continue
        if cur is None:
            raise StalePlan(f"TASK-{plan.task_id}: the {r.table} row {r.key} is gone "
                            "since the plan was made")
        diff = [c for c, v in r.before.items() if cur.get(c) != v]
        if diff:
            c = diff[0]
            raise StalePlan(f"TASK-{plan.task_id}: DB {r.table}.{c} changed since the plan "
                            f"was made ({r.before[c]!r} -> {cur.get(c)!r}); re-plan and retry")


def _read(path: Path) -> bytes | None:
    """A task file's bytes now (None: gone). A FIFO, device or oversized file where the plan
    saw a task file is a change since the plan: refused as stale, never read."""
    try:
        return read_whole(path, ACTION_FILE_MAX_BYTES)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StalePlan(f"{path.name}: {exc.strerror}") from None


def _check_file(root: Path, f: FileOp, task_id: str) -> None:
    if f.src is not None:
        data = _read(root / f.src)
        if data is None:
            raise StalePlan(f"TASK-{task_id}: {f.src} is gone since the plan was made")
        if sha256(data) != f.before_sha:
            raise StalePlan(f"TASK-{task_id}: {f.src} changed since the plan was made "
                            "(an agent wrote it); re-plan and retry")
    if f.dst is not None and f.dst != f.src and os.path.lexists(root / f.dst):
        raise StalePlan(f"TASK-{task_id}: {f.dst} already exists")


# ------------------------------------------------------------------ atomic file ops

def _grab_name(path: Path, aid: int) -> Path:
    return path.parent / f".{path.name}.qw{aid}.grab"


def _tmp_name(path: Path, aid: int) -> Path:
    return temp_name(path, f"qw{aid}")


def _write_atomic(path: Path, data: bytes, aid: int, step: str, no_clobber: bool,
                  mode: int = 0o644) -> None:
    """``atomicfile.write_atomic``; ``no_clobber`` refuses (stale plan) a target that appeared
    meanwhile instead of overwriting what an agent just created."""
    try:
        write_atomic(path, data, tag=f"qw{aid}", no_clobber=no_clobber, mode=mode,
                     after_temp=lambda: _crash(step + ":tmp"))
    except FileExistsError:
        raise StalePlan(f"{path.name}: appeared in {path.parent.name}/ meanwhile") from None


_unlink = unlink_durable


_mode = existing_mode


def _do_file(root: Path, f: FileOp, aid: int, step: str, task_id: str) -> None:
    # Re-check right before touching: an agent may have written since the first check.
    _check_file(root, f, task_id)
    if f.kind == "write":
        assert f.src is not None and f.after is not None
        _write_atomic(root / f.src, f.after, aid, step, False, _mode(root / f.src))
    elif f.kind == "create":
        assert f.dst is not None and f.after is not None
        _write_atomic(root / f.dst, f.after, aid, step, True)
    elif f.kind == "move":
        assert f.src is not None and f.dst is not None and f.after is not None
        _write_atomic(root / f.dst, f.after, aid, step, True, _mode(root / f.src))
        _crash(step + ":linked")
        _take_source(root, f, aid, step, task_id)
    else:  # remove: only files qwarden created (undo); the bytes stay in the journal
        assert f.src is not None
        _unlink(root / f.src)


def _take_source(root: Path, f: FileOp, aid: int, step: str, task_id: str) -> None:
    """Remove a move's source without ever losing an agent's write: rename it aside first
    (atomic: from here on nobody can rewrite it by path), then check it is still the version
    the plan was made from. If an agent moved or rewrote it meanwhile, give it back, drop our
    copy at dst, and refuse as stale."""
    src, dst = root / str(f.src), root / str(f.dst)
    grab = _grab_name(src, aid)
    try:
        os.rename(src, grab)
    except FileNotFoundError:
        _unlink(dst)  # our own copy (just linked); the agent has the task elsewhere
        raise StalePlan(f"TASK-{task_id}: {f.src} was moved by someone else meanwhile") from None
    _crash(step + ":grabbed")
    if sha256(_read(grab) or b"") != f.before_sha:
        _give_back(root, f, grab)
        _unlink(dst)
        raise StalePlan(f"TASK-{task_id}: {f.src} changed while qwarden moved it; "
                        "left as the agent wrote it")
    _unlink(grab)


def _give_back(root: Path, f: FileOp, grab: Path) -> None:
    """Put a grabbed source back; if its path was taken meanwhile, keep the bytes in
    quarantine (never delete them)."""
    src = root / str(f.src)
    try:
        os.link(grab, src)
    except FileExistsError:
        qdir = root / "shared" / "quarantine"
        qdir.mkdir(parents=True, exist_ok=True)
        os.link(grab, qdir / f"{grab.name.lstrip('.')}.kept")
    _unlink(grab)


def _sha_at(root: Path, rel: str | None) -> str | None:
    if rel is None:
        return None
    try:
        data = _read(root / rel)
    except StalePlan:
        return "unreadable"  # a third version: rollback leaves it, forward conflicts
    return None if data is None else sha256(data)


def _rollback_file(root: Path, f: FileOp, backup: bytes | None, aid: int) -> None:
    """Revert one file op if its after version is there; anything else (the op never ran, or
    an agent's own version) is left exactly as it is."""
    src = _sha_at(root, f.src)
    dst = _sha_at(root, f.dst) if f.dst != f.src else src
    k = f.kind
    if k == "write":
        if src == f.after_sha and src != f.before_sha and backup is not None:
            _write_atomic(root / str(f.src), backup, aid, "rollback", False)
        return
    if k == "create":
        if dst == f.after_sha:
            _unlink(root / str(f.dst))  # we created it; its bytes are in the journal's plan
        return
    if k == "move":
        grab = _grab_name(root / str(f.src), aid)
        if grab.exists():  # killed between grabbing the source and removing it
            _give_back(root, f, grab)
            src = _sha_at(root, f.src)
        if dst != f.after_sha:
            return  # never linked (or someone else's file): nothing of ours there
        if src is None and backup is not None:
            _write_atomic(root / str(f.src), backup, aid, "rollback", True)
        elif src != f.before_sha:
            raise RecoveryConflict(f"{f.src}: rewritten by someone else while {f.dst} holds "
                                   "qwarden's copy; both left as they are")
        _unlink(root / str(f.dst))
        return
    if src is None and backup is not None:  # remove: put the file back
        _write_atomic(root / str(f.src), backup, aid, "rollback", True)


def _forward_file(root: Path, f: FileOp, aid: int, task_id: str) -> None:
    src = _sha_at(root, f.src)
    dst = _sha_at(root, f.dst) if f.dst != f.src else src
    k = f.kind
    if k == "write" and src == f.after_sha:
        return
    if k == "create" and dst == f.after_sha:
        return
    if k == "move":
        if dst == f.after_sha and src is None:
            return
        if dst == f.after_sha and src == f.before_sha:
            _unlink(root / str(f.src))
            return
    if k == "remove" and src is None:
        return
    try:
        _do_file(root, f, aid, "forward", task_id)
    except StalePlan as exc:
        raise RecoveryConflict(str(exc)) from None


def _cleanup_tmp(root: Path, plan: Plan, aid: int) -> None:
    for f in plan.files:
        for rel in (f.src, f.dst):
            if rel is not None:
                tmp = _tmp_name(root / rel, aid)
                if tmp.exists():
                    tmp.unlink()  # our own partial copy; the real bytes are elsewhere


# ------------------------------------------------------------------ DB statements

def _exec_rows(conn: sqlite3.Connection, plan: Plan, aid: int) -> None:
    for r in plan.rows:
        if r.op == "update":
            sets = ", ".join(f'"{c}" = ?' for c in r.after)
            (kc, kv), = r.key.items()
            cur = conn.execute(f'UPDATE "{r.table}" SET {sets} WHERE "{kc}" = ?',
                               (*r.after.values(), kv))
            if cur.rowcount != 1:
                raise StalePlan(f"TASK-{plan.task_id}: {r.table} row {r.key} is gone")
        elif r.op == "insert":
            vals = dict(r.after)
            if r.table == "task_history":
                vals["details"] = f"{vals.get('details') or ''} {marker(aid)}".lstrip()
            cols = ", ".join(f'"{c}"' for c in vals)
            conn.execute(f'INSERT INTO "{r.table}" ({cols}) VALUES '
                         f'({", ".join("?" * len(vals))})', tuple(vals.values()))
        else:
            (kc, kv), = r.key.items()
            cur = conn.execute(f'DELETE FROM "{r.table}" WHERE "{kc}" = ?', (kv,))
            if cur.rowcount != 1:
                raise StalePlan(f"TASK-{plan.task_id}: {r.table} row {r.key} is gone")


def _db_committed(conn: sqlite3.Connection, plan: Plan, aid: int) -> bool:
    """Did this action's DB transaction commit? History rows carry the action's marker; plans
    without one (undo) are judged by the rows themselves (after values in place)."""
    if any(r.op == "insert" and r.table == "task_history" for r in plan.rows):
        return bool(_history_rows(conn, aid))
    for r in plan.rows:
        cur = read_row(conn, r.table, r.key)
        if r.op == "update":
            if cur is None or any(cur.get(c) != v for c, v in r.after.items()):
                return False
        elif r.op == "insert":
            if cur is None:
                return False
        elif cur is not None:
            return False
    return True


# ------------------------------------------------------------------ apply

@dataclass(frozen=True)
class Result:
    action_id: int
    plan: Plan
    elapsed_ms: float


def apply(root: Path, plan: Plan, *, read_only: bool = False,
          busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Result:
    """Apply a plan or raise (``Refused``, ``StalePlan``) with nothing changed."""
    import time

    t0 = time.perf_counter()
    if read_only:
        raise Refused("read-only mode: qwarden refuses every write (drop --read-only / "
                      "read_only = false in the config)")
    root = Path(root)
    plan.check_paths()
    check_inside_root(root, plan.written_paths())
    with Journal(root) as j, j.lock():
        conn = open_rw(root, busy_timeout_ms) if plan.rows else None
        try:
            aid = _apply_locked(root, plan, j, conn)
        finally:
            if conn is not None:
                conn.close()
    return Result(aid, plan, (time.perf_counter() - t0) * 1000)


def _apply_locked(root: Path, plan: Plan, j: Journal, conn: sqlite3.Connection | None) -> int:
    if conn is not None:
        _check_rows(conn, plan)
    for f in plan.files:
        _check_file(root, f, plan.task_id)
    file_backups = {f.src: _read(root / f.src) for f in plan.files if f.src is not None}
    row_backups: dict[str, dict[str, Any] | None] = {}
    if conn is not None:
        for r in plan.rows:
            if r.table == "tasks" or r.op == "delete":
                k = f"{r.table}:{next(iter(r.key.values()))}"
                row_backups[k] = read_row(conn, r.table, r.key)
    pre = {"rows": {f"{r.table}:{next(iter(r.key.values()))}": r.before for r in plan.rows
                    if not (r.op == "insert" and r.table == "task_history")},
           "files": {f.src: f.before_sha for f in plan.files if f.src is not None}
           | {f.dst: None for f in plan.files if f.dst is not None and f.dst != f.src}}
    aid = j.begin(plan, pre, file_backups, row_backups)
    j.audit("intent", aid, kind=plan.kind, task_id=plan.task_id, actor=plan.actor,
            note=plan.note, changes=plan.describe()[1:])
    _crash("intent")
    in_tx = False
    try:
        if conn is not None:
            conn.execute("BEGIN IMMEDIATE")
            in_tx = True
            _check_rows(conn, plan)  # under the write lock: agents wait until COMMIT
        for i, f in enumerate(plan.files):
            _do_file(root, f, aid, f"file:{i}", plan.task_id)
            _crash(f"file:{i}")
        if conn is not None:
            _exec_rows(conn, plan, aid)
            _crash("rows")
            conn.execute("COMMIT")
            in_tx = False
            _crash("commit")
    except BaseException as exc:
        if in_tx and conn is not None:
            conn.execute("ROLLBACK")
        try:
            for f in reversed(plan.files):
                _rollback_file(root, f, file_backups.get(f.src or ""), aid)
            _cleanup_tmp(root, plan, aid)
            state = "rolled_back" if isinstance(exc, StalePlan) else "failed"
        except RecoveryConflict as conflict:
            state, exc = "failed", conflict
        j.set_state(aid, state, str(exc))
        j.audit(state, aid, kind=plan.kind, task_id=plan.task_id, error=str(exc))
        raise
    j.set_state(aid, "done")
    if plan.undoes is not None:
        j.mark_undone(plan.undoes, aid)
    j.audit("done", aid, kind=plan.kind, task_id=plan.task_id)
    _crash("done")
    return aid


def being_written(root: Path, plan: Plan, samples: int = 6, gap_s: float = 0.02) -> bool:
    """Does something keep rewriting the plan's source files right now? Their hashes are
    sampled for ~0.1 s after a stale refusal: a change between samples means an agent is
    writing the task continuously, so retrying at once would only be stale again."""
    import time

    rels = [f.src for f in plan.files if f.src is not None]
    if not rels:
        return False
    first = [_sha_at(root, r) for r in rels]
    for _ in range(samples):
        time.sleep(gap_s)
        if [_sha_at(root, r) for r in rels] != first:
            return True
    return False


def stale_message(root: Path, plan: Plan, exc: StalePlan) -> str:
    """The stale refusal, saying so when the task is being written continuously."""
    if not being_written(root, plan):
        return str(exc)
    return (f"{exc}. TASK-{plan.task_id} is being written continuously (it changed again "
            "within 0.1 s of the refusal): something is working on it. Wait until it stops "
            "and run the command again; qwarden never writes a task while it changes, not "
            "even with --force, so nothing was written")


# ------------------------------------------------------------------ recovery

def recover(root: Path) -> list[tuple[int, str]]:
    """Finish or revert every unfinished journal entry (run on start, before any action).
    Returns (action id, outcome) for each: done (rolled forward), rolled_back, or failed."""
    root = Path(root)
    if not (root / "warden" / "journal.db").exists():
        return []
    out: list[tuple[int, str]] = []
    with Journal(root) as j, j.lock():
        for a in j.unfinished():
            out.append((a.id, _recover_one(root, j, a)))
        # an undo that finished but died before marking its original
        j.conn.execute("UPDATE actions SET state='undone', undone_by=(SELECT u.id FROM actions u "
                       "WHERE u.undoes = actions.id AND u.state='done') WHERE state='done' AND "
                       "id IN (SELECT undoes FROM actions WHERE state='done' AND undoes IS NOT "
                       "NULL)")
    return out


def _recover_one(root: Path, j: Journal, a: ActionRow) -> str:
    plan = a.plan
    backups = j.file_backups(a.id)
    committed = False
    if plan.rows:
        conn = open_rw(root)
        try:
            committed = _db_committed(conn, plan, a.id)
        finally:
            conn.close()
    try:
        if committed:
            for f in plan.files:
                _forward_file(root, f, a.id, plan.task_id)
            state = "done"
        else:
            for f in reversed(plan.files):
                _rollback_file(root, f, backups.get(f.src or ""), a.id)
            state = "rolled_back"
        _cleanup_tmp(root, plan, a.id)
        error = "recovered after an interrupted apply"
    except RecoveryConflict as exc:
        state, error = "failed", f"recovery: {exc}"
    j.set_state(a.id, state, error)
    if state == "done" and plan.undoes is not None:
        j.mark_undone(plan.undoes, a.id)
    j.audit("recovered", a.id, kind=plan.kind, task_id=plan.task_id, outcome=state,
            error=error)
    return state


# ------------------------------------------------------------------ undo

def inverse_plan(root: Path, a: ActionRow, j: Journal, actor: str) -> Plan:
    """The plan that takes the queue from ``a``'s after state back to its before state. Its
    preconditions are the after state exactly, so anything changed since makes it stale."""
    if a.state != "done":
        raise Refused(f"action {a.id} is {a.state}, only a done action can be undone")
    if a.undoes is not None:
        raise Refused(f"action {a.id} is itself an undo (of {a.undoes})")
    plan = a.plan
    rows_backup = j.row_backups(a.id)
    files_backup = j.file_backups(a.id)
    rows: list[RowOp] = []
    if plan.rows:
        conn = open_rw(root)
        try:
            for h in _history_rows(conn, a.id):
                rows.append(RowOp("task_history", "delete", {"id": h["id"]}, h, {}))
        finally:
            conn.close()
    for r in reversed(plan.rows):
        if r.table != "tasks":
            continue
        key = f"tasks:{next(iter(r.key.values()))}"
        old = rows_backup.get(key)
        if r.op == "update" and old is not None:
            expected = {**old, **r.after}
            back = {c: old.get(c) for c in r.after}
            rows.append(RowOp("tasks", "update", r.key, expected, back))
        elif r.op == "insert":
            rows.append(RowOp("tasks", "delete", r.key, dict(r.after), {}))
    files: list[FileOp] = []
    for f in reversed(plan.files):
        if f.kind == "write":
            files.append(FileOp(f.src, f.src, f.after_sha, files_backup.get(str(f.src))))
        elif f.kind == "move":
            files.append(FileOp(f.dst, f.src, f.after_sha, files_backup.get(str(f.src))))
        elif f.kind == "create":
            files.append(FileOp(f.dst, None, f.after_sha, None))
        else:
            raise Refused(f"action {a.id} removed a file; it cannot be undone")
    return Plan(kind="undo", task_id=plan.task_id, actor=actor,
                summary=f"undo action {a.id} ({plan.kind})", rows=tuple(rows),
                files=tuple(files), undoes=a.id)


def undo(root: Path, action_id: int | None = None, *, actor: str = "qwarden",
         read_only: bool = False) -> Result:
    """Reverse a done action (default: the newest) if nothing changed since; else Refused."""
    if read_only:
        raise Refused("read-only mode: qwarden refuses every write")
    with Journal(root) as j:
        a = j.get(action_id) if action_id is not None else j.last_undoable()
        if a is None:
            raise Refused("no such action" if action_id is not None else
                          "nothing to undo")
        inv = inverse_plan(Path(root), a, j, actor)
    try:
        return apply(root, inv)
    except StalePlan as exc:
        raise Refused(f"cannot undo action {a.id}: the task changed since "
                      f"({exc})") from None

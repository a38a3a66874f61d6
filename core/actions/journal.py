"""qwarden's own journal: ``ROOT/warden/journal.db`` plus the append-only ``audit.jsonl``.

The only place qwarden writes besides the task files and rows its actions touch. Each action is
one row whose ``state`` walks planned -> applying -> done (or failed / rolled_back), later maybe
undone; the backups of every touched file (bytes) and row (JSON) are stored before anything is
changed, so recovery and undo never depend on the queue still holding the old state.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qwarden.core.actions.plan import Plan, check_inside_root, sha256

STATES = ("planned", "applying", "done", "rolled_back", "undone", "failed")
UNFINISHED = ("planned", "applying")
FIXES = "fixes"  # the plan's extra key naming the finding an auto-fix was for

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    task_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL,
    preconditions TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    undoes INTEGER,
    undone_by INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_actions_state ON actions(state);
CREATE INDEX IF NOT EXISTS idx_actions_task ON actions(task_id);
CREATE TABLE IF NOT EXISTS backups (
    action_id INTEGER NOT NULL,
    what TEXT NOT NULL,          -- file | row
    key TEXT NOT NULL,           -- relpath, or table:id
    data BLOB,                   -- file bytes / row JSON; NULL: did not exist
    sha256 TEXT,
    PRIMARY KEY (action_id, what, key)
);
"""


def warden_dir(root: Path) -> Path:
    return Path(root) / "warden"


from qwarden.core.reviews import REVIEWS_SQL, read_reviews  # noqa: E402,F401  (shared with observers)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ActionRow:
    id: int
    kind: str
    task_id: str
    actor: str
    note: str
    plan: Plan
    preconditions: dict[str, Any]
    state: str
    error: str | None
    undoes: int | None
    undone_by: int | None
    created_at: str
    updated_at: str


class Journal:
    """One connection to journal.db. Cheap to open; close it when done."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = warden_dir(self.root)
        check_inside_root(self.root, ["warden/journal.db", "warden/audit.jsonl",
                                      "warden/lock"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journal.db"
        self.audit_path = self.dir / "audit.jsonl"
        self.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 10000")
        # FULL: a journal step is durable before the queue is touched (crash safety).
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer lock -------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """One qwarden writer at a time per root (apply, recover, undo), across processes.
        An flock dies with its process, so a SIGKILLed writer never leaves it held."""
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- actions -----------------------------------------------------------
    def begin(self, plan: Plan, preconditions: dict[str, Any],
              file_backups: dict[str, bytes | None],
              row_backups: dict[str, dict[str, Any] | None]) -> int:
        """Record the intent and the backups in one transaction (state ``applying``): after
        this returns, recovery has everything it needs to restore the before state."""
        now = _now()
        with self._tx():
            cur = self.conn.execute(
                "INSERT INTO actions (kind, task_id, actor, note, plan, preconditions, state, "
                "undoes, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (plan.kind, plan.task_id, plan.actor, plan.note, plan.dumps(),
                 json.dumps(preconditions, sort_keys=True), "planned", plan.undoes, now, now))
            aid = int(cur.lastrowid or 0)
            for rel, data in file_backups.items():
                self.conn.execute(
                    "INSERT INTO backups VALUES (?,?,?,?,?)",
                    (aid, "file", rel, data, None if data is None else sha256(data)))
            for key, row in row_backups.items():
                self.conn.execute("INSERT INTO backups VALUES (?,?,?,?,?)",
                                  (aid, "row", key, None if row is None else
                                   json.dumps(row, sort_keys=True), None))
            self.conn.execute("UPDATE actions SET state='applying' WHERE id=?", (aid,))
        return aid

    def set_state(self, aid: int, state: str, error: str | None = None) -> None:
        assert state in STATES
        with self._tx():
            self.conn.execute("UPDATE actions SET state=?, error=?, updated_at=? WHERE id=?",
                              (state, error, _now(), aid))

    def mark_undone(self, aid: int, by: int) -> None:
        with self._tx():
            self.conn.execute(
                "UPDATE actions SET state='undone', undone_by=?, updated_at=? WHERE id=?",
                (by, _now(), aid))

    def get(self, aid: int) -> ActionRow | None:
        row = self.conn.execute(f"SELECT {_COLS} FROM actions WHERE id=?", (aid,)).fetchone()
        return None if row is None else _action(row)

    def unfinished(self) -> list[ActionRow]:
        rows = self.conn.execute(f"SELECT {_COLS} FROM actions WHERE state IN (?, ?) "
                                 "ORDER BY id", UNFINISHED).fetchall()
        return [_action(r) for r in rows]

    def last_undoable(self) -> ActionRow | None:
        row = self.conn.execute(
            f"SELECT {_COLS} FROM actions WHERE state='done' AND undoes IS NULL "
            "ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _action(row)

    def recent(self, limit: int = 50, task_id: str | None = None) -> list[ActionRow]:
        if task_id:
            rows = self.conn.execute(f"SELECT {_COLS} FROM actions WHERE task_id=? "
                                     "ORDER BY id DESC LIMIT ?", (task_id, limit)).fetchall()
        else:
            rows = self.conn.execute(f"SELECT {_COLS} FROM actions ORDER BY id DESC LIMIT ?",
                                     (limit,)).fetchall()
        return [_action(r) for r in rows]

    def last_fix_at(self, task_id: str, actor_prefix: str = "") -> str | None:
        """When ``task_id`` was last changed by a finished action (for once-per-hour limits)."""
        row = self.conn.execute(
            "SELECT MAX(created_at) FROM actions WHERE task_id=? AND state IN ('done','undone') "
            "AND actor LIKE ?", (task_id, actor_prefix + "%")).fetchone()
        return row[0] if row else None

    def last_fix_of(self, task_id: str, actor: str, finding: str) -> ActionRow | None:
        """The newest finished action by ``actor`` on the task that fixed ``finding`` (the
        auto-fixer records it in the plan's extra as ``FIXES``)."""
        row = self.conn.execute(
            f"SELECT {_COLS} FROM actions WHERE task_id=? AND actor=? AND state IN "
            "('done','undone') AND json_extract(plan, '$.extra.' || ?) = ? "
            "ORDER BY id DESC LIMIT 1", (task_id, actor, FIXES, finding)).fetchone()
        return None if row is None else _action(row)

    def reviews(self) -> dict[str, str]:
        """task id -> when a supervisor last reviewed it (accept, retry, cancel, mark-read):
        the unread_terminal finding is a task that reached a terminal queue after this."""
        rows = self.conn.execute(REVIEWS_SQL).fetchall()
        return {str(t): str(at) for t, at in rows}

    def file_backups(self, aid: int) -> dict[str, bytes | None]:
        rows = self.conn.execute("SELECT key, data FROM backups WHERE action_id=? AND "
                                 "what='file'", (aid,)).fetchall()
        return {k: (None if d is None else bytes(d)) for k, d in rows}

    def row_backups(self, aid: int) -> dict[str, dict[str, Any] | None]:
        rows = self.conn.execute("SELECT key, data FROM backups WHERE action_id=? AND "
                                 "what='row'", (aid,)).fetchall()
        return {k: (None if d is None else json.loads(d)) for k, d in rows}

    # -- audit trail -------------------------------------------------------
    def audit(self, event: str, action: int | None, **fields: Any) -> None:
        """Append one JSON line (O_APPEND, fsync): the human-readable trail of everything."""
        rec = {"at": _now(), "event": event, "action": action, **fields}
        line = (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_audit(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.audit_path.read_text("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-limit:] if limit else lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash: skip it, keep the rest
        return out

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


_COLS = ("id, kind, task_id, actor, note, plan, preconditions, state, error, undoes, undone_by, "
         "created_at, updated_at")


def _action(r: tuple[Any, ...]) -> ActionRow:
    return ActionRow(id=r[0], kind=r[1], task_id=r[2], actor=r[3], note=r[4],
                     plan=Plan.from_json(json.loads(r[5])), preconditions=json.loads(r[6]),
                     state=r[7], error=r[8], undoes=r[9], undone_by=r[10], created_at=r[11],
                     updated_at=r[12])

"""Shared helpers for the intervention tests: one small Octopoid state with a task for every
action, and an exact snapshot of everything an action may touch (rows, history, files)."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.builders import StateBuilder

ERROR = "Traceback (most recent call last):\n  File \"app.py\", line 7\nValueError: boom 42"


def err_trail(age: float) -> list[tuple[str, Any]]:
    return [("FAILED_AT", age), ("", None), ("## Error", None), ("```", ERROR), ("```", None)]


# task id -> what it is (the tests refer to them by name)
IDS = {
    "failed": "aaaa0001", "zombie": "aaaa0002", "provisional": "aaaa0003",
    "unverified": "aaaa0004", "mismatch_db": "aaaa0005", "mismatch_file": "aaaa0006",
    "stale_error": "aaaa0007", "orphan": "aaaa0008", "corrupt": "aaaa0009", "done": "aaaa000a",
    "continuation": "aaaa000b", "live": "aaaa000c",
}


def build_state(base: Path, now: datetime | None = None, wal: bool = True) -> tuple[Path, datetime]:
    """The standard state, judged at ``now`` (default: the real clock, so live checks work)."""
    now = now or datetime.now().replace(microsecond=0)
    b = StateBuilder(base, now=now)
    b.task(IDS["failed"], db_queue="failed", file_queues=("failed",),
           trail=[("CLAIMED_BY", "impl-1"), ("CLAIMED_AT", 7200), *err_trail(3600)],
           db={"claimed_by": "impl-1", "claimed_at": 7200, "attempt_count": 1})
    b.task(IDS["zombie"], db_queue="claimed", file_queues=("incoming",),
           trail=[("CLAIMED_BY", "ghost-agent"), ("CLAIMED_AT", 3 * 3600)],
           db={"claimed_by": "ghost-agent", "claimed_at": 3 * 3600}, file_age_s=3 * 3600)
    b.task(IDS["provisional"], db_queue="provisional", file_queues=("provisional",),
           trail=[("CLAIMED_BY", "impl-2"), ("CLAIMED_AT", 7200), ("SUBMITTED_AT", 3600),
                  ("COMMITS_COUNT", 3), ("TURNS_USED", 20)],
           db={"claimed_by": "impl-2", "claimed_at": 7200, "commits_count": 3,
               "submitted_at": 3600})
    b.task(IDS["unverified"], db_queue="provisional", file_queues=("provisional",),
           trail=[("CLAIMED_BY", "impl-3"), ("CLAIMED_AT", 7200), ("SUBMITTED_AT", 3600),
                  ("COMMITS_COUNT", 0), ("TURNS_USED", 5)],
           db={"claimed_by": "impl-3", "commits_count": 0, "submitted_at": 3600})
    # The file moved last (failed/ with a newer FAILED_AT): the DB should follow it.
    b.task(IDS["mismatch_db"], db_queue="incoming", file_queues=("failed",),
           trail=[("CLAIMED_BY", "impl-4"), ("CLAIMED_AT", 7200), *err_trail(1800)],
           db={"updated_at": 7200}, file_age_s=1800)
    # The DB moved last (done, newer than the file in provisional/): the file should follow.
    b.task(IDS["mismatch_file"], db_queue="done", file_queues=("provisional",),
           trail=[("CLAIMED_BY", "impl-5"), ("CLAIMED_AT", 9000), ("SUBMITTED_AT", 8000),
                  ("COMMITS_COUNT", 2)],
           db={"commits_count": 2, "completed_at": 1200, "updated_at": 1200},
           file_age_s=8000)
    b.task(IDS["stale_error"], db_queue="incoming", file_queues=("incoming",),
           trail=[("CLAIMED_BY", "impl-6"), ("CLAIMED_AT", 9000), *err_trail(8000),
                  ("RETRIED_AT", 7000)], file_age_s=7000, db={"attempt_count": 1})
    b.task(IDS["orphan"], db_queue=None, file_queues=("incoming",),
           header={"PROJECT": "proj-1"})
    b.task(IDS["corrupt"], db_queue=None, file_queues=("incoming",),
           raw={"incoming": b"\x00\x01 not a task \xff\xfe garbage\n"})
    b.task(IDS["done"], db_queue="done", file_queues=("done",),
           trail=[("CLAIMED_BY", "impl-7"), ("CLAIMED_AT", 9000), ("SUBMITTED_AT", 8000),
                  ("COMMITS_COUNT", 4), ("ACCEPTED_AT", 7000), ("ACCEPTED_BY", "scheduler")],
           db={"commits_count": 4, "completed_at": 7000})
    b.task(IDS["continuation"], db_queue="claimed", file_queues=("needs_continuation",),
           trail=[("CLAIMED_BY", "impl-8"), ("CLAIMED_AT", 9000),
                  ("NEEDS_CONTINUATION_AT", 5000), ("CONTINUATION_REASON", "turn limit"),
                  ("WIP_BRANCH", "wip/x"), ("LAST_AGENT", "impl-8")],
           db={"claimed_by": "impl-8", "claimed_at": 9000}, file_age_s=5000)
    # Claimed and worked on right now: fresh heartbeat and status naming it.
    b.task(IDS["live"], db_queue="claimed", file_queues=("incoming",),
           trail=[("CLAIMED_BY", "busy-agent"), ("CLAIMED_AT", 600)],
           db={"claimed_by": "busy-agent", "claimed_at": 600}, file_age_s=600)
    b.agent("busy-agent", running=True, started_age=600, heartbeat_age=5,
            status=(IDS["live"], 5), current_task=IDS["live"])
    root = b.build()
    if wal:
        conn = sqlite3.connect(root / "state.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    for d in ("messages",):
        (root / d).mkdir(exist_ok=True)
    return root, now


def later(now: datetime, s: float = 1) -> datetime:
    return now + timedelta(seconds=s)


def snapshot(root: Path) -> dict[str, Any]:
    """Everything an action may change: task rows, history rows, queue/quarantine/messages
    files (bytes). Equal snapshots = equal states."""
    conn = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
    try:
        tasks = {r[0]: r for r in conn.execute("SELECT * FROM tasks ORDER BY id")}
        hist = conn.execute("SELECT * FROM task_history ORDER BY id").fetchall()
    finally:
        conn.close()
    files: dict[str, bytes] = {}
    for sub in ("shared/queue", "shared/quarantine", "messages"):
        base = root / sub
        if not base.is_dir():
            continue
        for dp, _dn, fn in os.walk(base):
            for f in fn:
                p = Path(dp) / f
                files[str(p.relative_to(root))] = p.read_bytes()
    return {"tasks": tasks, "history": hist, "files": files}


def row(root: Path, tid: str) -> dict[str, Any] | None:
    conn = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
    try:
        cur = conn.execute("SELECT * FROM tasks WHERE id = ?", (tid,))
        r = cur.fetchone()
        return None if r is None else dict(zip([d[0] for d in cur.description], r,
                                               strict=True))
    finally:
        conn.close()


def history(root: Path, tid: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT event, agent, details, timestamp FROM task_history "
                            "WHERE task_id = ? ORDER BY id", (tid,)).fetchall()
    finally:
        conn.close()

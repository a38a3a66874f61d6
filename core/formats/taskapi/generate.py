"""Static task API states with a known anomaly mix and their truth, and the loader that copies
an SQLite state into PostgreSQL (tests and the bench judge the same state in both).

``generate(n, out, seed)`` writes an SQLite file with comic-pile's own ``tasks`` schema
(a28e4ef8, as its alembic migrations leave it) and the column effects its API has (the
claim's "Claimed by X at ts" note replacing the notes, ``completed`` kept by unclaim, naive
UTC stamps), and returns the truth: for every task, the scored kinds a correct judge finds
at ``as_of`` with the system's own thresholds (20 min zombie, 10 min stale, 3 failures).
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.formats.taskapi.parse import utc

AS_OF = datetime(2026, 11, 22, 22, 40, tzinfo=UTC)

SCHEMA = """CREATE TABLE tasks (
	id INTEGER NOT NULL,
	task_id VARCHAR(50) NOT NULL,
	title VARCHAR(255) NOT NULL,
	priority VARCHAR(20) NOT NULL,
	status VARCHAR(50) NOT NULL,
	dependencies VARCHAR(500),
	assigned_agent VARCHAR(100),
	worktree VARCHAR(255),
	status_notes TEXT,
	estimated_effort VARCHAR(50) NOT NULL,
	completed BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL, blocked_reason TEXT, blocked_by VARCHAR(50),
	last_heartbeat DATETIME, instructions TEXT, description TEXT{checks},
	PRIMARY KEY (id),
	UNIQUE (task_id)
);
CREATE INDEX ix_tasks_status ON tasks (status);
CREATE UNIQUE INDEX ix_tasks_task_id ON tasks (task_id);"""

# The same table in PostgreSQL, as a deployment on DATABASE_URL has it (timestamptz).
PG_SCHEMA = """CREATE TABLE tasks (
    id integer PRIMARY KEY,
    task_id varchar(50) NOT NULL UNIQUE,
    title varchar(255) NOT NULL,
    priority varchar(20) NOT NULL,
    status varchar(50) NOT NULL,
    dependencies varchar(500),
    assigned_agent varchar(100),
    worktree varchar(255),
    status_notes text,
    estimated_effort varchar(50) NOT NULL,
    completed boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    blocked_reason text,
    blocked_by varchar(50),
    last_heartbeat timestamptz,
    instructions text,
    description text{checks}
);
CREATE INDEX ix_tasks_status ON tasks (status);"""

COLS = ("id", "task_id", "title", "priority", "status", "dependencies", "assigned_agent",
        "worktree", "status_notes", "estimated_effort", "completed", "created_at",
        "updated_at", "blocked_reason", "blocked_by", "last_heartbeat", "instructions",
        "description")
AGENTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Mallory", "Trent", "Peggy")
PRIORITIES = ("HIGH", "MEDIUM", "LOW")
EXCEPTIONS = (
    "sqlite3.OperationalError: database is locked",
    "AssertionError: expected 200, got {n}",
    "ModuleNotFoundError: No module named 'app.{w}'",
    "TimeoutError: test_{w} ran over {n} seconds",
)


def db_time(dt: datetime) -> str:
    """SQLite's stamp as comic-pile's SQLAlchemy writes it: naive UTC text."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def note_time(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


class _State:
    def __init__(self, rng: random.Random, with_checks: bool) -> None:
        self.rng = rng
        self.rows: list[dict[str, Any]] = []
        self.truth: dict[str, list[str]] = {}
        self.scenarios: dict[str, str] = {}
        self.with_checks = with_checks

    def add(self, tid: str, status: str, kinds: Iterable[str] = (), scenario: str = "",
            **cols: Any) -> dict[str, Any]:
        rng = self.rng
        created = AS_OF - timedelta(hours=rng.uniform(2, 48))
        row: dict[str, Any] = dict(
            id=len(self.rows) + 1, task_id=tid, title=f"generated {tid}",
            priority=rng.choice(PRIORITIES), status=status, dependencies=None,
            assigned_agent=None, worktree=None, status_notes=None, estimated_effort="1 hour",
            completed=0, created_at=created, updated_at=created, blocked_reason=None,
            blocked_by=None, last_heartbeat=None, instructions=None, description=None)
        row.update(cols)
        if self.with_checks:
            row.setdefault("check_results", None)
        self.rows.append(row)
        self.truth[tid] = sorted(set(kinds))
        if scenario:
            self.scenarios[tid] = scenario
        return row

    def claim(self, agent: str, at: datetime, hb: datetime | None = None) -> dict[str, Any]:
        """The columns a claim (and maybe a later heartbeat) leaves."""
        return dict(assigned_agent=agent, worktree=f"wt-{agent.lower()}",
                    status_notes=f"Claimed by {agent} at {note_time(at)}",
                    last_heartbeat=hb, updated_at=max(at, hb) if hb else at)


def _mins(a: float, b: float, rng: random.Random) -> timedelta:
    return timedelta(minutes=rng.uniform(a, b))


def _traceback(rng: random.Random, last: str, w: str = "queue") -> str:
    """A traceback ending in ``last`` (its numbers vary, masked by the signature; ``w``,
    a word, is the same across one group)."""
    n = rng.randint(10, 9999)
    return ("Traceback (most recent call last):\n"
            f'  File "/app/tests/test_{w}.py", line {n}, in test_{w}\n'
            f"    assert resp.status_code == 200\n{last.format(n=n, w=w)}")


def build(n: int, seed: int = 0, with_checks: bool = False) -> _State:
    """The rows and truth of an n-task state (no I/O)."""
    rng = random.Random(seed)
    st = _State(rng, with_checks)
    ag = lambda: rng.choice(AGENTS)  # noqa: E731
    i = 0

    def tid(prefix: str) -> str:
        nonlocal i
        i += 1
        return f"TASK-{prefix}-{i:06d}"

    zombies: list[str] = []
    blocked: list[str] = []
    live: list[str] = []
    while len(st.rows) < n:
        pick = rng.random()
        if pick < 0.30:
            st.add(tid("DONE"), "done", completed=1,
                   **st.claim(ag(), AS_OF - _mins(60, 600, rng)))
        elif pick < 0.45:
            st.add(tid("PEND"), "pending")
        elif pick < 0.55:  # live claims, three ways
            a, way = ag(), rng.randrange(3)
            if way == 0:
                c = st.claim(a, AS_OF - _mins(1, 9, rng))
                why = "claimed minutes ago, no heartbeat yet"
            elif way == 1:
                c = st.claim(a, AS_OF - _mins(30, 90, rng), AS_OF - _mins(0.5, 8, rng))
                why = "old claim, fresh heartbeat"
            else:  # a re-claim: the previous claim's heartbeat is older, not this one's
                c = st.claim(a, AS_OF - _mins(1, 8, rng), AS_OF - _mins(60, 300, rng))
                why = "fresh re-claim beside an old heartbeat (not reset by the claim)"
            t = tid("LIVE")
            st.add(t, "in_progress", (), why, **c)
            live.append(t)
        elif pick < 0.61:  # zombies, four ways
            a, way = ag(), rng.randrange(4)
            if way == 0:
                c = st.claim(a, AS_OF - _mins(21, 240, rng))
                why = "claimed, never heartbeated (the API's /stale never reports it)"
            elif way == 1:
                at = AS_OF - _mins(40, 300, rng)
                c = st.claim(a, at, at + _mins(1, 10, rng))
                if (AS_OF - c["last_heartbeat"]).total_seconds() <= 1260:
                    c["last_heartbeat"] = AS_OF - _mins(22, 30, rng)
                why = "heartbeated, then went silent"
            elif way == 2:
                at = AS_OF - _mins(21, 200, rng)
                c = st.claim(a, at, at - _mins(5, 100, rng))
                c["updated_at"] = at
                why = "its heartbeat predates the claim: counted from the claim"
            else:
                c = st.claim(a, AS_OF - _mins(21, 120, rng))
                c.update(assigned_agent=None, worktree=None)
                why = "in_progress with nobody assigned (a direct edit): silent since updated_at"
            t = tid("ZOMB")
            st.add(t, "in_progress", ["zombie_claim"], why, **c)
            zombies.append(t)
        elif pick < 0.65:  # at risk
            a = ag()
            if rng.random() < 0.5:
                c = st.claim(a, AS_OF - _mins(11, 19, rng))
            else:
                c = st.claim(a, AS_OF - _mins(30, 90, rng), AS_OF - _mins(11, 19, rng))
            st.add(tid("STALE"), "in_progress", ["stale_heartbeat"],
                   "silent 11-19 min: at risk", **c)
        elif pick < 0.73:  # in review
            a = ag()
            at = AS_OF - _mins(30, 300, rng)
            notes = (f"Claimed by {a} at {note_time(at)}\n"
                     f"[{note_time(at + timedelta(minutes=5))}] tests pass\n"
                     f"[{note_time(at + timedelta(minutes=6))}] Unclaimed by {a}")
            cols: dict[str, Any] = dict(status_notes=notes, updated_at=at + timedelta(minutes=6),
                                        last_heartbeat=at + timedelta(minutes=3))
            kinds = ["unverified_completion"]
            why = "in_review; the worker said 'tests pass', nothing verified it"
            if with_checks:
                r = rng.random()
                if r < 0.4:
                    cols["check_results"] = json.dumps({"pytest": {"status": "passed"}})
                    kinds, why = [], "in_review with a passing check"
                elif r < 0.7:
                    cols["check_results"] = json.dumps({"pytest": {"status": "failed"}})
                    why = "in_review, its check failed"
            st.add(tid("REVIEW"), "in_review", kinds, why, **cols)
        elif pick < 0.77:  # recycled
            a = ag()
            at = AS_OF - _mins(30, 300, rng)
            if rng.random() < 0.6:
                st.add(tid("RECYC"), "pending", ["recycling_task"],
                       "done, then unclaimed: pending with completed = 1", completed=1,
                       status_notes=f"Claimed by {a} at {note_time(at)}\n"
                                    f"[{note_time(at + timedelta(minutes=9))}] Unclaimed by {a}",
                       updated_at=at + timedelta(minutes=9))
            else:
                st.add(tid("RECYC"), "in_progress", ["recycling_task"],
                       "recycled and claimed again (live): completed = 1 is what survives",
                       completed=1, **st.claim(a, AS_OF - _mins(1, 5, rng)))
        elif pick < 0.83:  # blocked: a failure group, a pair, or a question
            r = rng.random()
            if r < 0.5:
                last = rng.choice(EXCEPTIONS)
                w = rng.choice(("queue", "rating", "thread", "session"))
                size = rng.randint(3, 5)
                for _ in range(size):
                    t = tid("FAIL")
                    st.add(t, "blocked", ["repeated_failure"],
                           f"one of {size} failures ending in '{last}'",
                           blocked_reason=_traceback(rng, last, w), blocked_by=ag(),
                           **st.claim(ag(), AS_OF - _mins(30, 300, rng)))
                    blocked.append(t)
            elif r < 0.7:
                # a word of its own per pair (numbers would be masked into one signature)
                word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
                last = f"RuntimeError: unique failure in {word}"
                for _ in range(2):
                    t = tid("PAIR")
                    st.add(t, "blocked", [], "a failure shared by two only (below 3)",
                           blocked_reason=_traceback(rng, last), blocked_by=ag(),
                           **st.claim(ag(), AS_OF - _mins(30, 300, rng)))
                    blocked.append(t)
            else:
                t = tid("ASK")
                st.add(t, "blocked", [], "blocked by a question, not an exception",
                       blocked_reason="Need design decision", blocked_by=ag(),
                       **st.claim(ag(), AS_OF - _mins(30, 300, rng)))
                blocked.append(t)
        else:  # dependencies
            r = rng.random()
            if r < 0.3 and zombies:
                st.add(tid("DEPZ"), "pending", ["blocked_by_stuck"], "depends on a zombie",
                       dependencies=rng.choice(zombies))
            elif r < 0.5 and blocked:
                st.add(tid("DEPB"), "pending", ["blocked_by_stuck"],
                       "depends on a blocked task", dependencies=rng.choice(blocked))
            elif r < 0.6:
                st.add(tid("DEPM"), "pending", ["blocked_by_stuck"],
                       "depends on a task that does not exist",
                       dependencies=f"TASK-GONE-{rng.randrange(10**6):06d}")
            elif live:
                deps = [rng.choice(live)]
                done = [r_["task_id"] for r_ in st.rows[-50:] if r_["status"] == "done"]
                if done:
                    deps.append(rng.choice(done))
                st.add(tid("DEPOK"), "pending", [], "depends on live work and done work",
                       dependencies=",".join(deps))
            else:
                st.add(tid("PEND"), "pending")
    return st


def write_sqlite(st: _State, out: Path) -> None:
    cols = COLS + (("check_results",) if st.with_checks else ())
    conn = sqlite3.connect(out)
    try:
        conn.executescript(SCHEMA.format(checks=", \n\tcheck_results TEXT"
                                         if st.with_checks else ""))
        rows = [tuple(db_time(r[c]) if isinstance(r[c], datetime) else r[c] for c in cols)
                for r in st.rows]
        conn.executemany(f"INSERT INTO tasks ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})", rows)
        conn.commit()
    finally:
        conn.close()


def generate(n: int, out: Path, seed: int = 0, with_checks: bool = False) -> dict[str, Any]:
    """Write an n-task SQLite state to ``out`` (a .db file, or a dir that gets tasks.db)
    and its truth beside it (``NAME.truth.json``; ``truth.json`` in a dir); returns the
    truth."""
    out = Path(out)
    truth_name = "truth.json"
    if out.suffix != ".db":
        out.mkdir(parents=True, exist_ok=True)
        out = out / "tasks.db"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        truth_name = out.stem + ".truth.json"
    st = build(n, seed, with_checks)
    write_sqlite(st, out)
    truth = {"format": "taskapi", "root": out.name,
             "as_of": AS_OF.isoformat().replace("+00:00", "Z"), "seed": seed,
             "truth_file": truth_name, "tasks": st.truth, "scenarios": st.scenarios}
    (out.parent / truth_name).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


# ------------------------------------------------------------------ SQLite -> PostgreSQL

async def load_into_pg(sqlite_path: Path | str, dsn: str) -> int:
    """Copy an SQLite ``tasks`` table into a new ``tasks`` table in PostgreSQL (timestamptz,
    boolean), with COPY (asyncpg ``copy_records_to_table``). Returns the rows copied. For
    tests and the bench: this writes, and only to a database the caller made for it."""
    import asyncpg

    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        have = [r[1] for r in src.execute("PRAGMA table_info(tasks)")]
        cols = [c for c in COLS + ("check_results",) if c in have]
        rows = src.execute(f"SELECT {', '.join(cols)} FROM tasks").fetchall()
    finally:
        src.close()
    times = {"created_at", "updated_at", "last_heartbeat"}
    idx = [(i, c) for i, c in enumerate(cols)]

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for i, c in idx:
            v = row[i]
            if c in times:
                v = utc(v)
            elif c == "completed":
                v = bool(v)
            out.append(v)
        return tuple(out)

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_SCHEMA.format(
            checks=",\n    check_results text" if "check_results" in cols else ""))
        await conn.copy_records_to_table("tasks", records=[convert(r) for r in rows],
                                         columns=cols)
        await conn.execute("ANALYZE tasks")
    finally:
        await conn.close()
    return len(rows)

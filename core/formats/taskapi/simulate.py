"""A live task API fleet for ``qwarden demo --format taskapi`` and the tests: workers that
claim, heartbeat, write notes, finish (in_review, done) or fail (blocked with a traceback),
go silent holding a claim, get unclaimed by an admin, and unclaim finished work back to
pending — in an SQLite file, each step one short transaction with exactly the column effects
comic-pile's API (a28e4ef8) has (../shared/formats-ahead.md): the claim replaces the notes
with "Claimed by X at ts" and leaves last_heartbeat alone, unclaim keeps ``completed`` and
appends "Unclaimed by X", ``done`` sets completed = 1, a status other than blocked clears the
blocked fields. Stamps are naive UTC text, as its SQLAlchemy writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from qwarden.core.formats.taskapi.generate import SCHEMA

TITLES = ("Redesign queue.html", "Add rating API", "Fix flaky session test",
          "Migrate threads table", "Paginate /api/threads", "Document the task API")
FAILURES = ("sqlite3.OperationalError: database is locked",
            "AssertionError: expected 200, got 500",
            "ModuleNotFoundError: No module named 'app.rating'")


def _now() -> datetime:
    return datetime.now(UTC)


def db_now() -> str:
    return _now().replace(tzinfo=None).isoformat(sep=" ")


class Api:
    """The API's write effects as SQL (the simulated workers call these, one transaction
    each; a refused call returns False, as the API's 409/403/400 would)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _tx(self):  # type: ignore[no-untyped-def]
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def create(self, task_id: str, title: str, priority: str = "MEDIUM",
               dependencies: str | None = None) -> bool:
        now = db_now()
        with self._tx() as c:
            if c.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone():
                return False  # 400: the id exists
            c.execute("INSERT INTO tasks (task_id, title, priority, status, dependencies, "
                      "estimated_effort, completed, created_at, updated_at) VALUES "
                      "(?, ?, ?, 'pending', ?, '1 hour', 0, ?, ?)",
                      (task_id, title, priority, dependencies, now, now))
        return True

    def claim(self, task_id: str, agent: str) -> bool:
        with self._tx() as c:
            row = c.execute("SELECT assigned_agent FROM tasks WHERE task_id = ?",
                            (task_id,)).fetchone()
            if row is None or (row[0] and row[0] != agent):
                return False  # 404 / 409: another agent holds it
            c.execute("UPDATE tasks SET status = 'in_progress', assigned_agent = ?, "
                      "worktree = ?, status_notes = ?, updated_at = ? WHERE task_id = ?",
                      (agent, f"comic-pile-{task_id.lower()}",
                       f"Claimed by {agent} at {_now().isoformat()}", db_now(), task_id))
        return True

    def heartbeat(self, task_id: str, agent: str) -> bool:
        with self._tx() as c:
            n = c.execute("UPDATE tasks SET last_heartbeat = ?, updated_at = ? "
                          "WHERE task_id = ? AND assigned_agent = ?",
                          (db_now(), db_now(), task_id, agent)).rowcount
        return n == 1  # else 403: not the assignee

    def note(self, task_id: str, notes: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE tasks SET status_notes = coalesce(status_notes || char(10), '')"
                      " || ?, updated_at = ? WHERE task_id = ?",
                      (f"[{_now().isoformat()}] {notes}", db_now(), task_id))

    def set_status(self, task_id: str, status: str, reason: str | None = None,
                   blocked_by: str | None = None) -> None:
        with self._tx() as c:
            if status == "blocked":
                c.execute("UPDATE tasks SET status = 'blocked', blocked_reason = ?, "
                          "blocked_by = ?, updated_at = ? WHERE task_id = ?",
                          (reason, blocked_by, db_now(), task_id))
            else:
                c.execute("UPDATE tasks SET status = ?, blocked_reason = NULL, "
                          "blocked_by = NULL, completed = CASE WHEN ? = 'done' THEN 1 "
                          "ELSE completed END, updated_at = ? WHERE task_id = ?",
                          (status, status, db_now(), task_id))

    def unclaim(self, task_id: str, agent: str) -> bool:
        """The assignee or ``admin``: pending unless in_review; agent and worktree cleared,
        ``completed`` kept."""
        with self._tx() as c:
            row = c.execute("SELECT assigned_agent, status FROM tasks WHERE task_id = ?",
                            (task_id,)).fetchone()
            if row is None or (agent != "admin" and row[0] != agent):
                return False
            c.execute("UPDATE tasks SET status = CASE WHEN status = 'in_review' THEN status "
                      "ELSE 'pending' END, assigned_agent = NULL, worktree = NULL, "
                      "status_notes = coalesce(status_notes || char(10), '') || ?, "
                      "updated_at = ? WHERE task_id = ?",
                      (f"[{_now().isoformat()}] Unclaimed by {agent}", db_now(), task_id))
        return True

    def ready(self) -> list[str]:
        """/ready: pending, no blocked_reason, every dependency done."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT task_id, dependencies FROM tasks WHERE status = "
                                "'pending' AND blocked_reason IS NULL AND assigned_agent "
                                "IS NULL ORDER BY id").fetchall()
            done = {r[0] for r in conn.execute("SELECT task_id FROM tasks WHERE status = "
                                               "'done'")}
        finally:
            conn.close()
        return [t for t, deps in rows
                if all(d.strip() in done for d in (deps or "").split(",") if d.strip())]


@dataclass
class Simulation:
    """Workers on one SQLite task DB. ``tick`` is one step of every actor; ``run`` ticks
    every ``tick_s`` until stopped. ``demo_clock`` writes a qwarden.toml beside the DB with a
    fast clock (silent 15 s: at risk; 40 s: zombie), so the demo shows them within a minute."""

    path: Path
    seed: int = 0
    workers: int = 5
    tick_s: float = 1.0
    demo_clock: bool = True
    rng: random.Random = field(init=False)
    holding: dict[str, str] = field(default_factory=dict)  # worker -> task
    silent: set[str] = field(default_factory=set)  # went silent holding a claim
    ticks: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cfg = self.path.parent / "qwarden.toml"
        if self.demo_clock and not cfg.exists():
            cfg.write_text("[taskapi]\nzombie_after_s = 40\nstale_after_s = 15\n")
        if not self.path.exists():
            conn = sqlite3.connect(self.path)
            try:
                conn.executescript(SCHEMA.format(checks=""))
            finally:
                conn.close()
        self.api = Api(self.path)
        self._n = 0
        for _ in range(10):
            self._add()

    def _add(self, deps: str | None = None) -> str:
        self._n += 1
        tid = f"TASK-{self._n:04d}"
        self.api.create(tid, self.rng.choice(TITLES), self.rng.choice(("HIGH", "MEDIUM",
                                                                        "LOW")), deps)
        return tid

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, sqlite3.Error):
                await asyncio.to_thread(self.tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)

    def tick(self) -> list[str]:
        self.ticks += 1
        rng, api = self.rng, self.api
        events: list[str] = []
        if rng.random() < 0.4:
            deps = None
            if rng.random() < 0.2 and self.holding:
                deps = rng.choice(sorted(self.holding.values()))
            events.append(f"created {self._add(deps)}")
        for i in range(self.workers):
            name = f"worker-{i + 1}"
            if name in self.silent:
                continue
            held = self.holding.get(name)
            if held is None:
                ready = api.ready()
                if ready and rng.random() < 0.7 and api.claim(ready[0], name):
                    self.holding[name] = ready[0]
                    events.append(f"{name} claimed {ready[0]}")
                continue
            api.heartbeat(held, name)
            r = rng.random()
            if r < 0.04:
                self.silent.add(name)  # dies holding the claim: stale, then a zombie
                events.append(f"{name} went silent holding {held}")
            elif r < 0.12:
                api.note(held, "tests pass")
                api.set_status(held, "in_review")
                api.unclaim(held, name)
                del self.holding[name]
                events.append(f"{name} sent {held} to review")
            elif r < 0.20:
                api.set_status(held, "done")
                if rng.random() < 0.3:  # unclaim after done: recycled back to pending
                    api.unclaim(held, name)
                    events.append(f"{name} finished {held} and unclaimed it (recycled)")
                else:
                    events.append(f"{name} finished {held}")
                del self.holding[name]
            elif r < 0.26:
                exc = rng.choice(FAILURES)
                api.set_status(held, "blocked", "Traceback (most recent call last):\n"
                               f'  File "/app/app/api.py", line {rng.randint(10, 900)}, '
                               f"in handler\n{exc}", name)
                del self.holding[name]
                events.append(f"{name} failed {held}: {exc}")
            elif r < 0.35:
                api.note(held, rng.choice(("halfway there", "running the tests",
                                           "waiting on CI")))
        if self.silent and rng.random() < 0.05:  # an admin releases a dead worker's claim
            name = sorted(self.silent)[0]
            held = self.holding.pop(name, None)
            if held is not None:
                api.unclaim(held, "admin")
                events.append(f"admin unclaimed {held} from {name}")
            self.silent.discard(name)
        self.log.extend(events)
        return events

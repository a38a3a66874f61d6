"""``qwarden demo``: a live Octopoid v1 queue on an embedded SQLite DB.

Simulated agents claim, heartbeat, work, submit, fail, hit needs_continuation, get retried and
accepted, doing to files and DB exactly what Octopoid does (a DB-mode claim leaves the file in
incoming/, fail-then-retry leaves the DB at failed, needs_continuation writes no DB row). Faults
are injected early so they show within the first half minute: an agent that dies holding a claim,
a hand-written orphan, a corrupt file, a DB-only reset of a live claim (split brain).

The demo root gets a ``qwarden.toml`` with short thresholds (seconds, not minutes) so a death
becomes at-risk, then a zombie, while you watch.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.demo.octodb import (
    TASK_COLUMNS,
    error_block,
    init_root,
    local_iso,
    sqlite_utc,
    task_text,
    trail_block,
    write_agent,
    write_atomic,
)

DEMO_CONFIG = """# qwarden demo: short thresholds so the simulated queue changes while you watch
[thresholds]
mismatch_grace_s = 8
stale_after_s = 15
zombie_after_s = 45
finished_grace_s = 8

[live]
poll_interval_s = 60
rejudge_interval_s = 1.0
"""

TITLES = ("Add export button", "Refactor parser", "Fix flaky test", "Migrate schema",
          "Render thumbnails", "Optimise query", "Wire up settings page", "Port module to async",
          "Document the API", "Harden login flow", "Cache avatars", "Split billing service",
          "Add audit log", "Speed up CI", "Retry webhooks", "Tidy CSS tokens")
ERRORS = ("sqlite3.OperationalError: no such column: sessions.manual_die",
          "TimeoutError: model call exceeded 600s",
          "AssertionError: expected 200, got 500")


@dataclass
class SimAgent:
    name: str
    task: str | None = None
    work_left: int = 0
    alive: bool = True
    started: datetime | None = None


def _now() -> datetime:
    return datetime.now()  # naive local, like Octopoid


class Octopoid:
    """Octopoid's lifecycle steps on one root (files + DB), as its own functions do them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.q = root / "shared" / "queue"

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.root / "state.db", timeout=5)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def path(self, queue: str, tid: str) -> Path:
        return self.q / queue / f"TASK-{tid}.md"

    def find(self, tid: str) -> Path | None:
        for p in self.q.glob(f"*/TASK-{tid}.md"):
            return p
        return None

    def history(self, conn: sqlite3.Connection, tid: str, event: str, agent: str | None = None,
                details: str | None = None) -> None:
        conn.execute("INSERT INTO task_history (task_id, event, agent, details, timestamp) "
                     "VALUES (?, ?, ?, ?, ?)", (tid, event, agent, details, sqlite_utc(_now())))

    def create(self, tid: str, title: str, priority: str = "P2") -> None:
        now = _now()
        path = self.path("incoming", tid)
        write_atomic(path, task_text(tid, title, now, priority=priority))
        row = {"id": tid, "file_path": str(path), "queue": "incoming", "priority": priority,
               "role": "implement", "branch": "main", "commits_count": 0, "attempt_count": 0,
               "rejection_count": 0, "has_plan": 0, "created_at": sqlite_utc(now),
               "updated_at": sqlite_utc(now)}
        with self.db() as conn:
            conn.execute(f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(TASK_COLUMNS))})",
                         tuple(row.get(c) for c in TASK_COLUMNS))
            self.history(conn, tid, "created", None, f"priority={priority}, role=implement")

    def append(self, path: Path, block: str) -> None:
        write_atomic(path, path.read_text() + block)

    def move(self, src: Path, queue: str, block: str = "") -> Path:
        dst = self.path(queue, src.name[5:-3])
        write_atomic(dst, src.read_text() + block)
        src.unlink()
        return dst

    def claim(self, tid: str, agent: str) -> None:
        """DB mode: the row says claimed, the file stays in incoming/ with a trail block."""
        now = _now()
        self.append(self.path("incoming", tid), trail_block(("CLAIMED_BY", agent),
                                                            ("CLAIMED_AT", now)))
        with self.db() as conn:
            conn.execute("UPDATE tasks SET queue='claimed', claimed_by=?, claimed_at=?, "
                         "updated_at=? WHERE id=?", (agent, local_iso(now), local_iso(now), tid))
            self.history(conn, tid, "claimed", agent)

    def submit(self, tid: str, commits: int, turns: int) -> None:
        now = _now()
        src = self.find(tid)
        if src is None:
            return
        dst = self.move(src, "provisional", trail_block(
            ("SUBMITTED_AT", now), ("COMMITS_COUNT", commits), ("TURNS_USED", turns)))
        with self.db() as conn:
            conn.execute("UPDATE tasks SET queue='provisional', commits_count=?, turns_used=?, "
                         "submitted_at=?, file_path=?, updated_at=? WHERE id=?",
                         (commits, turns, local_iso(now), str(dst), local_iso(now), tid))
            self.history(conn, tid, "submitted", None, f"commits={commits}, turns={turns}")

    def accept(self, tid: str) -> None:
        now = _now()
        src = self.find(tid)
        if src is None:
            return
        dst = self.move(src, "done", trail_block(("ACCEPTED_AT", now),
                                                 ("ACCEPTED_BY", "scheduler")))
        with self.db() as conn:
            conn.execute("UPDATE tasks SET queue='done', claimed_by=NULL, completed_at=?, "
                         "file_path=?, updated_at=? WHERE id=?",
                         (local_iso(now), str(dst), local_iso(now), tid))
            self.history(conn, tid, "accepted", "scheduler")

    def fail(self, tid: str, error: str) -> None:
        """DB: queue=failed only (claimed_by kept, file_path not updated); file to failed/."""
        now = _now()
        src = self.find(tid)
        if src is None:
            return
        self.move(src, "failed", error_block(now, error))
        with self.db() as conn:
            conn.execute("UPDATE tasks SET queue='failed', updated_at=? WHERE id=?",
                         (local_iso(now), tid))
            self.history(conn, tid, "failed", None, error)

    def retry(self, tid: str) -> None:
        """The row is looked up by file_path, which a fail never updated: the DB stays failed,
        the file goes back to incoming with its old error still in it."""
        src = self.path("failed", tid)
        if src.exists():
            self.move(src, "incoming", trail_block(("RETRIED_AT", _now())))

    def needs_continuation(self, tid: str, agent: str) -> None:
        """No DB write at all: the row stays claimed."""
        src = self.find(tid)
        if src is not None:
            self.move(src, "needs_continuation", trail_block(
                ("NEEDS_CONTINUATION_AT", _now()), ("CONTINUATION_REASON", "max_turns_reached"),
                ("WIP_BRANCH", f"agent/{tid}"), ("LAST_AGENT", agent)))

    def reset_stuck_claimed(self, tid: str) -> None:
        """DB only: back to incoming; the file and the agent are untouched."""
        with self.db() as conn:
            conn.execute("UPDATE tasks SET queue='incoming', claimed_by=NULL, claimed_at=NULL, "
                         "updated_at=? WHERE id=?", (sqlite_utc(_now()), tid))
            self.history(conn, tid, "reset", None, "claimed timeout exceeded")


def create_demo_root(base: Path, seed: int = 0) -> Path:
    """A fresh demo queue: ~30 tasks in various lanes, six idle agents, demo thresholds."""
    rnd = random.Random(seed)
    base.mkdir(parents=True, exist_ok=True)
    root = init_root(base)
    (base / "qwarden.toml").write_text(DEMO_CONFIG)
    octo = Octopoid(root)
    for i in range(30):
        tid = f"{rnd.getrandbits(32):08x}"
        octo.create(tid, rnd.choice(TITLES), rnd.choice(("P0", "P1", "P2", "P2", "P3")))
        if i < 8:  # some history so every lane has something
            octo.claim(tid, "impl-agent-0")
            octo.submit(tid, rnd.randint(1, 5), rnd.randint(10, 80))
            octo.accept(tid)
        elif i < 10:
            octo.claim(tid, "impl-agent-0")
            octo.submit(tid, rnd.randint(1, 4), rnd.randint(10, 80))
    for n in range(1, 7):
        write_agent(root, f"impl-agent-{n}", running=False, last_started=None)
    return root


class Simulation:
    """Simulated agents and scheduler over one demo root. ``step`` is one tick."""

    def __init__(self, root: Path, seed: int = 0, tick_s: float = 1.0,
                 faults: bool = True) -> None:
        self.root = root
        self.octo = Octopoid(root)
        self.rnd = random.Random(f"sim-{seed}")  # not the stream create_demo_root used
        self.tick_s = tick_s
        self.faults = faults
        self.ticks = 0
        names = sorted(p.name for p in (root / "agents").iterdir() if p.is_dir())
        self.agents = [SimAgent(n) for n in names if n != "impl-agent-0"]

    def _new_id(self) -> str:
        while True:
            tid = f"{self.rnd.getrandbits(32):08x}"
            if self.octo.find(tid) is None:
                return tid

    def _incoming(self) -> list[str]:
        with self.octo.db() as conn:
            rows = conn.execute("SELECT id FROM tasks WHERE queue='incoming' AND "
                                "(blocked_by IS NULL OR blocked_by = '') ORDER BY priority, "
                                "created_at").fetchall()
        return [r[0] for r in rows if self.octo.path("incoming", r[0]).exists()]

    def _queue_ids(self, queue: str) -> list[str]:
        return sorted(p.name[5:-3] for p in (self.octo.q / queue).glob("TASK-*.md"))

    def step(self) -> list[str]:
        self.ticks += 1
        did: list[str] = []
        now = _now()
        if self.faults:
            did += self._faults()
        claimed_now = {a.task for a in self.agents if a.task}
        for a in self.agents:
            if not a.alive:
                continue
            if a.task is None:
                free = [t for t in self._incoming() if t not in claimed_now]
                if free and self.rnd.random() < 0.6:
                    a.task, a.work_left, a.started = free[0], self.rnd.randint(4, 12), now
                    claimed_now.add(a.task)
                    self.octo.claim(a.task, a.name)
                    write_agent(self.root, a.name, running=True, last_started=now,
                                heartbeat=now, status=(a.task, now, 0),
                                current_task=(a.task, now))
                    did.append(f"{a.name} claimed {a.task}")
                continue
            a.work_left -= 1
            progress = max(0, min(99, 100 - a.work_left * 8))
            write_agent(self.root, a.name, running=True, last_started=a.started,
                        heartbeat=now, status=(a.task, now, progress),
                        current_task=(a.task, a.started or now))
            with open(self.root / "agents" / a.name / "stdout.log", "a") as log:
                log.write(f"\x1b[32m[{now:%H:%M:%S}]\x1b[0m {a.task}: step {progress}%\n")
            if a.work_left > 0:
                continue
            roll = self.rnd.random()
            tid = a.task
            if roll < 0.6:
                commits = 0 if self.rnd.random() < 0.1 else self.rnd.randint(1, 6)
                self.octo.submit(tid, commits, self.rnd.randint(10, 120))
                did.append(f"{a.name} submitted {tid} ({commits} commits)")
            elif roll < 0.8:
                self.octo.fail(tid, "Traceback (most recent call last):\n  File \"app.py\", "
                                    f"line {self.rnd.randint(10, 99)}\n{self.rnd.choice(ERRORS)}")
                did.append(f"{a.name} failed {tid}")
            else:
                self.octo.needs_continuation(tid, a.name)
                did.append(f"{a.name} ran out of turns on {tid}")
            write_agent(self.root, a.name, running=False, last_started=a.started,
                        last_finished=now, heartbeat=now)
            a.task = None
        # The scheduler: accept verified work, retry some failures, add new tasks.
        for tid in self._queue_ids("provisional"):
            if self.rnd.random() < 0.15:
                text = self.octo.path("provisional", tid).read_text()
                if "COMMITS_COUNT: 0" not in text:
                    self.octo.accept(tid)
                    did.append(f"scheduler accepted {tid}")
        for tid in self._queue_ids("failed"):
            if self.rnd.random() < 0.05:
                self.octo.retry(tid)
                did.append(f"scheduler retried {tid} (DB stays failed)")
        if self.rnd.random() < 0.25 or not self._incoming():
            tid = self._new_id()
            self.octo.create(tid, self.rnd.choice(TITLES), self.rnd.choice(("P1", "P2", "P3")))
            did.append(f"new task {tid}")
        return did

    def _faults(self) -> list[str]:
        t = self.ticks
        did: list[str] = []
        if t == 6 or (t > 60 and t % 90 == 0):
            victim = next((a for a in self.agents if a.alive and a.task), None)
            if victim is not None:
                victim.alive = False  # stops heartbeating; state.json still says running
                did.append(f"FAULT {victim.name} died holding {victim.task}")
        if t == 4 or (t > 60 and t % 120 == 30):
            tid = self._new_id()
            write_atomic(self.octo.path("incoming", tid),
                         task_text(tid, "Hand-written task", _now()))
            did.append(f"FAULT orphan file TASK-{tid}.md (no DB row)")
        if t == 8 or (t > 60 and t % 150 == 40):
            tid = self._new_id()
            write_atomic(self.octo.path("incoming", tid),
                         b"\x00\x01garbage\xff\xfe not a task \x1b[31m\n")
            did.append(f"FAULT corrupt file TASK-{tid}.md")
        if t == 10 or (t > 60 and t % 110 == 20):
            victim = next((a for a in self.agents if a.alive and a.task and a.work_left > 3),
                          None)
            if victim is not None and victim.task is not None:
                victim.work_left += 30  # it keeps working long after the reset
                self.octo.reset_stuck_claimed(victim.task)
                did.append(f"FAULT DB-only reset of {victim.task} while {victim.name} works")
        return did

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.step)
            except (OSError, sqlite3.Error):
                pass  # a racing step (file moved under us) just tries again next tick
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
            except TimeoutError:
                pass

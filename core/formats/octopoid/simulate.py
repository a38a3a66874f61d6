"""``qwarden demo``: a live Octopoid v1 queue on an embedded SQLite DB.

Simulated agents claim, heartbeat, report status, log, work, submit, fail, run out of turns and
get resumed; a simulated scheduler accepts verified work, review-rejects some, retries failures
and trickles in new tasks. Every step goes through the Octopoid writer (``writer.py``), so files
and DB drift exactly the way Octopoid's own steps make them drift (a DB-mode claim leaves the
file in incoming/, fail-then-retry leaves the DB at failed, needs_continuation writes no DB row).

Faults are injected once early, so they show within the first half minute, then now and again:
an agent that dies holding a claim (heartbeat stops, state.json still says running), a
hand-written orphan task file, a corrupt file, and a DB-only reset of a live claim while the
agent keeps working (split brain). All times are real (now).

The demo root gets a ``qwarden.toml`` with short thresholds (seconds, not minutes) so a death
becomes at-risk, then a zombie, while you watch.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from qwarden.core.formats.octopoid import writer as ow

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
SUBTASKS = ("reading the code", "editing files", "running tests", "fixing lint", "committing")
FLEET = 6  # agents in a fresh demo

# When each fault fires first (tick), then its period after tick 60.
FAULT_ORPHAN, FAULT_DEATH, FAULT_CORRUPT, FAULT_RESET = 4, 6, 8, 10


@dataclass
class SimAgent:
    name: str
    task: str | None = None
    work_left: int = 0
    alive: bool = True
    started: datetime | None = None
    runs: int = 0


def _now() -> datetime:
    return datetime.now()  # naive local, like Octopoid


def _hex_id(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(32):08x}"


def create_demo_root(base: Path, seed: int = 0) -> Path:
    """A fresh demo queue: ~30 tasks in every lane a scheduler would have by now (done,
    provisional, failed, escalated, incoming backlog with a dependency) and six idle agents."""
    rnd = random.Random(seed)
    base.mkdir(parents=True, exist_ok=True)
    root = ow.init_root(base)
    (base / "qwarden.toml").write_text(DEMO_CONFIG)
    start = _now() - timedelta(hours=2)

    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    ids: list[str] = []
    for i in range(30):
        tid = ow.create_task(root, rnd.choice(TITLES), task_id=_hex_id(rnd),
                             priority=rnd.choice(("P0", "P1", "P2", "P2", "P3")), created=at(i))
        ids.append(tid)
        if i < 8:  # finished work, so every lane has history
            ow.claim(root, tid, "impl-agent-0", at=at(i + 1))
            ow.submit(root, tid, rnd.randint(1, 5), rnd.randint(10, 80), at=at(i + 20))
            ow.accept(root, tid, at=at(i + 30))
        elif i < 10:
            ow.claim(root, tid, "impl-agent-0", at=at(i + 1))
            ow.submit(root, tid, rnd.randint(1, 4), rnd.randint(10, 80), at=at(i + 20))
            ow.record_check(root, tid, "gk-testing", "pass", "all tests pass", at=at(i + 25))
        elif i == 10:
            ow.claim(root, tid, "impl-agent-0", at=at(i + 1))
            ow.fail(root, tid, "Traceback (most recent call last):\n  File \"app.py\", line 7\n"
                               "KeyError: 'tenant'", at=at(i + 20))
        elif i == 11:
            ow.hold(root, tid, at=at(i + 5))
    # one backlog task waits on another (resolved normally: no finding)
    ow.create_task(root, "Follow-up: polish", task_id=_hex_id(rnd), blocked_by=(ids[29],),
                   created=at(31))
    ow.write_agent_state(root, "impl-agent-0", running=False, last_started=at(1),
                         last_finished=at(40), last_exit_code=0, total_runs=10,
                         total_successes=10, at=at(40))
    for n in range(1, FLEET + 1):
        name = f"impl-agent-{n}"
        ow.register_agent_config(root, name)
        ow.write_agent_state(root, name, running=False, at=at(40))
        ow.upsert_agent_row(root, name, running=False)
    return root


class Simulation:
    """Simulated agents and scheduler over one demo root. ``step`` is one tick."""

    def __init__(self, root: Path, seed: int = 0, tick_s: float = 1.0,
                 faults: bool = True) -> None:
        self.root = root
        self.rnd = random.Random(f"sim-{seed}")  # not the stream create_demo_root used
        self.tick_s = tick_s
        self.faults = faults
        self.ticks = 0
        names = sorted(p.name for p in (root / "agents").iterdir() if p.is_dir())
        self.agents = [SimAgent(n) for n in names if n != "impl-agent-0"]
        self.attempts: dict[str, int] = {}
        # Faults due but not yet possible (no agent holding a task yet) retry every tick.
        self.pending_faults: set[str] = set()

    # ---- reading the queue ------------------------------------------------------------------
    def _db_ids(self, queue: str) -> list[str]:
        conn = ow.connect(self.root)
        try:
            rows = conn.execute("SELECT id, blocked_by FROM tasks WHERE queue=? ORDER BY "
                                "priority, created_at, id", (queue,)).fetchall()
            done = {r[0] for r in conn.execute("SELECT id FROM tasks WHERE queue='done'")}
        finally:
            conn.close()
        return [tid for tid, blocked in rows
                if not blocked or set(blocked.split(",")) <= done]

    def _files(self, queue: str) -> list[str]:
        return sorted(p.name[5:-3] for p in ow.queue_dir(self.root, queue).glob("TASK-*.md"))

    def _claimable(self) -> list[str]:
        """DB says incoming, unblocked, and the file really is in incoming/."""
        return [t for t in self._db_ids("incoming")
                if ow.task_path(self.root, "incoming", t).exists()]

    def _new_id(self) -> str:
        while True:
            tid = _hex_id(self.rnd)
            if not any(ow.task_path(self.root, q, tid).exists() for q in ow.QUEUES):
                return tid

    # ---- one tick ---------------------------------------------------------------------------
    def step(self) -> list[str]:
        """One tick: faults, then every live agent, then the scheduler. Returns what it did."""
        self.ticks += 1
        did: list[str] = []
        if self.faults:
            did += self._faults()
        taken = {a.task for a in self.agents if a.task}
        for agent in self.agents:
            if not agent.alive:
                continue
            try:
                did += self._agent_tick(agent, taken)
            except FileNotFoundError:
                # someone else (an operator, qwarden) moved the task away: the run ends
                if agent.task is not None:
                    did.append(f"{agent.name} lost {agent.task} (file moved away)")
                    self._finish_run(agent, _now(), exit_code=1)
        did += self._scheduler_tick()
        return did

    def _agent_tick(self, a: SimAgent, taken: set[str]) -> list[str]:
        now = _now()
        if a.task is None:
            resumable = [t for t in self._files("needs_continuation") if t not in taken
                         and self._last_agent(t) == a.name]
            if resumable and self.rnd.random() < 0.5:
                tid = resumable[0]
                ow.resume(self.root, tid, a.name, at=now)
                self._start_run(a, tid, now, taken)
                return [f"{a.name} resumed {tid} (file to claimed/, DB untouched)"]
            free = [t for t in self._claimable() if t not in taken]
            if free and self.rnd.random() < 0.6:
                tid = free[0]
                ow.claim(self.root, tid, a.name, at=now)
                self._start_run(a, tid, now, taken)
                return [f"{a.name} claimed {tid}"]
            return []
        tid = a.task
        a.work_left -= 1
        progress = max(0, min(99, 100 - a.work_left * 8))
        ow.write_heartbeat(self.root, a.name, now)
        ow.write_status(self.root, a.name, tid, progress, now,
                        subtask=self.rnd.choice(SUBTASKS))
        ow.touch_tool_counter(self.root, a.name, now)
        ow.append_stdout(self.root, a.name,
                         f"\x1b[32m[{now:%H:%M:%S}]\x1b[0m {tid}: step {progress}%", now)
        if a.work_left > 0:
            return []
        roll = self.rnd.random()
        turns = self.rnd.randint(10, 120)
        if roll < 0.6:
            commits = 0 if self.rnd.random() < 0.1 else self.rnd.randint(1, 6)
            ow.submit(self.root, tid, commits, turns, at=now)
            out = f"{a.name} submitted {tid} ({commits} commits)"
        elif roll < 0.78:
            ow.fail(self.root, tid, "Traceback (most recent call last):\n  File \"app.py\", "
                                    f"line {self.rnd.randint(10, 99)}\n{self.rnd.choice(ERRORS)}",
                    at=now)
            out = f"{a.name} failed {tid} (DB: queue only)"
        elif roll < 0.95:
            self.attempts[tid] = self.attempts.get(tid, 0) + 1
            ow.needs_continuation(self.root, tid, a.name, at=now)
            ow.write_notes_attempt(self.root, tid, self.attempts[tid], a.name, 200,
                                   self.rnd.randint(0, 3), "...tail of agent output...", at=now)
            out = f"{a.name} ran out of turns on {tid} (no DB write)"
        else:
            ow.agent_reject(self.root, tid, "already_implemented",
                            "The feature is already on main.", a.name, at=now)
            out = f"{a.name} rejected {tid} as already implemented (no DB write)"
        self._finish_run(a, now, exit_code=0)
        return [out]

    def _start_run(self, a: SimAgent, tid: str, now: datetime, taken: set[str]) -> None:
        a.task, a.work_left, a.started = tid, self.rnd.randint(4, 12), now
        a.runs += 1
        taken.add(tid)
        ow.write_agent_state(self.root, a.name, running=True, pid=None, last_started=now,
                             total_runs=a.runs, at=now)
        ow.write_current_task(self.root, a.name, tid, started_at=now)
        ow.write_status(self.root, a.name, tid, 0, now, subtask="reading the code")
        ow.write_heartbeat(self.root, a.name, now)
        ow.upsert_agent_row(self.root, a.name, running=True, current_task_id=tid,
                            last_run_start=now)

    def _finish_run(self, a: SimAgent, now: datetime, exit_code: int) -> None:
        ow.write_agent_state(self.root, a.name, running=False, last_started=a.started,
                             last_finished=now, last_exit_code=exit_code, total_runs=a.runs,
                             total_successes=a.runs, at=now)
        ow.clear_current_task(self.root, a.name)
        ow.upsert_agent_row(self.root, a.name, running=False, last_run_start=a.started,
                            last_run_end=now)
        a.task, a.started = None, None

    def _last_agent(self, tid: str) -> str | None:
        path = ow.task_path(self.root, "needs_continuation", tid)
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return None
        return next((ln[12:] for ln in reversed(lines) if ln.startswith("LAST_AGENT: ")), None)

    def _scheduler_tick(self) -> list[str]:
        """Accept verified work (review-reject some), retry failures, add new tasks."""
        did: list[str] = []
        now = _now()
        for tid in self._files("provisional"):
            if self.rnd.random() >= 0.15:
                continue
            try:
                text = ow.task_path(self.root, "provisional", tid).read_text()
            except FileNotFoundError:
                continue
            if not text.startswith("# [TASK-") or "COMMITS_COUNT: 0" in text:
                continue  # unverified work waits for a human
            if self.rnd.random() < 0.2:
                dst = ow.review_reject(self.root, tid, "Tests for the edge cases are missing.",
                                       "gatekeeper", at=now)
                did.append(f"gatekeeper rejected {tid} (back to {dst.parent.name})")
            else:
                ow.accept(self.root, tid, at=now)
                did.append(f"scheduler accepted {tid}")
        for tid in self._files("failed"):
            if self.rnd.random() < 0.05 and ow.find_task_file(self.root, tid) is not None:
                ow.retry(self.root, tid, at=now)
                did.append(f"scheduler retried {tid} (DB stays failed)")
        if self.rnd.random() < 0.25 or not self._claimable():
            tid = ow.create_task(self.root, self.rnd.choice(TITLES), task_id=self._new_id(),
                                 priority=self.rnd.choice(("P1", "P2", "P3")), created=now)
            did.append(f"new task {tid}")
        return did

    # ---- faults -----------------------------------------------------------------------------
    def _faults(self) -> list[str]:
        t = self.ticks
        if t == FAULT_DEATH or (t > 60 and t % 90 == 0):
            self.pending_faults.add("death")
        if t == FAULT_ORPHAN or (t > 60 and t % 120 == 30):
            self.pending_faults.add("orphan")
        if t == FAULT_CORRUPT or (t > 60 and t % 150 == 40):
            self.pending_faults.add("corrupt")
        if t == FAULT_RESET or (t > 60 and t % 110 == 20):
            self.pending_faults.add("reset")
        did: list[str] = []
        for fault in sorted(self.pending_faults):
            line = getattr(self, f"_fault_{fault}")()
            if line is not None:
                self.pending_faults.discard(fault)
                did.append(line)
        return did

    def _fault_death(self) -> str | None:
        victim = next((a for a in self.agents if a.alive and a.task), None)
        if victim is None:
            return None
        victim.alive = False  # stops heartbeating; state.json still says running
        # the scheduler brings up a replacement so the fleet keeps working
        name = f"impl-agent-{len(self.agents) + 1}"
        ow.register_agent_config(self.root, name)
        ow.write_agent_state(self.root, name, running=False)
        ow.upsert_agent_row(self.root, name, running=False)
        self.agents.append(SimAgent(name))
        return f"FAULT {victim.name} died holding {victim.task}"

    def _fault_orphan(self) -> str:
        tid = self._new_id()
        ow.write_atomic(ow.task_path(self.root, "incoming", tid),
                        ow.task_text(tid, "Hand-written task", _now(),
                                     context="Written by hand, never registered."))
        return f"FAULT orphan file TASK-{tid}.md (no DB row)"

    def _fault_corrupt(self) -> str:
        tid = self._new_id()
        ow.write_atomic(ow.task_path(self.root, "incoming", tid),
                        b"\x00\x01garbage\xff\xfe not a task \x1b[31m\n")
        return f"FAULT corrupt file TASK-{tid}.md"

    def _fault_reset(self) -> str | None:
        victim = next((a for a in self.agents if a.alive and a.task and a.work_left > 3), None)
        if victim is None or victim.task is None:
            return None
        victim.work_left += 30  # it keeps working long after the reset
        ow.reset_stuck_claimed(self.root, victim.task)
        return f"FAULT DB-only reset of {victim.task} while {victim.name} works"

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``tick_s`` until ``stop`` is set; the file and DB work runs in a thread."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.step)
            except (OSError, sqlite3.Error):
                pass  # a racing step (file moved under us, DB busy) just tries again next tick
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
            except TimeoutError:
                pass

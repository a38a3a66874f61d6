"""A live coordination fleet for ``qwarden demo --format coordination`` and the tests: a
coordinator that adds tasks (instruction file first, then the queue entry, as the design
says), workers that register, heartbeat, claim and complete through the queue's advisory
lock (``lock.queue_lock``, the one qwarden's actions take) — and the design's failure modes
on purpose: workers that die holding a claim, a racer that claims without the lock (the
last writer wins: a lost claim), a torn non-atomic write (a corrupt queue file, repaired
after a few ticks by the coordinator's own ``validate_queue``), a worker that claims work
it lacks the skills for.

Every step is one function of the files, so separate processes can run them (the
concurrency test does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from qwarden.core.formats.coordination import layout
from qwarden.core.formats.coordination.lock import dump_queue, queue_lock, write_atomic
from qwarden.core.formats.coordination.parse import check_entry

WORKER_LOCK = layout.WORKERS + ".lock"
SKILL_SETS = (["backend", "api"], ["frontend", "ui"], ["testing", "pytest"])


def _now() -> str:
    return datetime.now().isoformat()


def say(root: Path, agent: str, message: str, to: str | None = None) -> None:
    """One comms line, appended with a single write (O_APPEND: lines never interleave)."""
    obj: dict[str, Any] = ({"from": agent, "to": to, "message": message, "timestamp": _now()}
                           if to else {"timestamp": _now(), "agent": agent, "message": message})
    fd = os.open(root / layout.COMMS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(obj) + "\n").encode())
    finally:
        os.close(fd)


def _load(root: Path) -> list[Any] | None:
    try:
        obj = json.loads((root / layout.QUEUE).read_bytes())
    except (OSError, ValueError):
        return None  # corrupt or missing: a worker waits for the coordinator's repair
    return obj if isinstance(obj, list) else None


def update_queue(root: Path, fn: Callable[[list[Any]], Any], timeout_s: float = 10.0) -> Any:
    """Read-modify-write of the queue under its lock; ``fn`` edits the list in place and
    returns a result (None: nothing changed, nothing written)."""
    with queue_lock(root, timeout_s):
        q = _load(root)
        if q is None:
            return None
        out = fn(q)
        if out is not None:
            write_atomic(root / layout.QUEUE, dump_queue(q), tag="w")
        return out


def update_worker(root: Path, name: str, **fields: Any) -> None:
    """worker-status.json under its own lock (heartbeats of many workers must not lose each
    other's updates either)."""
    path = root / layout.WORKERS
    lock_root = root
    import fcntl

    fd = os.open(lock_root / WORKER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            ws = json.loads(path.read_bytes())
            if not isinstance(ws, dict):
                ws = {}
        except (OSError, ValueError):
            ws = {}
        w = ws.setdefault(name, {"status": "active", "capabilities": [],
                                 "registered_at": _now(), "last_heartbeat": _now(),
                                 "last_task_claimed": None, "last_task_completed": None})
        w.update(fields)
        write_atomic(path, json.dumps(ws, indent=2).encode(), tag="w")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def register(root: Path, name: str, caps: list[str]) -> None:
    update_worker(root, name, status="active", capabilities=caps, registered_at=_now(),
                  last_heartbeat=_now())


def heartbeat(root: Path, name: str) -> None:
    update_worker(root, name, last_heartbeat=_now())


def add_task(root: Path, description: str, skills: list[str] | None = None,
             tid: int | str | None = None, context: list[str] | None = None) -> Any:
    """The design's add_task: the instruction file first, then the entry."""
    tid = tid if tid is not None else int(time.time() * 1000)
    rel = layout.instruction_name(str(tid))
    (root / layout.TASKS_DIR).mkdir(exist_ok=True)
    (root / rel).write_text(f"# Task: {description}\n\n## Objective\n{description}\n")
    entry = {"id": tid, "description": description, "instruction_file": rel,
             "context_files": context or [], "assigned_to": None, "status": "pending",
             "created_at": _now(), "claimed_by": None, "claimed_at": None,
             "completed_by": None, "completed_at": None, "result": None,
             "metadata": {"required_skills": skills or []}}

    def add(q: list[Any]) -> Any:
        q.append(entry)
        return tid
    return update_queue(root, add)


def claim(root: Path, name: str, caps: list[str] | None, check_skills: bool = True
          ) -> Any:
    """The design's claim_task under the lock: the first pending task for this worker."""
    def pick(q: list[Any]) -> Any:
        for t in q:
            if not isinstance(t, dict) or t.get("status") != "pending":
                continue
            if t.get("assigned_to") not in (None, name):
                continue
            need = (t.get("metadata") or {}).get("required_skills") or []
            if check_skills and caps is not None and not set(need) <= set(caps):
                continue
            t["status"] = "in_progress"
            t["claimed_by"] = name
            t["claimed_at"] = _now()
            return t["id"]
        return None
    tid = update_queue(root, pick)
    if tid is not None:
        update_worker(root, name, last_task_claimed=_now(), last_heartbeat=_now())
        say(root, name, f"Claimed task {tid}")
    return tid


def complete(root: Path, name: str, tid: Any, ok: bool = True, error: str | None = None
             ) -> bool:
    """The design's complete_task, under the lock, only if the claim is still ours."""
    def finish(q: list[Any]) -> Any:
        for t in q:
            if isinstance(t, dict) and t.get("id") == tid:
                if t.get("claimed_by") != name or t.get("status") != "in_progress":
                    return None
                t["status"] = "completed" if ok else "failed"
                t["completed_by"] = name
                t["completed_at"] = _now()
                t["result"] = {"status": "success", "tests_passed": True} if ok else None
                if error:
                    t["error"] = error
                return True
        return None
    done = bool(update_queue(root, finish))
    if done:
        update_worker(root, name, last_task_completed=_now(), last_heartbeat=_now())
        say(root, name, f"{'Completed' if ok else 'Failed'} task {tid}")
    else:
        say(root, name, f"Lost my claim of task {tid}")
    return done


def racy_claim(root: Path, name: str, rival: str) -> Any:
    """Two workers claim one task without the lock; the last writer wins. ``name`` reads,
    announces its claim, then ``rival``'s write lands over it."""
    q = _load(root)
    if q is None:
        return None
    t = next((t for t in q if isinstance(t, dict) and t.get("status") == "pending"
              and not (t.get("metadata") or {}).get("required_skills")), None)
    if t is None:
        return None
    t["status"], t["claimed_by"], t["claimed_at"] = "in_progress", name, _now()
    write_atomic(root / layout.QUEUE, dump_queue(q), tag="r1")
    update_worker(root, name, last_task_claimed=_now(), last_heartbeat=_now())
    say(root, name, f"Claimed task {t['id']}")
    t["claimed_by"], t["claimed_at"] = rival, _now()
    write_atomic(root / layout.QUEUE, dump_queue(q), tag="r2")
    update_worker(root, rival, last_task_claimed=_now(), last_heartbeat=_now())
    say(root, rival, f"Claimed task {t['id']}")
    return t["id"]


def torn_write(root: Path, rng: random.Random) -> None:
    """A writer killed mid-write without temp + rename: the queue is cut short."""
    data = (root / layout.QUEUE).read_bytes()
    cut = rng.randrange(max(2, len(data) // 3), max(3, len(data) - 2))
    with open(root / layout.QUEUE, "wb") as f:
        f.write(data[:cut])


def validate_queue(root: Path) -> int | None:
    """The design's validate_queue (keep entries with id and status), under the lock, on a
    file that may not parse: salvage what decodes. Returns how many entries were kept."""
    from qwarden.core.formats.coordination.parse import salvage

    with queue_lock(root):
        data = (root / layout.QUEUE).read_bytes()
        try:
            items = json.loads(data)
            if not isinstance(items, list):
                items = []
        except ValueError:
            items = list(salvage(data))
        keep = [t for t in items if check_entry(t)[0] is not None]
        write_atomic(root / layout.QUEUE, dump_queue(keep), tag="v")
        return len(keep)


@dataclass
class Simulation:
    """A coordinator and a few workers, stepped by ``tick`` (the demo calls it every second
    or so). Faults are drawn from the seed."""

    root: Path
    seed: int = 0
    workers: int = 4
    rng: random.Random = field(init=False)
    alive: dict[str, list[str]] = field(default_factory=dict)  # worker -> capabilities
    dead: set[str] = field(default_factory=set)
    holding: dict[str, Any] = field(default_factory=dict)
    corrupt_ticks: int = 0
    ticks: int = 0
    log: list[str] = field(default_factory=list)
    tick_s: float = 1.0
    demo_clock: bool = True  # write ROOT/qwarden.toml with a fast clock (dead after 20 s)

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``tick_s`` until ``stop`` is set (the writes run in a thread), as the
        console's and the headless demo's simulation does."""
        while not stop.is_set():
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "qwarden.toml"
        if self.demo_clock and not cfg.exists():
            # a demo's clock: a dead worker shows within half a minute, not two
            cfg.write_text("[coordination]\ndead_after_s = 20\nstale_after_s = 8\n")
        (self.root / layout.TASKS_DIR).mkdir(exist_ok=True)
        if not (self.root / layout.QUEUE).exists():
            write_atomic(self.root / layout.QUEUE, b"[]\n")
        (self.root / layout.COMMS).touch()
        for i in range(self.workers):
            name = f"worker-{i + 1}"
            caps = SKILL_SETS[i % len(SKILL_SETS)]
            register(self.root, name, caps)
            self.alive[name] = caps
        say(self.root, "coordinator", f"Started {self.workers} workers")
        for _ in range(8):
            self._add()

    def _add(self) -> None:
        skills = self.rng.choice(SKILL_SETS + ([],) * 3)
        desc = self.rng.choice(("Create user model", "Build login form", "Write API tests",
                                "Add pagination", "Fix flaky test", "Document the API"))
        tid: Any = int(time.time() * 1000) + self.rng.randint(0, 999)
        if self.rng.random() < 0.3:
            tid = f"task-{tid}"
        add_task(self.root, desc, list(skills[:1]), tid=tid)

    def tick(self) -> list[str]:
        """One step of every actor; returns what happened (one line each)."""
        self.ticks += 1
        events: list[str] = []
        rng = self.rng
        if self.corrupt_ticks:
            self.corrupt_ticks += 1
            if self.corrupt_ticks > 4:
                kept = validate_queue(self.root)
                events.append(f"coordinator repaired the queue ({kept} entries kept)")
                say(self.root, "coordinator", f"Queue repaired, {kept} entries kept")
                self.corrupt_ticks = 0
        if rng.random() < 0.5:
            self._add()
            events.append("coordinator added a task")
        for name, caps in list(self.alive.items()):
            heartbeat(self.root, name)
            held = self.holding.get(name)
            if held is None:
                if rng.random() < 0.6:
                    tid = claim(self.root, name, caps, check_skills=rng.random() > 0.05)
                    if tid is not None:
                        self.holding[name] = tid
                        events.append(f"{name} claimed {tid}")
            elif rng.random() < 0.35:
                ok = rng.random() > 0.15
                err = None if ok else rng.choice((
                    "TimeoutError: API did not answer after 30 s",
                    "ModuleNotFoundError: No module named 'bcrypt'"))
                complete(self.root, name, held, ok, err)
                self.holding.pop(name, None)
                events.append(f"{name} {'completed' if ok else 'failed'} {held}")
            if rng.random() < 0.02 and len(self.alive) > 2:
                del self.alive[name]
                self.dead.add(name)
                events.append(f"{name} died" + (f" holding {held}" if held else ""))
        if rng.random() < 0.05 and not self.corrupt_ticks:
            racers = rng.sample(sorted(self.alive), 2) if len(self.alive) >= 2 else []
            if racers and racers[0] not in self.holding and racers[1] not in self.holding:
                tid = racy_claim(self.root, racers[0], racers[1])
                if tid is not None:
                    self.holding[racers[1]] = tid
                    events.append(f"{racers[0]} and {racers[1]} raced for {tid}: "
                                  f"{racers[1]} wrote last")
        if rng.random() < 0.03 and not self.corrupt_ticks:
            torn_write(self.root, rng)
            self.corrupt_ticks = 1
            events.append("a torn write corrupted task-queue.json")
        if rng.random() < 0.03 and len(self.alive) < self.workers + 2:
            name = f"worker-{len(self.alive) + len(self.dead) + 1}"
            caps = SKILL_SETS[rng.randrange(len(SKILL_SETS))]
            register(self.root, name, caps)
            self.alive[name] = caps
            events.append(f"{name} registered")
        self.log.extend(events)
        return events

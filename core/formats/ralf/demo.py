"""RALF states made up: ``generate`` writes a static state with a known anomaly mix and its
``truth.json`` (the sample's shape); ``Simulation`` is a live planner and executor writing a
``.autonomous/`` tree step by step, faults included (a completion the planner does not sync,
a task file it forgets to queue, a heartbeat from the future).

The planner's and executor's writes are plain text in the shape BlackBox5's loops write
(block YAML, ``- id:`` entries, ``events:`` list), each replaced atomically.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

AS_OF = "2026-02-01T13:20:00Z"
TITLES = ("Fix queue sync", "Add metrics", "Refactor loader", "Research backlog",
          "Document protocol", "Harden executor", "Analyze skill usage", "Archive old runs")
TYPES = ("implement", "fix", "refactor", "analyze", "research", "organize")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def task_text(tid: str, title: str, typ: str, pri: str, created: str) -> str:
    return (f"# {tid}: {title}\n\n**Type:** {typ}\n**Priority:** {pri}\n**Status:** pending\n"
            f"**Created:** {created}\n**Estimated Minutes:** 30\n\n## Objective\n\n{title}.\n\n"
            "## Notes\n\n**Status:** not a header line\n")


@dataclass
class Entry:
    tid: str
    title: str
    typ: str
    pri: str
    added: str
    status: str = "pending"


def queue_text(entries: list[Entry], meta: dict[str, object], key: str = "id") -> str:
    out = ["# Task queue (written by the planner only)", "queue:"] if entries else ["queue: []"]
    for e in entries:
        out += [f"  - {key}: {e.tid}", f"    type: {e.typ}", f"    title: {json.dumps(e.title)}",
                f"    priority: {e.pri}", "    estimated_minutes: 30",
                f"    added_at: '{e.added}'", f"    status: {e.status}",
                "    source: 'Planner loop'", ""]
    out.append("metadata:")
    for k, v in meta.items():
        out.append(f"  {k}: '{v}'" if k == "last_updated" else f"  {k}: {v}")
    return "\n".join(out) + "\n"


@dataclass
class Ev:
    at: datetime
    tid: str
    typ: str
    run: int
    agent: str = "executor"


def events_text(events: list[Ev], newest_first: bool, corrupt: bool = False) -> str:
    evs = list(reversed(events)) if newest_first else list(events)
    out = ["events:"]
    for e in evs:
        out += [f"- timestamp: '{_iso(e.at)}'", f"  task_id: {e.tid}", f"  type: {e.typ}",
                f"  agent: {e.agent}", f"  run_number: {e.run}"]
        if e.typ == "completed":
            out += ["  result: success", f"  commit_hash: {e.run * 7919 % 0xFFFFFFF:07x}",
                    "  files_modified:", f"  - runs/executor/run-{e.run:04d}/RESULTS.md"]
    if corrupt:  # a torn write the executor left: an unterminated quote
        out += ["- timestamp: '2026-02-01T09:00:00Z'", "  task_id: TASK-TORN",
                "  type: progress", '  notes: "half a line']
    return "\n".join(out) + "\n"


def heartbeat_text(planner: datetime, executor: datetime, timeout: int = 120) -> str:
    return ("heartbeats:\n"
            f"  planner:\n    last_seen: '{_iso(planner)}'\n    status: running\n"
            "    current_action: planning\n"
            f"  executor:\n    last_seen: '{_iso(executor)}'\n    status: running\n"
            "    current_action: executing\n"
            f"metadata:\n  timeout_seconds: {timeout}\n  updated_by: planner\n")


def generate(n: int, out: Path | str, seed: int = 0, layout: str = "early") -> dict:
    """Write a RALF state of ``n`` tasks under ``out`` and its truth (also as truth.json).

    The mix: most tasks completed (their events only for the newest runs, as RALF's capped,
    rewritten events.yaml keeps: the rest are ``completed_without_event``), a few pending and
    one in progress in the queue, and per 1% of tasks (at least one each) queue entries left
    pending after completion (by directory, by event, or both), active files the queue does
    not list, and queue entries with neither file nor event. The seed also decides the event
    order, whether the metadata is stale, which loop is stale (a heartbeat from the future
    for the executor) and whether events.yaml ends in a torn write."""
    rng = random.Random(seed)
    out = Path(out)
    as_of = datetime.fromisoformat(AS_OF)
    auto = out / ".autonomous"
    comms = auto / ("communications" if layout == "early" else "agents/communications")
    troot = auto / "tasks" if layout == "early" else out / "tasks"
    k = max(1, n // 100)
    n_pending = max(2, n // 200)
    kinds = (["stale"] * k + ["missing"] * k + ["orphan"] * k + ["pending"] * n_pending)
    n_done = max(0, n - len(kinds) - 1)
    roles = ["done"] * n_done + kinds + ["in_progress"]
    roles = roles[:max(n, len(kinds) + 1)]
    base_id = 1769900000 + seed * 100000
    truth_tasks: dict[str, list[str]] = {}
    info: dict[str, list[str]] = {}
    scenarios: dict[str, str] = {}
    entries: list[Entry] = []
    events: list[Ev] = []
    run = 0
    executor_stale = rng.random() < 0.5
    planner_stale = rng.random() < 0.25
    newest_first = rng.random() < 0.5
    meta_stale = rng.random() < 0.6
    corrupt = rng.random() < 0.3
    t = as_of - timedelta(seconds=600 + 60 * len(roles))
    window = 100  # completions that still have their events
    done_total = roles.count("done")
    files: list[tuple[str, str, str]] = []  # (place, name, text)

    def add_file(place: str, tid: str, title: str, typ: str, pri: str, created: str) -> None:
        slug = title.lower().replace(" ", "-")
        body = task_text(tid, title, typ, pri, created)
        if layout == "early":
            files.append((place, f"{tid}-{slug}.md", body))
        else:
            files.append((place, f"{tid}-{slug}/task.md", body))

    done_seen = 0
    for i, role in enumerate(roles):
        tid = f"TASK-{base_id + i}"
        title = f"{TITLES[i % len(TITLES)]} {i}"
        typ, pri = TYPES[i % len(TYPES)], ("high", "medium", "low")[i % 3]
        t += timedelta(seconds=60)
        created = _iso(t)
        entry = Entry(tid, title, typ, pri, created)
        if role == "done":
            done_seen += 1
            add_file("completed", tid, title, typ, pri, created)
            if done_seen > done_total - window:
                run += 1
                events.append(Ev(t, tid, "started", run))
                events.append(Ev(t + timedelta(seconds=20), tid, "completed", run))
                truth_tasks[tid] = []
            else:
                truth_tasks[tid] = []
                info[tid] = ["completed_without_event"]
        elif role == "pending":
            add_file("active", tid, title, typ, pri, created)
            entries.append(entry)
            truth_tasks[tid] = []
        elif role == "stale":
            how = rng.choice(("dir+event", "dir", "event"))
            entry.status = rng.choice(("pending", "in_progress"))
            entries.append(entry)
            add_file("active" if how == "event" else "completed", tid, title, typ, pri,
                     created)
            if how != "dir":
                run += 1
                events.append(Ev(t, tid, "started", run))
                events.append(Ev(t + timedelta(seconds=20), tid, "completed", run))
            else:
                info[tid] = ["completed_without_event"]
            truth_tasks[tid] = ["queue_stale_entry"]
            scenarios[tid] = f"queue says {entry.status}; completed by {how}"
        elif role == "missing":
            add_file("active", tid, title, typ, pri, created)
            truth_tasks[tid] = ["missing_from_queue"]
        elif role == "orphan":
            entries.append(entry)
            truth_tasks[tid] = ["queue_orphan_entry"]
        elif role == "in_progress":
            if executor_stale:
                entries.append(entry)  # pending: the executor is not on it
                truth_tasks[tid] = []
            else:
                entry.status = "in_progress"
                entries.append(entry)
                run += 1
                events.append(Ev(as_of - timedelta(seconds=40), tid, "started", run))
                truth_tasks[tid] = []
            add_file("active", tid, title, typ, pri, created)
    rng.shuffle(entries)
    completed = [e for e in events if e.typ == "completed"]
    latest = max(completed, key=lambda e: e.run).tid if completed else None
    to_do = sum(1 for e in entries if truth_tasks[e.tid] != ["queue_stale_entry"])
    meta: dict[str, object] = {"last_updated": _iso(as_of - timedelta(minutes=5)),
                               "updated_by": "planner", "queue_depth_target": "3-5",
                               "current_depth": to_do}
    if latest is not None:
        meta["last_completed"] = latest
    if meta_stale:
        meta["current_depth"] = to_do + 2
        if len(completed) > 1:
            meta["last_completed"] = completed[0].tid  # the oldest, not the latest
        truth_tasks["queue"] = ["stale_queue_metadata"]
    else:
        truth_tasks["queue"] = []
    if corrupt:
        truth_tasks["queue"] = [*truth_tasks["queue"], "corrupt_queue_file"]
    # the loops: the executor's last event, then its heartbeat (fresh or from the future)
    last_ev = as_of - timedelta(seconds=300)
    if executor_stale:
        for e in events:
            e.at = min(e.at, last_ev)
        events.append(Ev(last_ev, events[-1].tid if events else "TASK-0", "progress", run))
        ex_seen = as_of + timedelta(hours=4)
        truth_tasks["agent:executor"] = ["stale_heartbeat"]
        info["agent:executor"] = ["future_timestamp"]
    else:
        ex_seen = as_of - timedelta(seconds=30)
        truth_tasks["agent:executor"] = []
    pl_seen = as_of - timedelta(seconds=600 if planner_stale else 40)
    truth_tasks["agent:planner"] = ["stale_heartbeat"] if planner_stale else []

    for place, name, body in files:
        p = troot / place / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    (troot / "TEMPLATE.md").parent.mkdir(parents=True, exist_ok=True)
    (troot / "TEMPLATE.md").write_text("# Task Template\n\n**Task ID:** TASK-[timestamp]\n")
    comms.mkdir(parents=True, exist_ok=True)
    (comms / "queue.yaml").write_text(queue_text(entries, meta,
                                                 key=rng.choice(("id", "task_id"))))
    (comms / "events.yaml").write_text(events_text(events, newest_first, corrupt))
    (comms / "heartbeat.yaml").write_text(heartbeat_text(pl_seen, ex_seen))
    truth = {"format": "ralf", "root": ".autonomous", "as_of": AS_OF,
             "subjects": "a task by its id; the queue itself as \"queue\"; a loop's agent as "
                         "\"agent:NAME\"",
             "generated": {"n": n, "seed": seed, "layout": layout,
                           "events_order": "newest-first" if newest_first else "oldest-first",
                           "corrupt_events": corrupt},
             "tasks": truth_tasks, "unscored_info": info, "scenarios": scenarios}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


# -- the live simulation -------------------------------------------------------------------

@dataclass
class Simulation:
    """A planner and an executor writing a RALF tree, one step at a time. Faults: the
    planner sometimes skips its queue sync (completed entries stay pending) or forgets to
    queue a task it wrote; the executor's clock sometimes jumps ahead."""

    root: Path
    seed: int = 0
    fault_rate: float = 0.2
    rng: random.Random = field(init=False)
    entries: list[Entry] = field(default_factory=list)
    events: list[Ev] = field(default_factory=list)
    active: dict[str, str] = field(default_factory=dict)  # tid -> file name
    n: int = 0
    run_number: int = 0  # the executor loop's run counter
    current: str | None = None
    last_completed: str | None = None
    planner_seen: datetime = field(default_factory=lambda: datetime.now(UTC))
    executor_seen: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.auto = Path(self.root) / ".autonomous"
        for place in ("active", "completed"):
            (self.auto / "tasks" / place).mkdir(parents=True, exist_ok=True)
        self._flush()

    def _flush(self) -> None:
        comms = self.auto / "communications"
        depth = sum(1 for e in self.entries if e.status != "completed")
        meta: dict[str, object] = {"last_updated": _iso(datetime.now(UTC)),
                                   "updated_by": "planner", "current_depth": depth}
        if self.last_completed:
            meta["last_completed"] = self.last_completed
        _write(comms / "queue.yaml", queue_text(self.entries, meta))
        _write(comms / "events.yaml", events_text(self.events[-100:], newest_first=False))
        _write(comms / "heartbeat.yaml", heartbeat_text(self.planner_seen, self.executor_seen))

    tick_s: float = 1.0

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``tick_s`` until ``stop`` is set (the writes run in a thread), as the
        console's and the headless demo's simulation does."""
        while not stop.is_set():
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.step)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)

    def step(self) -> str:
        now = datetime.now(UTC)
        rng = self.rng
        did = []
        # planner: keep the queue 3-5 deep; sync it (unless it fails silently)
        self.planner_seen = now
        if not (rng.random() < self.fault_rate):
            done = {e.tid for e in self.events if e.typ == "completed"}
            self.entries = [e for e in self.entries if e.tid not in done]
        else:
            did.append("planner skipped its sync")
        pending = [e for e in self.entries if e.status == "pending"]
        if len(pending) < 3:
            self.n += 1
            tid = f"TASK-{int(now.timestamp())}{self.n:03d}"
            title = f"{TITLES[self.n % len(TITLES)]} {self.n}"
            name = f"{tid}-{title.lower().replace(' ', '-')}.md"
            _write(self.auto / "tasks" / "active" / name,
                   task_text(tid, title, TYPES[self.n % len(TYPES)], "medium", _iso(now)))
            self.active[tid] = name
            if rng.random() < self.fault_rate / 2:
                did.append(f"planner wrote {tid} but did not queue it")
            else:
                self.entries.append(Entry(tid, title, TYPES[self.n % len(TYPES)], "medium",
                                          _iso(now)))
                did.append(f"planner queued {tid}")
        # executor: finish what it holds, else claim the first pending entry
        seen = now + timedelta(hours=3) if rng.random() < self.fault_rate / 4 else now
        self.executor_seen = seen
        if self.current is not None:
            tid = self.current
            self.events.append(Ev(now, tid, "completed", self.run_number))
            if tid in self.active:
                fname = self.active.pop(tid)
                os.replace(self.auto / "tasks" / "active" / fname,
                           self.auto / "tasks" / "completed" / fname)
            self.last_completed = tid
            self.current = None
            did.append(f"executor completed {tid} (run {self.run_number})")
        else:
            nxt = next((e for e in self.entries if e.status == "pending"
                        and e.tid in self.active), None)
            if nxt is not None:
                self.run_number += 1
                nxt.status = "in_progress"
                self.current = nxt.tid
                self.events.append(Ev(now, nxt.tid, "started", self.run_number))
                did.append(f"executor started {nxt.tid} (run {self.run_number})")
        self._flush()
        return "; ".join(did)


def run_live(root: Path, steps: int, interval: float, seed: int) -> None:
    sim = Simulation(root, seed)
    for i in range(steps):
        print(f"step {i + 1}: {sim.step()}", flush=True)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qwarden.core.formats.ralf.demo",
                                 description="RALF demo: a live simulated planner and "
                                             "executor, or a generated state with truth.json")
    ap.add_argument("--generate", type=int, metavar="N")
    ap.add_argument("--out", "--dir", dest="out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("early", "later"), default="early")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args(argv)
    if a.generate is not None:
        truth = generate(a.generate, a.out, a.seed, a.layout)
        scored = sum(1 for k in truth["tasks"].values() if k)
        print(f"wrote {a.generate} tasks to {a.out} ({scored} subjects with scored findings)")
        return 0
    run_live(a.out, a.steps, a.interval, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A declarative builder of small Octopoid v1 state dirs for rule tests.

Times are given as ages in seconds before ``now`` (the ``--as-of`` the test judges at), so each
test states its scenario the way the contract does ("claimed 3h ago, heartbeat 14 min ago").
Real files and a real SQLite DB, same layout and column names as Octopoid writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qwarden.core.formats.octopoid.writer import SCHEMA_V12

# Octopoid's own schema, so rule tests see the real column set.
SCHEMA = SCHEMA_V12


@dataclass
class TaskSpec:
    tid: str
    db_queue: str | None = "incoming"  # None: no DB row
    file_queues: tuple[str, ...] = ("incoming",)  # where files exist; () none
    title: str = "A task"
    trail: list[tuple[str, Any]] = field(default_factory=list)  # (KEY, value or age_s)
    db: dict[str, Any] = field(default_factory=dict)
    file_age_s: float = 3600
    header: dict[str, str] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)  # queue -> exact bytes (stubs, corrupt)


class StateBuilder:
    def __init__(self, base: Path, now: datetime | None = None, db: bool = True) -> None:
        self.base = base
        self.root = base / ".orchestrator"
        self.now = now or datetime(2026, 11, 22, 22, 10, 0)
        self.with_db = db
        self.tasks: list[TaskSpec] = []
        self.agents: list[tuple[str, dict[str, Any]]] = []

    def at(self, age_s: float) -> str:
        """isoformat() local time ``age_s`` seconds before now (the T form)."""
        return (self.now - timedelta(seconds=age_s)).isoformat()

    def epoch(self, age_s: float) -> float:
        return (self.now - timedelta(seconds=age_s)).timestamp()

    def task(self, tid: str, **kw: Any) -> TaskSpec:
        spec = TaskSpec(tid=tid, **kw)
        self.tasks.append(spec)
        return spec

    def agent(self, name: str, *, running: bool | None = True, started_age: float | None = 600,
              finished_age: float | None = None, pid: int | None = None,
              heartbeat_age: float | None = None, status: tuple[str, float] | None = None,
              current_task: str | None = None, state: bool = True,
              db_row: bool = False) -> None:
        self.agents.append((name, dict(running=running, started_age=started_age,
                                       finished_age=finished_age, pid=pid,
                                       heartbeat_age=heartbeat_age, status=status,
                                       current_task=current_task, state=state,
                                       db_row=db_row)))

    def _task_text(self, s: TaskSpec) -> str:
        lines = [f"# [TASK-{s.tid}] {s.title}", "", "ROLE: implement",
                 f"PRIORITY: {s.db.get('priority', 'P2')}", "BRANCH: main",
                 f"CREATED: {self.at(86400)}", "CREATED_BY: human"]
        lines += [f"{k}: {v}" for k, v in s.header.items()]
        lines += ["", "## Context", "Do the thing.", "", "## Acceptance Criteria",
                  "- [ ] It works", ""]
        for key, val in s.trail:
            if key.startswith("##") or key == "```" or key == "":
                lines.append(key if val is None else f"{key}\n{val}")
                continue
            v = self.at(val) if key.endswith("_AT") and isinstance(val, (int, float)) else val
            if key in ("CLAIMED_BY", "SUBMITTED_AT", "FAILED_AT", "RETRIED_AT", "ACCEPTED_AT",
                       "NEEDS_CONTINUATION_AT", "RESUMED_AT", "REJECTED_AT", "ESCALATED_AT"):
                lines.append("")
            lines.append(f"{key}: {v}")
        return "\n".join(lines) + "\n"

    def build(self) -> Path:
        q = self.root / "shared" / "queue"
        for name in ("incoming", "claimed", "provisional", "done", "failed", "rejected",
                     "escalated", "recycled", "breakdown", "needs_continuation"):
            (q / name).mkdir(parents=True, exist_ok=True)
        (self.root / "agents").mkdir(parents=True, exist_ok=True)
        (self.root / "shared" / "notes").mkdir(parents=True, exist_ok=True)
        (self.root / "agents.yaml").write_text(
            "database:\n  enabled: %s\n" % ("true" if self.with_db else "false"))
        conn = None
        if self.with_db:
            conn = sqlite3.connect(self.root / "state.db")
            conn.executescript(SCHEMA)
        for s in self.tasks:
            for fq in s.file_queues:
                p = q / fq / f"TASK-{s.tid}.md"
                data = s.raw.get(fq)
                p.write_bytes(data if data is not None else self._task_text(s).encode())
                os.utime(p, (self.epoch(s.file_age_s),) * 2)
            if conn is not None and s.db_queue is not None:
                row = {"id": s.tid, "queue": s.db_queue, "priority": "P2", "role": "implement",
                       "file_path": f"/elsewhere/.orchestrator/shared/queue/"
                                    f"{s.file_queues[0] if s.file_queues else 'incoming'}"
                                    f"/TASK-{s.tid}.md",
                       "created_at": (self.now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
                       "updated_at": self.at(3600)}
                for k, v in s.db.items():
                    row[k] = self.at(v) if k.endswith("_at") and isinstance(v, (int, float)) \
                        else v
                cols = ", ".join(row)
                conn.execute(f"INSERT INTO tasks ({cols}) VALUES ({', '.join('?' * len(row))})",
                             list(row.values()))
        for name, a in self.agents:
            d = self.root / "agents" / name
            d.mkdir(parents=True, exist_ok=True)
            if a["state"]:
                (d / "state.json").write_text(json.dumps({
                    "running": a["running"], "pid": a["pid"],
                    "last_started": self.at(a["started_age"]) if a["started_age"] is not None
                    else None,
                    "last_finished": self.at(a["finished_age"]) if a["finished_age"] is not None
                    else None,
                    "last_exit_code": None, "consecutive_failures": 0, "total_runs": 1,
                    "current_task": None, "extra": {}}, indent=2))
            if a["heartbeat_age"] is not None:
                hb = (self.now - timedelta(seconds=a["heartbeat_age"]))
                (d / "heartbeat").write_text(hb.strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
            if a["status"] is not None:
                tid, age = a["status"]
                (d / "status.json").write_text(json.dumps({
                    "task_id": tid, "task_title": "working", "current_subtask": "editing",
                    "progress_percent": 40, "last_updated": self.at(age), "agent_name": name}))
            if a["current_task"] is not None:
                (d / "current_task.json").write_text(json.dumps({
                    "task_id": a["current_task"], "task_path": "", "started_at": self.at(600)}))
            for f in d.iterdir():
                os.utime(f, (self.epoch(7200),) * 2)
            if a["heartbeat_age"] is not None:
                os.utime(d / "heartbeat", (self.epoch(a["heartbeat_age"]),) * 2)
            if conn is not None and a["db_row"]:
                conn.execute("INSERT INTO agents (name, role, running, pid, current_task_id) "
                             "VALUES (?, 'implementer', ?, ?, ?)",
                             (name, 1 if a["running"] else 0, a["pid"], a["current_task"]))
        if conn is not None:
            conn.commit()
            conn.close()
        return self.root


def generated_utc_state(tmp_path_factory: pytest.TempPathFactory, name: str, n: int,
                        seed: int) -> Iterator[tuple[Path, datetime]]:
    """A generated state of ``n`` tasks judged in UTC, for a module-scoped fixture to
    ``yield from``: yields its root and ``as_of``, and restores the time zone after."""
    import time

    from qwarden.core.formats.octopoid.generate import generate
    from qwarden.core.timefmt import parse_as_of, reset_local_zone_cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        reset_local_zone_cache()
        out = tmp_path_factory.mktemp(name)
        truth = generate(out, n, seed=seed)
        yield out / ".orchestrator", parse_as_of(truth["as_of"])
    time.tzset()
    reset_local_zone_cache()

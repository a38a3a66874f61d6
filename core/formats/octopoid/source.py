"""Octopoid v1 as a supervised source (``core.sources.base.Source``): the rows of state.db and
the task files, kept apart in ``Task.record`` and ``Task.files``, read cold once and then
incrementally.

- Files: the watcher's paths under ``shared/queue`` are re-read alone; under ``agents/`` the
  agent is re-read.
- DB: ``PRAGMA data_version`` plus the DB files' stat is the change marker; when it moves, a
  light per-row fingerprint finds the changed rows and only those are re-read.
- A file or agent event often follows a DB write by milliseconds (claim, then status.json):
  the DB is looked at then too, rather than judging against a stale row.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from qwarden.core import safeio
from qwarden.core.config import Config
from qwarden.core.formats.octopoid.queue_files import FileScan
from qwarden.core.formats.octopoid.reader import (
    EXPECTED_DIRS,
    FORMAT,
    QUEUES,
    OctopoidReader,
    resolve_root,
)
from qwarden.core.formats.octopoid.semantics import SEMANTICS
from qwarden.core.model import Agent, Fact, ReadProblem, Task, TaskRecord, TrailEvent
from qwarden.core.sources.base import Delta, FormatInfo, Source, WatchSpec
from qwarden.core.sources.errors import SourceError


def task_id_of(rel: str) -> str:
    """``shared/queue/<queue>/TASK-<id>.md`` -> ``<id>``."""
    return rel.rsplit("/", 1)[-1][5:-3]


def assemble_tasks(files: Iterable[Any], records: Mapping[str, TaskRecord]) -> dict[str, Task]:
    """Group file copies and DB rows by task id into Task objects."""
    # one copy per task is the rule: a tuple of it at once, a sorted tuple for the few more
    by_id: dict[str, tuple[Any, ...]] = {}
    more: set[str] = set()
    for f in files:
        tid = f.task_id
        had = by_id.get(tid)
        if had is None:
            by_id[tid] = (f,)
        else:
            by_id[tid] = had + (f,)
            more.add(tid)
    for tid in more:
        by_id[tid] = tuple(sorted(by_id[tid], key=lambda f: f.relpath))
    tasks: dict[str, Task] = {}
    for tid, rec in records.items():
        tasks[tid] = Task(tid, rec, by_id.pop(tid, ()))
    for tid, fs in by_id.items():
        tasks[tid] = Task(tid, None, fs)
    return tasks


class OctopoidSource(OctopoidReader):
    semantics = SEMANTICS

    def __init__(self, root: Path, config: Config | None = None, live: bool = True,
                 follow: bool = True) -> None:
        """``follow=False``: one scan and done (``qwarden report``), so the per-file stat
        cache and per-row change keys that make later rescans cheap are not kept."""
        config = config or Config()
        lim = config.limits
        super().__init__(root, lim.max_task_file_bytes, lim.db_busy_retries,
                         lim.db_busy_timeout_ms, keep_stats=follow)
        self.live = live
        self.follow = follow
        self.label = str(self.root)
        self.journal_root: Path | None = self.root
        self._records: dict[str, TaskRecord] = {}
        self._row_keys: dict[str, int] = {}
        self._agent_rows: dict[str, dict[str, object]] = {}
        self._agents: dict[str, Agent] = {}
        self._problems: dict[str, ReadProblem] = {}
        self._conn: sqlite3.Connection | None = None
        self._conn_fp: tuple[object, ...] = ()  # the DB file's stat when _conn was opened
        self._phase = ""  # of a cold scan in progress (scan_progress)
        self._file_only = False
        self._naming: set[str] = set()
        self._db_marker: tuple[object, ...] | None = None
        self._cold_tasks: dict[str, Task] | None = None

    @property
    def has_record_side(self) -> bool:
        return not self._file_only  # Octopoid's file-only mode: no row is expected

    # ------------------------------------------------------------------ the DB
    def _db(self) -> sqlite3.Connection | None:
        if self._file_only:
            return None
        conn = self.held()  # (Octopoid's short writer connections checkpoint and remove
        if conn is None:     # their -wal: the immutable reader is reopened then)
            if not self.db_exists():
                if not self.database_enabled():
                    self._file_only = True  # Octopoid's file-only mode: nothing to compare
                    return None
                raise SourceError(f"{self.db_path}: database missing")
            conn = self.hold()
        return conn

    # ------------------------------------------------------------------ cold scan
    def scan(self) -> None:
        gc_was = gc.isenabled()
        gc.disable()  # allocation-heavy and acyclic: collections would only rescan the heap
        # A worker starts reading the task files now, while this thread reads the DB.
        started = self.start_scan()
        try:
            self._phase = "reading state.db"
            conn = self._db()
            if conn is not None:
                self._db_marker = (self.data_version(conn), self.db_fingerprint())
                self._row_keys = {}
                self._records = self.read_records(
                    conn, keys=self._row_keys if self.follow else None)
                self._agent_rows = self.read_agent_rows(conn)
            agents, agent_problems = self.read_agents(self._agent_rows, check_pids=self.live)
            self._agents = agents
            self._naming = {a.current_task_id for a in agents.values() if a.current_task_id}
            self._phase = "reading task files"
            fs = self.scan_files(self._needs_trail, self._same_id, started)
            self._cold_tasks = assemble_tasks(fs.files.values(), self._records)
            if not self.follow:
                # One scan and done: the tasks hold every record and file now, so the two
                # 100,000-entry indexes only took memory (a later scan re-reads everything).
                self._records = {}
                self.forget_files()
            self._problems = {p.path: p for p in fs.problems + agent_problems}
        finally:
            if started is not None:
                started.close()  # (already done, unless the DB could not be read)
            self._phase = ""
            if gc_was:
                gc.freeze()  # what the scan built is long-lived: keep it out of later GCs
                gc.enable()

    def all_tasks(self) -> dict[str, Task]:
        tasks, self._cold_tasks = self._cold_tasks, None  # handed over, not kept twice
        if tasks is None:
            tasks = {}
            for tid in set(self._records) | {f.task_id for f in self.files.values()}:
                t = self.task(tid)
                if t is not None:
                    tasks[tid] = t
        return tasks

    def agents(self) -> dict[str, Agent]:
        return dict(self._agents)

    def problems(self) -> tuple[ReadProblem, ...]:
        return tuple(self._problems.values()) + self.cell_problem_list()

    def facts(self) -> tuple[Fact, ...]:
        return ()

    def scan_progress(self) -> str:
        """What a cold scan is doing right now (read from another thread while it runs: a
        console shows it instead of a blank screen for the seconds 100,000 files take)."""
        phase = self._phase
        if phase == "reading state.db" and (n := self.files_read):
            return f"{phase}; task files: {n:,} read"  # a worker reads them meanwhile
        if phase == "reading task files":
            # the DB's row count is the best guess of how many files there are
            expected = len(self._records)
            of = f" of ~{expected:,}" if expected else ""
            return f"{phase}: {self.files_read:,}{of} read"
        return phase

    # ------------------------------------------------------------------ one task
    def _same_id(self, task_id: str) -> str:
        rec = self._records.get(task_id)
        return rec.task_id if rec is not None else task_id

    def _needs_trail(self, task_id: str, queue: str) -> bool:
        """Whether a file must be parsed fully even though its bytes hold no trail marker."""
        rec = self._records.get(task_id)
        if rec is None or rec.queue == "claimed" or task_id in self._naming:
            return True
        if queue not in EXPECTED_DIRS.get(rec.queue, frozenset({rec.queue})):
            return True
        return rec.commits_count is None and queue in ("provisional", "done")

    def _one_shot_guard(self) -> None:
        if not self.follow:  # its caches were dropped after the one scan
            raise RuntimeError("a one-shot source (follow=False) only scans")

    def task(self, task_id: str) -> Task | None:
        self._one_shot_guard()
        files = []
        # a task's copies can only sit at TASK-<id>.md in one of the queue dirs: probing
        # them beats keeping a task -> paths index of 100,000 entries
        for r, f in self.files_of(task_id):
            if not f.trail_complete and self._needs_trail(task_id, f.queue):
                full, _ = self.read_one(r, full=True)
                if full is None:
                    continue
                f = full
            files.append(f)
        rec = self._records.get(task_id)
        if rec is None and not files:
            return None
        return Task(task_id=task_id, record=rec, files=tuple(files))

    def full_task(self, task: Task) -> Task:
        """The task with every file parsed fully (for detail views); not kept."""
        if all(f.trail_complete for f in task.files):
            return task
        files = []
        for f in task.files:
            if not f.trail_complete:
                full, _ = self.read_one(f.relpath, full=True)
                f = full or f
            files.append(f)
        return Task(task_id=task.task_id, record=task.record, files=tuple(files))

    def raw_record(self, task_id: str) -> dict[str, object]:
        """Every column of the task's DB row (for the detail view's DB side)."""
        try:
            conn = self._db()
        except SourceError:
            return {}
        return self.read_row(conn, task_id) if conn is not None else {}

    def history(self, task_id: str) -> tuple[TrailEvent, ...]:
        """The DB's history rows and the notes' attempts (the file trail is the task's)."""
        events: list[TrailEvent] = []
        conn = self._db()
        if conn is not None:
            events.extend(self.read_history(conn, task_id))
        events.extend(self.read_notes(task_id))
        return tuple(events)

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        if "/" in agent_name or agent_name in ("", ".", ".."):
            return ""
        path = self.agents_dir / agent_name / "stdout.log"
        try:
            data = safeio.read_tail(path, max_bytes)  # a FIFO log must not hang the console
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ changes
    def rescan(self) -> Delta:
        """The warm full pass: everything is checked, only changes are re-read."""
        self._one_shot_guard()
        delta = Delta()
        conn = self._db()
        if conn is not None:
            # Skip the row fingerprint pass when no other connection wrote since last time.
            marker = (self.data_version(conn), self.db_fingerprint())
            if marker != self._db_marker:
                delta |= self._apply_db_changes()
        agents, agent_problems = self.read_agents(self._agent_rows, check_pids=self.live)
        for name in set(agents) | set(self._agents):
            if self._agents.get(name) != agents.get(name):
                delta.agents.add(name)
        self._agents = agents
        self._naming = {a.current_task_id for a in agents.values() if a.current_task_id}
        fs = self.scan_files(self._needs_trail, self._same_id)
        delta.tasks |= self._link_scan(fs)
        self._problems = {p.path: p for p in fs.problems + agent_problems}
        return delta

    def on_paths(self, paths: set[str]) -> Delta:
        self._one_shot_guard()
        rels: set[str] = set()
        names: set[str] = set()
        for path in paths:
            rel = self.relpath(path if os.path.isabs(path) else self.root / path)
            parts = rel.split("/")
            if len(parts) == 4 and parts[0] == "shared" and parts[1] == "queue":
                rels.add(rel)
            elif len(parts) >= 2 and parts[0] == "agents":
                names.add(parts[1])
        delta = Delta()
        if not rels and not names:
            return delta
        if rels:
            delta.tasks |= self._apply_file_changes(rels)
        if self._db_moved():
            delta |= self._apply_db_changes()
        if names:
            delta |= self._apply_agent_changes(names)
        return delta

    def on_marker(self) -> Delta:
        self._one_shot_guard()
        return self._apply_db_changes()

    def look_again(self, ids: Iterable[str]) -> Delta:
        """Re-read both sides of these tasks straight from disk and DB (every queue dir's
        copy, the row, the agents that name or claim them)."""
        self._one_shot_guard()
        ids = set(ids)
        rels = {f"shared/queue/{q}/TASK-{tid}.md" for tid in ids for q in QUEUES}
        delta = Delta(tasks=set(ids) | self._apply_file_changes(rels))
        conn = self._db()
        if conn is not None:
            rows = self.read_records(conn, ids)
            for tid in ids:
                if tid in rows:
                    self._records[tid] = rows[tid]
                else:
                    self._records.pop(tid, None)
        names = {a.name for a in self._agents.values() if a.current_task_id in ids}
        names |= {r.claimed_by for tid in ids if (r := self._records.get(tid)) is not None
                  and r.claimed_by}
        if names:
            delta |= self._apply_agent_changes(names)
        return delta

    def _link_scan(self, fs: FileScan) -> set[str]:
        """The tasks a scan's added, changed and removed files belong to."""
        return {task_id_of(rel) for rel in fs.changed | fs.removed}

    def _apply_file_changes(self, rels: set[str]) -> set[str]:
        """Re-read the given queue files (relpaths); returns the affected task ids."""
        dirty: set[str] = set()
        for rel in rels:
            old = self.files.get(rel)
            tid = task_id_of(rel)
            tf, problems = self.read_one(rel, full=self._needs_trail(tid, rel.split("/")[2]))
            for p in problems:
                self._problems[p.path] = p
            if not problems:
                self._problems.pop(rel, None)
            for f in (old, tf):
                if f is not None:
                    dirty.add(f.task_id)
        return dirty

    def _db_moved(self) -> bool:
        conn = self._db()
        if conn is None:
            return False
        return (self.data_version(conn), self.db_fingerprint()) != self._db_marker

    def _apply_db_changes(self) -> Delta:
        """Find changed rows by fingerprint and re-read only those."""
        conn = self._db()
        if conn is None:
            return Delta()
        self._db_marker = (self.data_version(conn), self.db_fingerprint())
        keys = self.change_keys(conn)
        changed = {k for k, v in keys.items() if self._row_keys.get(k) != v}
        removed = set(self._row_keys) - set(keys)
        self._row_keys = keys
        if changed:
            self._records.update(self.read_records(conn, changed))
        for tid in removed:
            self._records.pop(tid, None)
        delta = Delta(tasks=changed | removed)
        new_rows = self.read_agent_rows(conn)
        if new_rows != self._agent_rows:
            self._agent_rows = new_rows
            delta |= self._apply_agent_changes(set(new_rows))
        return delta

    def _apply_agent_changes(self, names: set[str]) -> Delta:
        delta = Delta()
        for name in names:
            old = self._agents.get(name)
            problems: list[ReadProblem] = []
            agent_dir = self.agents_dir / name
            if not safeio.is_dir(agent_dir) and name not in self._agent_rows:
                self._agents.pop(name, None)
                new = None
            else:
                new = self.read_agent(name, self._agent_rows.get(name), self.live, problems)
                self._agents[name] = new
            for p in problems:
                self._problems[p.path] = p
            if old != new:
                delta.agents.add(name)
        self._naming = {a.current_task_id for a in self._agents.values() if a.current_task_id}
        return delta

    # ------------------------------------------------------------------ watching
    def watch_spec(self) -> WatchSpec:
        return WatchSpec(paths=tuple(self.watch_paths()),
                         marker=self.data_version_marker if self.db_exists() else None)



def _detect(root: Path | str) -> bool:
    p = Path(root)
    if not p.is_dir():
        return False
    try:
        resolve_root(p, env={})
    except SourceError:
        return False
    return True


def _open(root: Path | str, config: Config, live: bool, follow: bool) -> Source:
    return OctopoidSource(resolve_root(root), config, live=live, follow=follow)

def open_interventions(root: Path | str, config: Config, options: Any) -> Any:
    from qwarden.core.formats.octopoid.interventions import open_interventions as open_

    return open_(root, config, options)


FORMAT_INFO = FormatInfo(name="octopoid", detect=_detect, open=_open,
                         interventions=open_interventions, auto_fixes=True,
                         describe=f"Octopoid v1 ({FORMAT}): .orchestrator/ files + state.db")

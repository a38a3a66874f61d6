"""The engine: one full scan, then incremental updates from file and DB changes, plus the poll.

- Files: ``watchfiles`` on the queue, agents and notes dirs; a changed task file is re-read alone.
- DB: ``PRAGMA data_version`` checked (aiosqlite) at most every second; when it moves, a light
  per-row fingerprint finds the changed rows and only those are re-read.
- Time: claims age even when nothing is written, so time-sensitive tasks are re-judged often.
- A full reconciliation runs every poll interval (300 s), never overlapping itself.
- A scored finding born of a change waits for a second look (``_hold_born_findings``): queues
  write in two steps (Octopoid: the file then the row to create, the row then the trail to
  claim), and between them the state is one-sided. Until the look, the task is published as it
  was; the look ``confirm_after_s`` later re-reads both sides of the task directly (no event
  needed) and the finding is published only if it is still there.
Subscribers get each new immutable Snapshot on the event loop. Reading never writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from core import safeio
from core.config import Config
from core.judge import Judge, assemble_tasks
from core.model import (
    Agent,
    Publisher,
    ReadProblem,
    Severity,
    Snapshot,
    Task,
    TaskRecord,
    TrailEvent,
)
from core.formats.octopoid.reader import (
    EXPECTED_DIRS,
    FORMAT,
    QUEUES,
    FileScan,
    OctopoidSource,
    SourceError,
)
from core.timefmt import UTC

log = logging.getLogger("qwarden.engine")

Subscriber = Callable[[Snapshot], None]
MAX_LOOKS = 3  # a held finding is published after this many looks, whatever it showed


def task_id_of(rel: str) -> str:
    """``shared/queue/<queue>/TASK-<id>.md`` -> ``<id>``."""
    return rel.rsplit("/", 1)[-1][5:-3]


class Engine:
    def __init__(self, root: Path, config: Config | None = None,
                 as_of: datetime | None = None, follow: bool = True) -> None:
        """``follow=False``: one scan and done (``qwarden report``), so the per-file stat
        cache and per-row change keys that make later rescans cheap are not kept; a later
        scan is still correct, it just re-reads everything."""
        self.config = config or Config()
        self.as_of = as_of
        self.live = as_of is None
        self.follow = follow
        lim = self.config.limits
        self.source = OctopoidSource(root, lim.max_task_file_bytes, lim.db_busy_retries,
                                     lim.db_busy_timeout_ms, keep_stats=follow)
        self.root = self.source.root
        self.judge = Judge(self.config, EXPECTED_DIRS)
        self.snapshot: Snapshot | None = None
        self.paused = False
        self.last_poll_at: datetime | None = None
        self.next_poll_at: datetime | None = None
        self.last_error: str | None = None
        self._records: dict[str, TaskRecord] = {}
        self._row_keys: dict[str, int] = {}
        self._agent_rows: dict[str, dict[str, object]] = {}
        self._agents: dict[str, Agent] = {}
        self._tasks: dict[str, Task] = {}
        self._problems: dict[str, ReadProblem] = {}
        self._conn: sqlite3.Connection | None = None
        self._conn_fp: tuple[object, ...] = ()  # the DB file's stat when _conn was opened
        self._phase = ""  # of a cold scan in progress (scan_progress)
        self._generation = 0
        self._subscribers: list[Subscriber] = []
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks_running: list[asyncio.Task[None]] = []
        self._pending_publish: set[str] = set()
        # Snapshots share unchanged entries: each publish copies only what changed.
        # (A one-shot engine hands its dicts over instead: each of its scans builds new ones.)
        handover = not follow
        self._pub_tasks = Publisher(lambda: self._tasks, handover=handover)
        self._pub_verdicts = Publisher(lambda: self.judge.verdicts, handover=handover)
        self._pub_findings = Publisher(lambda: self.judge.by_task, handover=handover)
        self._pub_severity = {sev: Publisher(self._severity_source(sev), handover=handover)
                              for sev in Severity}
        self._publishers = [self._pub_verdicts, self._pub_findings,
                            *self._pub_severity.values()]  # the judge's, by task id
        self._file_only = False
        self._naming: set[str] = set()
        self._reviews_stamp: tuple[int, int] | None = None
        self._db_marker: tuple[object, ...] | None = None
        self._watch_ready = asyncio.Event()
        self.caught_up = asyncio.Event()  # watching, and what changed during start-up is in
        # task -> (when its next look is due, time.monotonic(); the born kinds seen so far;
        # looks so far)
        self._held: dict[str, tuple[float, frozenset[str], int]] = {}
        self._look_due = asyncio.Event()  # a hold was added: the look loop must (re)arm

    # ------------------------------------------------------------------ clock
    def clock(self) -> datetime:
        return self.as_of if self.as_of is not None else datetime.now(UTC)

    # ------------------------------------------------------------------ scans
    def _db(self) -> sqlite3.Connection | None:
        if self._file_only:
            return None
        if self._conn is not None:
            uri = self.source.connected_uri or ""
            if self.source.db_uri() != uri or (
                    "immutable=1" in uri and self.source.db_fingerprint() != self._conn_fp):
                # -wal appeared or vanished: reopen in the matching read-only mode. And an
                # immutable reader never sees a write: a writer that came and went (its -wal
                # checkpointed and removed, as Octopoid's short connections do) changed the
                # file under it, so it must be reopened to read the new state.
                self._conn.close()
                self._conn = None
        if self._conn is None:
            if not self.source.db_exists():
                if not self.source.database_enabled():
                    self._file_only = True  # Octopoid's file-only mode: nothing to compare
                    return None
                raise SourceError(f"{self.source.db_path}: database missing")
            self._conn_fp = self.source.db_fingerprint()
            self._conn = self.source.connect()
        return self._conn

    def scan(self) -> Snapshot:
        """Full read and judgement (synchronous). Raises SourceError if the queue is unreadable.
        Once warm, only what changed is re-read and re-judged (files by stat, rows by a light
        fingerprint), so the periodic reconciliation stays cheap at 100,000 tasks."""
        if self.snapshot is not None and self.follow:
            return self._reconcile()
        gc_was = gc.isenabled()
        gc.disable()  # allocation-heavy and acyclic: collections would only rescan the heap
        # A worker starts reading the task files now, while this thread reads the DB.
        started = self.source.start_scan()
        try:
            self._phase = "reading state.db"
            conn = self._db()
            if conn is not None:
                self._db_marker = (self.source.data_version(conn), self.source.db_fingerprint())
                self._row_keys = {}
                self._records = self.source.read_records(
                    conn, keys=self._row_keys if self.follow else None)
                self._agent_rows = self.source.read_agent_rows(conn)
            self.judge.has_db = conn is not None
            agents, agent_problems = self.source.read_agents(self._agent_rows,
                                                             check_pids=self.live)
            self._agents = agents
            self._naming = {a.current_task_id for a in agents.values() if a.current_task_id}
            self._phase = "reading task files"
            fs = self.source.scan_files(self._needs_trail, self._same_id, started)
            self._load_reviews()
            self._tasks = assemble_tasks(fs.files.values(), self._records)
            if not self.follow:
                # One scan and done: the tasks hold every record and file now, so the two
                # 100,000-entry indexes only took memory (a later scan re-reads everything).
                self._records = {}
                self.source.forget_files()
            self._pub_tasks.reset()
            self._problems = {p.path: p for p in fs.problems + agent_problems}
            self._phase = f"judging {len(self._tasks):,} tasks"
            self.judge.run(self._tasks, self._agents, self.clock(), self.live)
            self.last_poll_at = self.clock()
            snap = self._publish(frozenset(self._tasks))
        finally:
            if started is not None:
                started.close()  # (already done, unless the DB could not be read)
            self._phase = ""
            if gc_was:
                gc.freeze()  # what the scan built is long-lived: keep it out of later GCs
                gc.enable()
        return snap

    def _reconcile(self) -> Snapshot:
        """The warm full pass: everything is checked, only changes are re-read."""
        dirty: set[str] = set()
        conn = self._db()
        if conn is not None:
            # Skip the row fingerprint pass when no other connection wrote since last time.
            marker = (self.source.data_version(conn), self.source.db_fingerprint())
            if marker != self._db_marker:
                dirty |= self.apply_db_changes()
        agents, agent_problems = self.source.read_agents(self._agent_rows, check_pids=self.live)
        for name in set(agents) | set(self._agents):
            old, new = self._agents.get(name), agents.get(name)
            if old != new:
                for a in (old, new):
                    if a is not None and a.current_task_id:
                        dirty.add(a.current_task_id)
                dirty |= self._tasks_claimed_by(name)
        self._agents = agents
        self._naming = {a.current_task_id for a in agents.values() if a.current_task_id}
        dirty |= self._load_reviews()
        fs = self.source.scan_files(self._needs_trail, self._same_id)
        dirty |= self._link_scan(fs)
        self._problems = {p.path: p for p in fs.problems + agent_problems}
        for tid in dirty:
            self._rebuild_task(tid)
        snap = self.rejudge(self._hold_born_findings(dirty), aged=True)
        self.last_poll_at = self.clock()
        return snap

    # ------------------------------------------------------------------ second looks
    def _hold_born_findings(self, dirty: set[str], looked: AbstractSet[str] = frozenset()
                            ) -> set[str]:
        """The dirty tasks that may be published now. A task whose change would bring a
        scored finding it did not have is held back, published as it was, until its second
        look; at the look (``looked``) a finding seen at the change and again now is real.

        Why: a two-step write is one-sided between its steps (the file of a new task before
        its row, a submit's file in provisional/ before the row says so); that is no finding.
        The look re-reads both sides of the task, so a lost or late event cannot keep a
        one-sided view either. Bounded: a real finding shows ``confirm_after_s`` late."""
        delay = self.config.live.confirm_after_s
        if not (self.live and self._tasks_running and delay > 0 and dirty) \
                or self.snapshot is None:
            return dirty  # (only a started engine gives second looks; a scan() caller judges)
        for tid in dirty & self._held.keys():
            # a held task's entry is the published one: judge what the sources say now (an
            # agent's change dirties the task without rebuilding it)
            self._rebuild_task(tid)
        present = [t for tid in dirty if (t := self._tasks.get(tid)) is not None]
        kinds = self.judge.preview(present, self._agents, self.clock(), self.live)
        published = self.snapshot.tasks
        now = time.monotonic()
        ready: set[str] = set()
        for tid in dirty:
            born = kinds.get(tid, frozenset()) - self.judge.scored_kinds(tid)
            held = self._held.get(tid)
            if not born or (held is not None and tid in looked and (
                    born <= held[1] or held[2] >= MAX_LOOKS)):
                self._held.pop(tid, None)  # nothing new, or seen twice (or looked enough)
                ready.add(tid)
                continue
            if held is None:
                self._held[tid] = (now + delay, born, 0)
            elif tid in looked:  # a kind new at the look: one look more
                self._held[tid] = (now + delay, born, held[2])
            else:
                self._held[tid] = (held[0], held[1] | born, held[2])
            prev = published.get(tid)
            if prev is None:
                self._tasks.pop(tid, None)
            else:
                self._tasks[tid] = prev
            self._pub_tasks.touch(tid)
        return ready

    def _look_again(self, ids: AbstractSet[str]) -> set[str]:
        """Re-read both sides of these tasks straight from disk and DB (every queue dir's
        copy, the row, the agents that name or claim them); returns what to re-judge."""
        rels = {f"shared/queue/{q}/TASK-{tid}.md" for tid in ids for q in QUEUES}
        dirty = set(ids) | self.apply_file_changes(rels)
        conn = self._db()
        if conn is not None:
            rows = self.source.read_records(conn, ids)
            for tid in ids:
                if tid in rows:
                    self._records[tid] = rows[tid]
                else:
                    self._records.pop(tid, None)
        names = {a.name for a in self._agents.values() if a.current_task_id in ids}
        names |= {r.claimed_by for tid in ids if (r := self._records.get(tid)) is not None
                  and r.claimed_by}
        if names:
            dirty |= self.apply_agent_changes(names)
        for tid in ids:
            self._rebuild_task(tid)
        return dirty

    def _load_reviews(self) -> set[str]:
        """When a supervisor last reviewed each task (qwarden's own journal, read-only);
        returns the tasks whose review time changed."""
        path = self.root / "warden" / "journal.db"
        try:
            st = os.stat(path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._reviews_stamp:
            return set()
        self._reviews_stamp = stamp
        from core.actions.journal import read_reviews
        from core.timefmt import parse_any

        new = {tid: t for tid, at in read_reviews(self.root).items()
               if (t := parse_any(at)) is not None}
        old = self.judge.reviews
        self.judge.reviews = new
        return {tid for tid in set(old) | set(new) if old.get(tid) != new.get(tid)}

    def _link_scan(self, fs: FileScan) -> set[str]:
        """The tasks a scan's added, changed and removed files belong to."""
        return {task_id_of(rel) for rel in fs.changed | fs.removed}

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

    def scan_progress(self) -> str:
        """What a cold scan is doing right now (read from another thread while it runs: a
        console shows it instead of a blank screen for the seconds 100,000 files take)."""
        phase = self._phase
        if phase == "reading state.db" and (n := self.source.files_read):
            return f"{phase}; task files: {n:,} read"  # a worker reads them meanwhile
        if phase == "reading task files":
            # the DB's row count is the best guess of how many files there are
            expected = len(self._records)
            of = f" of ~{expected:,}" if expected else ""
            return f"{phase}: {self.source.files_read:,}{of} read"
        return phase

    def _severity_source(self, sev: Severity) -> Callable[[], dict[str, None]]:
        return lambda: self.judge.tasks_by_severity[sev]

    def _one_shot_guard(self) -> None:
        if not self.follow:  # its published dicts were handed over: it must not change them
            raise RuntimeError("a one-shot engine (follow=False) only scans")

    def _rebuild_task(self, tid: str) -> None:
        self._one_shot_guard()
        files = []
        # a task's copies can only sit at TASK-<id>.md in one of the queue dirs: probing
        # them beats keeping a task -> paths index of 100,000 entries
        for r, f in self.source.files_of(tid):
            if not f.trail_complete and self._needs_trail(tid, f.queue):
                full, _ = self.source.read_one(r, full=True)
                if full is None:
                    continue
                f = full
            files.append(f)
        rec = self._records.get(tid)
        if rec is None and not files:
            self._tasks.pop(tid, None)
            self._pub_tasks.touch(tid)
            return
        self._tasks[tid] = Task(task_id=tid, record=rec, files=tuple(files))
        self._pub_tasks.touch(tid)

    def full_task(self, task_id: str) -> Task | None:
        """The task with every file parsed fully (for detail views); not kept."""
        task = self._tasks.get(task_id)
        if task is None or all(f.trail_complete for f in task.files):
            return task
        files = []
        for f in task.files:
            if not f.trail_complete:
                full, _ = self.source.read_one(f.relpath, full=True)
                f = full or f
            files.append(f)
        return Task(task_id=task_id, record=task.record, files=tuple(files))

    def db_row(self, task_id: str) -> dict[str, object]:
        """Every column of the task's DB row (for the detail view's DB side)."""
        try:
            conn = self._db()
        except SourceError:
            return {}
        return self.source.read_row(conn, task_id) if conn is not None else {}

    def apply_file_changes(self, rels: set[str]) -> set[str]:
        """Re-read the given queue files (relpaths); returns the affected task ids."""
        dirty: set[str] = set()
        for rel in rels:
            old = self.source.files.get(rel)
            tid = task_id_of(rel)
            tf, problems = self.source.read_one(rel, full=self._needs_trail(
                tid, rel.split("/")[2]))
            for p in problems:
                self._problems[p.path] = p
            if not problems:
                self._problems.pop(rel, None)
            for f in (old, tf):
                if f is None:
                    continue
                dirty.add(f.task_id)
        for tid in dirty:
            self._rebuild_task(tid)
        return dirty

    def _db_moved(self) -> bool:
        conn = self._db()
        if conn is None:
            return False
        return (self.source.data_version(conn), self.source.db_fingerprint()) != self._db_marker

    def apply_db_changes(self) -> set[str]:
        """Find changed rows by fingerprint and re-read only those."""
        conn = self._db()
        if conn is None:
            return set()
        self._db_marker = (self.source.data_version(conn), self.source.db_fingerprint())
        keys = self.source.change_keys(conn)
        changed = {k for k, v in keys.items() if self._row_keys.get(k) != v}
        removed = set(self._row_keys) - set(keys)
        self._row_keys = keys
        if changed:
            self._records.update(self.source.read_records(conn, changed))
        for tid in removed:
            self._records.pop(tid, None)
        dirty = changed | removed
        new_rows = self.source.read_agent_rows(conn)
        if new_rows != self._agent_rows:
            self._agent_rows = new_rows
            dirty |= self.apply_agent_changes(set(new_rows))
        for tid in dirty:
            self._rebuild_task(tid)
        return dirty

    def apply_agent_changes(self, names: set[str]) -> set[str]:
        dirty: set[str] = set()
        for name in names:
            old = self._agents.get(name)
            problems: list[ReadProblem] = []
            agent_dir = self.source.agents_dir / name
            if not safeio.is_dir(agent_dir) and name not in self._agent_rows:
                self._agents.pop(name, None)
                new = None
            else:
                new = self.source.read_agent(name, self._agent_rows.get(name), self.live,
                                             problems)
                self._agents[name] = new
            for p in problems:
                self._problems[p.path] = p
            for a in (old, new):
                if a is not None and a.current_task_id:
                    dirty.add(a.current_task_id)
            dirty |= self._tasks_claimed_by(name)
        return dirty

    def _tasks_claimed_by(self, name: str) -> set[str]:
        return set(self.judge.claims_by_agent.get(name, ()))

    def rejudge(self, dirty: set[str] | None = None, aged: bool = False) -> Snapshot:
        """Re-judge the changed tasks (and, with ``aged``, every task whose verdict can change
        with time alone: live claims, split brains, unsettled mismatches) and publish."""
        self._one_shot_guard()
        ids = set(dirty or ())
        if aged and self.live:
            ids |= self.judge.time_sensitive
        touched = self.judge.run(self._tasks, self._agents, self.clock(), self.live, ids)
        return self._publish(frozenset(touched | set(dirty or ())))

    def _publish(self, changed: frozenset[str]) -> Snapshot:
        self._generation += 1
        j = self.judge
        for pub in self._publishers:
            if j.full_pending:
                pub.reset()
            else:
                for tid in j.touched:
                    pub.touch(tid)
        j.full_pending = False
        j.touched.clear()
        snap = Snapshot(
            root=str(self.root), source_format=FORMAT, as_of=self.clock(), live=self.live,
            lanes=self.source.lanes, tasks=self._pub_tasks.publish(),
            agents=MappingProxyType(dict(self._agents)),
            verdicts=self._pub_verdicts.publish(),
            findings=j.findings(),
            problems=tuple(self._problems.values()) + self.source.cell_problem_list(),
            generation=self._generation, changed=changed,
            by_task=self._pub_findings.publish(),
            state_counts=MappingProxyType(dict(j.state_counts)),
            severity_counts=MappingProxyType(dict(j.severity_counts)),
            tasks_by_severity=MappingProxyType(
                {sev: pub.publish().keys() for sev, pub in self._pub_severity.items()}))
        self.snapshot = snap
        return snap

    def _notify(self) -> None:
        """Hand the newest snapshot to subscribers (on the event loop, never from a thread)."""
        snap = self.snapshot
        if snap is None or self.paused:
            return
        for cb in list(self._subscribers):
            try:
                cb(snap)
            except Exception:  # a broken view must not kill the engine
                log.exception("subscriber failed")

    # ------------------------------------------------------------------ details on demand
    def trace(self, task_id: str) -> tuple[TrailEvent, ...]:
        """One merged timeline: DB history, the file trail, notes attempts, agent signals."""
        events: list[TrailEvent] = []
        task = self.full_task(task_id)
        try:
            conn = self._db()
            if conn is not None:
                events.extend(self.source.read_history(conn, task_id))
        except SourceError as exc:
            self.last_error = str(exc)
        if task is not None:
            events.extend(task.trail)
        events.extend(self.source.read_notes(task_id))
        v = self.judge.verdicts.get(task_id)
        names = {v.claimed_by} if v and v.claimed_by else set()
        for name in names:
            a = self._agents.get(name)
            if a is None:
                continue
            from core.model import Side
            for s in a.signals:
                if s.task_id in (None, task_id):
                    events.append(TrailEvent(kind="SIGNAL", at=s.at, side=Side.AGENT,
                                             actor=name, detail=s.name))
        epoch = datetime.min.replace(tzinfo=UTC)
        return tuple(sorted(events, key=lambda e: e.at or epoch))

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        if "/" in agent_name or agent_name in ("", ".", ".."):
            return ""
        path = self.source.agents_dir / agent_name / "stdout.log"
        try:
            data = safeio.read_tail(path, max_bytes)  # a FIFO log must not hang the console
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ live
    def subscribe(self, cb: Subscriber) -> Callable[[], None]:
        self._subscribers.append(cb)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(cb)
        return unsubscribe

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self._notify()

    async def start(self) -> Snapshot:
        if self.live:
            # The watcher starts first so nothing written during the scan is missed; once it
            # is known to be running, a stat-only pass catches up what happened before.
            self._tasks_running.append(asyncio.create_task(self._watch_files()))
        async with self._lock:
            snap = await asyncio.to_thread(self.scan)
        self._notify()
        if self.live:
            self.next_poll_at = self.clock() + timedelta(seconds=self.config.live.poll_interval_s)
            loop_tasks = [self._watch_db(), self._poll_loop(), self._tick_loop(),
                          self._catch_up_when_watching(), self._second_look_loop()]
            self._tasks_running += [asyncio.create_task(c) for c in loop_tasks]
        return snap

    async def _catch_up_when_watching(self) -> None:
        try:
            await asyncio.wait_for(self._watch_ready.wait(), timeout=10)
        except TimeoutError:
            return
        async with self._lock:
            def work() -> None:
                dirty = self._link_scan(self.source.scan_files(self._needs_trail, self._same_id))
                if dirty:
                    for tid in dirty:
                        self._rebuild_task(tid)
                    self.rejudge(self._hold_born_findings(dirty))
            try:
                await asyncio.to_thread(work)
            except SourceError as exc:  # (the next poll tries again)
                self.last_error = str(exc)
            except Exception as exc:
                self.last_error = f"catching up failed: {exc!r}"
                log.exception("catching up failed")
        self.caught_up.set()
        self._notify()

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks_running:
            t.cancel()
        for t in self._tasks_running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks_running = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def poll_now(self) -> Snapshot | None:
        """Full reconciliation; a poll already running is waited for, not doubled."""
        if self._lock.locked():
            async with self._lock:
                return self.snapshot
        async with self._lock:
            try:
                snap = await asyncio.to_thread(self.scan)
                self.last_error = None
            except SourceError as exc:
                self.last_error = str(exc)
                snap = None
            except Exception as exc:  # keep the last good snapshot, say why
                self.last_error = f"poll failed: {exc!r}"
                log.exception("poll failed")
                snap = None
            self.last_poll_at = self.clock()
            self.next_poll_at = self.clock() + timedelta(
                seconds=self.config.live.poll_interval_s)
        if self._held:
            self._look_due.set()
        self._notify()
        return snap

    async def _second_look_loop(self) -> None:
        """Give every held task its second look when it is due."""
        while not self._stop.is_set():
            if not self._held:
                self._look_due.clear()
                waiter = asyncio.ensure_future(self._look_due.wait())
                stopper = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            due = min(h[0] for h in self._held.values())
            if await self._sleep(max(0.0, due - time.monotonic())):
                return
            await self._apply(second_look=True)

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            delay = self.config.live.poll_interval_s
            if self.next_poll_at is not None:
                delay = max(0.0, (self.next_poll_at - self.clock()).total_seconds())
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            await self.poll_now()

    async def _tick_loop(self) -> None:
        """Claims age with no writes at all: re-judge the time-sensitive set regularly."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(),
                                       timeout=self.config.live.rejudge_interval_s)
                return
            except TimeoutError:
                pass
            async with self._lock:
                try:
                    await asyncio.to_thread(self.rejudge, set(), True)
                except Exception as exc:
                    self.last_error = f"re-judge failed: {exc!r}"
            self._notify()

    async def _watch_db(self) -> None:
        """PRAGMA data_version (aiosqlite) plus the files' stat, at most every second."""
        import aiosqlite

        if not self.source.db_exists():
            return
        interval = self.config.live.db_check_interval_s
        while not self._stop.is_set():
            uri = self.source.db_uri()
            try:
                async with aiosqlite.connect(uri, uri=True) as db:
                    await db.execute("PRAGMA query_only = ON")
                    version = fp = None
                    while not self._stop.is_set() and self.source.db_uri() == uri:
                        cur = await db.execute("PRAGMA data_version")
                        row = await cur.fetchone()
                        v = row[0] if row else None
                        new_fp = self.source.db_fingerprint()
                        if version is not None and (v != version or new_fp != fp):
                            await self._apply(db_changed=True)
                        version, fp = v, new_fp
                        if await self._sleep(interval):
                            return
            except (sqlite3.Error, OSError) as exc:
                self.last_error = f"{self.source.db_path}: cannot watch: {exc}"
                if await self._sleep(interval * 5):
                    return
            # the needed mode changed (-wal appeared/vanished): reopen and catch up
            await self._apply(db_changed=True)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when the engine is stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

    async def _watch_files(self) -> None:
        from watchfiles import awatch

        paths = self.source.watch_paths()
        if not paths:
            return
        root = str(self.root)
        async for changes in awatch(*paths, stop_event=self._stop,
                                    debounce=self.config.live.debounce_ms, step=20,
                                    recursive=True, ignore_permission_denied=True,
                                    rust_timeout=500, yield_on_timeout=True):
            self._watch_ready.set()  # the first (possibly empty) batch: watching for real
            rels: set[str] = set()
            agent_names: set[str] = set()
            for _change, path in changes:
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                parts = rel.split("/")
                if len(parts) == 4 and parts[0] == "shared" and parts[1] == "queue":
                    rels.add(rel)
                elif len(parts) >= 2 and parts[0] == "agents":
                    agent_names.add(parts[1])
            if rels or agent_names:
                await self._apply(rels=rels, agent_names=agent_names)

    async def _apply(self, rels: set[str] | None = None, agent_names: set[str] | None = None,
                     db_changed: bool = False, second_look: bool = False) -> None:
        async with self._lock:
            def work() -> None:
                dirty: set[str] = set()
                looked: set[str] = set()
                if second_look:
                    now = time.monotonic()
                    looked = {tid for tid, h in self._held.items() if h[0] <= now}
                    delay = self.config.live.confirm_after_s
                    for tid in looked:  # counted first: a look that fails must not spin
                        _, seen, looks = self._held[tid]
                        self._held[tid] = (now + delay, seen, looks + 1)
                    dirty |= self._look_again(looked)
                if rels:
                    dirty |= self.apply_file_changes(rels)
                # A file or agent event often follows a DB write by milliseconds (claim, then
                # status.json): look at the DB now rather than judge against a stale row and
                # report a split brain that is only our own polling lag.
                if db_changed or self._db_moved():
                    dirty |= self.apply_db_changes()
                dirty |= self._load_reviews()  # an intervention just reviewed a task
                if agent_names:
                    dirty |= self.apply_agent_changes(agent_names)
                self.rejudge(self._hold_born_findings(dirty, looked))
            try:
                await asyncio.to_thread(work)
            except SourceError as exc:
                self.last_error = str(exc)
            except Exception as exc:
                self.last_error = f"update failed: {exc!r}"
                log.exception("incremental update failed")
            if self._held:
                self._look_due.set()
        self._notify()

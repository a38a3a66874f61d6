"""RALF source: reads a BlackBox5 ``.autonomous/`` state into the neutral model, read-only.

The model's two sides, for RALF:

- ``record`` = the task's entry in ``queue.yaml`` (``TaskRecord.queue`` is the entry's
  ``status``), written by the planner;
- ``files`` = the task file(s) under ``tasks/active|completed`` (``TaskFile.queue`` is the
  directory, which is the truth: the ``**Status:**`` header is never updated), their trail the
  task's events from ``events.yaml`` (``STARTED``/``COMPLETED``… with the run number, commit
  hash and the event's line in ``fields``).

Agents are the loops in ``heartbeat.yaml`` (planner, executor) with their signals: the
heartbeat and every event they logged. Which signals are trustworthy (not in the future) is
the rules' business: the source does not know the time it is judged at.

Facts carry what rules about the queue itself need, each with its ``file:line``: the metadata
(``last_completed``, ``current_depth``), the latest completion by run number and event order,
the heartbeat timeout, each queue entry (its status line) and the events of tasks that have no
file, and any file that did not parse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwarden.core import safeio
from qwarden.core.formats.ralf import layout as lay
from qwarden.core.formats.ralf.kinds import DONE_STATUSES, FORMAT
from qwarden.core.formats.ralf.parse import (
    Event,
    EventsFile,
    HeartbeatFile,
    QueueEntry,
    QueueFile,
    TaskHeader,
    parse_events,
    parse_heartbeat,
    parse_queue,
    parse_task_header,
)
from qwarden.core.formats.ralf.semantics import SEMANTICS
from qwarden.core.model import (
    Agent,
    Fact,
    Header,
    ReadProblem,
    Side,
    Signal,
    Task,
    TaskFile,
    TaskRecord,
    TrailEvent,
)
from qwarden.core.sources.base import Delta, WatchSpec
from qwarden.core.sources.errors import SourceError

if TYPE_CHECKING:
    from qwarden.core.config import Config

HEADER_BYTES = 16 * 1024  # the header block is in the first lines; never more is read
MAX_COMM_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT_S = 120.0  # RALF's own (protocol.yaml: heartbeat_age alert_if_above 120 s)


@dataclass(frozen=True)
class _FileInfo:
    key: tuple[int, int, int]  # (mtime_ns, size, inode): the stat cache
    place: str
    rel: str
    mtime: float
    size: int
    header: TaskHeader


class RalfSource:
    format = FORMAT
    semantics = SEMANTICS
    has_record_side = True

    def __init__(self, root: Path | str, config: Config | None = None, live: bool = False,
                 follow: bool = False) -> None:
        given = Path(root).expanduser()
        if not safeio.is_dir(given):
            raise SourceError(f"{given}: no such directory")
        found = lay.discover(given)
        if found is None:
            raise SourceError(f"{given}: not a RALF state (no .autonomous directory)")
        self.layout: lay.Layout = found
        self.root = found.base
        self.label = str(given)
        self.journal_root: Path | None = found.autonomous  # (qwarden sync journals there)
        self.live = live
        self.follow = follow
        self._base_real = os.path.realpath(found.base)
        self.queue = QueueFile()
        self.events = EventsFile()
        self.heartbeat = HeartbeatFile()
        self._comm_problems: dict[str, ReadProblem] = {}
        self._comm_keys: dict[str, tuple[int, int, int] | None] = {}
        self._files: dict[str, _FileInfo] = {}  # rel -> info
        self._file_ids: dict[str, str] = {}  # rel -> task id
        self._walk_problems: list[ReadProblem] = []
        self._tasks: dict[str, Task] = {}
        self._agents: dict[str, Agent] = {}
        self._facts: tuple[Fact, ...] = ()
        self._events_by_task: dict[str, list[Event]] = {}

    # -- reading ---------------------------------------------------------------------------
    def _read_comm(self, name: str) -> str | None:
        path = self.layout.comm_file(name)
        if path is None:
            return None
        rel = self.layout.rel(path)
        self._comm_problems.pop(name, None)
        if not os.path.lexists(path):
            self._comm_keys[name] = None
            return None
        if not safeio.within(self._base_real, str(path)):
            self._comm_problems[name] = ReadProblem(rel, "a symlink leading out of the "
                                                         "project: not followed")
            return None
        try:
            data, st = safeio.read_whole(path, MAX_COMM_BYTES)
        except OSError as exc:
            self._comm_problems[name] = ReadProblem(rel, exc.strerror or str(exc))
            return None
        self._comm_keys[name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return data.decode("utf-8", errors="replace")

    def _stat_key(self, name: str) -> tuple[int, int, int] | None:
        path = self.layout.comm_file(name)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load_comms(self, which: Iterable[str] = (lay.QUEUE, lay.EVENTS, lay.HEARTBEAT)
                    ) -> None:
        for name in which:
            text = self._read_comm(name)
            if name == lay.QUEUE:
                self.queue = parse_queue(text) if text is not None else QueueFile()
            elif name == lay.EVENTS:
                self.events = parse_events(text) if text is not None else EventsFile()
            elif name == lay.HEARTBEAT:
                self.heartbeat = parse_heartbeat(text) if text is not None else HeartbeatFile()

    def _walk(self) -> None:
        """Every task file, headers re-read only for files whose stat moved."""
        old = self._files
        files: dict[str, _FileInfo] = {}
        ids: dict[str, str] = {}
        problems: list[ReadProblem] = []
        for troot in self.layout.task_roots:
            for place in lay.PLACES:
                pdir = troot / place
                if not safeio.is_dir(pdir):
                    continue
                if not safeio.within(self._base_real, str(pdir)):
                    problems.append(ReadProblem(self.layout.rel(pdir), "a symlink leading "
                                                "out of the project: not followed"))
                    continue
                for f in lay.walk_place(self.layout, troot, place):
                    rel = self.layout.rel(f.path)
                    if f.problem:
                        problems.append(ReadProblem(rel, f.problem))
                        continue
                    info = self._read_file(f.path, rel, place, old.get(rel))
                    if isinstance(info, ReadProblem):
                        problems.append(info)
                        continue
                    files[rel] = info
                    ids[rel] = f.task_id
        self._files, self._file_ids, self._walk_problems = files, ids, problems

    def _read_file(self, path: Path, rel: str, place: str, old: _FileInfo | None
                   ) -> _FileInfo | ReadProblem:
        try:
            st = os.stat(path)
        except OSError as exc:
            return ReadProblem(rel, exc.strerror or str(exc))
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if old is not None and old.key == key and old.place == place:
            return old
        try:
            data = safeio.read_prefix(path, HEADER_BYTES)
        except OSError as exc:
            return ReadProblem(rel, exc.strerror or str(exc))
        header = parse_task_header(data.decode("utf-8", errors="replace"))
        return _FileInfo(key, place, rel, st.st_mtime, st.st_size, header)

    # -- assembling ------------------------------------------------------------------------
    def _events_where(self, e: Event) -> str:
        path = self.layout.comm_file(lay.EVENTS)
        return f"{self.layout.rel(path)}:{e.line}" if path is not None else f"events:{e.line}"

    def _queue_where(self, line: int | None) -> str:
        path = self.layout.comm_file(lay.QUEUE)
        rel = self.layout.rel(path) if path is not None else "queue.yaml"
        return f"{rel}:{line}" if line else rel

    def _hb_where(self, line: int | None) -> str:
        path = self.layout.comm_file(lay.HEARTBEAT)
        rel = self.layout.rel(path) if path is not None else "heartbeat.yaml"
        return f"{rel}:{line}" if line else rel

    def _trail_event(self, e: Event) -> TrailEvent:
        fields: list[tuple[str, str]] = [("where", self._events_where(e)), ("seq", str(e.seq))]
        if e.run_number is not None:
            fields.append(("run_number", str(e.run_number)))
        if e.commit_hash:
            fields.append(("commit_hash", e.commit_hash))
        if e.result:
            fields.append(("result", e.result))
        if e.at_text:
            fields.append(("timestamp", e.at_text))
        return TrailEvent(kind=e.type.upper() or "EVENT", at=e.at, side=Side.FILE,
                          actor=e.agent, detail=f"run {e.run_number}" if e.run_number
                          is not None else "", fields=tuple(fields))

    def _assemble(self) -> None:
        by_task: dict[str, list[Event]] = {}
        for e in self.events.events:
            if e.task_id:
                by_task.setdefault(e.task_id, []).append(e)
        for evs in by_task.values():
            evs.sort(key=lambda e: e.seq)
        self._events_by_task = by_task
        trails: dict[str, tuple[TrailEvent, ...]] = {
            tid: tuple(self._trail_event(e) for e in evs) for tid, evs in by_task.items()}
        files: dict[str, list[TaskFile]] = {}
        for rel, info in self._files.items():
            tid = self._file_ids[rel]
            h = info.header
            files.setdefault(tid, []).append(TaskFile(
                task_id=tid, queue=info.place, mtime=info.mtime, size=info.size,
                parseable=True, title=h.title, header=Header(dict(h.fields)),
                trail=trails.get(tid, ()), truncated=info.size > HEADER_BYTES, path=rel))
        records: dict[str, TaskRecord] = {}
        facts: list[Fact] = []
        for en in self.queue.entries:
            if en.task_id in records:
                continue  # a second entry of one id: the first is the one the planner reads
            records[en.task_id] = _record(en)
            facts.append(Fact(en.task_id, "queue_entry", en.status or "",
                              self._queue_where(en.line)))
            if en.status_line:
                facts.append(Fact(en.task_id, "queue_status", en.status or "",
                                  self._queue_where(en.status_line)))
        tasks: dict[str, Task] = {}
        for tid, rec in records.items():
            fs = files.pop(tid, [])
            tasks[tid] = Task(tid, rec, tuple(sorted(fs, key=lambda f: f.relpath)))
            if not fs:
                for e in by_task.get(tid, ()):
                    facts.append(Fact(tid, f"event:{e.type}", _event_text(e),
                                      self._events_where(e), e.at))
        for tid, fs in files.items():
            tasks[tid] = Task(tid, None, tuple(sorted(fs, key=lambda f: f.relpath)))
        self._tasks = tasks
        self._agents = self._make_agents()
        facts.extend(self._queue_facts())
        self._facts = tuple(facts)

    def _make_agents(self) -> dict[str, Agent]:
        sigs: dict[str, list[Signal]] = {}
        for e in self.events.events:
            if e.agent and e.at is not None:
                sigs.setdefault(e.agent, []).append(
                    Signal(f"event {e.type} ({self._events_where(e)})", e.at, e.task_id))
        agents: dict[str, Agent] = {}
        for b in self.heartbeat.beats:
            s = list(sigs.pop(b.name, ()))
            if b.last_seen is not None:
                s.insert(0, Signal(f"heartbeat ({self._hb_where(b.last_seen_line)})",
                                   b.last_seen, None))
            st = (b.status or "").lower()
            agents[b.name] = Agent(
                name=b.name, has_state=True,
                running=None if not st else st in ("running", "active", "working", "busy"),
                current_task_id=b.current_task, current_task_source="heartbeat.yaml"
                if b.current_task else "",
                status_text=" ".join(x for x in (b.status, b.current_action) if x),
                signals=tuple(s))
        for name, s in sigs.items():  # an agent that logs events but has no heartbeat
            agents[name] = Agent(name=name, has_state=False, signals=tuple(s))
        return agents

    def _queue_facts(self) -> list[Fact]:
        out: list[Fact] = []
        for k in ("last_completed", "current_depth", "last_updated", "updated_by"):
            mv = self.queue.metadata.get(k)
            if mv is not None and mv.value is not None:
                out.append(Fact("queue", k, mv.value, self._queue_where(mv.line)))
        latest = latest_completion(self.events.events)
        if latest is not None and latest.task_id:
            out.append(Fact("queue", "latest_completion", latest.task_id,
                            self._events_where(latest), latest.at))
        out.append(Fact("queue", "events_order", self.events.order,
                        self._events_where_file()))
        hb = self.heartbeat
        out.append(Fact("queue", "heartbeat_timeout_s", f"{hb.timeout_s or DEFAULT_TIMEOUT_S:g}",
                        self._hb_where(hb.timeout_line) if hb.timeout_s else
                        "RALF default (protocol.yaml)"))
        for b in hb.beats:
            out.append(Fact(f"agent:{b.name}", "heartbeat", b.last_seen_text or "",
                            self._hb_where(b.last_seen_line or b.line), b.last_seen))
        # files that did not parse (corrupt_queue_file)
        if self.queue.problem:
            out.append(Fact("queue", "corrupt:queue.yaml", self.queue.problem,
                            self._queue_where(self.queue.problem_line)))
        if self.events.corrupt:
            path = self.layout.comm_file(lay.EVENTS)
            rel = self.layout.rel(path) if path is not None else "events.yaml"
            out.append(Fact("queue", "corrupt:events.yaml", self.events.corrupt,
                            f"{rel}:{self.events.corrupt_line}" if self.events.corrupt_line
                            else rel))
        if hb.problem:
            out.append(Fact("queue", "corrupt:heartbeat.yaml", hb.problem,
                            self._hb_where(hb.problem_line)))
        return out

    def _events_where_file(self) -> str:
        path = self.layout.comm_file(lay.EVENTS)
        return self.layout.rel(path) if path is not None else ""

    # -- the Source interface --------------------------------------------------------------
    def scan(self) -> None:
        self._load_comms()
        self._walk()
        self._assemble()

    def all_tasks(self) -> dict[str, Task]:
        return dict(self._tasks)

    def agents(self) -> dict[str, Agent]:
        return dict(self._agents)

    def problems(self) -> tuple[ReadProblem, ...]:
        out = list(self._comm_problems.values()) + self._walk_problems
        for line, why in self.queue.skipped:
            out.append(ReadProblem(self._queue_where(line), f"queue entry skipped: {why}"))
        if self.layout.comms is None:
            out.append(ReadProblem(self.layout.rel(self.layout.autonomous),
                                   "no communications/ (nor agents/communications/) dir"))
        return tuple(out)

    def facts(self) -> tuple[Fact, ...]:
        return self._facts

    def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def _diff(self, old_tasks: Mapping[str, Task], old_agents: Mapping[str, Agent],
              old_facts: tuple[Fact, ...]) -> Delta:
        d = Delta()
        new = self._tasks
        for tid in old_tasks.keys() | new.keys():
            if old_tasks.get(tid) != new.get(tid):
                d.tasks.add(tid)
        for name in old_agents.keys() | self._agents.keys():
            if old_agents.get(name) != self._agents.get(name):
                d.agents.add(name)
        d.facts = old_facts != self._facts
        return d

    def rescan(self) -> Delta:
        ot, oa, of = self._tasks, self._agents, self._facts
        changed = [n for n in (lay.QUEUE, lay.EVENTS, lay.HEARTBEAT)
                   if self._stat_key(n) != self._comm_keys.get(n) or n in self._comm_problems]
        self._load_comms(changed)
        self._walk()
        self._assemble()
        return self._diff(ot, oa, of)

    def on_paths(self, paths: set[str]) -> Delta:
        # RALF states are small (a queue of a few entries, a capped event log): a rescan
        # re-reads only the files whose stat moved.
        return self.rescan()

    def on_marker(self) -> Delta:
        return self.rescan()

    def look_again(self, ids: Iterable[str]) -> Delta:
        return self.rescan()

    def watch_spec(self) -> WatchSpec:
        paths = [p for p in (self.layout.comms, *self.layout.task_roots) if p is not None]
        return WatchSpec(paths=tuple(paths))

    def scan_progress(self) -> str:
        return f"{len(self._files)} task files"

    def full_task(self, task: Task) -> Task:
        return task  # only the header block is ever read: the task is whole already

    def history(self, task_id: str) -> tuple[TrailEvent, ...]:
        return tuple(self._trail_event(e) for e in self._events_by_task.get(task_id, ()))

    def raw_record(self, task_id: str) -> Mapping[str, Any]:
        for en in self.queue.entries:
            if en.task_id == task_id:
                return {"id_key": en.id_key, "status": en.status, "title": en.title,
                        "priority": en.priority, "type": en.type, "added_at": en.added_at,
                        "where": self._queue_where(en.line)}
        return {}

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        return ""

    def close(self) -> None:
        pass


def _record(en: QueueEntry) -> TaskRecord:
    return TaskRecord(task_id=en.task_id, queue=en.status or "pending", priority=en.priority,
                      role=en.type, title=en.title, created_at_text=en.added_at)


def _event_text(e: Event) -> str:
    return f"{e.type} run {e.run_number}" if e.run_number is not None else e.type


def latest_completion(events: Iterable[Event]) -> Event | None:
    """The newest completed event by run number, then by the file's own order (oldest-first
    ``seq``); never by timestamp (stamps lie, some in the future)."""
    best: Event | None = None
    best_key: tuple[int, int] | None = None
    for e in events:
        if e.type != "completed" or not e.task_id:
            continue
        key = (e.run_number if e.run_number is not None else -1, e.seq)
        if best_key is None or key > best_key:
            best, best_key = e, key
    return best


def is_done_status(status: str | None) -> bool:
    return (status or "").lower() in DONE_STATUSES

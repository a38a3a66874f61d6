"""The coordination files as a ``Source``: task-queue.json, worker-status.json, progress.json,
agent-comms.jsonl and tasks/*-instructions.md read into the neutral model.

- A task is a queue entry: ``record`` (its ``queue`` is the entry's ``status``; claimed_by,
  claimed_at or started_at, created/completed times), ``files`` its instruction file (a
  ``TaskFile`` with ``path`` set; none when the file does not exist), and a trail merging the
  entry's timestamps with the comms-log lines that mention the task, or its worker during
  its claim.
- An agent is a worker of worker-status.json; its signals are its heartbeat, its
  ``last_task_claimed`` and its newest comms-log line. A worker the queue names but the
  status file does not is no agent (``has_state`` False).
- A queue file that does not parse keeps the last good parse on show and says where it
  broke (``CoordState.queue_error``); on a first read with no good parse its salvaged
  entries are shown.

Reading writes nothing: every file is opened through ``core.safeio`` (no FIFO, no device, a
size bound), and nothing is created beside them.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from qwarden.core.config import Config, CoordinationOptions
from qwarden.core.formats.coordination import layout
from qwarden.core.formats.coordination.parse import (
    CommLine,
    CommsParse,
    Entry,
    JsonError,
    QueueParse,
    WorkersParse,
    capabilities,
    decode,
    parse_comms,
    parse_queue,
    parse_workers,
    stamp,
    stamp_text,
)
from qwarden.core.formats.coordination.semantics import SEMANTICS
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
from qwarden.core.safeio import read_prefix, read_tail, read_whole
from qwarden.core.sources.base import Delta, WatchSpec
from qwarden.core.sources.errors import SourceError
from qwarden.core.textsafe import clean

INSTRUCTION_PREFIX = 64 * 1024  # an instruction file's title is in its first lines


@dataclass
class CoordState:
    """One read of the coordination files (what the rules look at besides the model)."""

    root: Path
    queue: QueueParse
    queue_error: JsonError | None  # the file now does not parse (queue is the last good one)
    queue_stale: bool  # ``queue`` is an older parse than the file on disk
    workers: WorkersParse
    comms: CommsParse
    progress: dict[str, Any] | None
    tasks: dict[str, Task]
    agents: dict[str, Agent]
    entries: dict[str, Entry]
    problems: list[ReadProblem] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    comms_by_task: dict[str, list[CommLine]] = field(default_factory=dict)
    comms_by_agent: dict[str, list[CommLine]] = field(default_factory=dict)
    existing: frozenset[str] = frozenset()  # relative paths that exist (instruction/context)

    def path_exists(self, rel: str) -> bool:
        return rel in self.existing


def _clean(v: Any, n: int = 300) -> str | None:
    """Untrusted text made plain; printable text (nearly all of it) is taken as it is."""
    if v is None:
        return None
    t = v if type(v) is str else str(v)
    if len(t) > n:
        t = t[:n]
    return t if t.isprintable() else clean(t, keep_newlines=False)


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, list):
        return tuple(str(x) for x in v if isinstance(x, (str, int)) and not isinstance(x, bool))
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return tuple(s.strip() for s in str(v).split(",") if s.strip())
    return ()


def meta(entry: Entry) -> dict[str, Any]:
    m = entry.raw.get("metadata")
    return m if isinstance(m, dict) else {}


def claimed_at_of(raw: dict[str, Any]) -> str | None:
    return stamp_text(raw.get("claimed_at")) or stamp_text(raw.get("started_at"))


_DEP_KEYS = ("depends_on", "dependencies", "blocked_by")


def depends_on(entry: Entry) -> tuple[str, ...]:
    m = meta(entry)
    raw = entry.raw
    if not m.keys() & _DEP_KEYS and not raw.keys() & _DEP_KEYS:
        return ()
    for key in _DEP_KEYS:
        if key in m:
            return _str_list(m[key])
        if key in entry.raw:
            return _str_list(entry.raw[key])
    return ()


def instruction_rel(entry: Entry) -> str:
    v = entry.raw.get("instruction_file")
    if type(v) is str and v and v[0] not in " ./" and v[-1] != " ":
        return v
    if isinstance(v, str) and v.strip():
        return v.strip().lstrip("./") if v.startswith("./") else v.strip()
    return layout.instruction_name(entry.tid)


def context_files(entry: Entry) -> tuple[str, ...]:
    return _str_list(entry.raw.get("context_files"))


def _safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and ".." not in parts and "\x00" not in rel


def read_state(root: Path, opts: CoordinationOptions,
               last_good: QueueParse | None = None) -> CoordState:
    """Read every coordination file once. Raises ``SourceError`` only when the queue file
    cannot be read at all (missing, a FIFO, too large) and no last good parse exists."""
    # Allocation-heavy and acyclic (like the engine's scan): a collection would only
    # rescan the heap, a third of the time at 100,000 entries.
    was = gc.isenabled()
    gc.disable()
    try:
        return _read_state(root, opts, last_good)
    finally:
        if was:
            gc.enable()


def read_workers(root: Path, opts: CoordinationOptions) -> CoordState:
    """The workers alone (status file and comms tail), no queue: what the write guard asks
    under the lock, where a full read of a 100,000-entry queue would hold the workers up."""
    return _read_state(root, opts, None, with_queue=False)


def _read_state(root: Path, opts: CoordinationOptions,
                last_good: QueueParse | None = None, with_queue: bool = True) -> CoordState:
    problems: list[ReadProblem] = []
    qpath = root / layout.QUEUE
    queue_error: JsonError | None = None
    stale = False
    try:
        data, _ = read_whole(qpath, opts.max_queue_bytes) if with_queue else (b"[]", None)
    except OSError as exc:
        if last_good is None:
            raise SourceError(f"{qpath}: {exc.strerror or exc}") from None
        problems.append(ReadProblem(str(qpath), f"cannot read: {exc.strerror or exc}"))
        qp, stale = last_good, True
    else:
        qp = parse_queue(data)
        if qp.error is not None:
            queue_error = qp.error
            problems.append(ReadProblem(str(qpath), f"not valid JSON at {qp.error.text()}"
                                        + ("; showing the last good read" if last_good
                                           else f"; {len(qp.entries)} entries salvaged")))
            if last_good is not None:
                qp, stale = last_good, True

    workers = WorkersParse(shape="none")
    wpath = root / layout.WORKERS
    try:
        wdata, _ = read_whole(wpath, 64 * 1024 * 1024)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(ReadProblem(str(wpath), f"cannot read: {exc.strerror or exc}"))
    else:
        workers = parse_workers(wdata)
        if workers.error is not None:
            problems.append(ReadProblem(str(wpath), f"not valid JSON at {workers.error.text()}"))

    comms = CommsParse()
    cpath = root / layout.COMMS
    try:
        size = os.stat(cpath).st_size
        cdata = read_tail(cpath, opts.comms_tail_bytes)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        problems.append(ReadProblem(str(cpath), f"cannot read: {getattr(exc, 'strerror', exc)}"))
    else:
        first = 1
        if size > opts.comms_tail_bytes:  # a tail: drop the torn first line, count unknown
            nl = cdata.find(b"\n")
            cdata = cdata[nl + 1:] if nl >= 0 else b""
            first = 0  # 0: line numbers are relative to the tail
        comms = parse_comms(cdata, first)

    progress = None
    try:
        pdata, _ = read_whole(root / layout.PROGRESS, 1024 * 1024)
        pobj, perr = decode(pdata)
        if isinstance(pobj, dict):
            progress = pobj
        elif perr is not None:
            problems.append(ReadProblem(str(root / layout.PROGRESS),
                                        f"not valid JSON at {perr.text()}"))
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(ReadProblem(str(root / layout.PROGRESS),
                                    f"cannot read: {exc.strerror or exc}"))

    st = CoordState(root=root, queue=qp, queue_error=queue_error, queue_stale=stale,
                    workers=workers, comms=comms, progress=progress, tasks={}, agents={},
                    entries={e.tid: e for e in qp.entries}, problems=problems)
    _index_comms(st)
    st.existing = _existing(root, st)
    _build_tasks(st, opts)
    _build_agents(st)
    _facts(st)
    return st


def _index_comms(st: CoordState) -> None:
    known = st.entries
    for line in st.comms.lines:
        for tid in line.ids:
            if tid in known:
                st.comms_by_task.setdefault(tid, []).append(line)
        st.comms_by_agent.setdefault(line.agent, []).append(line)


def _existing(root: Path, st: CoordState) -> frozenset[str]:
    """Which instruction and context files exist: one listing of tasks/ (100,000 stats would
    cost more), a stat for the few other paths named."""
    out: set[str] = set()
    try:
        with os.scandir(root / layout.TASKS_DIR) as it:
            for de in it:
                out.add(f"{layout.TASKS_DIR}/{de.name}")
    except OSError:
        pass
    others: set[str] = set()
    for e in st.entries.values():
        rel = instruction_rel(e)
        if not rel.startswith(layout.TASKS_DIR + "/") or rel.count("/") != 1:
            others.add(rel)
        others.update(context_files(e))
    for rel in others:
        if not _safe_rel(rel):
            continue
        if os.path.lexists(root / rel) or os.path.lexists(root.parent / rel):
            out.add(rel)
    return frozenset(out)


def _trail(st: CoordState, e: Entry, limit: int) -> tuple[TrailEvent, ...]:
    raw = e.raw
    evs: list[TrailEvent] = []
    created = stamp(raw.get("created_at"))
    if created is not None:
        evs.append(TrailEvent("CREATED", created, Side.DB))
    claimant = _clean(raw.get("claimed_by"), 200)
    claimed = stamp(raw.get("claimed_at")) or stamp(raw.get("started_at"))
    if claimed is not None:
        evs.append(TrailEvent("CLAIMED", claimed, Side.DB, claimant))
    done = stamp(raw.get("completed_at"))
    status = raw.get("status")
    if done is not None:
        kind = "FAILED" if status == "failed" else "COMPLETED"
        evs.append(TrailEvent(kind, done, Side.DB, _clean(raw.get("completed_by"), 200)))
    lines = list(st.comms_by_task.get(e.tid, ()))
    if claimant and status == "in_progress" and claimed is not None:
        for line in st.comms_by_agent.get(claimant, ()):
            if line.at is not None and line.at >= claimed and e.tid not in line.ids:
                lines.append(line)
    if limit and lines:
        lines.sort(key=lambda ln: ln.lineno)
        for line in lines[-limit:]:
            evs.append(TrailEvent("MESSAGE", line.at, Side.AGENT, line.agent, line.message,
                                  (("line", str(line.lineno)),)))
    evs.sort(key=lambda ev: (ev.at is None, ev.at.timestamp() if ev.at is not None else 0.0))
    return tuple(evs)


def _build_tasks(st: CoordState, opts: CoordinationOptions) -> None:
    """Records from the entries; the instruction file's TaskFile from the tasks/ listing
    alone (no read, no stat: 100,000 of each cost seconds and no rule needs them). Its trail
    (entry times and comms lines) is built when asked (``full_task``, ``history``).
    The common shapes are taken inline (plain printable strings); anything else goes
    through the careful helpers."""
    existing = st.existing
    tasks_dir = layout.TASKS_DIR
    names: dict[Any, str | None] = {None: None}  # worker names repeat: cleaned once each
    statuses: dict[str, str] = {}
    comms = st.comms_by_task
    tasks = st.tasks
    for tid, e in st.entries.items():
        raw = e.raw
        s = raw["status"]
        status = statuses.get(s)
        if status is None:
            status = statuses[s] = _clean(s.strip(), 60) or "?"
        m = raw.get("metadata")
        if type(m) is not dict:
            m = {}
        d = raw.get("description")
        title = d if type(d) is str and len(d) <= 300 and d.isprintable() \
            else _clean(d, 300)
        who = raw.get("claimed_by")
        claimed_by = names.get(who, _MISS) if type(who) is str or who is None else _MISS
        if claimed_by is _MISS:
            claimed_by = _clean(who, 200)
            if type(who) is str:
                names[who] = claimed_by
        to = raw.get("assigned_to")
        role = names.get(to, _MISS) if type(to) is str or to is None else _MISS
        if role is _MISS:
            role = _clean(to, 200)
            if type(to) is str:
                names[to] = role
        at = raw.get("claimed_at")
        if at is None:
            at = raw.get("started_at")
        lines = comms.get(tid)
        rec = TaskRecord(
            task_id=tid, queue=status, title=title,
            priority=_clean(m.get("priority"), 40) if "priority" in m else None,
            role=role, claimed_by=claimed_by, claimed_at_text=stamp_text(at),
            blocked_by=depends_on(e) if (m and not _DEP_KEYS_SET.isdisjoint(m))
            or not _DEP_KEYS_SET.isdisjoint(raw) else (),
            # a cancelled task is out of the lanes: it recycles no more
            attempt_count=None if status == "cancelled" or not (lines or m)
            else _attempts(m, lines),
            completed_at_text=stamp_text(raw.get("completed_at")),
            created_at_text=stamp_text(raw.get("created_at")))
        rel = raw.get("instruction_file")
        if not (type(rel) is str and rel and rel[0] not in " ./" and rel[-1] != " "):
            rel = instruction_rel(e)
        if rel in existing:
            tasks[tid] = Task(tid, rec, (TaskFile(
                task_id=tid, queue=tasks_dir, mtime=0.0, size=0, parseable=True,
                title=title or "", header=_EMPTY_HEADER, trail_complete=False, path=rel),))
        else:
            tasks[tid] = Task(tid, rec, ())


_MISS: Any = object()
_EMPTY_HEADER = Header()
_DEP_KEYS_SET = frozenset(("depends_on", "dependencies", "blocked_by"))


def full_file(st: CoordState, task: Task, limit: int) -> Task:
    """The task with its instruction file stat'ed, its title read and its trail built."""
    e = st.entries.get(task.task_id)
    if e is None or not task.files:
        return task
    f = task.files[0]
    return Task(task.task_id, task.record,
                (_instruction_file(st.root, task.task_id, f.path, _trail(st, e, limit)),))


def _instruction_file(root: Path, tid: str, rel: str, trail: tuple[TrailEvent, ...]
                      ) -> TaskFile:
    try:
        data = read_prefix(root / rel, INSTRUCTION_PREFIX)
        st = os.stat(root / rel)
    except (OSError, ValueError) as exc:
        return TaskFile(task_id=tid, queue=layout.TASKS_DIR, mtime=0.0, size=0,
                        parseable=False, problem=str(getattr(exc, "strerror", exc)), path=rel,
                        trail=trail)
    title = ""
    for line in data[:4096].decode("utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            title = clean(line.lstrip("#").strip().removeprefix("Task:").strip()[:200],
                          keep_newlines=False)
            break
    return TaskFile(task_id=tid, queue=layout.TASKS_DIR, mtime=st.st_mtime, size=st.st_size,
                    parseable=True, title=title, trail=trail, path=rel)


def _reset_line(msg: str) -> bool:
    m = msg.lower()
    return ("reset" in m and "pending" in m) or "requeue" in m or "re-queue" in m


def _attempts(m: dict[str, Any], lines: list[CommLine] | None) -> int | None:
    """Trips back to pending: the largest of metadata.retry_count / reset_count / attempts
    and the comms lines saying the task was reset (recycling_task reads it)."""
    best = None
    for k in ("retry_count", "reset_count", "attempts"):
        if k in m:
            v = _int(m[k])
            if v is not None and (best is None or v > best):
                best = v
    if lines:
        n = sum(1 for ln in lines if _reset_line(ln.message))
        if n and (best is None or n > best):
            best = n
    return best


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v if 0 <= v < 2**31 else None


def holders(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    """worker -> the in-progress tasks whose claimed_by names it."""
    out: dict[str, list[str]] = {}
    for tid, t in tasks.items():
        rec = t.record
        if rec is not None and rec.queue == "in_progress" and rec.claimed_by:
            out.setdefault(rec.claimed_by, []).append(tid)
    return out


def _build_agents(st: CoordState) -> None:
    held = holders(st.tasks)
    for name, info in st.workers.workers.items():
        sigs: list[Signal] = []
        hb = stamp(info.get("last_heartbeat"))
        if hb is not None:
            sigs.append(Signal("heartbeat", hb))
        claimed = stamp(info.get("last_task_claimed"))
        if claimed is not None:
            sigs.append(Signal("last_task_claimed", claimed))
        said = [ln for ln in st.comms_by_agent.get(name, ()) if ln.at is not None]
        if said:
            newest = max(said, key=lambda ln: ln.at)  # type: ignore[arg-type,return-value]
            assert newest.at is not None
            sigs.append(Signal("comms", newest.at,
                               newest.ids[0] if len(newest.ids) == 1 else None))
        status = _clean(info.get("status"), 40) or ""
        mine = held.get(name, [])
        st.agents[name] = Agent(
            name=name, has_state=True, running=(status == "active") if status else None,
            last_started=claimed, last_finished=stamp(info.get("last_task_completed")),
            current_task_id=mine[0] if len(mine) == 1 else None,
            current_task_source="task-queue.json claimed_by" if len(mine) == 1 else "",
            status_text=status, signals=tuple(sigs))


def _facts(st: CoordState) -> None:
    if st.progress is not None:
        for k in ("current_step", "total_steps", "status", "last_updated"):
            if k in st.progress:
                st.facts.append(Fact("queue", f"progress.{k}", _clean(st.progress[k]) or "",
                                     layout.PROGRESS, stamp(st.progress.get("last_updated"))))
    st.facts.append(Fact("queue", "workers_shape", st.workers.shape, layout.WORKERS))
    st.facts.append(Fact("queue", "queue_shape", st.queue.shape, layout.QUEUE))


def worker_caps(st: CoordState, name: str) -> tuple[str, ...]:
    info = st.workers.workers.get(name)
    return capabilities(info) if info else ()


class CoordSource:
    """The ``Source`` of a coordination root. Every read re-reads the few files whole (one
    JSON parse is the floor; the queue is one file) and keeps the last good queue parse."""

    format = "coordination"
    semantics = SEMANTICS
    has_record_side = True

    def __init__(self, root: Path | str, config: Config | None = None, live: bool = False,
                 follow: bool = False) -> None:
        found = layout.find_root(root)
        if found is None:
            raise SourceError(f"{root}: no {layout.QUEUE} here")
        self.root = found.resolve()
        self.label = str(self.root)
        self.journal_root: Path | None = self.root  # qwarden's actions journal in ROOT/warden/
        self.config = config or Config()
        self.opts = self.config.coordination
        self.live = live
        self.follow = follow
        self.state: CoordState | None = None
        self._last_good: QueueParse | None = None
        self._view: Any = None  # the rules' view of the current state, per judging time
        # This source's meaning: the format's, with its clock (a worker is dead after
        # [coordination] dead_after_s) and its own rules bound to what it read.
        self.semantics = dataclasses.replace(
            SEMANTICS,
            thresholds=MappingProxyType({
                "zombie_after_s": self.opts.dead_after_s,
                "stale_after_s": self.opts.stale_after_s,
                "finished_grace_s": self.opts.dead_after_s}),
            task_rules=(("coordination", self._task_rule),),
            subject_rules=(("coordination", self._subject_rule),))

    # -- the format's own rules, over what this source read ---------------------------------
    def view(self, as_of: datetime) -> Any:
        from qwarden.core.formats.coordination.rules import view_of

        st = self._st()
        v = self._view
        if v is None or v.state is not st or v.as_of != as_of:
            v = self._view = view_of(st, as_of, self.config)
        return v

    def _task_rule(self, j: Any, rctx: Any) -> list[Any]:
        v = self._view
        if v is None or v.state is not self.state or v.as_of != rctx.as_of:
            v = self.view(rctx.as_of)
        return v.per_task.get(j.task.task_id, ())  # type: ignore[no-any-return]

    def _subject_rule(self, rctx: Any, facts: Any) -> list[Any]:
        from qwarden.core.formats.coordination.rules import subject_findings

        return subject_findings(self.view(rctx.as_of))

    # -- reading ---------------------------------------------------------------------------
    def scan(self) -> None:
        st = read_state(self.root, self.opts, self._last_good)
        if st.queue_error is None and not st.queue_stale:
            self._last_good = st.queue
        self.state = st

    def _st(self) -> CoordState:
        if self.state is None:
            self.scan()
        assert self.state is not None
        return self.state

    def all_tasks(self) -> dict[str, Task]:
        return dict(self._st().tasks)

    def agents(self) -> dict[str, Agent]:
        return dict(self._st().agents)

    def problems(self) -> tuple[ReadProblem, ...]:
        return tuple(self._st().problems)

    def facts(self) -> tuple[Fact, ...]:
        return tuple(self._st().facts)

    def task(self, task_id: str) -> Task | None:
        return self._st().tasks.get(task_id)

    def _delta(self) -> Delta:
        from qwarden.core.formats.coordination.rules import derived
        from qwarden.core.timefmt import UTC

        old = self.state
        now = datetime.now(UTC)
        before = derived(self.view(now)) if old is not None else {}
        self.scan()
        new = self._st()
        if old is None:
            return Delta(set(new.tasks), set(new.agents), True)
        # an entry's other fields (result, error, metadata) are not in the Task: compare raw
        tids = {t for t in old.entries.keys() | new.entries.keys()
                if old.tasks.get(t) != new.tasks.get(t)
                or (old.entries[t].raw if t in old.entries else None)
                != (new.entries[t].raw if t in new.entries else None)}
        after = derived(self.view(now))
        tids |= {t for t in before.keys() | after.keys()
                 if before.get(t) != after.get(t) and t in new.tasks}
        names = {a for a in old.agents.keys() | new.agents.keys()
                 if old.agents.get(a) != new.agents.get(a)}
        return Delta(tids, names, old.facts != new.facts
                     or old.queue_error != new.queue_error)

    def on_paths(self, paths: set[str]) -> Delta:
        """Re-read when a coordination file or an instruction file changed (the journal's
        own writes, lock files and writers' temp files are no change of the queue)."""
        if not any(self._relevant(p) for p in paths):
            return Delta()
        return self._delta()

    def _relevant(self, path: str) -> bool:
        try:
            rel = Path(path).resolve().relative_to(self.root)
        except (ValueError, OSError):
            return False
        parts = rel.parts
        if not parts or parts[0] == "warden":
            return False
        name = parts[-1]
        if name.endswith((".lock", ".tmp")) or name.startswith("."):
            return False
        return parts[0] == layout.TASKS_DIR or name in (
            layout.QUEUE, layout.WORKERS, layout.COMMS, layout.PROGRESS)

    def on_marker(self) -> Delta:
        return Delta()

    def look_again(self, ids: Iterable[str]) -> Delta:
        return self._delta()

    def rescan(self) -> Delta:
        return self._delta()

    def watch_spec(self) -> WatchSpec:
        return WatchSpec(paths=(self.root,))

    def scan_progress(self) -> str:
        return "" if self.state is not None else f"reading {layout.QUEUE}"

    def full_task(self, task: Task) -> Task:
        return full_file(self._st(), task, self.opts.comms_per_task)

    def history(self, task_id: str) -> tuple[TrailEvent, ...]:
        st = self._st()
        e = st.entries.get(task_id)
        return _trail(st, e, 0 if e is None else 1000) if e is not None else ()

    def raw_record(self, task_id: str) -> Mapping[str, Any]:
        e = self._st().entries.get(task_id)
        return {} if e is None else dict(e.raw)

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        lines = self._st().comms_by_agent.get(agent_name, ())
        out = "\n".join(f"{ln.at.isoformat() if ln.at else '-'} {ln.message}"
                        for ln in lines[-50:])
        return out[-max_bytes:]

    def close(self) -> None:
        pass

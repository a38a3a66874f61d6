"""The task API's ``tasks`` table as a ``Source``, from SQLite (``sqlite.SqliteTasks``) or
PostgreSQL (``pg.PgTasks``): one copy of the truth, no task files.

- A task is a row: its ``TaskRecord`` (``queue`` is ``status``, ``claimed_by`` the
  assigned_agent, ``claimed_at`` the claim's own note, ``blocked_by`` the ``dependencies``)
  and its ``RowFacts`` (the columns the rules cite).
- An agent is an assignee of in_progress rows; its signals, per task, are the claim and a
  heartbeat sent after that claim (``parse.claim_signals``). No worker table exists, so
  nothing else is known of it.
- Changes: the backend's change marker (SQLite ``PRAGMA data_version`` + stat; PostgreSQL
  the WAL position, then the table's ``xmin`` sum) moves, then each row's change key says
  which rows to re-read.

Every read is read-only (see the backends); a database that cannot be read raises
``SourceError``, a bad cell is a ``ReadProblem``.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from qwarden.core.config import Config
from qwarden.core.formats.taskapi import rules
from qwarden.core.formats.taskapi.kinds import FORMAT
from qwarden.core.formats.taskapi.layout import journal_root
from qwarden.core.formats.taskapi.parse import (
    CLAIM_LINE,
    RowFacts,
    claim_signals,
    raw_dict,
    read_row,
    utc,
)
from qwarden.core.formats.taskapi.semantics import SEMANTICS
from qwarden.core.model import (
    Agent,
    Fact,
    ReadProblem,
    Side,
    Signal,
    Task,
    TaskRecord,
    TrailEvent,
)
from qwarden.core.sources.base import Delta, WatchSpec
from qwarden.core.textsafe import clean


class TaskTable(Protocol):
    """What a backend gives the source (``sqlite.SqliteTasks``, ``pg.PgTasks``)."""

    label: str
    progress: str

    @property
    def has_check_results(self) -> bool: ...
    def read_rows(self, ids: Iterable[str] | None = None
                  ) -> list[tuple[tuple[Any, ...], Hashable]]: ...
    def change_keys(self) -> dict[str, Hashable]: ...
    def raw_row(self, task_id: str) -> tuple[list[str], tuple[Any, ...]] | None: ...
    def marker(self) -> Any: ...
    def close(self) -> None: ...


class TaskApiSource:
    """The ``Source`` of one ``tasks`` table."""

    format = FORMAT
    has_record_side = False  # one copy of the truth: no file side to match it against

    def __init__(self, table: TaskTable, root: Path | str, config: Config | None = None,
                 live: bool = False, follow: bool = False) -> None:
        self.table = table
        # what the operator pointed at, as every view shows it: the DB file, or the URL
        # without its password (the console labels its header with ``root``); the backend
        # alone keeps the DSN it connects with
        self.root = root if isinstance(root, Path) else table.label  # type: ignore[assignment]
        self.label = table.label
        self.config = config or Config()
        # where the write path journals (its accepts and retries are reviews to the judge)
        self.journal_root: Path | None = journal_root(self.root, self.config)
        self.live = live
        self.follow = follow
        opts = self.config.taskapi
        self._records: dict[str, TaskRecord] = {}
        self._facts: dict[str, RowFacts] = {}
        self._keys: dict[str, Hashable] = {}
        self._tasks: dict[str, Task] = {}
        self._agents: dict[str, Agent] = {}
        self._problems: dict[str, list[ReadProblem]] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._held_by: dict[str, set[str]] = {}  # agent -> its in_progress tasks
        self._by_signature: dict[str, set[str]] = {}  # failure signature -> blocked tasks
        self._view = rules.TableView({})
        self._scanned = False
        # This source's meaning: the format's, with its clock ([taskapi] in the config) and
        # its rules bound to what it read.
        self.semantics = dataclasses.replace(
            SEMANTICS,
            thresholds=MappingProxyType({"zombie_after_s": opts.zombie_after_s,
                                         "stale_after_s": opts.stale_after_s}),
            task_rules=(("taskapi", self._task_rule),))

    # -- the format's rules, over what this source read -----------------------------------
    def _task_rule(self, j: Any, rctx: Any) -> list[Any]:
        return rules.task_findings(j, rctx, self._view)

    @property
    def view(self) -> rules.TableView:
        return self._view

    # -- reading -------------------------------------------------------------------------
    def scan(self) -> None:
        # Allocation-heavy and acyclic (as every format's scan): a collection would only
        # rescan the heap of new records.
        was = gc.isenabled()
        gc.disable()
        try:
            self._scan()
        finally:
            if was:
                gc.enable()

    def _scan(self) -> None:
        rows = self.table.read_rows(None)
        self._records, self._facts, self._keys, self._problems = {}, {}, {}, {}
        twice: dict[str, int] = {}
        for row, key in rows:
            tid = self._take_row(row, key)
            if tid is not None and tid in twice:
                twice[tid] += 1
            elif tid is not None:
                twice[tid] = 1
        for tid, n in twice.items():
            if n > 1:  # (a table without comic-pile's UNIQUE (task_id))
                self._problems.setdefault(tid, []).append(ReadProblem(
                    f"{self.label} tasks[{tid}]", f"task_id on {n} rows: the last read "
                    "is shown"))
        self._tasks = {tid: Task(tid, rec, ()) for tid, rec in self._records.items()}
        self._groups = rules.failure_groups(self._facts.values())
        self._agents = self._build_agents(self._facts.values())
        self._held_by, self._by_signature = {}, {}
        self._index((), self._facts.values())
        self._view = rules.TableView(self._facts, self._groups, self.table.has_check_results)
        self._scanned = True

    def _take_row(self, row: tuple[Any, ...], key: Hashable) -> str | None:
        problems: list[ReadProblem] = []
        got = read_row(row, self.label, problems)
        if got is None:
            if problems:
                self._problems.setdefault("", []).extend(problems)
            return None
        rec, facts = got
        tid = rec.task_id
        self._records[tid] = rec
        self._facts[tid] = facts
        self._keys[tid] = key
        if problems:
            self._problems[tid] = problems
        else:
            self._problems.pop(tid, None)
        return tid

    @staticmethod
    def _build_agents(facts: Iterable[RowFacts]) -> dict[str, Agent]:
        by_agent: dict[str, dict[str | None, tuple[Signal, ...]]] = {}
        for f in facts:
            if f.status == "in_progress" and f.agent:
                by_agent.setdefault(f.agent, {})[f.task_id] = claim_signals(f)
        return {name: Agent(name=name, has_state=True,
                            signals=tuple(s for sigs in index.values() for s in sigs),
                            current_task_source="tasks.assigned_agent",
                            signals_by_task=MappingProxyType(index))
                for name, index in by_agent.items()}

    def _ensure(self) -> None:
        if not self._scanned:
            self.scan()

    def all_tasks(self) -> dict[str, Task]:
        self._ensure()
        return dict(self._tasks)

    def agents(self) -> dict[str, Agent]:
        self._ensure()
        return dict(self._agents)

    def problems(self) -> tuple[ReadProblem, ...]:
        return tuple(p for ps in self._problems.values() for p in ps)

    def facts(self) -> tuple[Fact, ...]:
        return ()

    def task(self, task_id: str) -> Task | None:
        self._ensure()
        return self._tasks.get(task_id)

    def row_facts(self, task_id: str) -> RowFacts | None:
        """The columns the rules read of one row, as last read."""
        return self._facts.get(task_id)

    # -- changes -------------------------------------------------------------------------
    def _forget(self, tid: str) -> None:
        for d in (self._records, self._facts, self._keys, self._tasks, self._problems):
            d.pop(tid, None)  # type: ignore[attr-defined]

    def _reread(self, changed: set[str], gone: set[str]) -> Delta:
        """Re-read ``changed`` rows (and drop ``gone`` ones); the delta names them, the
        agents they were or are claimed by, and the tasks whose failure group changed."""
        old_facts = {tid: self._facts.get(tid) for tid in changed | gone}
        for tid in gone:
            self._forget(tid)
        seen: set[str] = set()
        if changed:
            for row, key in self.table.read_rows(changed):
                got = self._take_row(row, key)
                if got is not None:
                    seen.add(got)
                    self._tasks[got] = Task(got, self._records[got], ())
        for tid in changed - seen:  # deleted between the key pass and the read
            gone.add(tid)
            self._forget(tid)
        delta = Delta(tasks=set(changed | gone))
        new_facts = [f for tid in seen if (f := self._facts.get(tid)) is not None]
        names = {f.agent for f in old_facts.values() if f is not None and f.agent}
        names |= {f.agent for f in new_facts if f.agent}
        if names:
            holders = [t for n in names for t in self._held_by.get(n, ())]
            holders += [f.task_id for f in new_facts if f.agent in names]
            fresh = self._build_agents(f for t in set(holders)
                                       if (f := self._facts.get(t)) is not None
                                       and f.agent in names)
            for n in names:
                if self._agents.get(n) != fresh.get(n):
                    delta.agents.add(n)
                if n in fresh:
                    self._agents[n] = fresh[n]
                else:
                    self._agents.pop(n, None)
        self._index(old_facts.values(), new_facts)
        sigs = {f.failure_signature for f in old_facts.values() if f and f.failure_signature}
        sigs |= {f.failure_signature for f in new_facts if f.failure_signature}
        if sigs:
            groups = dict(self._groups)
            for sig in sigs:
                members = tuple(sorted(self._by_signature.get(sig, ())))
                before = groups.get(sig, ())
                if members != before:
                    delta.tasks |= set(members) | set(before)
                if members:
                    groups[sig] = members
                else:
                    groups.pop(sig, None)
            self._groups = groups
        self._view = rules.TableView(self._facts, self._groups, self.table.has_check_results)
        return delta

    def _index(self, old: Iterable[RowFacts | None], new: Iterable[RowFacts]) -> None:
        """Keep who holds what (agent -> in_progress tasks) and which blocked tasks share a
        failure signature, so a change re-reads and regroups only what it touched."""
        for f in old:
            if f is None:
                continue
            if f.agent:
                self._held_by.get(f.agent, set()).discard(f.task_id)
            if f.failure_signature:
                self._by_signature.get(f.failure_signature, set()).discard(f.task_id)
        for f in new:
            if f.status == "in_progress" and f.agent:
                self._held_by.setdefault(f.agent, set()).add(f.task_id)
            if f.status == "blocked" and f.failure_signature:
                self._by_signature.setdefault(f.failure_signature, set()).add(f.task_id)

    def _diff(self) -> Delta:
        self._ensure()
        keys = self.table.change_keys()
        changed = {t for t, k in keys.items() if self._keys.get(t) != k}
        gone = set(self._keys) - set(keys)
        if not changed and not gone:
            return Delta()
        return self._reread(changed, gone)

    def on_paths(self, paths: set[str]) -> Delta:
        return Delta()  # no files: the change marker says when the table was written

    def on_marker(self) -> Delta:
        return self._diff()

    def look_again(self, ids: Iterable[str]) -> Delta:
        self._ensure()
        return self._reread(set(ids), set())

    def rescan(self) -> Delta:
        return self._diff()

    def watch_spec(self) -> WatchSpec:
        # 0.5 s: a write on screen within 1.5 s even when it brings a finding, whose second
        # look takes 0.5 s more (one marker read costs ~0.1 ms idle)
        return WatchSpec(paths=(), marker=self.table.marker, marker_interval_s=0.5)

    def scan_progress(self) -> str:
        return self.table.progress

    # -- details on demand ---------------------------------------------------------------
    def full_task(self, task: Task) -> Task:
        return task

    def raw_record(self, task_id: str) -> Mapping[str, Any]:
        got = self.table.raw_row(task_id)
        return {} if got is None else raw_dict(*got)

    def history(self, task_id: str) -> tuple[TrailEvent, ...]:
        """status_notes, one event per line (the claim's line as CLAIMED), the heartbeat,
        and the row's created/updated stamps."""
        got = self.table.raw_row(task_id)
        if got is None:
            return ()
        row = dict(zip(*got, strict=True))
        out: list[TrailEvent] = []
        created = utc(row.get("created_at"))
        if created is not None:
            out.append(TrailEvent("CREATED", created, Side.DB))
        notes = row.get("status_notes")
        if isinstance(notes, str):
            for line in notes.splitlines()[-200:]:
                line = line.strip()
                if not line:
                    continue
                m = CLAIM_LINE.match(line)
                if m is not None:
                    out.append(TrailEvent("CLAIMED", utc(m.group("at")), Side.NOTES,
                                          clean(m.group("agent"), keep_newlines=False)[:100],
                                          clean(line, keep_newlines=False)[:300]))
                    continue
                at = None
                if line.startswith("[") and "]" in line:
                    at = utc(line[1:line.index("]")])
                out.append(TrailEvent("NOTE", at, Side.NOTES, None,
                                      clean(line, keep_newlines=False)[:300]))
        hb = utc(row.get("last_heartbeat"))
        if hb is not None:
            out.append(TrailEvent("HEARTBEAT", hb, Side.DB,
                                  clean(str(row.get("assigned_agent") or ""),
                                        keep_newlines=False)[:100] or None))
        return tuple(out)

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        return ""  # the API keeps no agent log

    def close(self) -> None:
        self.table.close()


def open_source(root: Path | str, config: Config | None = None, live: bool = False,
                follow: bool = False) -> TaskApiSource:
    """The source of an SQLite file or a PostgreSQL URL (raises ``SourceError``)."""
    from qwarden.core.formats.taskapi.layout import db_root, is_dsn

    config = config or Config()
    where = db_root(root)
    if is_dsn(where):
        from qwarden.core.formats.taskapi.layout import remember_dsn
        from qwarden.core.formats.taskapi.pg import PgTasks

        remember_dsn(str(where))
        table: Any = PgTasks(str(where), config.taskapi)
    else:
        from qwarden.core.formats.taskapi.sqlite import SqliteTasks

        lim = config.limits
        table = SqliteTasks(where, lim.db_busy_timeout_ms, lim.db_busy_retries)
    try:
        table.conn()  # fail now, with the reason, not at the first read
    except BaseException:
        table.close()
        raise
    return TaskApiSource(table, where, config, live, follow)

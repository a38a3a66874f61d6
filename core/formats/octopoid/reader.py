"""Octopoid v1 source: reads ``.orchestrator/`` (queue dirs, state.db, agents/) strictly read-only.

Everything Octopoid-specific lives here; the rest of qwarden sees ``core.model`` objects only.
The queue dirs are read by ``queue_files.QueueFiles``, which keeps a stat cache so a rescan
re-reads only files whose (mtime, size, inode) moved.
"""

from __future__ import annotations

import errno
import json
import math
import operator
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qwarden.core import safeio
from qwarden.core.formats.octopoid.queue_files import (
    ColdStart,
    FileScan,
    NeedsTrail,
    QueueFiles,
    SameId,
    relpath_under,
)
from qwarden.core.formats.octopoid.semantics import EXPECTED_DIRS, FORMAT, QUEUES  # noqa: F401
from qwarden.core.formats.octopoid.taskfile import TASK_FILE_RE
from qwarden.core.model import Agent, ReadProblem, Side, Signal, TaskFile, TaskRecord, TrailEvent
from qwarden.core.sources.errors import SourceError
from qwarden.core.sources.sqlite_ro import (  # noqa: F401  (re-exported)
    COPY_MARK,
    DB_ERRORS,
    ReadOnlySQLite,
    _db_message,
)
from qwarden.core.timefmt import from_epoch, parse_any, parse_db_time, parse_local_iso

TASK_COLUMNS = (
    "id", "file_path", "queue", "priority", "complexity", "role", "branch", "blocked_by",
    "claimed_by", "claimed_at", "commits_count", "turns_used", "attempt_count", "has_plan",
    "plan_id", "project_id", "auto_accept", "rejection_count", "pr_number", "pr_url", "checks",
    "check_results", "needs_rebase", "last_rebase_attempt_at", "staging_url", "submitted_at",
    "completed_at", "created_at", "updated_at",
)
# Cheap columns compared to find which rows changed after PRAGMA data_version moved.
CHANGE_COLUMNS = ("id", "queue", "claimed_by", "claimed_at", "updated_at", "attempt_count",
                  "rejection_count", "commits_count", "check_results", "blocked_by",
                  "submitted_at", "completed_at", "file_path", "priority")


# ---------------------------------------------------------------- root discovery

def _looks_like_root(p: Path) -> bool:
    return (p / "shared" / "queue").is_dir() or (p / "state.db").is_file()


def resolve_root(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> Path:
    """``--root`` (the ``.orchestrator`` dir or its parent), else ``QWARDEN_ROOT``, else walk
    up from the working directory like git does."""
    env = dict(os.environ) if env is None else env
    given = explicit if explicit is not None else env.get("QWARDEN_ROOT") or None
    if given is not None:
        p = Path(given).expanduser()
        if not p.exists():
            raise SourceError(f"{p}: no such directory")
        if not p.is_dir():
            raise SourceError(f"{p}: not a directory")
        if p.name != ".orchestrator" and (p / ".orchestrator").is_dir():
            p = p / ".orchestrator"
        if not _looks_like_root(p):
            raise SourceError(f"{p}: not an Octopoid state dir (no shared/queue/ or state.db)")
        return p.resolve()
    here = (cwd or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if d.name == ".orchestrator" and _looks_like_root(d):
            return d
        cand = d / ".orchestrator"
        if cand.is_dir() and _looks_like_root(cand):
            return cand.resolve()
    raise SourceError(f"{here}: no .orchestrator directory here or above "
                      "(use --root or QWARDEN_ROOT)")


# ---------------------------------------------------------------- files

class OctopoidReader(ReadOnlySQLite):
    """Reads one ``.orchestrator`` root: files, rows, agents. Holds caches, never writes.
    (``source.OctopoidSource`` builds the supervised state on top of it.)"""

    format = FORMAT
    lanes = QUEUES

    def __init__(self, root: Path, max_file_bytes: int = 256 * 1024, busy_retries: int = 5,
                 busy_timeout_ms: int = 2000, keep_stats: bool = True) -> None:
        self.root = Path(root)
        self.keep_stats = keep_stats  # False: a one-shot read, nothing to compare with later
        self.root_real = os.path.realpath(self.root)
        self.queue_dir = self.root / "shared" / "queue"
        self.notes_dir = self.root / "shared" / "notes"
        self.agents_dir = self.root / "agents"
        self.db_path = self.root / "state.db"
        self.max_file_bytes = max_file_bytes
        self.busy_retries = busy_retries
        self.busy_timeout_ms = busy_timeout_ms
        self.queue_files = QueueFiles(self.root, QUEUES, max_file_bytes, keep_stats)
        self._columns: tuple[str, ...] | None = None
        self.connected_uri: str | None = None
        # task id -> cells of its row that were out of range (read as missing)
        self.cell_problems: dict[str, list[ReadProblem]] = {}

    # -- paths ---------------------------------------------------------------
    def relpath(self, path: str | os.PathLike[str]) -> str:
        return relpath_under(self.root, path)

    def task_file_path(self, queue: str, task_id: str) -> Path:
        """Where a task's file lives in a queue dir. Refuses ids that would leave the root."""
        if queue not in QUEUES or not TASK_FILE_RE.match(f"TASK-{task_id}.md"):
            raise ValueError(f"not a task location: {queue!r}/{task_id!r}")
        return self.queue_dir / queue / f"TASK-{task_id}.md"

    def watch_paths(self) -> list[Path]:
        return [p for p in (self.queue_dir, self.agents_dir, self.notes_dir) if p.is_dir()]

    # -- task files ----------------------------------------------------------
    @property
    def files(self) -> dict[str, TaskFile]:
        return self.queue_files.files

    @property
    def files_read(self) -> int:
        """Files read by the scan in progress (its progress, for a console)."""
        return self.queue_files.files_read

    def start_scan(self) -> ColdStart | None:
        """Begin a first file scan before the DB is read (see ``QueueFiles.start``)."""
        return self.queue_files.start()

    def scan_files(self, needs_trail: NeedsTrail | None = None, same_id: SameId | None = None,
                   started: ColdStart | None = None) -> FileScan:
        return self.queue_files.scan(needs_trail, same_id, started)

    def forget_files(self) -> None:
        self.queue_files.forget()

    def read_one(self, rel: str, full: bool = True) -> tuple[TaskFile | None, list[ReadProblem]]:
        """Re-read one queue file after a watch event (None: it is gone)."""
        return self.queue_files.read_one(rel, full)

    def files_of(self, task_id: str) -> list[tuple[str, TaskFile]]:
        """The scanned copies of one task, by relpath order."""
        out = []
        files = self.queue_files.files
        for q in _SORTED_QUEUES:
            rel = f"shared/queue/{q}/TASK-{task_id}.md"
            f = files.get(rel)
            if f is not None:
                out.append((rel, f))
        return out

    def read_text(self, rel: str, limit: int | None = None) -> str:
        """Bounded text of a file under the root, for the detail view (replacement chars)."""
        path = self.root / rel
        if not safeio.within(self.root_real, str(path)):
            raise ValueError(f"{rel}: outside the root")
        return safeio.read_prefix(path, limit or self.max_file_bytes).decode(
            "utf-8", errors="replace")

    # -- database ------------------------------------------------------------
    def db_exists(self) -> bool:
        return self.db_path.is_file()

    def database_enabled(self) -> bool:
        """agents.yaml ``database: enabled: false`` means file-only mode (no state.db)."""
        try:
            text = safeio.read_prefix(self.root / "agents.yaml", 64 * 1024).decode(
                "utf-8", errors="replace")
        except OSError:
            return True
        m = re.search(r"^database:\s*\n(?:[ \t]+.*\n)*?[ \t]+enabled:\s*(\w+)", text, re.M)
        return not (m and m.group(1).lower() in ("false", "no", "off", "0"))

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        cols = self._retry(lambda: [r[1] for r in conn.execute("PRAGMA table_info(tasks)")])
        if not cols:
            raise SourceError(f"{self.db_path}: not an Octopoid state.db (no tasks table)")
        if "id" not in cols or "queue" not in cols:
            raise SourceError(f"{self.db_path}: not an Octopoid state.db "
                              "(tasks table lacks id/queue)")
        known = [c for c in TASK_COLUMNS if c in cols]
        extra = [c for c in cols if c not in TASK_COLUMNS]
        self._columns = tuple(known + extra)

    def read_records(self, conn: sqlite3.Connection, ids: Iterable[str] | None = None,
                     keys: dict[str, int] | None = None) -> dict[str, TaskRecord]:
        """Rows as TaskRecords: all of them, or just ``ids`` (the changed ones). ``keys``,
        if given, is filled with each row's change key (as ``change_keys`` computes it) from
        the same rows, sparing the cold scan a second pass over the table."""
        have = self._columns or ("id", "queue")
        # only what a TaskRecord keeps (unused columns, pr_url, checks, ..., would double the
        # rows held in memory at 100,000 tasks), in _RECORD_COLS order: one the table lacks
        # comes as NULL
        sql = "SELECT " + ", ".join(_q(c) if c in have else f"NULL AS {_q(c)}"
                                    for c in _RECORD_COLS) + " FROM tasks"
        out: dict[str, TaskRecord] = {}
        bad: list[tuple[str, str, Any]] = []
        ids = None if ids is None else list(ids)
        read = record_reader(bad)
        key_of = None
        if keys is not None:
            pos = {c: i for i, c in enumerate(_RECORD_COLS)}
            idx = [pos[c] for c in self._change_columns()[1:] if c in pos]
            pick = operator.itemgetter(*idx)
            # the same tuple change_keys hashes (itemgetter of one index gives a bare value)
            key_of = pick if len(idx) > 1 else (lambda row: (pick(row),))
        try:
            for batch in self._row_batches(conn, sql, ids):
                for row in batch:
                    rec = read(row)
                    if rec is None:
                        continue
                    out[rec.task_id] = rec
                    if key_of is not None and keys is not None:
                        raw = row[0]
                        keys[rec.task_id if raw == rec.task_id else str(raw)] = \
                            hash(key_of(row))
        except DB_ERRORS as exc:
            if _not_utf8_cell(exc) and conn.text_factory is not lenient_text:
                conn.text_factory = lenient_text  # one bad cell is not a bad database
                return self.read_records(conn, ids, keys)
            raise SourceError(f"{self.db_path}: {_db_message(exc)}") from None
        if ids is None:
            self.cell_problems.clear()
        else:
            for tid in list(self.cell_problems):
                if tid in out or tid in ids:
                    del self.cell_problems[tid]
        for tid, col, raw in bad:
            self.cell_problems.setdefault(tid, []).append(ReadProblem(
                f"state.db tasks[{tid}].{col}", f"unreadable value {_short_repr(raw)} "
                "(out of range): read as missing"))
        return out

    def _row_batches(self, conn: sqlite3.Connection, sql: str,
                     ids: Iterable[str] | None) -> Iterator[list[tuple[Any, ...]]]:
        """Rows in batches, so 100,000 rows never sit in one list beside their records.
        Busy retries cover the first step, where SQLite takes its read lock."""
        if ids is None:
            cur = self._retry(lambda: conn.execute(sql))
            while batch := cur.fetchmany(4096):
                yield batch
            return
        id_list = list(ids)
        for i in range(0, len(id_list), 500):
            chunk = id_list[i:i + 500]
            q = sql + f" WHERE id IN ({','.join('?' * len(chunk))})"
            yield self._retry(lambda q=q, chunk=chunk: conn.execute(q, chunk).fetchall())

    def _change_columns(self) -> list[str]:
        return [c for c in CHANGE_COLUMNS if self._columns is None or c in self._columns]

    def read_row(self, conn: sqlite3.Connection, task_id: str) -> dict[str, Any]:
        """Every column of one row, for the detail view."""
        try:
            cur = self._retry(lambda: conn.execute("SELECT * FROM tasks WHERE id = ?",
                                                   (task_id,)))
            row = cur.fetchone()
        except DB_ERRORS as exc:
            if _not_utf8_cell(exc) and conn.text_factory is not lenient_text:
                conn.text_factory = lenient_text
                return self.read_row(conn, task_id)
            return {}
        if row is None:
            return {}
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def change_keys(self, conn: sqlite3.Connection) -> dict[str, int]:
        """A light per-row fingerprint (hash of the columns that matter) to tell which rows
        changed; then only those are read whole."""
        cols = self._change_columns()
        sql = f"SELECT {', '.join(_q(c) for c in cols)} FROM tasks"
        try:
            rows = self._retry(lambda: conn.execute(sql).fetchall())
        except DB_ERRORS as exc:
            if _not_utf8_cell(exc) and conn.text_factory is not lenient_text:
                conn.text_factory = lenient_text
                return self.change_keys(conn)
            raise SourceError(f"{self.db_path}: {_db_message(exc)}") from None
        return {str(r[0]): hash(r[1:]) for r in rows if r[0] is not None}

    def cell_problem_list(self) -> tuple[ReadProblem, ...]:
        """The DB cells the last reads could not use (out-of-range numbers), as problems."""
        return tuple(p for ps in self.cell_problems.values() for p in ps)

    def read_agent_rows(self, conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(agents)")]
            if "name" not in cols:
                return {}
            rows = self._retry(lambda: conn.execute(
                f"SELECT {', '.join(_q(c) for c in cols)} FROM agents").fetchall())
        except DB_ERRORS:
            return {}
        return {str(r[cols.index("name")]): dict(zip(cols, r, strict=True)) for r in rows}

    def read_history(self, conn: sqlite3.Connection, task_id: str) -> tuple[TrailEvent, ...]:
        """DB task_history for one task (loaded on demand for the trace, not at scan time)."""
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(task_history)")]
            if "task_id" not in cols or "event" not in cols:
                return ()
            want = [c for c in ("id", "event", "agent", "details", "timestamp") if c in cols]
            rows = self._retry(lambda: conn.execute(
                f"SELECT {', '.join(want)} FROM task_history WHERE task_id = ? ORDER BY "
                f"{'id' if 'id' in want else 'rowid'}", (task_id,)).fetchall())
        except DB_ERRORS:
            return ()
        out = []
        for r in rows:
            d = dict(zip(want, r, strict=True))
            out.append(TrailEvent(kind=str(d.get("event") or "").upper(),
                                  at=parse_db_time(d.get("timestamp")), side=Side.DB,
                                  actor=_str(d.get("agent")), detail=_str(d.get("details")) or ""))
        return tuple(out)

    # -- notes ---------------------------------------------------------------
    _ATTEMPT_RE = re.compile(r"^## Attempt (\d+)\s*[—-]+\s*(.*?)\s*\((.*?)\)\s*$", re.M)

    def read_notes(self, task_id: str) -> tuple[TrailEvent, ...]:
        try:
            path = self.notes_dir / f"TASK-{task_id}.md"
            if not TASK_FILE_RE.match(path.name):
                return ()
            text = safeio.read_prefix(path, self.max_file_bytes).decode("utf-8",
                                                                        errors="replace")
        except OSError:
            return ()
        out = []
        matches = list(self._ATTEMPT_RE.finditer(text))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = text[m.end():end].strip()
            first = body.splitlines()[0] if body else ""
            out.append(TrailEvent(kind="ATTEMPT", at=parse_local_iso(m.group(3)), side=Side.NOTES,
                                  actor=m.group(2) or None, detail=f"#{m.group(1)} {first}".strip(),
                                  fields=(("ATTEMPT", m.group(1)),)))
        return tuple(out)

    # -- agents --------------------------------------------------------------
    def read_agents(self, db_rows: dict[str, dict[str, Any]] | None = None,
                    check_pids: bool = False) -> tuple[dict[str, Agent], list[ReadProblem]]:
        problems: list[ReadProblem] = []
        agents: dict[str, Agent] = {}
        names: set[str] = set(db_rows or {})
        if self.agents_dir.is_dir():
            try:
                for e in os.scandir(self.agents_dir):
                    if e.is_dir(follow_symlinks=False):
                        names.add(e.name)
            except OSError as exc:
                problems.append(ReadProblem("agents", f"cannot list: {exc.strerror}"))

        for name in sorted(names):
            agents[name] = self.read_agent(name, (db_rows or {}).get(name), check_pids, problems)
        return agents, problems

    def read_agent(self, name: str, db_row: dict[str, Any] | None, check_pids: bool,
                   problems: list[ReadProblem]) -> Agent:
        # A DB agent name is anything a writer stored: one that is not a single path
        # component ("../..", "a/b") names no directory of agents/, so none is read.
        usable = name not in ("", ".", "..") and "/" not in name and "\x00" not in name
        if not usable:
            problems.append(ReadProblem(f"state.db agents[{name}]", "not a directory name: "
                                        "no agents/ files read for it"))
        d = self.agents_dir / (name if usable else "")
        state = _read_json(d / "state.json", problems, self) if usable else {}
        status = _read_json(d / "status.json", problems, self) if usable else {}
        current = _read_json(d / "current_task.json", problems, self) if usable else {}
        signals: list[Signal] = []

        hb_text = _read_small(d / "heartbeat", problems, self) if usable else None
        if hb_text is not None:
            hb = parse_any(hb_text.strip())
            if hb is None:
                mt = safeio.mtime(d / "heartbeat")
                hb = from_epoch(mt) if mt is not None else None
            if hb is not None:
                signals.append(Signal("heartbeat", hb))

        status_task = _str(status.get("task_id")) if status else None
        if status:
            su = parse_local_iso(_str(status.get("last_updated")))
            if su is not None:
                signals.append(Signal("status.json last_updated", su, status_task))
        for fname in ("tool_counter", "stdout.log", "stderr.log") if usable else ():
            mt = safeio.mtime(d / fname)
            if mt is not None:
                signals.append(Signal(f"{fname} mtime", from_epoch(mt)))

        running: bool | None = None
        pid: int | None = None
        last_started = last_finished = None
        exit_code: int | None = None
        failures = 0
        def number(obj: dict[str, Any], key: str, lo: int, hi: int, where: str) -> int | None:
            return _bounded(obj.get(key), lo, hi, f"{self.relpath(d / where)}: {key}", problems)

        if state:
            running = bool(state.get("running")) if "running" in state else None
            pid = number(state, "pid", 0, PID_MAX, "state.json")
            last_started = parse_local_iso(_str(state.get("last_started")))
            last_finished = parse_local_iso(_str(state.get("last_finished")))
            exit_code = number(state, "last_exit_code", -INT32, INT32, "state.json")
            failures = number(state, "consecutive_failures", 0, COUNT_MAX, "state.json") or 0
            if last_started is not None:
                signals.append(Signal("state.json last_started", last_started))
        elif db_row:
            running = bool(db_row.get("running"))
            pid = _bounded(db_row.get("pid"), 0, PID_MAX, f"state.db agents[{name}].pid",
                           problems)
            last_started = parse_db_time(db_row.get("last_run_start"))
            last_finished = parse_db_time(db_row.get("last_run_end"))
            if last_started is not None:
                signals.append(Signal("db agents.last_run_start", last_started))

        cur_id, cur_src = None, ""
        for src, val in (("status.json", status_task),
                         ("current_task.json", _str(current.get("task_id")) if current else None),
                         ("state.json", _str(state.get("current_task")) if state else None),
                         ("db agents", _str(db_row.get("current_task_id")) if db_row else None)):
            if val:
                cur_id, cur_src = val, src
                break

        pid_alive: bool | None = None
        if check_pids and pid:
            pid_alive = _pid_alive(pid)
        has_state = bool(state or status or current or hb_text is not None or db_row)
        log = d / "stdout.log"
        return Agent(
            name=name, has_state=has_state, running=running, pid=pid, last_started=last_started,
            last_finished=last_finished, last_exit_code=exit_code, consecutive_failures=failures,
            current_task_id=cur_id, current_task_source=cur_src,
            status_text=_str(status.get("current_subtask")) or "" if status else "",
            progress_percent=number(status, "progress_percent", 0, 100, "status.json")
            if status else None,
            signals=tuple(signals), pid_alive=pid_alive,
            log_relpath=self.relpath(log) if usable and safeio.is_file(log) else None,
        )


# ---------------------------------------------------------------- helpers

def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s if s else None


# Ranges a number from an agent file or a DB cell must fall in (outside: unreadable value).
INT32 = 2**31 - 1
PID_MAX = INT32  # pid_t; Linux's own limit is lower
COUNT_MAX = INT32  # commits, attempts, rejections, failures


def bounded_int(v: Any, lo: int = -(2**63), hi: int = 2**63 - 1) -> int | None:
    """An integer within [lo, hi], or None: missing, not a number, not finite (JSON's
    ``Infinity``, ``1e400``), or out of range. Never an exception."""
    if type(v) is int:
        return v if lo <= v <= hi else None
    if v is None:
        return None
    if isinstance(v, float):
        if not math.isfinite(v) or not lo <= v <= hi:
            return None
        return int(v)
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if lo <= n <= hi else None


def _bounded(v: Any, lo: int, hi: int, what: str,
             problems: list[ReadProblem] | None) -> int | None:
    """``_int`` that says why: a value that is there but unusable is a read problem."""
    n = bounded_int(v, lo, hi)
    if n is None and v is not None and v != "" and problems is not None:
        problems.append(ReadProblem(what, f"unreadable value {_short_repr(v)} (expected a "
                                          f"number from {lo} to {hi}): read as missing"))
    return n


def _short_repr(v: Any) -> str:
    r = repr(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return r if len(r) <= 40 else r[:39] + "…"


def _read_small(p: Path, problems: list[ReadProblem], src: OctopoidReader,
                limit: int = 4096) -> str | None:
    try:
        return safeio.read_prefix(p, limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        if isinstance(exc, safeio.NotRegular) or exc.errno not in (errno.ENOENT,
                                                                   errno.ENOTDIR):
            problems.append(ReadProblem(src.relpath(p), f"cannot read: {exc.strerror}"))
        return None


def _read_json(p: Path, problems: list[ReadProblem], src: OctopoidReader) -> dict[str, Any]:
    try:
        data = safeio.read_prefix(p, 1024 * 1024)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        problems.append(ReadProblem(src.relpath(p), f"cannot read: {exc.strerror}"))
        return {}
    return parse_json_object(data, src.relpath(p), problems)


def lenient_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _not_utf8_cell(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "decode" in str(exc).lower()


def parse_json_object(data: bytes, rel: str, problems: list[ReadProblem]) -> dict[str, Any]:
    """Tolerant JSON-object reader: anything else is a problem line, never an exception."""
    try:
        obj = json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as exc:
        problems.append(ReadProblem(rel, f"not valid JSON: {exc}"[:200]))
        return {}
    if not isinstance(obj, dict):
        problems.append(ReadProblem(rel, "JSON is not an object"))
        return {}
    return obj


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _split_ids(v: Any) -> tuple[str, ...]:
    if not v:
        return ()
    out = []
    for part in str(v).split(","):
        s = part.strip()
        if s.startswith("TASK-"):
            s = s[5:]
        if s:
            out.append(s)
    return tuple(out)


def _text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, str) else str(v)


_RECORD_COLS = ("id", "queue", "priority", "role", "title", "file_path", "claimed_by",
                "claimed_at", "blocked_by", "commits_count", "attempt_count", "rejection_count",
                "check_results", "project_id", "submitted_at", "completed_at", "created_at",
                "updated_at")


_COUNT_COLS = frozenset({"commits_count", "attempt_count", "rejection_count"})

_SHARED: dict[str, str] = {}
_SORTED_QUEUES = tuple(sorted(QUEUES))


_NONE = type(None)
_TEXT_CELL = frozenset({str, _NONE})
_COUNT_CELL = frozenset({int, _NONE})
# What each _RECORD_COLS cell must be for the quick path: the id text, counts integers or
# NULL, every other cell text or NULL (what Octopoid writes).
_QUICK_CELLS = tuple(frozenset({str}) if c == "id" else _COUNT_CELL if c in _COUNT_COLS
                     else _TEXT_CELL for c in _RECORD_COLS)


def _quick_shape(types: tuple[type, ...]) -> bool:
    return len(types) == len(_QUICK_CELLS) and all(
        t in ok for t, ok in zip(types, _QUICK_CELLS, strict=True))


def record_reader(bad: list[tuple[str, str, Any]] | None = None, quick: bool = True) -> Any:
    """A fast row (in ``_RECORD_COLS`` order) -> TaskRecord function. A row whose cells are
    of the types Octopoid writes (told by the tuple of their types, a handful of shapes per
    table) takes a path with no per-cell calls, equal in value to the general one below
    (``quick=False``: the general one always, which a property test compares with)."""
    # Low-cardinality columns share one string per distinct value (SQLite hands out a new
    # str per cell: at 100,000 rows that is ~400,000 copies of "incoming", "P2", ...).
    if len(_SHARED) > 50_000:  # bounded: a column that is not low-cardinality after all
        _SHARED.clear()
    same = _SHARED.setdefault
    incoming = same("incoming", "incoming")
    quick_shapes: dict[tuple[type, ...], bool] = {}

    def same_text(v: Any) -> str | None:
        t = _text(v)
        return None if t is None else same(t, t)

    # SQLite's CURRENT_TIMESTAMP form ("2026-11-22 22:00:38", created_at and updated_at):
    # second resolution, so rows written in the same second share one string. (A pool of
    # its own, dropped with this reader: these are not few enough to keep for ever.)
    stamps: dict[str, str] = {}
    same_stamp = stamps.setdefault

    def stamp(v: Any) -> str | None:
        t = _text(v)
        if t is None or len(t) != 19 or t[10] != " ":
            return t
        return same_stamp(t, t)

    def count(v: Any, tid: str, col: str) -> int | None:
        if (type(v) is int and 0 <= v <= COUNT_MAX) or v is None:  # the usual cells, at once
            return v
        n = bounded_int(v, 0, COUNT_MAX)
        if n is None and v != "" and bad is not None:
            bad.append((tid, col, v))
        return n

    def read(row: tuple[Any, ...]) -> TaskRecord | None:
        types = tuple(map(type, row))
        fits = quick_shapes.get(types)
        if fits is None:
            fits = quick_shapes[types] = quick and _quick_shape(types)
        if fits:
            (tid, queue, priority, role, title, file_path, claimed_by, claimed_at, blocked_by,
             commits, attempts, rejections, checks, project, submitted, completed, created,
             updated) = row
            if ((commits is None or 0 <= commits <= COUNT_MAX)
                    and (attempts is None or 0 <= attempts <= COUNT_MAX)
                    and (rejections is None or 0 <= rejections <= COUNT_MAX)):
                if tid.startswith("TASK-"):
                    tid = tid[5:]
                fdir = fname = None
                if file_path:
                    d, sep, name = file_path.rpartition("/")
                    fdir = same(d := d + sep, d)
                    if name != "TASK-" + tid + ".md":
                        fname = name
                return TaskRecord(
                    tid, same(queue, queue) if queue else incoming,
                    same(priority, priority) if priority else None,
                    same(role, role) if role else None, title or None, fdir, fname,
                    same(claimed_by, claimed_by) if claimed_by else None, claimed_at or None,
                    _split_ids(blocked_by) if blocked_by else (), commits, attempts,
                    rejections, checks or None, same(project, project) if project else None,
                    submitted or None, completed or None,
                    same_stamp(created, created) if created and len(created) == 19
                    and created[10] == " " else created or None,
                    same_stamp(updated, updated) if updated and len(updated) == 19
                    and updated[10] == " " else updated or None)
        return read_any(row)

    def read_any(row: tuple[Any, ...]) -> TaskRecord | None:
        (tid, queue, priority, role, title, file_path, claimed_by, claimed_at, blocked_by,
         commits, attempts, rejections, checks, project, submitted, completed, created,
         updated) = row
        if tid is None:
            return None
        tid = str(tid)
        if tid.startswith("TASK-"):
            tid = tid[5:]
        # file_path as its directory (shared by every row in it) and the name only when it
        # is not the usual TASK-<id>.md: 100,000 absolute paths were ~11 MB
        fdir = fname = None
        if (fp := _text(file_path)) is not None:
            d, sep, name = fp.rpartition("/")
            fdir = same(d := d + sep, d)
            if name != "TASK-" + tid + ".md":
                fname = name
        return TaskRecord(
            tid, same(q := str(queue or "incoming"), q), same_text(priority), same_text(role),
            _text(title), fdir, fname, same_text(claimed_by), _text(claimed_at),
            _split_ids(blocked_by) if blocked_by else (), count(commits, tid, "commits_count"),
            count(attempts, tid, "attempt_count"), count(rejections, tid, "rejection_count"),
            _text(checks), same_text(project), _text(submitted),
            _text(completed), stamp(created), stamp(updated))
    return read

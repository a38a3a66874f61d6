"""Octopoid v1 writer: does to task files and ``state.db`` exactly what Octopoid does per step.

The demo, the generator and tests build their states with these functions, so what qwarden reads
is what Octopoid leaves behind, drift included (octopoid-v1.md, "What Octopoid does to each side"):
a DB-mode claim leaves the file in incoming/; fail updates only the DB queue (claimed_by kept,
file_path stale); retry finds its row by that stale file_path, so the DB never hears of it;
needs_continuation, resume and agent rejects write no DB row; reset_stuck_claimed touches only
the DB.

Timestamps follow Octopoid's three forms: ``isoformat()`` naive local time with ``T`` (files,
claimed_at, submitted_at, updated_at set by its update path), SQLite ``CURRENT_TIMESTAMP`` UTC with
a space (created_at, task_history), heartbeat files UTC with ``Z``. Every step takes an optional
``at`` (naive local) so static states are reproducible; files written at ``at`` get it as mtime.

Files are written atomically (temp + ``os.replace``), DB writes are short ``BEGIN IMMEDIATE``
transactions with a busy timeout, because real agents and the scheduler write concurrently.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUES = ("incoming", "claimed", "provisional", "done", "failed", "rejected", "escalated",
          "recycled", "breakdown", "needs_continuation")

# Copied from the CREATE statements in a real v12 state.db's sqlite_master.
SCHEMA_V12 = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    file_path TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL DEFAULT 'incoming',
    priority TEXT DEFAULT 'P2',
    complexity TEXT,
    role TEXT,
    branch TEXT DEFAULT 'main',
    blocked_by TEXT,
    claimed_by TEXT,
    claimed_at DATETIME,
    commits_count INTEGER DEFAULT 0,
    turns_used INTEGER,
    attempt_count INTEGER DEFAULT 0,
    has_plan BOOLEAN DEFAULT FALSE,
    plan_id TEXT,
    project_id TEXT,
    auto_accept BOOLEAN DEFAULT FALSE,
    rejection_count INTEGER DEFAULT 0,
    pr_number INTEGER,
    pr_url TEXT,
    checks TEXT,
    check_results TEXT,
    needs_rebase BOOLEAN DEFAULT FALSE,
    last_rebase_attempt_at DATETIME,
    staging_url TEXT,
    submitted_at TEXT,
    completed_at TEXT,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (project_id) REFERENCES projects(id)
);
CREATE INDEX idx_tasks_queue ON tasks(queue);
CREATE INDEX idx_tasks_priority ON tasks(priority);
CREATE INDEX idx_tasks_claimed_by ON tasks(claimed_by);
CREATE INDEX idx_tasks_project_id ON tasks(project_id);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT,
    status TEXT DEFAULT 'draft',
    branch TEXT,
    base_branch TEXT DEFAULT 'main',
    auto_accept BOOLEAN DEFAULT FALSE,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    created_by TEXT,
    completed_at DATETIME
);
CREATE INDEX idx_projects_status ON projects(status);
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    role TEXT,
    running BOOLEAN DEFAULT FALSE,
    pid INTEGER,
    current_task_id TEXT,
    last_run_start DATETIME,
    last_run_end DATETIME
);
CREATE TABLE task_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    event TEXT NOT NULL,
    agent TEXT,
    details TEXT,
    timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_task_history_task_id ON task_history(task_id);
CREATE TABLE drafts (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT DEFAULT 'idea',
    author TEXT NOT NULL,
    domain TEXT,
    file_path TEXT,
    created_at TEXT,
    updated_at TEXT,
    linked_task_id TEXT,
    linked_project_id TEXT,
    tags TEXT
);
CREATE INDEX idx_drafts_status ON drafts(status);
CREATE INDEX idx_drafts_author ON drafts(author);
CREATE INDEX idx_drafts_domain ON drafts(domain);
CREATE TABLE schema_info (
    key TEXT PRIMARY KEY,
    value TEXT
);
INSERT INTO schema_info (key, value) VALUES ('version', '12');
"""

# The tasks columns a generator fills in bulk (the rest keep their schema defaults).
TASK_COLUMNS = ("id", "file_path", "queue", "priority", "role", "branch", "blocked_by",
                "claimed_by", "claimed_at", "commits_count", "turns_used", "attempt_count",
                "rejection_count", "checks", "check_results", "plan_id", "has_plan",
                "project_id", "submitted_at", "completed_at", "created_at", "updated_at")

AGENTS_YAML = """model: task
database:
  enabled: true
queue_limits:
  max_incoming: 20
  max_claimed: 5
  max_open_prs: 10
agents:
"""

BUSY_TIMEOUT_MS = 5000
MAX_REJECTIONS = 3  # review rejections before Octopoid escalates instead of re-queueing

REJECTION_WARNING = (
    "**WARNING: This task was previously attempted but the work was rejected.**\n"
    "**Existing code on the branch does NOT satisfy the acceptance criteria.**\n"
    "**You MUST make new commits to address the feedback below.**\n\n")


class TaskFileNotFound(FileNotFoundError):
    """The step's task file is in no queue directory (a FileNotFoundError: racing writers
    treat it like any vanished file)."""


# ---- time forms ---------------------------------------------------------------------------

def now_local() -> datetime:
    """Naive local time, what Octopoid's ``datetime.now()`` gives."""
    return datetime.now()


def local_iso(dt: datetime) -> str:
    """``isoformat()`` of a naive local time: the ``T`` form in files and update-path columns."""
    return dt.isoformat()


def sqlite_utc(dt: datetime) -> str:
    """SQLite ``CURRENT_TIMESTAMP`` form (UTC, space, whole seconds) of a naive local time."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def heartbeat_stamp(dt: datetime) -> str:
    """A heartbeat file's content: UTC with ``Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n"


def _at(at: datetime | None) -> datetime:
    return at if at is not None else now_local()


# ---- files ----------------------------------------------------------------------------------

def write_atomic(path: Path, data: bytes | str, mtime: float | None = None) -> None:
    """Temp file in the same directory, then ``os.replace``: a reader never sees half a file."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def queue_dir(root: Path, queue: str) -> Path:
    return root / "shared" / "queue" / queue


def task_path(root: Path, queue: str, task_id: str) -> Path:
    return queue_dir(root, queue) / f"TASK-{task_id}.md"


def find_task_file(root: Path, task_id: str) -> Path | None:
    """The task's real file (the one with a ``# [TASK-…]`` header; stubs are skipped)."""
    for q in QUEUES:
        p = task_path(root, q, task_id)
        try:
            with open(p, "rb") as fh:
                if fh.read(8) == b"# [TASK-":
                    return p
        except FileNotFoundError:
            continue
    return None


def _locate(root: Path, task_id: str, queue: str | None = None) -> Path:
    p = task_path(root, queue, task_id) if queue else find_task_file(root, task_id)
    if p is None or not p.exists():
        raise TaskFileNotFound(f"TASK-{task_id}.md" + (f" in {queue}/" if queue else ""))
    return p


def task_text(task_id: str, title: str, created: datetime, *, priority: str = "P2",
              role: str = "implement", branch: str = "main", created_by: str = "human",
              project: str | None = None, blocked_by: Sequence[str] = (),
              checks: Sequence[str] = (), context: str | None = None,
              acceptance: Sequence[str] = ("It works", "Tests pass")) -> str:
    """A new task file exactly as Octopoid's create_task writes it."""
    lines = [f"# [TASK-{task_id}] {title}", "", f"ROLE: {role}", f"PRIORITY: {priority}",
             f"BRANCH: {branch}", f"CREATED: {local_iso(created)}", f"CREATED_BY: {created_by}"]
    if project:
        lines.append(f"PROJECT: {project}")
    if blocked_by:
        lines.append(f"BLOCKED_BY: {','.join(blocked_by)}")
    if checks:
        lines.append(f"CHECKS: {','.join(checks)}")
    lines += ["", "## Context", context if context is not None else f"Context for {title}.", "",
              "## Acceptance Criteria", *(f"- [ ] {a}" for a in acceptance)]
    return "\n".join(lines) + "\n"


def trail_block(*pairs: tuple[str, Any]) -> str:
    """One appended trail block: a blank line, then ``KEY: value`` lines (as ``open(p, "a")``)."""
    return "\n" + "".join(
        f"{k}: {local_iso(v) if isinstance(v, datetime) else v}\n" for k, v in pairs)


def error_block(failed_at: datetime, error: str) -> str:
    """What fail_task appends: ``FAILED_AT:`` then a fenced ``## Error`` block."""
    return f"\nFAILED_AT: {local_iso(failed_at)}\n\n## Error\n```\n{error}\n```\n"


def continuation_block(at: datetime, agent: str | None, task_id: str,
                       reason: str = "max_turns_reached") -> str:
    pairs: list[tuple[str, Any]] = [("NEEDS_CONTINUATION_AT", at), ("CONTINUATION_REASON", reason),
                                    ("WIP_BRANCH", f"agent/{task_id}")]
    if agent:
        pairs.append(("LAST_AGENT", agent))
    return trail_block(*pairs)


def resume_block(at: datetime, agent: str | None) -> str:
    return trail_block(("RESUMED_AT", at), *([("RESUMED_BY", agent)] if agent else []))


def agent_reject_block(at: datetime, reason: str, details: str | None, rejected_by: str | None,
                       attempt_count: int | None = None) -> str:
    pairs: list[tuple[str, Any]] = [("REJECTED_AT", at), ("REJECTION_REASON", reason)]
    if attempt_count is not None:
        pairs.append(("ATTEMPT_COUNT", attempt_count))
    if rejected_by:
        pairs.append(("REJECTED_BY", rejected_by))
    out = trail_block(*pairs)
    return out + (f"\n## Rejection Details\n{details}\n" if details else "")


_OLD_NOTICE_RE = re.compile(r"^## (?:Rejection Notice|Review Feedback) \(rejection #[^\n]*\n"
                            r".*?(?=^## |\Z)", re.M | re.S)


def insert_rejection_notice(text: str, rejection_no: int, feedback: str, at: datetime,
                            rejected_by: str | None) -> str:
    """Octopoid's ``_insert_rejection_feedback``: drop an older notice, put the new one before
    the first ``##`` heading (so agents read it first)."""
    notice = (f"## Rejection Notice (rejection #{rejection_no})\n\n{REJECTION_WARNING}"
              f"{feedback}\n\nREVIEW_REJECTED_AT: {local_iso(at)}\n")
    if rejected_by:
        notice += f"REVIEW_REJECTED_BY: {rejected_by}\n"
    notice += "\n"
    text = _OLD_NOTICE_RE.sub("", text)
    m = re.search(r"^## ", text, re.M)
    if m is None:
        return text.rstrip("\n") + "\n\n" + notice
    return text[:m.start()] + notice + text[m.start():]


def _append(path: Path, block: str, at: datetime) -> None:
    write_atomic(path, path.read_text() + block, at.timestamp())


def _move(src: Path, queue: str, block: str, at: datetime) -> Path:
    """Append then rename into another queue dir, as Octopoid's ``open(p, "a")`` + rename."""
    dst = src.parent.parent / queue / src.name
    write_atomic(dst, src.read_text() + block, at.timestamp())
    if dst != src:
        src.unlink()
    return dst


# ---- DB -------------------------------------------------------------------------------------

def connect(root: Path) -> sqlite3.Connection:
    """Autocommit connection with a busy timeout; callers open short explicit transactions."""
    conn = sqlite3.connect(root / "state.db", timeout=BUSY_TIMEOUT_MS / 1000,
                           isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable enough, no fsync/commit
    return conn


@contextmanager
def transaction(root: Path) -> Iterator[sqlite3.Connection]:
    """One short write transaction; BEGIN IMMEDIATE takes the write lock up front so a busy DB
    waits here (busy_timeout) instead of failing half-way through."""
    conn = connect(root)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _history(conn: sqlite3.Connection, task_id: str, event: str, at: datetime,
             agent: str | None = None, details: str | None = None) -> None:
    conn.execute("INSERT INTO task_history (task_id, event, agent, details, timestamp) "
                 "VALUES (?, ?, ?, ?, ?)", (task_id, event, agent, details, sqlite_utc(at)))


def init_root(base: Path) -> Path:
    """A fresh ``base/.orchestrator``: agents.yaml, every queue dir, notes, agents, messages,
    logs, and a WAL-mode state.db with the v12 schema."""
    root = base / ".orchestrator"
    for q in QUEUES:
        queue_dir(root, q).mkdir(parents=True, exist_ok=True)
    for d in ("shared/notes", "agents", "messages", "logs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if not (root / "agents.yaml").exists():
        write_atomic(root / "agents.yaml", AGENTS_YAML)
    conn = sqlite3.connect(root / "state.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE name='tasks'").fetchone()[0]:
            return root
        conn.executescript(SCHEMA_V12)
        conn.commit()
    finally:
        conn.close()
    return root


def register_agent_config(root: Path, name: str, role: str = "implementer",
                          interval_seconds: int = 30) -> None:
    """Add an agent to agents.yaml (the scheduler's list), as ``octopoid init`` would."""
    path = root / "agents.yaml"
    text = path.read_text()
    if f"- name: {name}\n" in text:
        return
    write_atomic(path, text + f"  - name: {name}\n    role: {role}\n"
                              f"    interval_seconds: {interval_seconds}\n")


# ---- lifecycle steps ------------------------------------------------------------------------

def create_task(root: Path, title: str, *, priority: str = "P2", role: str = "implement",
                blocked_by: Sequence[str] = (), checks: Sequence[str] = (),
                project: str | None = None, task_id: str | None = None,
                created: datetime | None = None, context: str | None = None) -> str:
    """File in incoming/ plus a row (queue incoming, created_at/updated_at CURRENT_TIMESTAMP
    form) plus a ``created`` history row. Returns the 8-hex id."""
    tid = task_id or uuid.uuid4().hex[:8]
    at = _at(created)
    path = task_path(root, "incoming", tid)
    write_atomic(path, task_text(tid, title, at, priority=priority, role=role, project=project,
                                 blocked_by=blocked_by, checks=checks, context=context),
                 at.timestamp())
    with transaction(root) as conn:
        conn.execute(
            "INSERT INTO tasks (id, file_path, queue, priority, role, blocked_by, checks, "
            "project_id, created_at, updated_at) VALUES (?, ?, 'incoming', ?, ?, ?, ?, ?, ?, ?)",
            (tid, str(path), priority, role, ",".join(blocked_by) or None,
             ",".join(checks) or None, project, sqlite_utc(at), sqlite_utc(at)))
        _history(conn, tid, "created", at, None,
                 f"priority={priority}, role={role}, project={project}")
    return tid


def claim(root: Path, task_id: str, agent: str, at: datetime | None = None) -> Path:
    """DB mode: the row says claimed (claimed_by/at), the file STAYS in incoming/ and gets a
    CLAIMED_BY/CLAIMED_AT block."""
    at = _at(at)
    path = _locate(root, task_id, "incoming")
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='claimed', claimed_by=?, claimed_at=?, updated_at=? "
                     "WHERE id=?", (agent, local_iso(at), local_iso(at), task_id))
        _history(conn, task_id, "claimed", at, agent)
    _append(path, trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", at)), at)
    return path


def submit(root: Path, task_id: str, commits: int, turns: int,
           at: datetime | None = None) -> Path:
    """File to provisional/ with SUBMITTED_AT/COMMITS_COUNT/TURNS_USED; the row follows
    (provisional, counts, submitted_at, file_path); claimed_by is kept."""
    at = _at(at)
    dst = _move(_locate(root, task_id), "provisional", trail_block(
        ("SUBMITTED_AT", at), ("COMMITS_COUNT", commits), ("TURNS_USED", turns)), at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='provisional', commits_count=?, turns_used=?, "
                     "submitted_at=?, file_path=?, updated_at=? WHERE id=?",
                     (commits, turns, local_iso(at), str(dst), local_iso(at), task_id))
        _history(conn, task_id, "submitted", at, None, f"commits={commits}, turns={turns}")
    return dst


def record_check(root: Path, task_id: str, check: str, status: str, summary: str,
                 at: datetime | None = None) -> None:
    """A gatekeeper's check result into check_results JSON (DB only)."""
    at = _at(at)
    with transaction(root) as conn:
        row = conn.execute("SELECT check_results FROM tasks WHERE id=?", (task_id,)).fetchone()
        results = json.loads(row[0]) if row and row[0] else {}
        results[check] = {"status": status, "summary": summary, "timestamp": local_iso(at)}
        conn.execute("UPDATE tasks SET check_results=?, updated_at=? WHERE id=?",
                     (json.dumps(results), local_iso(at), task_id))
        _history(conn, task_id, f"check_{status}", at, None, f"{check}: {summary}")


def accept(root: Path, task_id: str, accepted_by: str = "scheduler",
           at: datetime | None = None) -> Path:
    """File to done/ with ACCEPTED_AT/ACCEPTED_BY; row done, claimed_by cleared."""
    at = _at(at)
    dst = _move(_locate(root, task_id), "done",
                trail_block(("ACCEPTED_AT", at), ("ACCEPTED_BY", accepted_by)), at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='done', claimed_by=NULL, completed_at=?, "
                     "file_path=?, updated_at=? WHERE id=?",
                     (local_iso(at), str(dst), local_iso(at), task_id))
        _history(conn, task_id, "accepted", at, accepted_by)
    return dst


def fail(root: Path, task_id: str, error_text: str, at: datetime | None = None) -> Path:
    """File to failed/ with FAILED_AT + ``## Error``; the DB changes queue only (claimed_by
    kept, file_path left pointing at the old place)."""
    at = _at(at)
    dst = _move(_locate(root, task_id), "failed", error_block(at, error_text), at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='failed', updated_at=? WHERE id=?",
                     (local_iso(at), task_id))
        _history(conn, task_id, "failed", at, None, error_text)
    return dst


def retry(root: Path, task_id: str, at: datetime | None = None) -> Path:
    """File from failed/ to incoming/ with RETRIED_AT (old error left in place). The row is
    looked up by the file's failed/ path; fail never wrote that path, so the DB stays failed."""
    at = _at(at)
    src = _locate(root, task_id, "failed")
    dst = _move(src, "incoming", trail_block(("RETRIED_AT", at)), at)
    with transaction(root) as conn:
        cur = conn.execute("UPDATE tasks SET queue='incoming', claimed_by=NULL, claimed_at=NULL, "
                           "file_path=?, updated_at=? WHERE file_path=?",
                           (str(dst), local_iso(at), str(src)))
        if cur.rowcount:
            _history(conn, task_id, "retried", at)
    return dst


def needs_continuation(root: Path, task_id: str, agent: str | None,
                       reason: str = "max_turns_reached", at: datetime | None = None) -> Path:
    """File to needs_continuation/ with the continuation block; no DB write (row stays claimed)."""
    at = _at(at)
    return _move(_locate(root, task_id), "needs_continuation",
                 continuation_block(at, agent, task_id, reason), at)


def resume(root: Path, task_id: str, agent: str | None, at: datetime | None = None) -> Path:
    """File from needs_continuation/ to claimed/ with RESUMED_AT/RESUMED_BY; no DB write."""
    at = _at(at)
    return _move(_locate(root, task_id, "needs_continuation"), "claimed",
                 resume_block(at, agent), at)


def agent_reject(root: Path, task_id: str, reason: str, details: str | None = None,
                 rejected_by: str | None = None, attempt_count: int | None = None,
                 at: datetime | None = None) -> Path:
    """An agent refuses the task: file to rejected/ with REJECTED_AT/... (+ Rejection Details);
    no DB write."""
    at = _at(at)
    return _move(_locate(root, task_id), "rejected",
                 agent_reject_block(at, reason, details, rejected_by, attempt_count), at)


def review_reject(root: Path, task_id: str, feedback: str, rejected_by: str | None = None,
                  max_rejections: int = MAX_REJECTIONS, at: datetime | None = None) -> Path:
    """Review rejection: the row is found by the file's path; rejection_count+1 and back to
    incoming (escalated at max_rejections), claimed_by cleared; the notice goes in before the
    first ``##`` heading and the file moves with the row."""
    at = _at(at)
    src = _locate(root, task_id)
    with transaction(root) as conn:
        row = conn.execute("SELECT rejection_count FROM tasks WHERE file_path=?",
                           (str(src),)).fetchone()
        count = ((row[0] or 0) + 1) if row else 0
        queue = "escalated" if count >= max_rejections else "incoming"
        dst = src.parent.parent / queue / src.name
        text = insert_rejection_notice(src.read_text(), count, feedback, at, rejected_by)
        write_atomic(dst, text, at.timestamp())  # file ready before the row says claimable
        if dst != src:
            src.unlink()
        if row:
            conn.execute("UPDATE tasks SET queue=?, rejection_count=?, claimed_by=NULL, "
                         "claimed_at=NULL, file_path=?, updated_at=? WHERE id=?",
                         (queue, count, str(dst), local_iso(at), task_id))
            _history(conn, task_id, "escalated" if queue == "escalated" else "rejected", at,
                     rejected_by, feedback[:500])
    return dst


def hold(root: Path, task_id: str, at: datetime | None = None) -> Path:
    """A human parks the task: both sides to escalated (file_path follows), no trail block."""
    at = _at(at)
    dst = _move(_locate(root, task_id), "escalated", "", at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='escalated', claimed_by=NULL, file_path=?, "
                     "updated_at=? WHERE id=?", (str(dst), local_iso(at), task_id))
        _history(conn, task_id, "held", at, None, "manual hold via hold_task()")
    return dst


def escalate(root: Path, task_id: str, plan_id: str | None = None,
             at: datetime | None = None) -> Path:
    """Escalate to planning: file to escalated/ with ESCALATED_AT/PLAN_ID; row escalated with
    has_plan/plan_id, claimed_by kept and file_path NOT updated (stale)."""
    at = _at(at)
    plan = plan_id or f"plan-{task_id}"
    dst = _move(_locate(root, task_id), "escalated",
                trail_block(("ESCALATED_AT", at), ("PLAN_ID", plan)), at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='escalated', has_plan=1, plan_id=?, updated_at=? "
                     "WHERE id=?", (plan, local_iso(at), task_id))
        _history(conn, task_id, "escalated", at, None, f"plan_id={plan}")
    return dst


def reset_stuck_claimed(root: Path, task_id: str, at: datetime | None = None) -> None:
    """The scheduler's stuck-claim reset: DB only back to incoming, claim cleared; the file and
    the agent are untouched (a live agent keeps working: split brain)."""
    at = _at(at)
    with transaction(root) as conn:
        conn.execute("UPDATE tasks SET queue='incoming', claimed_by=NULL, claimed_at=NULL, "
                     "updated_at=? WHERE id=?", (local_iso(at), task_id))
        _history(conn, task_id, "reset", at, None, "claimed timeout exceeded")


# ---- agent side -----------------------------------------------------------------------------

def agent_dir(root: Path, name: str) -> Path:
    d = root / "agents" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_agent_state(root: Path, name: str, running: bool, pid: int | None = None,
                      last_started: datetime | None = None,
                      last_finished: datetime | None = None, *, last_exit_code: int | None = None,
                      consecutive_failures: int = 0, total_runs: int = 0,
                      total_successes: int = 0, total_failures: int = 0,
                      current_task: str | None = None, extra: dict[str, Any] | None = None,
                      at: datetime | None = None) -> None:
    """The scheduler's ``agents/<name>/state.json``; mtime = ``at`` (default now)."""
    state = {"running": running, "pid": pid,
             "last_started": local_iso(last_started) if last_started else None,
             "last_finished": local_iso(last_finished) if last_finished else None,
             "last_exit_code": last_exit_code, "consecutive_failures": consecutive_failures,
             "total_runs": total_runs, "total_successes": total_successes,
             "total_failures": total_failures, "current_task": current_task,
             "extra": extra or {}}
    write_atomic(agent_dir(root, name) / "state.json", json.dumps(state, indent=2),
                 _at(at).timestamp())


def write_heartbeat(root: Path, name: str, at: datetime | None = None) -> None:
    """The hook's heartbeat file: one UTC ``…Z`` stamp, mtime = the stamp."""
    at = _at(at)
    write_atomic(agent_dir(root, name) / "heartbeat", heartbeat_stamp(at), at.timestamp())


def write_status(root: Path, name: str, task_id: str, progress: int,
                 at: datetime | None = None, task_title: str = "working",
                 subtask: str = "editing files") -> None:
    """``status.json`` the agent rewrites as it works (last_updated local ``T`` form)."""
    at = _at(at)
    write_atomic(agent_dir(root, name) / "status.json", json.dumps({
        "task_id": task_id, "task_title": task_title, "current_subtask": subtask,
        "progress_percent": progress, "last_updated": local_iso(at), "agent_name": name},
        indent=2), at.timestamp())


def write_current_task(root: Path, name: str, task_id: str, task_file: str = "",
                       started_at: datetime | None = None) -> None:
    """``current_task.json``: what the agent was handed (mtime = started_at)."""
    at = _at(started_at)
    write_atomic(agent_dir(root, name) / "current_task.json", json.dumps(
        {"task_id": task_id, "task_path": task_file, "started_at": local_iso(at)}, indent=2),
        at.timestamp())


def clear_current_task(root: Path, name: str) -> None:
    """An agent that finished its run drops current_task.json (and status.json)."""
    for fname in ("current_task.json", "status.json"):
        (root / "agents" / name / fname).unlink(missing_ok=True)


def append_stdout(root: Path, name: str, line: str, at: datetime | None = None) -> None:
    """One line of agent output (``stdout.log`` is append-only; mtime = ``at``)."""
    at = _at(at)
    path = agent_dir(root, name) / "stdout.log"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line if line.endswith("\n") else line + "\n")
    os.utime(path, (at.timestamp(), at.timestamp()))


def touch_tool_counter(root: Path, name: str, at: datetime | None = None) -> int:
    """The tool-call hook: bump ``tool_counter`` (its mtime is the last tool call)."""
    at = _at(at)
    path = agent_dir(root, name) / "tool_counter"
    try:
        count = int(path.read_text().strip() or 0) + 1
    except (FileNotFoundError, ValueError):
        count = 1
    write_atomic(path, f"{count}\n", at.timestamp())
    return count


def write_notes_attempt(root: Path, task_id: str, attempt: int, agent: str, turns: int,
                        commits: int, tail: str, at: datetime | None = None) -> Path:
    """Append ``## Attempt N — agent (iso)`` to ``shared/notes/TASK-<id>.md``."""
    at = _at(at)
    path = root / "shared" / "notes" / f"TASK-{task_id}.md"
    text = path.read_text() if path.exists() else f"# Agent Notes: TASK-{task_id}\n\n"
    text += (f"## Attempt {attempt} \u2014 {agent} ({local_iso(at)})\n"
             f"Turns: {turns} | Commits: {commits}\n\n{tail}\n\n")
    write_atomic(path, text, at.timestamp())
    return path


def upsert_agent_row(root: Path, name: str, *, role: str = "implementer", running: bool,
                     pid: int | None = None, current_task_id: str | None = None,
                     last_run_start: datetime | None = None,
                     last_run_end: datetime | None = None) -> None:
    """The scheduler's ``agents`` table row for one agent."""
    with transaction(root) as conn:
        conn.execute(
            "INSERT INTO agents (name, role, running, pid, current_task_id, last_run_start, "
            "last_run_end) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "role=excluded.role, running=excluded.running, pid=excluded.pid, "
            "current_task_id=excluded.current_task_id, last_run_start=excluded.last_run_start, "
            "last_run_end=excluded.last_run_end",
            (name, role, 1 if running else 0, pid, current_task_id,
             local_iso(last_run_start) if last_run_start else None,
             local_iso(last_run_end) if last_run_end else None))


def write_message(root: Path, kind: str, title: str, body: str,
                  at: datetime | None = None) -> Path:
    """An agent -> human inbox message: ``messages/<type>-<YYYYmmdd-HHMMSS>-<title>.md``."""
    at = _at(at)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "message"
    path = root / "messages" / f"{kind}-{at:%Y%m%d-%H%M%S}-{slug}.md"
    write_atomic(path, f"# {title}\n\n**Type:** {kind}\n**Time:** {local_iso(at)}\n\n{body}\n",
                 at.timestamp())
    return path

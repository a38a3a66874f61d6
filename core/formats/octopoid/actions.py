"""Planners for the Octopoid v1 interventions: current state in, an exact ``Plan`` out.

Each planner reads the task where it really is (``shared/queue/<queue>/TASK-<id>.md`` for every
queue, never ``file_path``), refuses what does not apply, and writes files and rows the way
Octopoid's own lifecycle functions would — trail lines appended, file moved to the queue dir the
DB names, a ``task_history`` row per step — minus their drift: the DB and the file always end up
agreeing, ``file_path`` is repaired to the file's absolute path, errors are moved under a
``## History`` heading instead of left in place or deleted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qwarden.core import safeio
from qwarden.core.actions.guard import live_work_refusal
from qwarden.core.actions.interface import NeedsConfirmation, SubtaskSpec
from qwarden.core.actions.plan import ACTION_FILE_MAX_BYTES, FileOp, Plan, Refused, RowOp, sha256
from qwarden.core.config import Thresholds
from qwarden.core.formats.octopoid.reader import (
    COUNT_MAX,
    DB_ERRORS,
    QUEUES,
    OctopoidReader,
    SourceError,
    bounded_int,
)
from qwarden.core.formats.octopoid.semantics import SEMANTICS
from qwarden.core.formats.octopoid.taskfile import (
    HISTORY_END,
    HISTORY_HEADING,
    history_spans,
    parse_task_bytes,
)
from qwarden.core.model import Snapshot, TaskFile
from qwarden.core.rules.completion import passing_checks

TERMINAL = ("done", "failed", "escalated", "rejected")

RETRYABLE = ("failed", "escalated", "needs_continuation")
HISTORY_INTRO = "<!-- moved here by qwarden: earlier errors, kept for the record -->"


# ------------------------------------------------------------------ current state

@dataclass(frozen=True)
class FileState:
    queue: str
    rel: str
    data: bytes
    parsed: TaskFile

    @property
    def sha(self) -> str:
        return sha256(self.data)


@dataclass(frozen=True)
class TaskState:
    """One task as it is now: its DB row (all columns) and every file named after it."""

    root: Path
    task_id: str
    row: dict[str, Any] | None
    columns: tuple[str, ...]  # the tasks table's columns (older DBs lack later ones)
    has_db: bool
    files: tuple[FileState, ...]

    @property
    def db_queue(self) -> str | None:
        return None if self.row is None else str(self.row.get("queue") or "incoming")

    def primary(self) -> FileState:
        """The task's one parseable file; refuses when there is none or several."""
        good = [f for f in self.files if f.parsed.parseable]
        if not good:
            where = ", ".join(f.rel for f in self.files) or "no queue directory"
            raise Refused(f"TASK-{self.task_id}: no readable task file ({where})")
        if len(good) > 1:
            raise Refused(f"TASK-{self.task_id}: files in {', '.join(f.queue for f in good)}; "
                          "quarantine the duplicate first (quarantine --queue Q)")
        return good[0]

    def abs_path(self, rel: str) -> str:
        """An ABSOLUTE file_path, as Octopoid's own writes store (the orphan fix's trap)."""
        return str(self.root.resolve() / rel)


def read_state(root: Path, task_id: str, source: OctopoidReader | None = None) -> TaskState:
    """Read the task now. Raises SourceError if the queue cannot be read, Refused for an id
    that is not a task id (it could leave the root)."""
    src = source or OctopoidReader(Path(root))
    files: list[FileState] = []
    for q in QUEUES:
        try:
            path = src.task_file_path(q, task_id)
        except ValueError:
            raise Refused(f"{task_id!r} is not a task id") from None
        rel = src.relpath(path)
        if not safeio.within(src.root_real, str(path)):  # as the report: never followed
            try:
                safeio.check_inside(Path(root), rel)
            except safeio.LeavesRoot as exc:
                raise Refused(exc.strerror) from None
            if os.path.lexists(path):  # (a link out that check_inside saw as missing)
                raise Refused(f"{rel} leads outside the root; qwarden does not act on it")
        try:
            data, st = safeio.read_whole(path, ACTION_FILE_MAX_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # a FIFO, a device, a 10 GB file: refused, never read
            raise SourceError(f"{rel}: cannot read: {exc.strerror}") from None
        files.append(FileState(q, rel, data, parse_task_bytes(data, task_id, q, st.st_mtime,
                                                              st.st_size)))
    row: dict[str, Any] | None = None
    cols: tuple[str, ...] = ()
    has_db = src.db_exists()
    if has_db:
        conn = src.connect()
        try:
            row = src.read_row(conn, task_id) or None
            cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(tasks)"))
        except DB_ERRORS as exc:
            raise SourceError(f"{src.db_path}: {exc}") from None
        finally:
            conn.close()
    return TaskState(Path(root), task_id, row, cols, has_db, tuple(files))


# ------------------------------------------------------------------ building blocks

def _iso(now: datetime) -> str:
    return now.isoformat()  # Octopoid's file and claimed_at/updated_at form (local, T)


def _db_utc(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")  # CURRENT_TIMESTAMP form


def _one_line(s: str, limit: int = 500) -> str:
    """Trail values are single lines: a newline in a note would forge trail keys."""
    return " ".join(s.split())[:limit]


def trail(*pairs: tuple[str, str]) -> str:
    return "\n" + "".join(f"{k}: {_one_line(v)}\n" for k, v in pairs if v != "")


def _append(data: bytes, text: str) -> bytes:
    body = data.decode("utf-8")
    if body and not body.endswith("\n"):
        body += "\n"
    return (body + text).encode("utf-8")


def _update(state: TaskState, now: datetime | None, **cols: Any) -> list[RowOp]:
    """One UPDATE of the task's row with only the columns that change (and exist)."""
    if state.row is None:
        return []
    after = {c: v for c, v in cols.items() if c in state.row and state.row.get(c) != v}
    if not after:
        return []
    if now is not None and "updated_at" in state.row:
        after["updated_at"] = _iso(now)
    return [RowOp("tasks", "update", {"id": state.row["id"]}, dict(state.row), after)]


def _history(state: TaskState, event: str, actor: str, details: str, now: datetime
             ) -> list[RowOp]:
    if not state.has_db:
        return []
    return [RowOp("task_history", "insert", {"task_id": state.task_id},
                  None, {"task_id": state.task_id, "event": event, "agent": actor,
                         "details": details, "timestamp": _db_utc(now)})]


def _relocate(fs: FileState, dest_queue: str, new: bytes) -> FileOp:
    """Move (or rewrite in place) a task file into ``dest_queue``'s directory."""
    dst = f"shared/queue/{dest_queue}/TASK-{fs.parsed.task_id}.md"
    return FileOp(fs.rel, dst, fs.sha, new)


# ------------------------------------------------------------------ errors -> ## History

_FAILED_RE = re.compile(r"^FAILED_AT:[^\n]*(?:\n|$)", re.M)
_FENCE_RE = re.compile(r"^```", re.M)


def _fences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        m = _FENCE_RE.search(text, pos)
        if m is None:
            return spans
        e = _FENCE_RE.search(text, m.end())
        end = len(text) if e is None else text.find("\n", e.end()) + 1 or len(text)
        spans.append((m.start(), end))
        pos = end
        if e is None:
            return spans


_history_spans = history_spans  # one definition, shared with the parser


def live_error_regions(text: str) -> list[tuple[int, int]]:
    """Spans of each ``FAILED_AT:`` line and the ``## Error`` fenced block belonging to it,
    outside fences and history sections."""
    fences = _fences(text)
    hist = _history_spans(text)
    out = []
    for m in _FAILED_RE.finditer(text):
        p = m.start()
        if any(a <= p < b for a, b in fences + hist):
            continue
        end = m.end()
        rest = text[end:]
        k = len(rest) - len(rest.lstrip("\n"))
        if rest[k:].startswith("## Error"):
            end += k
            nl = text.find("\n", end)
            end = len(text) if nl < 0 else nl + 1
            rest = text[end:]
            k = len(rest) - len(rest.lstrip("\n"))
            if rest[k:].startswith("```"):
                for a, b in fences:
                    if a == end + k:
                        end = b
                        break
        out.append((p, end))
    return out


def archive_errors(text: str) -> tuple[str, int]:
    """Move every live error block, byte for byte, under a ``## History`` heading placed where
    the first one was (ended by a marker, so trail lines appended later stay outside it)."""
    regions = live_error_regions(text)
    if not regions:
        return text, 0
    moved = "".join(text[a:b] if text[a:b].endswith("\n") else text[a:b] + "\n"
                    for a, b in regions)
    section = f"{HISTORY_HEADING}\n{HISTORY_INTRO}\n{moved}{HISTORY_END}\n"
    out, pos = [], 0
    for i, (a, b) in enumerate(regions):
        out.append(text[pos:a])
        if i == 0:
            out.append(section)
        pos = b
    out.append(text[pos:])
    return "".join(out), len(regions)


# ------------------------------------------------------------------ planners

def _evidence_of_work(row: dict[str, Any] | None, fs: FileState | None) -> bool:
    commits = 0
    if row is not None:
        commits = bounded_int(row.get("commits_count"), 0, COUNT_MAX) or 0
        try:
            checks = json.loads(row.get("check_results") or "{}")
        except ValueError:
            checks = {}
        if isinstance(checks, dict) and passing_checks(checks, SEMANTICS):
            return True
    if fs is not None and not commits:
        for ev in fs.parsed.trail:
            if ev.kind == "SUBMITTED" and (ev.get("COMMITS_COUNT") or "0").strip() not in ("0",
                                                                                         ""):
                return row is None  # the file says work happened; the DB row (if any) rules
    return commits > 0


def plan_retry(state: TaskState, actor: str, note: str, now: datetime,
               force: bool = False) -> Plan:
    """failed / escalated / needs_continuation / zombie claim -> incoming.

    Claim cleared, attempt_count + 1, the old FAILED_AT/## Error blocks moved under
    ``## History`` (never deleted), RETRIED_AT/RETRIED_BY/RETRY_NOTE appended."""
    fs = state.primary()
    where = {fs.queue, state.db_queue or fs.queue}
    if not (where & set(RETRYABLE) or "claimed" in where or force):
        raise Refused(f"TASK-{state.task_id} is in {'/'.join(sorted(where))}: retry applies "
                      "to failed, escalated, needs_continuation or zombie-claimed tasks "
                      "(clear-error for a stale error block)")
    text, n = archive_errors(fs.data.decode("utf-8"))
    new = _append(text.encode(), trail(("RETRIED_AT", _iso(now)), ("RETRIED_BY", actor),
                                       ("RETRY_NOTE", note)))
    dst = _relocate(fs, "incoming", new)
    raw = (state.row or {}).get("attempt_count")
    attempts = bounded_int(raw or 0, 0, COUNT_MAX - 1)
    if attempts is None:
        raise Refused(f"TASK-{state.task_id}: DB attempt_count holds an unreadable value "
                      f"({str(raw)[:40]!r}); put the row right before retrying it")
    attempts += 1
    rows = _update(state, now, queue="incoming", claimed_by=None, claimed_at=None,
                   attempt_count=attempts, file_path=state.abs_path(str(dst.dst)))
    rows += _history(state, "retried", actor, note or f"retried from {fs.queue}", now)
    return Plan("retry", state.task_id, actor, note,
                f"{fs.queue} -> incoming, attempt {attempts}"
                + (f", {n} error block(s) moved under {HISTORY_HEADING}" if n else ""),
                tuple(rows), (dst,))


def plan_release(state: TaskState, actor: str, note: str, now: datetime,
                 force: bool = False) -> Plan:
    """A zombie claim back to incoming (DB claim cleared; the file leaves claimed/)."""
    fs = state.primary()
    if state.db_queue != "claimed" and fs.queue != "claimed" and not force:
        raise Refused(f"TASK-{state.task_id} is not claimed (DB {state.db_queue}, file in "
                      f"{fs.queue}/)")
    who = (state.row or {}).get("claimed_by") or ""
    new = _append(fs.data, trail(("RELEASED_AT", _iso(now)), ("RELEASED_BY", actor),
                                 ("RELEASE_REASON", note or f"zombie claim by {who}".strip())))
    dst = _relocate(fs, "incoming", new)
    rows = _update(state, now, queue="incoming", claimed_by=None, claimed_at=None,
                   file_path=state.abs_path(str(dst.dst)))
    rows += _history(state, "reset", actor, note or f"released zombie claim of {who}", now)
    return Plan("release", state.task_id, actor, note, f"claim of {who or '?'} released, "
                f"{fs.queue} -> incoming", tuple(rows), (dst,))


def plan_sync(state: TaskState, actor: str, note: str, now: datetime,
              direction: str = "sync_db") -> Plan:
    """Apply a file_db_mismatch's direction. ``sync_db``: the DB follows the file's queue dir
    (the file moved last); ``sync_file``: the file moves to the DB queue's dir."""
    fs = state.primary()
    if state.row is None:
        raise Refused(f"TASK-{state.task_id} has no DB row: register it instead")
    dbq = str(state.db_queue)
    expected = ("incoming", "claimed") if dbq == "claimed" else (dbq,)
    if direction == "sync_db":
        if fs.queue in expected:
            raise Refused(f"TASK-{state.task_id}: DB {dbq} and file in {fs.queue}/ agree")
        cols: dict[str, Any] = {"queue": fs.queue, "file_path": state.abs_path(fs.rel)}
        if fs.queue not in ("claimed", "provisional"):
            cols.update(claimed_by=None, claimed_at=None)  # the claim ended where the file is
        rows = _update(state, now, **cols)
        rows += _history(state, "synced", actor, f"db queue {dbq} -> {fs.queue} (file in "
                         f"{fs.queue}/){'; ' + note if note else ''}", now)
        return Plan("sync", state.task_id, actor, note, f"DB queue {dbq} -> {fs.queue}",
                    tuple(rows), (), extra={"direction": direction})
    if direction != "sync_file":
        raise Refused(f"unknown sync direction {direction!r} (sync_db or sync_file)")
    if fs.queue in expected:
        raise Refused(f"TASK-{state.task_id}: DB {dbq} and file in {fs.queue}/ agree")
    target = expected[0]
    new = _append(fs.data, trail(("SYNCED_AT", _iso(now)), ("SYNCED_BY", actor),
                                 ("SYNC_DIRECTION", f"file {fs.queue} -> {target} (DB {dbq})")))
    dst = _relocate(fs, target, new)
    rows = _update(state, now, file_path=state.abs_path(str(dst.dst)))
    rows += _history(state, "synced", actor, f"file {fs.queue}/ -> {target}/ (DB {dbq})"
                     f"{'; ' + note if note else ''}", now)
    return Plan("sync", state.task_id, actor, note, f"file {fs.queue}/ -> {target}/",
                tuple(rows), (dst,), extra={"direction": direction})


def plan_repair_path(state: TaskState, actor: str, note: str, now: datetime,
                     force: bool = False) -> Plan:
    """stale_file_path: point the row's file_path at where the file really is (absolute)."""
    fs = state.primary()
    if state.row is None:
        raise Refused(f"TASK-{state.task_id} has no DB row")
    new = state.abs_path(fs.rel)
    if state.row.get("file_path") == new:
        raise Refused(f"TASK-{state.task_id}: file_path is already {new}")
    rows = [RowOp("tasks", "update", {"id": state.task_id}, dict(state.row), {"file_path": new})]
    rows += _history(state, "file_path_repaired", actor, f"file_path -> {new}", now)
    return Plan("repair-path", state.task_id, actor, note, f"file_path -> {fs.rel}", tuple(rows))


def plan_accept(state: TaskState, actor: str, note: str, now: datetime,
                force: bool = False) -> Plan:
    """provisional -> done like Octopoid's accept_completion: ACCEPTED_AT/ACCEPTED_BY, DB done,
    completed_at set, claimed_by cleared. No evidence of work (unverified_completion): refused
    unless ``force`` (the operator's explicit second confirmation)."""
    fs = state.primary()
    if "provisional" not in (fs.queue, state.db_queue):
        raise Refused(f"TASK-{state.task_id} is not provisional (DB {state.db_queue}, file in "
                      f"{fs.queue}/)")
    warnings: tuple[str, ...] = ()
    if not _evidence_of_work(state.row, fs):
        if not force:
            raise NeedsConfirmation(
                f"TASK-{state.task_id}: no evidence of work (0 commits, no passing check): "
                "unverified_completion; look first, then use --force")
        warnings = ("accepted WITHOUT evidence of work (unverified_completion, forced)",)
    new = _append(fs.data, trail(("ACCEPTED_AT", _iso(now)), ("ACCEPTED_BY", actor)))
    dst = _relocate(fs, "done", new)
    rows = _update(state, now, queue="done", claimed_by=None, completed_at=_iso(now),
                   file_path=state.abs_path(str(dst.dst)))
    rows += _history(state, "accepted", actor, note, now)
    return Plan("accept", state.task_id, actor, note, f"{fs.queue} -> done", tuple(rows),
                (dst,), warnings)


def plan_cancel(state: TaskState, actor: str, note: str, now: datetime,
                force: bool = False) -> Plan:
    """Take a task out of the runnable lanes: to ``rejected``.

    Why rejected and not recycled: no Octopoid role picks work from ``rejected/`` (it is where
    Octopoid's own reject_task puts tasks that must not run), so a cancelled task stays put and
    counts as terminal; ``recycled/`` is input to the recycler/breakdown flow, which would turn
    the task into new work. The reason goes into the trail (CANCELLED_AT/CANCELLED_BY/
    CANCEL_REASON) and task_history (event ``rejected``, as Octopoid records a rejection)."""
    fs = state.primary()
    if not note and not force:
        raise Refused("cancel needs a reason (--note)")
    if {fs.queue, state.db_queue} & {"done", "rejected"} and not force:
        raise Refused(f"TASK-{state.task_id} is already finished ({fs.queue})")
    new = _append(fs.data, trail(("CANCELLED_AT", _iso(now)), ("CANCELLED_BY", actor),
                                 ("CANCEL_REASON", note)))
    dst = _relocate(fs, "rejected", new)
    rows = _update(state, now, queue="rejected", claimed_by=None, claimed_at=None,
                   file_path=state.abs_path(str(dst.dst)))
    rows += _history(state, "rejected", actor, f"cancelled by operator: {note}", now)
    return Plan("cancel", state.task_id, actor, note, f"{fs.queue} -> rejected (cancelled)",
                tuple(rows), (dst,))


def plan_clear_error(state: TaskState, actor: str, note: str, now: datetime,
                     force: bool = False) -> Plan:
    """Move the task's live error block(s) under ``## History`` in place (stale_error)."""
    fs = state.primary()
    if "failed" in (fs.queue, state.db_queue) and not force:
        raise Refused(f"TASK-{state.task_id} is failed: its error is current (retry it, or "
                      "--force)")
    text, n = archive_errors(fs.data.decode("utf-8"))
    if n == 0:
        raise Refused(f"TASK-{state.task_id}: no error block outside {HISTORY_HEADING}")
    new = text.encode()
    if note:
        new = _append(new, trail(("OPERATOR_NOTE_AT", _iso(now)), ("NOTE_BY", actor),
                                 ("NOTE", note)))
    rows = _history(state, "error_cleared", actor,
                    f"{n} error block(s) moved under {HISTORY_HEADING}", now) if state.row else []
    return Plan("clear-error", state.task_id, actor, note,
                f"{n} error block(s) moved under {HISTORY_HEADING}", tuple(rows),
                (FileOp(fs.rel, fs.rel, fs.sha, new),))


def plan_quarantine(state: TaskState, actor: str, note: str, now: datetime,
                    queue: str | None = None, force: bool = False) -> Plan:
    """Move a corrupt, stub, orphan or duplicate file to ``shared/quarantine/``, byte for byte."""
    cands = [f for f in state.files if queue is None or f.queue == queue]
    if queue is None:
        bad = [f for f in cands if not f.parsed.parseable]
        if bad:
            cands = bad
    if not cands:
        raise Refused(f"TASK-{state.task_id}: no file to quarantine"
                      + (f" in {queue}/" if queue else ""))
    if len(cands) > 1:
        raise Refused(f"TASK-{state.task_id}: files in {', '.join(f.queue for f in cands)}; "
                      "name one with --queue")
    fs = cands[0]
    good = [f for f in state.files if f.parsed.parseable]
    if fs.parsed.parseable and state.row is not None and good == [fs] and not force:
        raise Refused(f"TASK-{state.task_id}: {fs.rel} is the task's only readable file and "
                      "it has a DB row (quarantining it would make the file missing); --force")
    stamp = now.strftime("%Y%m%d-%H%M%S")
    dst = f"shared/quarantine/{fs.queue}-TASK-{state.task_id}-{stamp}.md"
    rows = _history(state, "quarantined", actor, f"{fs.rel} -> {dst}"
                    f"{'; ' + note if note else ''}", now) if state.row else []
    why = fs.parsed.problem or ("orphan (no DB row)" if state.row is None else "duplicate")
    return Plan("quarantine", state.task_id, actor, note, f"{fs.rel} -> {dst} ({why})",
                tuple(rows), (FileOp(fs.rel, dst, fs.sha, fs.data),))


def plan_register(state: TaskState, actor: str, note: str, now: datetime) -> Plan:
    """An orphan file -> a DB row: queue from its directory, header fields, ABSOLUTE file_path."""
    if not state.has_db:
        raise Refused("no state.db (file-only mode): nothing to register into")
    if state.row is not None:
        raise Refused(f"TASK-{state.task_id} already has a DB row")
    fs = state.primary()
    h = fs.parsed.header
    row: dict[str, Any] = {
        "id": state.task_id, "file_path": state.abs_path(fs.rel), "queue": fs.queue,
        "priority": h.get("PRIORITY") or "P2", "role": h.get("ROLE"),
        "branch": h.get("BRANCH") or "main", "blocked_by": h.get("BLOCKED_BY") or None,
        "project_id": h.get("PROJECT") or None, "checks": h.get("CHECKS") or None,
        "created_at": _db_utc(now), "updated_at": _iso(now)}
    if fs.queue == "claimed":
        claims = [e for e in fs.parsed.trail if e.kind == "CLAIMED"]
        if claims:
            row["claimed_by"] = claims[-1].actor
            row["claimed_at"] = claims[-1].get("CLAIMED_AT")
    row = {c: v for c, v in row.items() if c in state.columns and v is not None}
    rows = [RowOp("tasks", "insert", {"id": state.task_id}, None, row)]
    rows += _history(state, "created", actor, f"registered by qwarden from {fs.rel}: priority="
                     f"{row.get('priority')}, role={row.get('role')}"
                     f"{'; ' + note if note else ''}", now)
    return Plan("register", state.task_id, actor, note, f"DB row for {fs.rel} "
                f"(queue {fs.queue})", tuple(rows), ())


def message_text(msg_type: str, title: str, body: str, now: datetime, actor: str,
                 task_id: str | None) -> str:
    """Octopoid's messages/ format (message_utils.create_message)."""
    emoji = {"info": "ℹ️", "warning": "⚠️", "error": "❌", "question": "❓"}.get(msg_type, "")
    lines = [f"# {emoji} {title}", "", f"**Type:** {msg_type}", f"**Time:** {_iso(now)}",
             f"**From:** {actor}"]
    if task_id:
        lines.append(f"**Task:** {task_id}")
    lines += ["", "---", "", body]
    return "\n".join(lines)


def message_name(msg_type: str, title: str, now: datetime) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in title[:30])
    return f"{msg_type}-{now.strftime('%Y%m%d-%H%M%S')}-{safe}.md"


def plan_escalate(state: TaskState, actor: str, note: str, now: datetime,
                  msg_type: str = "warning") -> Plan:
    """A human-inbox message (``ROOT/messages/``) about the task; the task itself is untouched."""
    if msg_type not in ("info", "warning", "error", "question"):
        raise Refused(f"message type {msg_type!r}: info, warning, error or question")
    title = f"TASK-{state.task_id} needs a human"
    where = ", ".join(f"{f.queue}/" for f in state.files) or "no file"
    body = (f"{note or 'Escalated by the operator.'}\n\n- DB queue: {state.db_queue or 'no row'}"
            f"\n- file: {where}\n- claimed_by: {(state.row or {}).get('claimed_by') or '-'}\n")
    rel = f"messages/{message_name(msg_type, title, now)}"
    content = message_text(msg_type, title, body, now, actor, state.task_id).encode()
    rows = _history(state, "escalation_message", actor, rel, now) if state.row else []
    return Plan("escalate", state.task_id, actor, note, f"message {rel}", tuple(rows),
                (FileOp(None, rel, None, content),))


def plan_mark_read(state: TaskState, actor: str, note: str, now: datetime,
                   force: bool = False) -> Plan:
    """Record that a supervisor looked at a finished task (clears unread_terminal). Writes
    nothing to the queue: the journal entry itself is the read mark."""
    q = state.db_queue or (state.files[0].queue if state.files else None)
    if q not in TERMINAL and not force:
        raise Refused(f"TASK-{state.task_id} is not finished ({q}); mark-read is for "
                      "done/failed/escalated/rejected tasks")
    return Plan("mark-read", state.task_id, actor, note, f"reviewed ({q})")


# a split's subtask: the neutral spec (TITLE | CONTEXT | CRIT; CRIT on the CLI)
Subtask = SubtaskSpec


def _new_ids(root: Path, n: int, taken: set[str]) -> list[str]:
    import secrets

    out: list[str] = []
    while len(out) < n:
        tid = secrets.token_hex(4)
        if tid in taken or tid in out or any(
                (root / "shared" / "queue" / q / f"TASK-{tid}.md").exists() for q in QUEUES):
            continue
        out.append(tid)
    return out


def _replace_id(blocked: str, parent: str, children: list[str]) -> str:
    ids = [b.strip() for b in blocked.split(",") if b.strip()]
    out: list[str] = []
    for b in ids:
        for new in (children if b.removeprefix("TASK-") == parent else [b]):
            if new not in out:
                out.append(new)
    return ",".join(out)


def plan_split(root: Path, state: TaskState, actor: str, note: str, now: datetime,
               subtasks: list[Subtask], max_children: int = 10) -> Plan:
    """N subtasks, each an Octopoid task file plus DB row in incoming inheriting role,
    priority, branch and project; tasks blocked by the parent re-pointed at the children; the
    parent closed to ``recycled/`` (Octopoid's resting place for work superseded by a
    breakdown) with a note naming them. The journal's writer lock serializes creation."""
    fs = state.primary()
    if not subtasks:
        raise Refused("split needs at least one --subtask")
    if len(subtasks) > max_children:
        raise Refused(f"{len(subtasks)} subtasks: at most {max_children} at once "
                      "(actions.split_max)")
    if {fs.queue, state.db_queue} & {"done", "rejected", "recycled"}:
        raise Refused(f"TASK-{state.task_id} is finished ({fs.queue})")
    h, parent = fs.parsed.header, state.task_id
    taken: set[str] = set()
    blocked_rows: list[dict[str, Any]] = []
    if state.has_db:
        src = OctopoidReader(root)
        conn = src.connect()
        try:
            cur = conn.execute("SELECT * FROM tasks WHERE blocked_by LIKE ?", (f"%{parent}%",))
            cols = [d[0] for d in cur.description]
            for r in cur.fetchall():
                d = dict(zip(cols, r, strict=True))
                if parent in [b.strip().removeprefix("TASK-")
                              for b in str(d["blocked_by"]).split(",")]:
                    blocked_rows.append(d)
            taken = {str(r[0]) for r in conn.execute("SELECT id FROM tasks")}
        finally:
            conn.close()
    kids = _new_ids(root, len(subtasks), taken)
    files: list[FileOp] = []
    rows: list[RowOp] = []
    for kid, sub in zip(kids, subtasks, strict=True):
        lines = [f"# [TASK-{kid}] {_one_line(sub.title, 200)}", "",
                 f"ROLE: {h.get('ROLE') or 'implement'}", f"PRIORITY: {h.get('PRIORITY') or 'P2'}",
                 f"BRANCH: {h.get('BRANCH') or 'main'}", f"CREATED: {_iso(now)}",
                 f"CREATED_BY: {actor}"]
        if h.get("PROJECT"):
            lines.append(f"PROJECT: {h['PROJECT']}")
        lines += [f"PARENT: TASK-{parent}", "", "## Context",
                  sub.context or f"Part of TASK-{parent}: {fs.parsed.title}", "",
                  "## Acceptance Criteria"]
        lines += [f"- [ ] {c}" for c in (sub.criteria or ("It works",))] + [""]
        rel = f"shared/queue/incoming/TASK-{kid}.md"
        files.append(FileOp(None, rel, None, "\n".join(lines).encode()))
        if state.has_db:
            prow = state.row or {}
            new = {"id": kid, "file_path": state.abs_path(rel), "queue": "incoming",
                   "priority": h.get("PRIORITY") or prow.get("priority") or "P2",
                   "role": h.get("ROLE") or prow.get("role"),
                   "branch": h.get("BRANCH") or prow.get("branch") or "main",
                   "project_id": prow.get("project_id") or h.get("PROJECT") or None,
                   "created_at": _db_utc(now), "updated_at": _iso(now)}
            new = {c: v for c, v in new.items() if c in state.columns and v is not None}
            rows.append(RowOp("tasks", "insert", {"id": kid}, None, new))
            rows.append(RowOp("task_history", "insert", {"task_id": kid}, None,
                              {"task_id": kid, "event": "created", "agent": actor,
                               "details": f"split from TASK-{parent}: priority="
                                          f"{new.get('priority')}, role={new.get('role')}",
                               "timestamp": _db_utc(now)}))
    for b in blocked_rows:
        rows.append(RowOp("tasks", "update", {"id": b["id"]}, b,
                          {"blocked_by": _replace_id(str(b["blocked_by"]), parent, kids),
                           **({"updated_at": _iso(now)} if "updated_at" in b else {})}))
        bst = read_state(root, str(b["id"]))
        for bf in bst.files:
            text = bf.data.decode("utf-8", errors="strict") if bf.parsed.parseable else ""
            m = re.search(r"^BLOCKED_BY:[ \t]*(.*)$", text, re.M)
            if m is not None:
                new_text = (text[:m.start(1)] + _replace_id(m.group(1), parent, kids)
                            + text[m.end(1):])
                files.append(FileOp(bf.rel, bf.rel, bf.sha, new_text.encode()))
    names = ", ".join(f"TASK-{k}" for k in kids)
    closing = trail(("OPERATOR_NOTE_AT", _iso(now)), ("NOTE_BY", actor),
                    ("NOTE", f"split into {names}" + (f": {note}" if note else "")))
    files.append(_relocate(fs, "recycled", _append(fs.data, closing)))
    rows += _update(state, now, queue="recycled", claimed_by=None, claimed_at=None,
                    file_path=state.abs_path(f"shared/queue/recycled/TASK-{parent}.md"))
    rows += _history(state, "recycled", actor, f"split into {names}", now)
    return Plan("split", parent, actor, note, f"into {names}; parent -> recycled",
                tuple(rows), tuple(files), extra={"children": kids})


PLANNERS: dict[str, Callable[..., Plan]] = {
    "retry": plan_retry, "release": plan_release, "sync": plan_sync, "accept": plan_accept,
    "cancel": plan_cancel, "clear-error": plan_clear_error, "quarantine": plan_quarantine,
    "register": plan_register, "escalate": plan_escalate, "mark-read": plan_mark_read,
    "repair-path": plan_repair_path, "split": plan_split,
}


def make_plan(root: Path, kind: str, task_id: str, *, actor: str, note: str = "",
              force: bool = False, now: datetime | None = None, queue: str | None = None,
              direction: str | None = None, msg_type: str = "warning",
              subtasks: list[Subtask] | None = None, max_children: int = 10,
              state: TaskState | None = None) -> Plan:
    """Read the task now and plan ``kind`` for it."""
    if kind not in PLANNERS:
        raise Refused(f"unknown action {kind!r}")
    now = now or datetime.now()
    st = state or read_state(root, task_id)
    if not st.files and st.row is None:
        raise Refused(f"TASK-{task_id}: no such task (no file, no DB row)")
    if kind == "sync":
        return plan_sync(st, actor, note, now, direction or "sync_db")
    if kind == "quarantine":
        return plan_quarantine(st, actor, note, now, queue, force)
    if kind == "register":
        return plan_register(st, actor, note, now)
    if kind == "escalate":
        return plan_escalate(st, actor, note, now, msg_type)
    if kind == "split":
        return plan_split(Path(root), st, actor, note, now, subtasks or [], max_children)
    return PLANNERS[kind](st, actor, note, now, force)


# ------------------------------------------------------------------ judgement guard

@dataclass(frozen=True)
class Judgement:
    """What the judge says about the task right now (for the live-work guard and defaults)."""

    liveness: str | None
    split_brain_live: bool
    recommended: str | None  # the verdict's recommended action
    sync_direction: str | None  # from a file_db_mismatch finding
    reason: str
    snapshot: Snapshot | None = None
    thresholds: Thresholds | None = None

    def live_refusal(self, kind: str, task_id: str) -> str | None:
        """Why ``kind`` must not touch this task now (someone may still be working on it)."""
        if self.snapshot is None:
            return None
        return live_work_refusal(kind, task_id, self.snapshot,
                                 self.thresholds or Thresholds())


def judge_task(root: Path, task_id: str, config: Any = None) -> Judgement:
    """One scan of the queue, reduced to this task's verdict and findings."""
    from qwarden.core.formats import open_engine

    snap = open_engine(Path(root), config).scan()
    th = config.thresholds if config is not None else Thresholds()
    v = snap.verdicts.get(task_id)
    direction = None
    for f in snap.findings_for(task_id):
        if f.kind == "file_db_mismatch" and f.recommended_action.value in ("sync_db",
                                                                          "sync_file"):
            direction = f.recommended_action.value
    if v is None:
        return Judgement(None, False, None, direction, "no verdict", snap, th)
    return Judgement(v.liveness.value, v.split_brain_live, v.recommended_action.value,
                     direction, v.reason, snap, th)

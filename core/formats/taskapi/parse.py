"""Rows of the ``tasks`` table -> the neutral model, the same for every backend.

A backend (SQLite, PostgreSQL) hands each row as a tuple of ``kinds.COLUMNS`` with its
driver's own values: SQLite's text stamps (naive UTC, as comic-pile's SQLAlchemy writes them)
and 0/1 booleans, PostgreSQL's ``timestamptz`` (or naive ``timestamp``, UTC by the app) and
real booleans. Everything is brought to one form here (aware UTC datetimes, plain text), so the
same state read from either database gives the same model, and so the same report.

Never an exception: a cell that cannot be used is missing evidence and a ``ReadProblem``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from qwarden.core.formats.taskapi.kinds import COLUMNS
from qwarden.core.model import ReadProblem, Record, Signal, TaskRecord
from qwarden.core.rules.errors import exception_signature
from qwarden.core.textsafe import clean

_POS = {c: i for i, c in enumerate(COLUMNS)}
# "Claimed by Alice at 2026-11-22T22:12:31.053210+00:00": the claim's own line (the claim
# replaces status_notes with it); the agent name may hold spaces, the stamp never does.
CLAIM_LINE = re.compile(r"^\s*Claimed by (?P<agent>.+?) at (?P<at>\S+)\s*$")
NOTE_KEEP = 300  # chars of a note kept as evidence
REASON_KEEP = 4000  # tail of blocked_reason kept (the exception line is at its end)


class RowFacts(Record, frozen=True):
    """What the rules read of one row besides its ``TaskRecord`` (the columns they cite)."""

    task_id: str
    status: str
    agent: str | None  # assigned_agent
    worktree: str | None
    completed: bool | None  # None: unreadable
    claim_note: str | None  # the "Claimed by X at ..." line of the current agent's claim
    claim_at: datetime | None  # its stamp
    heartbeat: datetime | None  # last_heartbeat, as stored (may predate the claim)
    heartbeat_text: str | None  # the cell as the DB holds it (evidence)
    updated_at: datetime | None
    notes_tail: str | None  # the end of status_notes (its newest line: ``last_note``)
    dependencies: str | None  # the cell, as text
    blocked_reason: str | None  # its tail
    blocked_by: str | None  # free text, usually an agent's name (not a task link)
    failure_signature: str | None  # the exception line blocked_reason ends in (masked)
    check_results: str | None

    @property
    def last_note(self) -> str | None:
        """The newest line of status_notes (what was said last)."""
        return last_note(self.notes_tail)

    @property
    def heartbeat_after_claim(self) -> datetime | None:
        """The heartbeat when it was sent after this claim (a claim does not reset
        last_heartbeat: an older one is the previous claim's and proves nothing now)."""
        hb = self.heartbeat
        if hb is None:
            return None
        if self.claim_at is not None and hb <= self.claim_at:
            return None
        return hb

    @property
    def claim_time(self) -> datetime | None:
        """When the current claim began: its note's stamp, else (no note of this agent's)
        the row's updated_at, the latest the claim can have been made."""
        return self.claim_at if self.claim_at is not None else self.updated_at


def text(v: Any, limit: int = 300) -> str | None:
    """An untrusted cell as plain one-line text (control and escape sequences removed)."""
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    t = v if type(v) is str else str(v)
    if len(t) > limit:
        t = t[:limit]
    return t if t.isprintable() else clean(t, keep_newlines=False)


def utc(v: Any) -> datetime | None:
    """A stamp cell as an aware UTC datetime: SQLite's naive text is UTC, PostgreSQL's
    ``timestamptz`` is converted, a naive ``timestamp`` is UTC. None when unusable."""
    if v is None:
        return None
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, (str, bytes)):
        s = v.decode("ascii", errors="replace") if isinstance(v, bytes) else v
        try:
            dt = datetime.fromisoformat(s.strip())
        except ValueError:
            return None
    else:
        return None
    try:
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def stamp_text(dt: datetime | None, raw: Any = None) -> str | None:
    """The text a ``TaskRecord`` keeps, which ``parse_db_time`` reads back as ``dt``:
    SQLite's own naive UTC text as it is (``YYYY-MM-DD HH:MM:SS[.ffffff]``, read as UTC),
    else the UTC isoformat."""
    if dt is None:
        return None
    if type(raw) is str and len(raw) >= 19 and raw[10] == " " and raw[19:20] in ("", ".") \
            and len(raw) <= 26:
        return raw
    return dt.isoformat(sep=" ")


def as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0 if v in (0, 1) else None
    if isinstance(v, str) and v.strip().lower() in ("0", "1", "true", "false", "t", "f"):
        return v.strip().lower() in ("1", "true", "t")
    return None


def split_dependencies(v: str | None) -> tuple[str, ...]:
    """``dependencies`` is a comma list of task ids ("A,B")."""
    if not v:
        return ()
    return tuple(d for d in (text(p.strip(), 100) for p in v.split(",")) if d)


def claim_of(notes: str | None, agent: str | None) -> tuple[str | None, datetime | None]:
    """The current claim's note and stamp: the last "Claimed by X at ts" line naming the
    assigned agent (another agent's older claim line says nothing about this claim)."""
    if not notes or not agent:
        return None, None
    for line in reversed(notes.splitlines()):
        m = CLAIM_LINE.match(line)
        if m is None:
            continue
        if text(m.group("agent"), 100) != agent:
            continue
        return text(line.strip(), NOTE_KEEP), utc(m.group("at"))
    return None, None


def last_note(notes: str | None) -> str | None:
    if not notes:
        return None
    for line in reversed(notes.splitlines()):
        if line.strip():
            return text(line.strip(), NOTE_KEEP)
    return None


_SHORT: dict[tuple[Any, int], str | None] = {}  # status, priority, agent, worktree values


def short_text(v: Any, limit: int) -> str | None:
    """``text`` for the few values a column repeats over every row (status, priority, agent
    names), cleaned once each (bounded: a table of all-distinct values cleans each row)."""
    key = (v, limit)
    try:
        return _SHORT[key]
    except KeyError:
        pass
    except TypeError:  # (an unhashable cell)
        return text(v, limit)
    got = text(v, limit)
    if len(_SHORT) < 65536:
        _SHORT[key] = got
    return got


_S, _P, _AG, _WT, _NOTES = (_POS[c] for c in ("status", "priority", "assigned_agent",
                                               "worktree", "status_notes"))
_HB, _CR, _UP, _DONE, _DEPS, _WHY, _BY, _TITLE, _CHECKS = (_POS[c] for c in (
    "last_heartbeat", "created_at", "updated_at", "completed", "dependencies",
    "blocked_reason", "blocked_by", "title", "check_results"))


def read_row(row: tuple[Any, ...], where: str, problems: list[ReadProblem]
             ) -> tuple[TaskRecord, RowFacts] | None:
    """One row (``kinds.COLUMNS`` order) as its record and facts; None (and a problem)
    for a row with no usable task_id."""
    tid = text(row[0], 100)
    if not tid:
        problems.append(ReadProblem(f"{where} tasks row", "no task_id: row skipped"))
        return None
    status = short_text(row[_S], 60) or "?"
    agent = short_text(row[_AG], 100)
    raw_notes = row[_NOTES]
    notes = raw_notes.decode("utf-8", "replace") if isinstance(raw_notes, bytes) else (
        raw_notes if isinstance(raw_notes, str) or raw_notes is None else str(raw_notes))
    claim_note, claim_at = claim_of(notes, agent)
    stamps: dict[str, datetime | None] = {}
    for col, i in (("last_heartbeat", _HB), ("created_at", _CR), ("updated_at", _UP)):
        raw = row[i]
        stamps[col] = dt = utc(raw)
        if dt is None and raw is not None and raw != "":
            problems.append(ReadProblem(f"{where} tasks[{tid}].{col}",
                                        f"unreadable time {text(raw, 40)!r}: read as missing"))
    raw_done = row[_DONE]
    completed = as_bool(raw_done)
    if completed is None and raw_done is not None:
        problems.append(ReadProblem(f"{where} tasks[{tid}].completed",
                                    f"unreadable value {text(raw_done, 40)!r}: read as missing"))
    deps_raw = row[_DEPS]
    deps_text = deps_raw if isinstance(deps_raw, str) else text(deps_raw, 2000)
    reason_raw = row[_WHY]
    reason = (reason_raw if isinstance(reason_raw, str) else
              None if reason_raw is None else str(reason_raw))
    reason_tail = reason[-REASON_KEEP:] if reason else None
    hb_raw = row[_HB]
    facts = RowFacts(
        task_id=tid, status=status, agent=agent, worktree=short_text(row[_WT], 255),
        completed=completed, claim_note=claim_note, claim_at=claim_at,
        heartbeat=stamps["last_heartbeat"],
        heartbeat_text=None if hb_raw is None else stamp_text(stamps["last_heartbeat"])
        or text(hb_raw, 40),
        updated_at=stamps["updated_at"],
        notes_tail=notes[-2 * NOTE_KEEP:] if notes else None,
        dependencies=None if deps_text is None else text(deps_text, 500),
        blocked_reason=None if reason_tail is None else clean(reason_tail),
        blocked_by=short_text(row[_BY], 100),
        failure_signature=exception_signature(reason_tail) if reason_tail else None,
        check_results=None if row[_CHECKS] is None else text(row[_CHECKS], 4000))
    # a claim's time when someone holds it, or the row is in_progress with nobody assigned
    # (a direct edit): then it has been silent since updated_at
    claimed_at = facts.claim_time if agent or status == "in_progress" else None
    rec = TaskRecord(
        task_id=tid, queue=status, priority=short_text(row[_P], 20),
        title=text(row[_TITLE], 255), claimed_by=agent,
        claimed_at_text=stamp_text(claimed_at, row[_UP] if claimed_at is stamps["updated_at"]
                                   else None),
        blocked_by=split_dependencies(deps_text) if deps_text else (),
        check_results_text=facts.check_results,
        created_at_text=stamp_text(stamps["created_at"], row[_CR]),
        updated_at_text=stamp_text(stamps["updated_at"], row[_UP]))
    return rec, facts


def claim_signals(facts: RowFacts) -> tuple[Signal, ...]:
    """An in_progress claim's signs of life, newest last: the claim itself, and the
    heartbeat when it was sent after it (the later of the two is what liveness reads)."""
    at = facts.claim_time
    out = [] if at is None else [Signal("claim (status_notes)" if facts.claim_at else
                                        "claim (updated_at: no claim note)", at,
                                        facts.task_id)]
    hb = facts.heartbeat_after_claim
    if hb is not None:
        out.append(Signal("last_heartbeat", hb, facts.task_id))
    return tuple(out)


def raw_dict(names: list[str], values: tuple[Any, ...]) -> Mapping[str, Any]:
    """Every column of one row for the detail view, values as plain text (never markup)."""
    out: dict[str, Any] = {}
    for k, v in zip(names, values, strict=True):
        if isinstance(v, datetime):
            v = stamp_text(utc(v))
        elif isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        out[k] = None if v is None else clean(str(v))[:20000]
    return out

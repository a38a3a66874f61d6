"""Readers of RALF's files, each value with the line it was read from (the evidence).

- ``queue.yaml`` (the planner's): ``queue:`` entries keyed ``id`` or ``task_id`` and
  ``metadata``; read with ruamel.yaml's round-trip loader, whose line info names the entry.
- ``events.yaml`` (the executor's): read tolerantly. A YAML error, or a file too long for
  ruamel to parse in reasonable time, degrades to a line scan of the simple shape the
  executor writes; the error is kept (``EventsFile.corrupt``) so a ``corrupt_queue_file``
  finding can name its line. Newest-first and oldest-first files both occur: ``order`` says
  which, and ``Event.seq`` is the position oldest-first.
- ``heartbeat.yaml``: ``heartbeats.{planner,executor}`` and ``metadata.timeout_seconds``.
- task files: only the header block (``# TASK-X: title`` and the ``**Key:** value`` lines
  before the first ``##`` section or ``---`` rule).

All text is untrusted: nothing here evaluates it, values are kept as plain strings, and
structures are walked only as deep as the format goes (an alias bomb stays a few nodes).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from qwarden.core.timefmt import parse_any

# ruamel's parser is pure Python (~4,000 lines/s here): a longer events.yaml is line-scanned.
MAX_YAML_LINES = 20_000
MAX_VALUE_CHARS = 2000


def _yaml() -> YAML:
    y = YAML(typ="rt", pure=True)
    y.allow_duplicate_keys = True  # the last one wins, as the agents' own loaders do
    return y


def scalar(v: Any) -> str | None:
    """A YAML value as text, None for a missing/null one; a list or map is not a scalar."""
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    s = str(v)
    return s if len(s) <= MAX_VALUE_CHARS else s[:MAX_VALUE_CHARS] + "…"


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    s = scalar(v)
    if s is None:
        return None
    s = s.strip()
    try:
        return int(s)
    except ValueError:
        return None


def _key_line(m: Any, key: str) -> int | None:
    try:
        return int(m.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _item_line(seq: Any, i: int) -> int | None:
    try:
        return int(seq.lc.item(i)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _error_line(exc: BaseException) -> int | None:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return int(mark.line) + 1
    return None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, MarkedYAMLError):
        return " ".join(str(p) for p in (exc.context, exc.problem) if p) or type(exc).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- queue.yaml ----------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueEntry:
    task_id: str
    id_key: str  # "id" or "task_id": the shape the planner used for this entry
    index: int  # position in the queue list
    line: int  # the entry's first line (1-based)
    status: str | None
    status_line: int | None
    title: str | None = None
    priority: str | None = None
    type: str | None = None
    added_at: str | None = None


@dataclass(frozen=True)
class MetaValue:
    value: str | None
    line: int | None


@dataclass(frozen=True)
class QueueFile:
    entries: tuple[QueueEntry, ...] = ()
    metadata: Mapping[str, MetaValue] = field(default_factory=dict)
    problem: str = ""  # the file could not be read as a queue (the entries are then empty)
    problem_line: int | None = None
    skipped: tuple[tuple[int | None, str], ...] = ()  # (line, why) of entries not usable


def parse_queue(text: str) -> QueueFile:
    try:
        doc = _yaml().load(text)
    except (YAMLError, ValueError, RecursionError) as exc:
        return QueueFile(problem=f"not valid YAML: {_error_text(exc)}",
                         problem_line=_error_line(exc))
    if doc is None:
        return QueueFile()
    if not isinstance(doc, dict):
        return QueueFile(problem="not a mapping at the top (queue:, metadata:)", problem_line=1)
    entries: list[QueueEntry] = []
    skipped: list[tuple[int | None, str]] = []
    q = doc.get("queue")
    if q is not None and not isinstance(q, list):
        return QueueFile(problem="queue: is not a list", problem_line=_key_line(doc, "queue"))
    for i, e in enumerate(q or ()):
        line = _item_line(q, i)
        if not isinstance(e, dict):
            skipped.append((line, "entry is not a mapping"))
            continue
        key = "id" if scalar(e.get("id")) else "task_id" if scalar(e.get("task_id")) else ""
        if not key:
            skipped.append((line, "entry has no id or task_id"))
            continue
        tid = (scalar(e.get(key)) or "").strip()
        st = scalar(e.get("status"))
        entries.append(QueueEntry(
            task_id=tid, id_key=key, index=i, line=line or 0,
            status=st.strip().lower() if st is not None else None,
            status_line=_key_line(e, "status"), title=scalar(e.get("title")),
            priority=scalar(e.get("priority")), type=scalar(e.get("type")),
            added_at=scalar(e.get("added_at"))))
    meta: dict[str, MetaValue] = {}
    m = doc.get("metadata")
    if isinstance(m, dict):
        for k in m:
            meta[str(k)] = MetaValue(scalar(m.get(k)), _key_line(m, k))
    return QueueFile(entries=tuple(entries), metadata=meta, skipped=tuple(skipped))


# -- events.yaml ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    task_id: str | None
    type: str  # lower-case: started, completed, failed, ...
    agent: str | None
    run_number: int | None
    at: datetime | None
    at_text: str | None
    line: int  # the entry's first line
    index: int  # position in the file
    seq: int = 0  # position oldest-first (set once the file's order is known)
    result: str | None = None
    commit_hash: str | None = None


@dataclass(frozen=True)
class EventsFile:
    events: tuple[Event, ...] = ()
    order: str = "oldest-first"  # or newest-first
    corrupt: str = ""  # the YAML error that made the reader fall back to the line scan
    corrupt_line: int | None = None
    scanned: bool = False  # read by the line scan


def _event(d: Mapping[str, Any], line: int, index: int) -> Event | None:
    typ = scalar(d.get("type")) or scalar(d.get("event")) or ""
    tid = scalar(d.get("task_id")) or scalar(d.get("id"))
    if not typ and not tid:
        return None
    at_text = scalar(d.get("timestamp")) or scalar(d.get("at"))
    return Event(task_id=tid.strip() if tid else None, type=typ.strip().lower(),
                 agent=(scalar(d.get("agent")) or "").strip() or None,
                 run_number=_int(d.get("run_number")), at=parse_any(at_text.strip())
                 if at_text else None, at_text=at_text, line=line, index=index,
                 result=scalar(d.get("result")), commit_hash=scalar(d.get("commit_hash")))


def _order(events: list[Event]) -> str:
    """Which way the file runs: by run numbers first (consecutive pairs that rise or fall),
    then by timestamps; an undecided file is taken as written, oldest first."""
    for key in (lambda e: e.run_number, lambda e: e.at):
        up = down = 0
        prev = None
        for e in events:
            k = key(e)
            if k is None:
                continue
            if prev is not None:
                if k > prev:
                    up += 1
                elif k < prev:
                    down += 1
            prev = k
        if up != down:
            return "oldest-first" if up > down else "newest-first"
    return "oldest-first"


def _with_seq(events: list[Event], order: str) -> tuple[Event, ...]:
    n = len(events)
    out = []
    for e in events:
        seq = e.index if order == "oldest-first" else n - 1 - e.index
        out.append(Event(e.task_id, e.type, e.agent, e.run_number, e.at, e.at_text, e.line,
                         e.index, seq, e.result, e.commit_hash))
    return tuple(out)


def parse_events(text: str) -> EventsFile:
    corrupt, corrupt_line = "", None
    if text.count("\n") <= MAX_YAML_LINES:
        try:
            doc = _yaml().load(text)
        except (YAMLError, ValueError, RecursionError) as exc:
            corrupt, corrupt_line = f"not valid YAML: {_error_text(exc)}", _error_line(exc)
        else:
            seq = doc.get("events") if isinstance(doc, dict) else doc
            if seq is None:
                return EventsFile()
            if isinstance(seq, list):
                evs: list[Event] = []
                for i, d in enumerate(seq):
                    if isinstance(d, dict):
                        e = _event(d, _item_line(seq, i) or 0, len(evs))
                        if e is not None:
                            evs.append(e)
                order = _order(evs)
                return EventsFile(_with_seq(evs, order), order)
            corrupt, corrupt_line = "events: is not a list", 1
    evs = scan_events(text)
    order = _order(evs)
    return EventsFile(_with_seq(evs, order), order, corrupt, corrupt_line, scanned=True)


_ITEM = re.compile(r"^(\s*)-\s+([A-Za-z_][\w-]*)\s*:\s?(.*)$")
_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:\s?(.*)$")


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        inner = v[1:-1]
        return inner.replace("''", "'") if v[0] == "'" else inner.replace('\\"', '"')
    if " #" in v:
        v = v.split(" #", 1)[0].rstrip()
    return v


def scan_events(text: str) -> list[Event]:
    """The tolerant reader: ``- key: value`` starts an entry, ``key: value`` lines at the
    entry's indentation add to it; anything else (continuations, nested lists, garbage) is
    skipped. Finds every event a damaged file still holds, with its line."""
    out: list[Event] = []
    cur: dict[str, str] | None = None
    cur_line = 0
    indent = -1
    for n, raw in enumerate(text.splitlines(), 1):
        m = _ITEM.match(raw)
        if m and (indent < 0 or len(m.group(1)) <= indent):
            if cur is not None:
                e = _event(cur, cur_line, len(out))
                if e is not None:
                    out.append(e)
            indent = len(m.group(1))
            cur, cur_line = {m.group(2): _unquote(m.group(3))}, n
            continue
        if cur is None:
            continue
        k = _KEY.match(raw)
        if k and len(k.group(1)) == indent + 2 and k.group(2) not in cur:
            cur[k.group(2)] = _unquote(k.group(3))
    if cur is not None:
        e = _event(cur, cur_line, len(out))
        if e is not None:
            out.append(e)
    return out


# -- heartbeat.yaml ------------------------------------------------------------------------

@dataclass(frozen=True)
class Heartbeat:
    name: str
    line: int
    last_seen: datetime | None
    last_seen_text: str | None
    last_seen_line: int | None
    status: str | None
    current_action: str | None
    run_number: int | None
    current_task: str | None


@dataclass(frozen=True)
class HeartbeatFile:
    beats: tuple[Heartbeat, ...] = ()
    timeout_s: float | None = None
    timeout_line: int | None = None
    problem: str = ""
    problem_line: int | None = None


def parse_heartbeat(text: str) -> HeartbeatFile:
    try:
        doc = _yaml().load(text)
    except (YAMLError, ValueError, RecursionError) as exc:
        return HeartbeatFile(problem=f"not valid YAML: {_error_text(exc)}",
                             problem_line=_error_line(exc))
    if not isinstance(doc, dict):
        return HeartbeatFile() if doc is None else HeartbeatFile(
            problem="not a mapping at the top", problem_line=1)
    beats = []
    hb = doc.get("heartbeats")
    if isinstance(hb, dict):
        for name in hb:
            b = hb.get(name)
            line = _key_line(hb, name) or 0
            if not isinstance(b, dict):
                continue
            seen = scalar(b.get("last_seen"))
            task = scalar(b.get("current_task")) or scalar(b.get("task_id"))
            beats.append(Heartbeat(
                name=str(name), line=line, last_seen=parse_any(seen.strip()) if seen else None,
                last_seen_text=seen, last_seen_line=_key_line(b, "last_seen"),
                status=scalar(b.get("status")), current_action=scalar(b.get("current_action")),
                run_number=_int(b.get("run_number")), current_task=task))
    timeout = None
    tline = None
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        t = _int(meta.get("timeout_seconds"))
        if t is not None and t > 0:
            timeout, tline = float(t), _key_line(meta, "timeout_seconds")
    return HeartbeatFile(tuple(beats), timeout, tline)


# -- task files ----------------------------------------------------------------------------

_H1 = re.compile(r"^#\s+(TASK-[^\s:]+)\s*:?\s*(.*)$")
_HDR = re.compile(r"^\*\*([^*]{1,60}?):\*\*\s*(.*)$")


@dataclass(frozen=True)
class TaskHeader:
    declared_id: str | None
    title: str
    fields: tuple[tuple[str, str], ...]
    header_lines: int  # how many lines the block ran


def parse_task_header(text: str) -> TaskHeader:
    """The header block only: a ``**Status:**`` line further down is not the header's."""
    declared, title = None, ""
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    n = 0
    for n, raw in enumerate(io.StringIO(text), 1):
        line = raw.rstrip("\r\n")
        s = line.strip()
        if s.startswith("## ") or s == "##" or (s.startswith("---") and (fields or declared)):
            break
        m = _H1.match(s)
        if m and declared is None and not fields:
            declared, title = m.group(1), m.group(2).strip()
            continue
        if s.startswith("# ") and not title and not fields:
            title = s[2:].strip()
            continue
        h = _HDR.match(s)
        if h:
            key = h.group(1).strip()
            if key not in seen:
                seen.add(key)
                fields.append((key, h.group(2).strip()[:MAX_VALUE_CHARS]))
        if n > 200:
            break
    for k, v in fields:
        if k.lower() == "task id" and v.startswith("TASK-") and declared is None:
            declared = v.split()[0]
    return TaskHeader(declared, title[:MAX_VALUE_CHARS], tuple(fields), n)


def header_get(fields: Iterable[tuple[str, str]], key: str) -> str | None:
    key = key.lower()
    for k, v in fields:
        if k.lower() == key:
            return v
    return None

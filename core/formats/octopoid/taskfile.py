"""Octopoid v1 task-file reader: header, trail events, error blocks, rejection notices.

Pure and total: any bytes in, a ``TaskFile`` out (unparseable ones carry ``problem``). Fast path
matters — a 100,000-task queue is read cold — so the trail is found with one C-level regex pass
over the text rather than line-by-line Python.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime

from qwarden.core.model import ErrorBlock, Header, Side, TaskFile, TrailEvent
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import parse_local_iso

TASK_FILE_RE = re.compile(r"^TASK-([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.md$")
_HEADER_RE = re.compile(r"^# \[TASK-([^\]\s]{1,64})\][ \t]*(.*)$")
_KV_RE = re.compile(r"^([A-Z][A-Z_]{1,40}):[ \t]*(.*?)[ \t]*\r?$", re.M)
_HEADING_RE = re.compile(r"^## ", re.M)
_FENCE = "```"

HEADER_KEYS = frozenset({
    "ROLE", "PRIORITY", "BRANCH", "CREATED", "CREATED_BY", "PROJECT", "BLOCKED_BY", "CHECKS",
    "SKIP_PR", "EXPEDITE", "COMPLEXITY", "BREAKDOWN_DEPTH", "PARENT", "TYPE",
})

# The key that opens each trail event, the event kind, and the keys that belong to it.
_STARTERS: dict[str, str] = {
    "CLAIMED_BY": "CLAIMED",
    "SUBMITTED_AT": "SUBMITTED",
    "ACCEPTED_AT": "ACCEPTED",
    "COMPLETED_AT": "COMPLETED",
    "REJECTED_AT": "REJECTED",
    "FAILED_AT": "FAILED",
    "RETRIED_AT": "RETRIED",
    "NEEDS_CONTINUATION_AT": "NEEDS_CONTINUATION",
    "RESUMED_AT": "RESUMED",
    "ESCALATED_AT": "ESCALATED",
    "REVIEW_REJECTED_AT": "REVIEW_REJECTED",
}
_MEMBERS: dict[str, frozenset[str]] = {
    "CLAIMED": frozenset({"CLAIMED_AT"}),
    "SUBMITTED": frozenset({"COMMITS_COUNT", "TURNS_USED"}),
    "ACCEPTED": frozenset({"ACCEPTED_BY"}),
    "COMPLETED": frozenset(),
    "REJECTED": frozenset({"REJECTION_REASON", "ATTEMPT_COUNT", "REJECTED_BY"}),
    "FAILED": frozenset(),
    "RETRIED": frozenset({"RETRIED_BY", "RETRY_NOTE"}),
    "NEEDS_CONTINUATION": frozenset({"CONTINUATION_REASON", "WIP_BRANCH", "LAST_AGENT"}),
    "RESUMED": frozenset({"RESUMED_BY"}),
    "ESCALATED": frozenset({"PLAN_ID"}),
    "REVIEW_REJECTED": frozenset({"REVIEW_REJECTED_BY"}),
}
# Keys that qwarden's own interventions append (issue 4); they are trail events too.
_STARTERS.update({"CANCELLED_AT": "CANCELLED", "RELEASED_AT": "RELEASED",
                  "SYNCED_AT": "SYNCED", "OPERATOR_NOTE_AT": "NOTE"})
_MEMBERS.update({"CANCELLED": frozenset({"CANCELLED_BY", "CANCEL_REASON"}),
                 "RELEASED": frozenset({"RELEASED_BY", "RELEASE_REASON"}),
                 "SYNCED": frozenset({"SYNCED_BY", "SYNC_DIRECTION"}),
                 "NOTE": frozenset({"NOTE_BY", "NOTE"})})
TRAIL_KEYS = frozenset(_STARTERS) | frozenset().union(*_MEMBERS.values()) | {"CLAIMED_AT"}

# One shared string per key, and per value of the low-cardinality header keys: at 100,000
# files the repeated "ROLE"/"implement"/"P2" strings were ~60 MB of the snapshot.
_CANON_KEY: dict[str, str] = {k: k for k in HEADER_KEYS | TRAIL_KEYS}
_UNIQUE_VALUED = frozenset({"CREATED", "BLOCKED_BY", "PARENT"})


def _header_value(key: str, value: str) -> str:
    if key in _UNIQUE_VALUED or len(value) > 64:
        return value
    return sys.intern(value)
# One C-level pass finds only trail lines (prose never reaches Python code), another the header.
# (a lazy ``(.*?)`` with trailing-space trimming is 3x slower here; values are stripped after)
_TRAIL_RE = _KV_FAST_RE = re.compile(r"^([A-Z][A-Z_]+):(.*)$", re.M)
_HEADER_KV_RE = _KV_FAST_RE
# The event's own time stamp key, and who did it.
_TIME_KEY = {kind: key for key, kind in _STARTERS.items()}
_TIME_KEY["CLAIMED"] = "CLAIMED_AT"
_ACTOR_KEY = {"CLAIMED": "CLAIMED_BY", "ACCEPTED": "ACCEPTED_BY", "REJECTED": "REJECTED_BY",
              "RESUMED": "RESUMED_BY", "REVIEW_REJECTED": "REVIEW_REJECTED_BY",
              "NEEDS_CONTINUATION": "LAST_AGENT", "RETRIED": "RETRIED_BY",
              "CANCELLED": "CANCELLED_BY", "RELEASED": "RELEASED_BY", "SYNCED": "SYNCED_BY"}
_DETAIL_KEY = {"REJECTED": "REJECTION_REASON", "NEEDS_CONTINUATION": "CONTINUATION_REASON",
               "CANCELLED": "CANCEL_REASON", "RELEASED": "RELEASE_REASON",
               "SUBMITTED": "COMMITS_COUNT", "NOTE": "NOTE"}

HISTORY_HEADING = "## History"
# Sections lifecycle steps append after the trail lines (a stub may hold them too).
APPENDED_SECTIONS = frozenset({"Error", "Rejection Notice", "Rejection Details", "Result",
                               "History"})
HISTORY_END = "<!-- /History -->"  # qwarden closes each history section it writes


def history_spans(text: str) -> list[tuple[int, int]]:
    """``## History`` sections: up to qwarden's end marker, or (written by someone else,
    unterminated) to the end of the file. An error after the marker is a new, live one."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        i = text.find(HISTORY_HEADING, pos)
        if i < 0:
            return spans
        if i > 0 and text[i - 1] != "\n":
            pos = i + 1
            continue
        j = text.find(HISTORY_END, i)
        end = len(text) if j < 0 else j + len(HISTORY_END)
        spans.append((i, end))
        pos = end



def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of ``` fenced blocks (unclosed runs to the end)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        start = text.find(_FENCE, pos)
        if start < 0:
            return spans
        # a fence opens only at the start of a line
        if start > 0 and text[start - 1] != "\n":
            pos = start + 3
            continue
        end = text.find("\n" + _FENCE, start + 3)
        if end < 0:
            spans.append((start, len(text)))
            return spans
        spans.append((start, end + 4))
        pos = end + 4


def _in_spans(pos: int, spans: list[tuple[int, int]]) -> bool:
    for a, b in spans:
        if a <= pos < b:
            return True
        if a > pos:
            return False
    return False


def _build_event(kind: str, fields: list[tuple[str, str]]) -> TrailEvent:
    d = dict(fields)
    at = parse_local_iso(d.get(_TIME_KEY.get(kind, ""), None))
    actor_key = _ACTOR_KEY.get(kind)
    detail_key = _DETAIL_KEY.get(kind)
    return TrailEvent(kind=kind, at=at, side=Side.FILE,
                      actor=d.get(actor_key) if actor_key else None,
                      detail=d.get(detail_key, "") if detail_key else "",
                      fields=tuple(fields))


def _chronological(events: list[TrailEvent]) -> tuple[TrailEvent, ...]:
    """Trail in time order. Review notices are inserted near the top of the file, so physical
    order is not time order; events without a time keep their place after their predecessor."""
    if len(events) < 2:
        return tuple(events)
    prev = None
    for ev in events:
        if ev.at is None or (prev is not None and ev.at < prev):
            break
        prev = ev.at
    else:
        return tuple(events)  # already in time order: the common case
    keyed: list[tuple[datetime | None, int, TrailEvent]] = []
    last: datetime | None = None
    for i, ev in enumerate(events):
        if ev.at is not None:
            last = ev.at
        keyed.append((last, i, ev))
    if all(k[0] is not None for k in keyed):
        keyed.sort(key=lambda k: (k[0], k[1]))  # type: ignore[arg-type,return-value]
    return tuple(k[2] for k in keyed)


def parse_task_text(text: str, task_id: str, queue: str, mtime: float, size: int,
                    truncated: bool = False, tail: str = "") -> TaskFile:
    """Parse decoded text. ``tail`` is the end of a file too big to read whole (its trail)."""
    stripped = text.lstrip("\ufeff\r\n\t ")
    first_nl = stripped.find("\n")
    first_line = (stripped if first_nl < 0 else stripped[:first_nl]).rstrip("\r")
    m = _HEADER_RE.match(first_line)
    header_ok = m is not None
    title = ""
    if m is not None:
        if m.group(1) != task_id:
            # A header naming another task: the file cannot be trusted as this task.
            return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                            parseable=False, truncated=truncated,
                            problem=f"header names TASK-{m.group(1)}, file is TASK-{task_id}")
        title = clean_line(m.group(2), 1000).strip()  # escapes go where data enters

    body = text if not tail else text + "\n" + tail
    fences = _fenced_spans(body) if _FENCE in body else []
    hm = _HEADING_RE.search(body)
    first_heading = hm.start() if hm else len(body)
    hist_spans = history_spans(body) if HISTORY_HEADING in body else []

    header: dict[str, str] = {}
    events: list[TrailEvent] = []
    cur_kind: str | None = None
    cur_fields: list[tuple[str, str]] = []
    errors: list[ErrorBlock] = []
    other_lines = False

    for km in _KV_FAST_RE.finditer(body):
        key = km.group(1)
        pos = km.start()
        if key not in TRAIL_KEYS:
            if header_ok and pos < first_heading and key in HEADER_KEYS and key not in header:
                if not (fences and _in_spans(pos, fences)):
                    key = _CANON_KEY[key]
                    header[key] = _header_value(key, km.group(2).strip())
            continue
        if fences and _in_spans(pos, fences):
            continue
        value = km.group(2).strip()
        kind = _STARTERS.get(key)
        if kind is not None and key.endswith("_AT") and parse_local_iso(value) is None:
            continue  # prose that happens to start with a trail key (e.g. in ## Context)
        if key == "CLAIMED_AT" and cur_kind != "CLAIMED":
            kind = "CLAIMED"  # a claim block written without CLAIMED_BY
        if kind is not None:
            if cur_kind is not None:
                events.append(_build_event(cur_kind, cur_fields))
            cur_kind, cur_fields = kind, [(_CANON_KEY[key], value)]
            if kind == "FAILED":
                errors.append(ErrorBlock(failed_at=parse_local_iso(value),
                                         text=_error_text_after(body, km.end(), fences),
                                         in_history=_in_spans(pos, hist_spans)))
        elif cur_kind is not None and key in _MEMBERS.get(cur_kind, ()):
            cur_fields.append((_CANON_KEY[key], value))
        else:
            # a member key with no opener (e.g. a stub starting mid-block): keep it as its own
            if cur_kind is not None:
                events.append(_build_event(cur_kind, cur_fields))
            cur_kind, cur_fields = None, []
            events.append(TrailEvent(kind=key, at=None, side=Side.FILE, fields=((key, value),)))
    if cur_kind is not None:
        events.append(_build_event(cur_kind, cur_fields))

    if not header_ok:
        # Headerless: a stub if it holds only what lifecycle steps append (trail lines and
        # their sections: ## Error + fence, ## Rejection Notice/Details, ## Result), which
        # Octopoid writes when it appends to a stale path; anything else is corrupt.
        in_fence = in_section = False
        for line in stripped.splitlines():
            s = line.strip()
            if s.startswith(_FENCE):
                in_fence = not in_fence
                continue
            if not s or in_fence or s.startswith("<!--"):
                continue
            lm = _KV_RE.match(s)
            if lm is not None and lm.group(1) in TRAIL_KEYS:
                in_section = False
                continue
            if s.startswith("## ") and s[3:].split("(")[0].strip() in APPENDED_SECTIONS:
                in_section = True
                continue
            if not in_section:
                other_lines = True
                break
        if events and not other_lines:
            return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                            parseable=False, is_stub=True, trail=_chronological(events),
                            truncated=truncated, problem="stub: trail lines without a task header")
        problem = "empty file" if not stripped else "no '# [TASK-…]' header line"
        return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                        parseable=False, truncated=truncated, problem=problem)

    return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                    parseable=True, title=title, header=Header(header),
                    trail=_chronological(events), errors=tuple(errors), truncated=truncated)


def _error_text_after(body: str, pos: int, fences: list[tuple[int, int]]) -> str:
    """The fenced block under the ``## Error`` heading that follows a FAILED_AT line."""
    h = body.find("## Error", pos)
    if h < 0:
        return ""
    # only if the heading belongs to this failure (no other trail key in between)
    between = body[pos:h]
    if _KV_RE.search(between):
        return ""
    for a, b in fences:
        if a > h:
            block = body[a:b]
            nl = block.find("\n")
            inner = block[nl + 1:] if nl >= 0 else ""
            if inner.endswith(_FENCE):
                inner = inner[: -len(_FENCE)]
            return inner.strip("\n")
    return ""


def parse_header_only(text: str, task_id: str, queue: str, mtime: float,
                      size: int, truncated: bool) -> TaskFile | None:
    """The quick path: header line and header keys only. None: not a well-formed header, so
    the full parser must decide (stub, corrupt, foreign header). (Most files of a 100,000-task
    queue take this path: ``_header_value`` and ``clean_line``'s common cases are inline.)"""
    if not text.startswith("# [TASK-"):
        return None
    nl = text.find("\n")
    m = _HEADER_RE.match(text if nl < 0 else text[:nl].rstrip("\r"))
    if m is None or m.group(1) != task_id:
        return None
    end = text.find("\n## ")
    end = len(text) if end < 0 else end
    if text.find(_FENCE, 0, end) >= 0:
        return None  # a fence in the header: keys inside it are no header (the full parse)
    keys: list[str] = []
    values: list[str] = []
    canon, unique, intern = _CANON_KEY, _UNIQUE_VALUED, sys.intern
    for key, value in _KV_FAST_RE.findall(text, nl + 1 if nl >= 0 else len(text), end):
        if key in HEADER_KEYS and key not in keys:
            key = canon[key]
            value = value.strip()
            keys.append(key)
            values.append(value if key in unique or len(value) > 64 else intern(value))
    title = m.group(2)
    if len(title) > 1000 or not title.isprintable():
        title = clean_line(title, 1000)
    return TaskFile(task_id, queue, mtime, size, True, False, title.strip(),
                    Header.from_parts(tuple(keys), tuple(values)), (), (), truncated, "", False)


# Bytes whose presence means some rule needs the trail (failure, retry, bounce, continuation).
TRAIL_MARKERS = (b"FAILED_AT:", b"RETRIED_AT:", b"REJECTED_AT:", b"NEEDS_CONTINUATION_AT:")


def has_trail_markers(data: bytes) -> bool:
    # four substring searches beat one regex alternation over the whole file (1.1 against
    # 1.4 us for a typical file); spelled out, as TRAIL_MARKERS lists them
    return (b"FAILED_AT:" in data or b"RETRIED_AT:" in data or b"REJECTED_AT:" in data
            or b"NEEDS_CONTINUATION_AT:" in data)


def parse_task_bytes(data: bytes, task_id: str, queue: str, mtime: float,
                     size: int, truncated: bool = False, tail: bytes = b"",
                     full: bool = True) -> TaskFile:
    """Decode strictly (bad encoding = corrupt, as the contract says), then parse.
    ``full=False`` parses only the header when the bytes hold no trail marker."""
    if b"\x00" in data:
        return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                        parseable=False, truncated=truncated, problem="binary content (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 4:
            text = data[: exc.start].decode("utf-8")  # cut mid-character by the bounded read
        else:
            return TaskFile(task_id=task_id, queue=queue, mtime=mtime,
                            size=size, parseable=False, truncated=truncated,
                            problem=f"not UTF-8 (byte {exc.start})")
    if not full and not has_trail_markers(data) and not (tail and has_trail_markers(tail)):
        quick = parse_header_only(text, task_id, queue, mtime, size, truncated)
        if quick is not None:
            return quick
    tail_text = tail.decode("utf-8", errors="replace") if tail else ""
    return parse_task_text(text, task_id, queue, mtime, size, truncated, tail_text)

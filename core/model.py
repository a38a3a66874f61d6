"""The normalized, immutable snapshot every view and rule reads.

Format-neutral on purpose: a queue format (Octopoid v1 first) fills these from its own files and
DB. The two sides of a task are kept apart — ``record`` is what the queue's database says,
``files`` what the task files say — because most findings are about the two disagreeing.

Frozen msgspec Structs (``Record``) with tuples inside: cheap to build 100,000 of, safe to share
between the engine's thread and the UI. Pydantic lives only at the boundaries (config, report
JSON).
"""

from __future__ import annotations

import enum
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any, ClassVar

import msgspec
from msgspec.structs import force_setattr

from qwarden.core.timefmt import parse_db_time

EMPTY_MAP: Mapping[str, str] = MappingProxyType({})


class Liveness(str, enum.Enum):
    LIVE = "live"  # someone is working on it and shows fresh signs of life
    AT_RISK = "at_risk"  # claimed, the worker's signals are getting old
    DEAD = "dead"  # claimed, nobody is working on it (zombie)
    IDLE = "idle"  # nobody is expected to work on it (waiting, finished)
    UNKNOWN = "unknown"  # claimed, not enough evidence to say


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_SEVERITY_OF_RANK = {rank: sev for sev, rank in _SEVERITY_RANK.items()}


class Action(str, enum.Enum):
    """The one recommended action per task and finding (stable names, in the JSON report)."""

    CONTINUE_SUPERVISION = "continue_supervision"
    ACCEPT = "accept"
    RETRY = "retry"
    SPLIT = "split"
    CANCEL = "cancel"
    RELEASE_CLAIM = "release_claim"
    SYNC_DB = "sync_db"
    SYNC_FILE = "sync_file"
    REGISTER = "register"
    QUARANTINE = "quarantine"
    CLEAR_ERROR = "clear_error"
    ESCALATE = "escalate"
    REVIEW = "review"
    NONE = "none"


class Side(str, enum.Enum):
    """Which copy of the truth a fact came from, or which side of a mismatch is newer."""

    DB = "db"
    FILE = "file"
    AGENT = "agent"
    NOTES = "notes"


class Record(msgspec.Struct, frozen=True, gc=False):
    """The base of the immutable records: a frozen msgspec Struct. At 100,000 tasks the core
    builds about a million of these; a Struct is built 5-7x faster than a slotted dataclass
    (measured at 18 against 123 ms per 100,000 TaskRecords), compares and hashes by its fields,
    pickles, and raises on assignment. ``gc=False``: a record holds only values, tuples and
    mappings of values, never a cycle, so the collector need not track a million of them (a
    subclass that may hold a cycle passes ``gc=True``). ``msgspec.structs.replace`` copies one
    with changes. Each subclass repeats ``frozen=True``: the options are inherited, but mypy
    reads a class's own."""


_GONE: Any = object()  # a key removed since the base copy
_ABSENT: Any = object()


class Layered(Mapping[str, Any]):
    """An immutable mapping published in a snapshot: a base dict that nobody mutates any more,
    overlaid with the changes since it was copied (a removed key maps to ``_GONE``). Publishing
    a change at 100,000 tasks then copies the few changed entries, not 100,000."""

    __slots__ = ("_base", "_delta", "_len")

    def __init__(self, base: dict[str, Any], delta: dict[str, Any], length: int) -> None:
        self._base, self._delta, self._len = base, delta, length

    def __getitem__(self, key: str) -> Any:
        if self._delta:
            v = self._delta.get(key, _ABSENT)
            if v is not _ABSENT:
                if v is _GONE:
                    raise KeyError(key)
                return v
        return self._base[key]

    def get(self, key: str, default: Any = None) -> Any:
        if self._delta:
            v = self._delta.get(key, _ABSENT)
            if v is not _ABSENT:
                return default if v is _GONE else v
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        if self._delta and key in self._delta:
            return self._delta[key] is not _GONE  # type: ignore[index]
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        d = self._delta
        if not d:
            return iter(self._base)
        return itertools.chain((k for k in self._base if k not in d),
                               (k for k, v in d.items() if v is not _GONE))

    def __len__(self) -> int:
        return self._len

    def plain(self) -> dict[str, Any] | None:
        """The base dict itself when nothing is layered over it (read only!), else None."""
        return None if self._delta else self._base

    def values(self) -> Any:
        return self._base.values() if not self._delta else super().values()

    def items(self) -> Any:
        return self._base.items() if not self._delta else super().items()

    def __repr__(self) -> str:
        return f"Layered({len(self)} items, {len(self._delta)} changed)"


class Publisher:
    """Turns a dict the engine keeps changing into immutable ``Layered`` snapshots. Every
    change must be reported with ``touch`` (or ``reset`` after replacing it wholesale); the
    base is copied again once the changes outgrow a sixteenth of it."""

    def __init__(self, source: Callable[[], dict[str, Any]], min_delta: int = 2048,
                 handover: bool = False) -> None:
        """``handover``: the source dict is published as it is, uncopied (a one-shot engine
        builds a new dict for every scan and never changes one it has published)."""
        self._source = source
        self._min_delta = min_delta
        self._handover = handover
        self._base: dict[str, Any] = {}
        self._delta: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._full = True

    def touch(self, key: str) -> None:
        self._dirty.add(key)

    def reset(self) -> None:
        self._full = True
        self._dirty.clear()

    def publish(self) -> Layered:
        src = self._source()
        if self._handover:
            self._dirty.clear()
            return Layered(src, {}, len(src))
        if self._full or len(self._delta) + len(self._dirty) > max(self._min_delta, len(src) // 16):
            self._base, self._delta, self._full = dict(src), {}, False
            self._dirty.clear()
            return Layered(self._base, {}, len(self._base))
        base, delta = self._base, self._delta
        for k in self._dirty:
            v = src.get(k, _GONE)
            if v is _GONE and k not in base:
                delta.pop(k, None)
            else:
                delta[k] = v
        self._dirty.clear()
        return Layered(base, dict(delta), len(src))


class Header(Mapping[str, str]):
    """A task file's header keys, immutable and compact: the key tuple is shared by every
    file with the same keys (most have the same five), so each file keeps only its values.
    At 100,000 files this is a fifth of the memory of one dict each."""

    __slots__ = ("_keys", "_values")
    _KEY_TUPLES: ClassVar[dict[tuple[str, ...], tuple[str, ...]]] = {}

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        items = items or {}
        keys = tuple(items)
        shared = self._KEY_TUPLES
        self._keys = shared.setdefault(keys, keys) if len(shared) < 4096 else \
            shared.get(keys, keys)
        self._values = tuple(items.values())

    @classmethod
    def from_parts(cls, keys: tuple[str, ...], values: tuple[str, ...]) -> Header:
        """From ``parts()`` of another (e.g. one sent by a worker process)."""
        h = cls.__new__(cls)
        shared = cls._KEY_TUPLES
        h._keys = shared.setdefault(keys, keys) if len(shared) < 4096 else \
            shared.get(keys, keys)
        h._values = values
        return h

    def parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self._keys, self._values

    def __getitem__(self, key: str) -> str:
        try:
            return self._values[self._keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        keys = self._keys
        return self._values[keys.index(key)] if key in keys else default

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Header):
            return self._keys == other._keys and self._values == other._values
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash((self._keys, self._values))

    def __repr__(self) -> str:
        return f"Header({dict(zip(self._keys, self._values, strict=True))!r})"


class TrailEvent(Record, frozen=True):
    """One step of a task's history: a file trail block, a DB history row, a notes attempt.

    ``kind`` is an upper-case verb (CLAIMED, SUBMITTED, FAILED, RETRIED, ...); ``fields`` keeps the
    raw key/values of the block (e.g. CLAIMED_BY) so nothing the queue wrote is lost.
    """

    kind: str
    at: datetime | None
    side: Side
    actor: str | None = None
    detail: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None


class ErrorBlock(Record, frozen=True):
    """An error an attempt left in the task file (``FAILED_AT`` + ``## Error`` fence)."""

    failed_at: datetime | None
    text: str
    in_history: bool  # already moved under a ``## History`` heading


class TaskFile(Record, frozen=True):
    """One task file as found on disk. A task may have several (duplicates, stubs)."""

    task_id: str
    queue: str  # the directory it sits in
    mtime: float
    size: int
    parseable: bool
    is_stub: bool = False  # headerless, trail lines only (Octopoid's ``open(path, "a")``)
    title: str = ""
    header: Mapping[str, str] = msgspec.field(default_factory=Header)
    trail: tuple[TrailEvent, ...] = ()
    errors: tuple[ErrorBlock, ...] = ()
    truncated: bool = False  # only a bounded prefix was read
    problem: str = ""  # why it could not be parsed
    # False when only the header was parsed: the file's bytes held no failure, retry or
    # continuation marker and the DB agrees where it is, so no rule needs its trail. The
    # engine re-reads it fully when that changes or a view asks (Engine.full_task).
    trail_complete: bool = True
    path: str = ""  # relative to the root; "" for the one layout kept implicit (see relpath)

    @property
    def last_event(self) -> TrailEvent | None:
        return self.trail[-1] if self.trail else None

    @property
    def relpath(self) -> str:
        """Relative to the queue root, forward slashes. A format whose file is always its
        lane dir's ``TASK-<id>.md`` (Octopoid) leaves ``path`` empty and this makes it when
        asked: 100,000 stored copies were ~8 MB."""
        return self.path or f"shared/queue/{self.queue}/TASK-{self.task_id}.md"


class TaskRecord(Record, frozen=True):
    """What the queue's database row says about a task. Missing columns stay None.

    Timestamps are kept as the text the DB holds and parsed when asked for: a 100,000-row
    queue has half a million of them and most are never looked at. The full row (every
    column) is read on demand by ``Engine.db_row``.
    """

    task_id: str
    queue: str
    priority: str | None = None
    role: str | None = None
    title: str | None = None
    # file_path, kept as its directory (one string shared by the rows in it) and its name,
    # None when that is the usual ``TASK-<id>.md``; ``file_path`` puts them back together
    file_dir: str | None = None
    file_name: str | None = None
    claimed_by: str | None = None
    claimed_at_text: str | None = None
    blocked_by: tuple[str, ...] = ()
    commits_count: int | None = None
    attempt_count: int | None = None
    rejection_count: int | None = None
    check_results_text: str | None = None
    project_id: str | None = None
    submitted_at_text: str | None = None
    completed_at_text: str | None = None
    created_at_text: str | None = None
    updated_at_text: str | None = None

    @property
    def file_path(self) -> str | None:
        if self.file_dir is None:
            return None
        name = self.file_name
        return self.file_dir + (f"TASK-{self.task_id}.md" if name is None else name)

    @property
    def claimed_at(self) -> datetime | None:
        return parse_db_time(self.claimed_at_text)

    @property
    def submitted_at(self) -> datetime | None:
        return parse_db_time(self.submitted_at_text)

    @property
    def completed_at(self) -> datetime | None:
        return parse_db_time(self.completed_at_text)

    @property
    def created_at(self) -> datetime | None:
        return parse_db_time(self.created_at_text)

    @property
    def updated_at(self) -> datetime | None:
        return parse_db_time(self.updated_at_text)

    @property
    def check_results(self) -> Mapping[str, Mapping[str, str]]:
        return parse_check_results(self.check_results_text)

    @property
    def newest_change(self) -> datetime | None:
        stamps = [t for t in (self.updated_at, self.claimed_at, self.submitted_at,
                              self.completed_at) if t is not None]
        return max(stamps) if stamps else None


def parse_check_results(text: str | None) -> Mapping[str, Mapping[str, str]]:
    """``check_results`` JSON ``{check: {status, summary, timestamp}}``; anything else: empty."""
    if not text:
        return EMPTY_MAP  # type: ignore[return-value]
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return EMPTY_MAP  # type: ignore[return-value]
    if not isinstance(obj, dict):
        return EMPTY_MAP  # type: ignore[return-value]
    out: dict[str, dict[str, str]] = {}
    for k, val in obj.items():
        if isinstance(val, dict):
            out[str(k)] = {str(a): str(b) for a, b in val.items()}
        else:
            out[str(k)] = {"status": str(val)}
    return MappingProxyType(out)


class Signal(Record, frozen=True):
    """One sign of life of an agent, with when it was last seen."""

    name: str  # heartbeat, status.json, tool_counter, stdout.log, last_started, ...
    at: datetime
    task_id: str | None = None  # the task the signal is about, when it says


_NO_SIGNAL_INDEX: Mapping[str | None, tuple[Signal, ...]] = MappingProxyType({})


class Agent(Record, frozen=True):
    name: str
    has_state: bool  # any record at all (state.json, heartbeat, DB row)
    running: bool | None = None
    pid: int | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_exit_code: int | None = None
    consecutive_failures: int = 0
    current_task_id: str | None = None  # what the agent says it works on
    current_task_source: str = ""
    status_text: str = ""
    progress_percent: int | None = None
    signals: tuple[Signal, ...] = ()
    pid_alive: bool | None = None  # only set when judging the live machine
    log_relpath: str | None = None  # stdout.log, for the live tail
    # ``signals`` by the task each is tied to (None: the untied ones), for an agent holding
    # thousands of claims (a task API's worker name): without it every claim's judgement
    # scanned every signal of its agent, quadratic in its claims. Empty: no index.
    signals_by_task: Mapping[str | None, tuple[Signal, ...]] = msgspec.field(
        default_factory=lambda: _NO_SIGNAL_INDEX)

    def newest_signal(self, task_id: str | None = None) -> Signal | None:
        """The freshest sign of life; signals tied to another task do not count."""
        best: Signal | None = None
        index = self.signals_by_task
        pool = self.signals if not index or task_id is None else (
            index.get(task_id, ()) + index.get(None, ()))
        for s in pool:
            if task_id is not None and s.task_id is not None and s.task_id != task_id:
                continue
            if best is None or s.at > best.at:
                best = s
        return best


class Evidence(Record, frozen=True):
    """One fact behind a verdict: what, its value, when it was true, and where it came from."""

    fact: str
    value: str
    at: datetime | None = None
    side: Side | None = None


class Finding(Record, frozen=True):
    kind: str
    task_id: str
    severity: Severity
    summary: str
    evidence: tuple[Evidence, ...]
    recommended_action: Action
    newer_side: Side | None = None
    scored: bool = True  # False for the informative kinds (stale_file_path, escalated, ...)


class Verdict(Record, frozen=True):
    """Per-task judgement: what state the task is really in and whether work on it is alive."""

    effective_state: str
    liveness: Liveness
    split_brain_live: bool
    recommended_action: Action
    claimed_by: str | None
    reason: str  # one line: how the liveness was reached
    evidence: tuple[Evidence, ...] = ()


def primary_of(files: tuple[TaskFile, ...]) -> TaskFile | None:
    """The parseable file (the real one); a stub or corrupt copy only when nothing else."""
    best: TaskFile | None = None
    for f in files:
        if f.parseable and not f.is_stub:
            if best is None or not best.parseable or best.is_stub or f.mtime > best.mtime:
                best = f
        elif best is None:
            best = f
    return best


class Task(Record, frozen=True):
    task_id: str
    record: TaskRecord | None
    files: tuple[TaskFile, ...]  # history and notes are read on demand (Engine.trace)
    # Derived from ``files`` when made (``__post_init__``, run by ``msgspec.structs.replace``
    # too): the rules and views ask for it about ten times per task. Not for callers to pass.
    primary_file: TaskFile | None = None

    def __post_init__(self) -> None:
        files = self.files
        force_setattr(self, "primary_file", files[0] if len(files) == 1 else primary_of(files))

    @property
    def title(self) -> str:
        pf = self.primary_file
        if pf is not None and pf.title:
            return pf.title
        if self.record is not None and self.record.title:
            return self.record.title
        return ""

    @property
    def file_queue(self) -> str | None:
        pf = self.primary_file
        return pf.queue if pf is not None else None

    @property
    def trail(self) -> tuple[TrailEvent, ...]:
        pf = self.primary_file
        return pf.trail if pf is not None and pf.parseable else ()


class ReadProblem(Record, frozen=True):
    """Something that could not be read; becomes a stderr line or a finding, never a traceback."""

    path: str
    message: str


class Fact(Record, frozen=True):
    """Something a queue states about itself rather than about one task (RALF's
    ``metadata.last_completed``), or what the source derived to check it against; subject
    rules compare them. ``where`` is the evidence's place (``file:line``)."""

    subject: str  # "queue", "agent:NAME", ...
    name: str
    value: str
    where: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything known at one instant. Immutable: the engine publishes a new one per change."""

    root: str
    source_format: str
    as_of: datetime
    live: bool  # judged against the live machine (pids checked), not ``--as-of``
    lanes: tuple[str, ...]
    tasks: Mapping[str, Task]
    agents: Mapping[str, Agent]
    verdicts: Mapping[str, Verdict]
    findings: tuple[Finding, ...]
    problems: tuple[ReadProblem, ...] = ()
    generation: int = 0
    changed: frozenset[str] = field(default_factory=frozenset)  # task ids changed since last
    # Summaries the engine keeps up to date as it judges (None: computed here on first use),
    # so a view gets them without a pass over every verdict or finding per update.
    by_task: Mapping[str, tuple[Finding, ...]] | None = None  # task -> findings, worst first
    state_counts: Mapping[str, int] | None = None
    severity_counts: Mapping[Severity, int] | None = None
    tasks_by_severity: Mapping[Severity, AbstractSet[str]] | None = None
    facts: tuple[Fact, ...] = ()  # what the queue says about itself (subject rules read them)
    # the format's commands for a recommended action / a kind (Semantics.action_hints)
    action_hints: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)
    kind_hints: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)
    read_only_reason: str = ""  # set when the format has no way to write: the console says it
    stale_reason: str = ""  # set when the source cannot be read now (the last good snapshot)
    id_prefix: str = ""  # Semantics.id_prefix: shown before each task id
    id_width: int = 14  # Semantics.id_width: the lane list's id column
    side_labels: tuple[str, str] = ("record", "file")  # Semantics.record_label, file_label
    # findings about the queue itself or an agent ("queue", "agent:NAME"), not about a task:
    # few, kept apart so a view shows them without a pass over every finding
    subject_findings: tuple[Finding, ...] = ()

    def label(self, task_id: str) -> str:
        """The task id as the operator reads it (``TASK-3f2a…`` for Octopoid, RALF's own)."""
        return self.id_prefix + task_id

    def findings_for(self, task_id: str) -> tuple[Finding, ...]:
        """The task's findings, most severe first."""
        return self.findings_by_task.get(task_id, ())

    @property
    def findings_by_task(self) -> Mapping[str, tuple[Finding, ...]]:
        """Each task's findings, most severe first (tasks without any are absent): for a
        pass over every task, one lookup each instead of a ``findings_for`` call."""
        if self.by_task is not None:
            return self.by_task
        cached = self.__dict__.get("_fbt")
        if cached is None:
            acc: dict[str, list[Finding]] = {}
            for f in self.findings:
                acc.setdefault(f.task_id, []).append(f)
            cached = {k: tuple(sorted(v, key=lambda f: (-f.severity.rank, f.kind)))
                      for k, v in acc.items()}
            object.__setattr__(self, "_fbt", cached)
        return cached

    def count_by_severity(self) -> Mapping[Severity, int]:
        if self.severity_counts is not None:
            return self.severity_counts
        counts = dict.fromkeys(Severity, 0)
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def tasks_with(self, severity: Severity) -> AbstractSet[str]:
        """Ids of the tasks with at least one finding of this severity."""
        if self.tasks_by_severity is not None:
            return self.tasks_by_severity[severity]
        return frozenset(f.task_id for f in self.findings if f.severity is severity)

    def worst_severity(self, scored_only: bool = False) -> Severity | None:
        if scored_only:
            ranks = [f.severity.rank for f in self.findings if f.scored]
            return _SEVERITY_OF_RANK[max(ranks)] if ranks else None
        counts = self.count_by_severity()
        return next((s for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
                     if counts.get(s)), None)

    def lane_counts(self) -> dict[str, int]:
        """Tasks per effective state: every lane, then any other state that has tasks."""
        counts = dict.fromkeys(self.lanes, 0)
        if self.state_counts is not None:
            by_state: Mapping[str, int] = self.state_counts
        else:  # one pass at C speed
            by_state = Counter(map(attrgetter("effective_state"), self.verdicts.values()))
        for state, n in by_state.items():
            if n or state in counts:
                counts[state] = n
        return counts

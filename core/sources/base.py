"""What a queue format implements to be supervised: the source interface.

The engine holds one ``Source`` and knows nothing else about the format: no DB connection, no
paths, no lane names. A source reads its queue (files, a database, both) into the neutral model
(``core.model``) and says what its states and events mean (``core.semantics.Semantics``);
liveness, the judge, the rules and the console read only those.

The life of a source inside a following engine::

    scan()                      cold: everything read once
    all_tasks() / agents() / problems() / facts()
    on_paths(paths) -> Delta    the watcher saw these paths change
    on_marker() -> Delta        the change marker moved (a DB was written)
    look_again(ids) -> Delta    re-read these tasks' every side now (the second look)
    rescan() -> Delta           the five-minute reconciliation: everything checked, only
                                what changed re-read
    task(tid)                   the task as the source holds it now (after any of the above)

Every method reads; none writes anything anywhere (a source opens its database read-only and
leaves no side file). A source that cannot read raises ``SourceError``; anything smaller is a
``ReadProblem`` in ``problems()``, never an exception.

Interventions are a separate interface (``Interventions``): a read-only source may have none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from qwarden.core.model import Agent, Fact, ReadProblem, Task, TrailEvent
from qwarden.core.semantics import Semantics

if TYPE_CHECKING:
    from qwarden.core.config import Config


@dataclass
class Delta:
    """What an incremental read found changed."""

    tasks: set[str] = field(default_factory=set)  # task ids whose Task may differ now
    agents: set[str] = field(default_factory=set)  # agent names whose Agent may differ now
    facts: bool = False  # the queue's own facts (``facts()``) changed

    def __or__(self, other: Delta) -> Delta:
        return Delta(self.tasks | other.tasks, self.agents | other.agents,
                     self.facts or other.facts)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.agents or self.facts)


@dataclass(frozen=True)
class WatchSpec:
    """How to notice changes cheaply. ``paths`` are watched recursively (watchfiles) and a
    change is passed to ``on_paths``. ``marker`` opens the change marker (an async
    context: what it holds, a DB connection say, is released however the watch ends) and
    gives a reader awaited every ``[live] db_check_interval_s``; a new value (``PRAGMA
    data_version`` and the DB file's stat, say) means ``on_marker``. A reader that raises
    is reopened after a back-off, and the engine says why meanwhile."""

    paths: tuple[Path, ...] = ()
    marker: Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[Hashable]]]] \
        | None = None
    # The longest the source lets its marker wait between reads (a DB shared by workers on
    # many hosts, whose writes must be on screen within 1.5 s); the config's period applies
    # when it is shorter. None: the config's alone.
    marker_interval_s: float | None = None


@runtime_checkable
class Source(Protocol):
    format: str  # the name ``--format`` takes
    semantics: Semantics
    root: Path  # what the operator pointed at, resolved (a directory, a DB file)
    label: str  # the root as the header and report show it (a DSN without its password)
    @property
    def has_record_side(self) -> bool: ...  # False: one copy of the truth only, none to match
    journal_root: Path | None  # where qwarden's journal of this queue lives (None: nowhere)

    def scan(self) -> None: ...
    def all_tasks(self) -> dict[str, Task]: ...  # a new dict, the engine's to keep
    def agents(self) -> dict[str, Agent]: ...
    def problems(self) -> tuple[ReadProblem, ...]: ...
    def facts(self) -> tuple[Fact, ...]: ...
    def task(self, task_id: str) -> Task | None: ...
    def on_paths(self, paths: set[str]) -> Delta: ...
    def on_marker(self) -> Delta: ...
    def look_again(self, ids: Iterable[str]) -> Delta: ...
    def rescan(self) -> Delta: ...
    def watch_spec(self) -> WatchSpec: ...
    def scan_progress(self) -> str: ...
    # details on demand (the task view): never kept
    def full_task(self, task: Task) -> Task: ...  # every file parsed fully
    def history(self, task_id: str) -> tuple[TrailEvent, ...]: ...  # beyond the task's trail
    def raw_record(self, task_id: str) -> Mapping[str, Any]: ...
    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str: ...
    def close(self) -> None: ...


class Interventions(Protocol):
    """A format's way of changing its queue: plans first (each checked against the current
    snapshot by the one guard in ``core.actions.guard``), then an applier that journals every
    write and can undo it. A format without one is read-only and the console says so."""

    def actions(self) -> tuple[str, ...]: ...  # the action names this format can plan
    def plan(self, action: str, task_id: str, **options: Any) -> Any: ...


SourceFactory = Callable[..., Source]


@dataclass(frozen=True)
class FormatInfo:
    """One format as the registry (``core.formats``) knows it."""

    name: str
    detect: Callable[[Path | str], bool]  # does this root look like the format?
    open: Callable[[Path | str, Config, bool, bool], Source]  # (root, config, live, follow)
    describe: str = ""
    # The format's own intervention commands (``qwarden ACTION`` on its root), given the
    # parsed arguments and the root; None: the format is read-only (every ACTION refused).
    run_action: Callable[[Any, Path], int] | None = None
    # Intervention commands only this format has (name -> one-line help): the CLI adds a
    # ``qwarden NAME [TASK_ID]`` for each, handed to ``run_action``.
    commands: Mapping[str, str] = field(default_factory=dict)
    # The format's write path (``core.actions.interface.Interventions``) for a root, given the
    # config and the caller's options (an API URL, ``direct_db``...); None: read-only. The
    # console, the CLI and the auto-fixer plan and apply through it.
    interventions: Callable[[Path | str, Config, Mapping[str, Any]], Any] | None = None
    # The auto-fixer (``core.actions.autofix``) knows this format's fixes; only Octopoid's so
    # far: on another format ``--fix`` is refused with a sentence, never run blind.
    auto_fixes: bool = False

"""Where a RALF (BlackBox5 ``.autonomous/``) state keeps its files.

Two layouts occur over the project's life, and both are read:

- early: ``.autonomous/communications/{queue,events,heartbeat}.yaml`` and
  ``.autonomous/tasks/{active,completed}/TASK-*.md``;
- later: ``.autonomous/agents/communications/…`` and ``tasks/{active,completed}/<ID>/task.md``
  at the project root (the directory holding ``.autonomous``).

``--root`` is the project directory or ``.autonomous`` itself. Every path the source reports is
relative to the project directory (``base``), which is also the containment root: a symlink
that leads out of it is not followed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qwarden.core import safeio

PLACES = ("active", "completed")
COMMS_DIRS = ("communications", "agents/communications")
QUEUE = "queue.yaml"
EVENTS = "events.yaml"
HEARTBEAT = "heartbeat.yaml"

# TASK-1769916009-research-feature-idea-generation(.md) -> TASK-1769916009. A timestamp id is
# digits; an id of letters ends at the first dash (TASK-X-some-slug is TASK-X).
_ID = re.compile(r"^(TASK-(?:\d+|[A-Za-z0-9_]+))(?:$|[-.])")
# unfilled template names: TASK-[timestamp], TASK-XXX, TASK-<id>, TASK-{ID}
_TEMPLATE = re.compile(r"[\[\]{}<>]|^TASK-X+(?:$|[-.])")


@dataclass(frozen=True)
class Layout:
    base: Path  # the project dir: relpaths and containment are relative to it
    autonomous: Path
    comms: Path | None  # the communications dir found (None: none)
    task_roots: tuple[Path, ...]  # dirs holding active/ and completed/

    def rel(self, path: Path | str) -> str:
        p = os.path.relpath(path, self.base)
        return p.replace(os.sep, "/")

    def comm_file(self, name: str) -> Path | None:
        return None if self.comms is None else self.comms / name

    @property
    def warden(self) -> Path:
        """qwarden's own files (journal, audit, backups) for this state."""
        return self.autonomous / "warden"


def find_autonomous(root: Path | str) -> Path | None:
    """The ``.autonomous`` dir ``root`` is or holds, else None."""
    r = Path(root)
    if r.name == ".autonomous" and safeio.is_dir(r):
        return r
    cand = r / ".autonomous"
    if safeio.is_dir(cand):
        return cand
    return None


def detect(root: Path | str) -> bool:
    """Does ``root`` look like a RALF state: an ``.autonomous`` with a communications dir
    holding a queue, events or heartbeat file?"""
    auto = find_autonomous(root)
    if auto is None:
        return False
    for d in COMMS_DIRS:
        c = auto / d
        if any(safeio.mtime(c / n) is not None for n in (QUEUE, EVENTS, HEARTBEAT)):
            return True
    return False


def discover(root: Path | str) -> Layout | None:
    auto = find_autonomous(root)
    if auto is None:
        return None
    auto = Path(os.path.abspath(auto))
    base = auto.parent
    comms = None
    for d in COMMS_DIRS:  # the one with a queue first, then any that exists
        c = auto / d
        if safeio.is_file(c / QUEUE):
            comms = c
            break
    if comms is None:
        for d in COMMS_DIRS:
            if safeio.is_dir(auto / d):
                comms = auto / d
                break
    roots = []
    for cand in (auto / "tasks", base / "tasks"):
        if any(safeio.is_dir(cand / p) for p in PLACES):
            roots.append(cand)
    return Layout(base=base, autonomous=auto, comms=comms, task_roots=tuple(roots))


def task_id_of(name: str) -> str | None:
    """The task id a task file or dir name stands for, None when it is none (STOP_*.md,
    RALF-*.md, TEMPLATE.md, an unfilled template like ``TASK-[timestamp]``)."""
    if not name.startswith("TASK-") or _TEMPLATE.search(name):
        return None
    m = _ID.match(name)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Found:
    """One task file candidate under a place dir, or why a name there could not be used."""

    place: str  # active | completed
    path: Path
    task_id: str
    problem: str = ""


def walk_place(layout: Layout, troot: Path, place: str) -> Iterator[Found]:
    """Task files under ``troot/place``: flat ``TASK-*.md`` and ``TASK-X[-slug]/task.md``.
    Broken symlinks, links out of the base and dirs without a task.md come back with a
    ``problem``; names that are no task (templates, notes) are skipped."""
    d = troot / place
    base_real = os.path.realpath(layout.base)
    try:
        it = os.scandir(d)
    except OSError:
        return
    with it:
        for e in it:
            name = e.name
            tid = task_id_of(name)
            if tid is None:
                continue
            p = Path(e.path)
            try:
                is_link = e.is_symlink()
                if is_link and not safeio.within(base_real, e.path):
                    yield Found(place, p, tid, "a symlink leading out of the project: not "
                                               "followed")
                    continue
                if e.is_dir():
                    tf = p / "task.md"
                    if safeio.is_file(tf):
                        yield Found(place, tf, tid)
                    elif os.path.lexists(tf):
                        yield Found(place, tf, tid, "task.md is not a regular file (a broken "
                                                    "symlink, a FIFO, a directory)")
                    else:
                        yield Found(place, p, tid, "task directory without a task.md")
                    continue
                if not name.endswith(".md"):
                    continue
                if e.is_file():
                    yield Found(place, p, tid)
                elif is_link:
                    yield Found(place, p, tid, "a broken symlink")
                else:
                    what = safeio.kind_of(os.lstat(p).st_mode)
                    yield Found(place, p, tid, f"{what}, not a regular file")
            except OSError as exc:
                yield Found(place, p, tid, exc.strerror or str(exc))

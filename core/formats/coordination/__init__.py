"""The coordination files (task-queue.json + worker-status.json + agent-comms.jsonl +
progress.json + tasks/task-<id>-instructions.md): agents that coordinate through shared JSON.

``FORMAT_INFO`` is what the registry (``core.formats``) lists. The package: ``layout`` (the
names, detection, the lock file's name), ``parse`` (readers: bytes -> plain data, never a
traceback), ``source`` (the ``Source``), ``semantics``, ``rules`` (every kind), ``judge`` (the
engine-free path), ``lock`` (the advisory lock and atomic replace every writer uses),
``actions`` (planned, journaled, undoable interventions), ``generate`` and ``simulate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwarden.core.formats.coordination.layout import detect
from qwarden.core.sources.base import FormatInfo

if TYPE_CHECKING:
    from qwarden.core.config import Config


def open_source(root: Path | str, config: Config | None = None, live: bool = False,
                follow: bool = False) -> Any:
    from qwarden.core.formats.coordination.source import CoordSource

    return CoordSource(root, config, live, follow)


def run_action(args: Any, root: Path) -> int:
    from qwarden.core.formats.coordination.cli import run_action as run

    return run(args, root)

def open_interventions(root: Path | str, config: Config, options: Any) -> Any:
    from qwarden.core.formats.coordination.interventions import open_interventions as open_

    return open_(root, config, options)


FORMAT_INFO = FormatInfo(
    name="coordination", detect=detect, open=open_source, run_action=run_action,
    interventions=open_interventions,
    commands={"reset": "a dead worker's in-progress task back to pending (coordination)",
              "reassign": "to a live worker with the skills, --to NAME (coordination)",
              "repair": "rebuild task-queue.json from its valid entries (coordination)"},
    describe="shared JSON coordination files (task-queue.json, worker-status.json, "
             "agent-comms.jsonl, tasks/)")

"""RALF (BlackBox5's ``.autonomous/``): a YAML queue, an event log, heartbeats and task dirs.

``FORMAT_INFO`` is what the registry (``core.formats``) lists; the rest of the package:
``layout`` (finding the files, both layouts), ``parse`` (line-numbered readers), ``source``
(the ``Source``), ``semantics`` and ``rules`` (RALF's kinds), ``sync`` (``qwarden sync``),
``demo`` (generator and live simulation), ``judge`` (the engine-free judging path).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwarden.core.formats.ralf.layout import detect
from qwarden.core.sources.base import FormatInfo

if TYPE_CHECKING:
    from qwarden.core.config import Config


def open_source(root: Path | str, config: Config | None = None, live: bool = False,
                follow: bool = False) -> Any:
    from qwarden.core.formats.ralf.source import RalfSource

    return RalfSource(root, config, live, follow)


def run_action(args: Any, root: Path) -> int:
    """``qwarden sync`` (queue.yaml rewritten as the planner would) and ``qwarden undo`` on
    a RALF root; every other intervention is refused (RALF's planner owns the queue)."""
    from qwarden.core.formats.ralf import sync

    if args.command not in ("sync", "undo"):
        print(f"refused: a RALF queue takes `qwarden sync` and `qwarden undo` only "
              f"(not {args.command})", file=sys.stderr)
        return 1  # refused (ACTION_EXITS)
    if args.command == "sync" and getattr(args, "task_id", None):
        print("refused: `qwarden sync` on a RALF queue rewrites the whole queue.yaml "
              "(no TASK_ID)", file=sys.stderr)
        return 1  # refused (ACTION_EXITS)
    argv = ["--root", str(root)]
    if args.command == "undo":
        argv += ["--undo"] + ([str(args.action_id)] if args.action_id is not None else [])
    if getattr(args, "dry_run", False):
        argv.append("--dry-run")
    if getattr(args, "yes", False):
        argv.append("--yes")
    if getattr(args, "read_only", False):
        argv.append("--read-only")
    if getattr(args, "note", ""):
        argv += ["--note", args.note]
    return sync.main(argv)

def open_interventions(root: Path | str, config: Config, options: Any) -> Any:
    from qwarden.core.formats.ralf.interventions import open_interventions as open_

    return open_(root, config, options)


FORMAT_INFO = FormatInfo(
    name="ralf", detect=detect, open=open_source, run_action=run_action,
    interventions=open_interventions,
    describe="RALF / BlackBox5 .autonomous/ (queue.yaml, events.yaml, heartbeat.yaml, tasks/)")

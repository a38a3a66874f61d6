"""``qwarden ACTION`` on a coordination root (``FormatInfo.run_action``): reset (also as
``release``), reassign, retry, cancel, split, repair, undo and log, with the shared flags
(``--dry-run``, ``--yes``, ``--note``, ``--read-only``). Exit codes as every action's: 0 done
or shown, 1 refused, stale or not confirmed, 3 unreadable."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from qwarden.core.actions.cli import refusal_exit
from qwarden.core.actions.plan import Refused, StalePlan
from qwarden.core.config import ConfigError, load_config
from qwarden.core.formats.coordination import actions as A
from qwarden.core.formats.coordination.lock import LockTimeout
from qwarden.core.sources.errors import SourceError
from qwarden.core.textsafe import diagnostic

COMMANDS = {
    "reset": "a dead worker's in-progress task back to pending (its claim cleared)",
    "reassign": "to a live worker with every required skill (--to NAME, default: the first)",
    "repair": "rebuild task-queue.json from its valid entries (the whole file backed up)",
}
ALIASES = {"release": "reset"}
EXIT_OK, EXIT_REFUSED, EXIT_UNREADABLE = 0, 1, 3


def _err(msg: str) -> None:
    print(diagnostic(msg), file=sys.stderr)


def _actor() -> str:
    try:
        return f"qwarden:{getpass.getuser()}"
    except Exception:
        return "qwarden"


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        _err("not a terminal and no --yes: nothing written (use --yes to apply, "
             "--dry-run to only see the plan)")
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _subtasks(specs: list[str]) -> tuple[str, ...]:
    """``--subtask 'TITLE | CONTEXT | CRIT'`` (Octopoid's form) or plain text: the title."""
    return tuple(s.split("|")[0].strip() for s in specs if s.split("|")[0].strip())


def run_action(args: argparse.Namespace, root: Path) -> int:
    try:
        config, _ = load_config(root, getattr(args, "config", None))
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    command = ALIASES.get(args.command, args.command)
    try:
        if command == "log":
            from qwarden.core.actions.cli import _cmd_log

            return _cmd_log(root, args, id_prefix="")  # its ids carry their own
        writes = not getattr(args, "dry_run", False)
        if writes and (getattr(args, "read_only", False) or config.read_only):
            raise Refused("read-only mode (--read-only or read_only = true in the config): "
                          "qwarden refuses every write")
        if command == "undo":
            if not writes:
                print(f"undo {args.action_id or '(the newest action)'}: the entries qwarden "
                      "wrote put back as they were")
                return EXIT_OK
            if not _confirm("Undo?", args):
                return EXIT_REFUSED
            uid = A.undo(root, args.action_id, config, actor=_actor())
            print(f"done: action {uid} (undo)")
            return EXIT_OK
        if command not in A.ACTIONS:
            raise Refused(f"a coordination queue takes {', '.join(A.ACTIONS)} (release = "
                          f"reset), undo and log; not {args.command}")
        tid = getattr(args, "task_id", None) or ""
        if command != "repair" and not tid:
            from qwarden.core.clihelp import UsageError

            raise UsageError(f"{args.command}: which task? (TASK_ID)")
        p = A.plan(root, command, tid, note=getattr(args, "note", "") or "", actor=_actor(),
                   to=getattr(args, "to", None),
                   subtasks=_subtasks(getattr(args, "subtask", []) or []), config=config)
        for line in p.describe():
            print(line)
        if not writes:
            return EXIT_OK
        if not _confirm(f"Apply {command} to {p.task_id}?", args):
            return EXIT_REFUSED
        aid = A.apply(root, p, config)
        print(f"done: action {aid}; `qwarden undo {aid}` reverses it")
        return EXIT_OK
    except (Refused, StalePlan, SourceError, OSError) as exc:
        return refusal_exit(exc, also_refused=(LockTimeout,))

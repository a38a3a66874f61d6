"""CLI for the interventions: ``qwarden ACTION TASK_ID``, ``qwarden undo [ID]``, ``qwarden log``.

Exit codes: 0 done (or dry run shown), 1 refused / stale / not confirmed, 3 the queue could not
be read, 64 usage error. The plan goes to stdout; diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwarden.core.actions.apply import Result, apply, inverse_plan, recover, stale_message
from qwarden.core.actions.guard import TALKS_ONLY
from qwarden.core.actions.interface import NeedsForce
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan, Refused, StalePlan
from qwarden.core.clihelp import ACTION_EXITS, PLAIN_EXITS, UsageError, add_command
from qwarden.core.config import Config, ConfigError, load_config
from qwarden.core.formats import locate
from qwarden.core.formats.octopoid.actions import (
    PLANNERS,
    Subtask,
    judge_task,
    make_plan,
)
from qwarden.core.formats.octopoid.reader import resolve_root
from qwarden.core.sources.errors import SourceError
from qwarden.core.textsafe import clean_line, diagnostic

EXIT_OK, EXIT_REFUSED, EXIT_UNREADABLE = 0, 1, 3

HELP = {
    "accept": "provisional -> done (unverified completions need --force)",
    "retry": "failed/escalated/needs_continuation/zombie -> incoming, error kept in history",
    "release": "drop a zombie claim back to incoming",
    "sync": "apply a file_db_mismatch's direction (--direction sync_db|sync_file)",
    "cancel": "move to rejected/ with the reason (--note) in trail and history",
    "clear-error": "move a stale FAILED_AT/## Error block under ## History",
    "quarantine": "move a corrupt/orphan/duplicate file to shared/quarantine/ (bytes kept)",
    "register": "create the DB row for an orphan task file",
    "escalate": "write a human-inbox message in ROOT/messages/",
    "mark-read": "mark a finished task as reviewed",
    "repair-path": "point the DB file_path at where the task file really is",
    "split": "N subtasks in incoming (--subtask 'TITLE | CONTEXT | CRIT; CRIT'), parent "
             "recycled, blocked tasks re-pointed",
}


def _err(msg: str) -> None:
    print(diagnostic(msg), file=sys.stderr)


def _common(p: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS  # keep the top-level value when the subcommand omits it
    p.add_argument("--root", default=s, help="the .orchestrator dir or its parent")
    p.add_argument("--config", type=Path, default=s, help="config TOML")
    p.add_argument("--read-only", dest="read_only", action="store_true", default=s,
                   help="refuse every write")
    add_write_path_options(p, s)


def add_write_path_options(p: argparse.ArgumentParser, default: Any = None) -> None:
    """How a database queue is written (taskapi): through its own API, or the DB directly."""
    p.add_argument("--api", metavar="URL", default=default,
                   help="taskapi: the task API to act through (or [taskapi] api_url)")
    p.add_argument("--direct-db", dest="direct_db", action="store_true", default=default,
                   help="taskapi: write the tasks table directly (journaled, undoable), "
                        "not through the API")


def _write_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    p.add_argument("--dry-run", action="store_true", help="show the exact changes, write nothing")


# What each intervention does, beyond its one-line summary (shown by `qwarden KIND --help`).
DETAIL = {
    "accept": "A provisional task to done/. An unverified completion (no commits, no passing "
              "check) needs --force; the config's [actions] verify command, if set, runs "
              "first and a failure refuses the accept.",
    "retry": "A failed, escalated, needs_continuation or zombie-claimed task back to "
             "incoming/; the old FAILED_AT/## Error block moves under ## History.",
    "release": "A zombie claim (nobody works on it) back to incoming/. Refused while an agent "
               "may still be working on the task (--force overrides).",
    "sync": "Puts a file_db_mismatch right: sync_db moves the DB row to where the file is, "
            "sync_file moves the file to where the DB says; default: the finding's "
            "recommended direction.",
    "cancel": "Out of the runnable lanes, into rejected/ (no role picks work from there); "
              "the reason (--note, required) goes into the trail and the task history.",
    "clear-error": "A retried task's stale FAILED_AT/## Error block moves under ## History.",
    "quarantine": "A corrupt, orphan or duplicate task file moves to shared/quarantine/, "
                  "bytes kept (--queue picks the copy when there are several).",
    "register": "Creates the DB row for an orphan task file.",
    "escalate": "Writes a message for the human inbox in ROOT/messages/ (--type, --note).",
    "mark-read": "Marks a finished task as reviewed (clears unread_terminal).",
    "repair-path": "Points the DB file_path at where the task file really is.",
    "split": "Creates N subtasks in incoming/ (--subtask 'TITLE | CONTEXT | CRIT; CRIT', "
             "repeated), re-points the tasks it blocked at them, and recycles the parent.",
}
SAFETY = ("Every action plans its exact DB and file changes, checks them against the state "
          "it planned from (a changed task: refused as stale), journals, backs up, applies "
          "atomically and can be undone (`qwarden undo`).")


def _example(kind: str) -> str:
    tid = "0ab0ab01"
    extra = {"cancel": " --note 'superseded by TASK-1234abcd'",
             "sync": " --direction sync_db",
             "split": " --subtask 'API | the endpoint | tests pass' --subtask 'UI | the form | "
                      "renders'",
             "escalate": " --type question --note 'needs a product decision'"}.get(kind, "")
    return (f"  qwarden {kind} {tid}{extra} --dry-run\n"
            f"  qwarden {kind} {tid}{extra} --yes")


def add_action_commands(subparsers: Any) -> None:
    for kind in PLANNERS:
        p = add_command(subparsers, kind, HELP[kind], f"{DETAIL[kind]}\n\n{SAFETY}",
                        _example(kind), ACTION_EXITS)
        p.add_argument("task_id", metavar="TASK_ID", nargs="?" if kind == "sync" else None,
                       help="8 hex chars (TASK- prefix optional)"
                       + ("; none for a RALF queue (the whole queue.yaml)" if kind == "sync"
                          else ""))
        if kind == "cancel":
            p.add_argument("--note", required=True,
                           help="required: why it is cancelled (trail and history)")
        else:
            p.add_argument("--note", default="", help="operator note / reason (trail and "
                                                      "history)")
        _write_opts(p)
        p.add_argument("--force", action="store_true",
                       help="override a guard (live claim, unverified completion, ...)")
        if kind == "quarantine":
            p.add_argument("--queue", help="which file, when the task has several")
        if kind == "sync":
            p.add_argument("--direction", choices=("sync_db", "sync_file"),
                           help="default: the finding's recommended direction")
        if kind == "split":
            p.add_argument("--subtask", action="append", default=[], metavar="SPEC",
                           help="'TITLE | CONTEXT | CRITERION; CRITERION' (repeat)")
        if kind == "escalate":
            p.add_argument("--type", dest="msg_type", default="warning",
                           choices=("info", "warning", "error", "question"))
        _common(p)
    from qwarden.core.formats import FORMATS

    extra: dict[str, str] = {}
    for info in FORMATS.values():
        for name, text in info.commands.items():
            if name not in PLANNERS and name not in extra:
                extra[name] = text
    for name, text in extra.items():
        p = add_command(subparsers, name, text, f"{text}.\n\n{SAFETY}",
                        f"  qwarden {name} 1731159000123 --dry-run\n"
                        f"  qwarden {name} 1731159000123 --yes", ACTION_EXITS)
        p.add_argument("task_id", metavar="TASK_ID", nargs="?",
                       help="the task (none for repair: the whole queue file)")
        p.add_argument("--note", default="", help="operator note / reason (journal)")
        p.add_argument("--to", help="reassign: the worker to give it to")
        p.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
        _write_opts(p)
        _common(p)
    u = add_command(subparsers, "undo", "reverse an action (default: the newest) if nothing "
                                        "changed since",
                    "Plans the inverse of a journaled action and applies it, refused if the "
                    "task changed since the action.", "  qwarden log\n  qwarden undo --dry-run"
                    "\n  qwarden undo 12 --yes", ACTION_EXITS)
    u.add_argument("action_id", nargs="?", type=int, metavar="ACTION_ID")
    _write_opts(u)
    _common(u)
    lg = add_command(subparsers, "log", "the intervention audit trail",
                     "The journal of interventions, newest last (ROOT/warden/journal.db), or "
                     "with --json the raw audit records (ROOT/warden/audit.jsonl).",
                     "  qwarden log --limit 20\n  qwarden log --task 0ab0ab01 --json",
                     PLAIN_EXITS)
    lg.add_argument("--limit", type=int, default=50)
    lg.add_argument("--task", help="only this task")
    lg.add_argument("--json", action="store_true", help="the raw audit.jsonl records")
    _common(lg)


def _actor() -> str:
    try:
        return f"qwarden:{getpass.getuser()}"
    except Exception:  # no passwd entry in a container: still say who (the tool)
        return "qwarden"


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        _err("not a terminal and no --yes: nothing written (use --yes to apply, "
             "--dry-run to only see the plan)")
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _show(plan: Plan) -> None:
    for line in plan.describe():
        print(line)


def run_verify(cmd: str, root: Path, task_id: str, timeout_s: float = 600,
               on_line: Callable[[str], None] | None = None) -> tuple[bool, str]:
    """The config's ``actions.verify`` command (a shell line; ``{task_id}`` and ``{root}``
    substituted, also in $QWARDEN_TASK_ID / $QWARDEN_ROOT). Exit 0 lets the accept go on.
    Output (stdout and stderr merged) goes to ``on_line`` line by line as it comes, so a
    long test run shows progress; the whole of it is returned as well."""
    import os
    import shlex
    import threading

    line = cmd.replace("{task_id}", shlex.quote(task_id)).replace("{root}",
                                                                   shlex.quote(str(root)))
    env = dict(os.environ, QWARDEN_TASK_ID=task_id, QWARDEN_ROOT=str(root))
    try:
        proc = subprocess.Popen(line, shell=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(root.parent), text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        return False, f"verify could not start: {exc}"
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.rstrip("\n")
            lines.append(text)
            if on_line is not None:
                on_line(text)
        proc.wait()
    finally:
        timer.cancel()
    out = "\n".join(lines).strip()
    if timed_out.is_set():
        return False, (out + "\n" if out else "") + f"verify timed out after {timeout_s:.0f}s"
    return proc.returncode == 0, out


def run_action_command(args: argparse.Namespace) -> int:
    try:
        info, root = locate(getattr(args, "root", None), getattr(args, "format", None) or "auto")
        root = resolve_root(root) if info.name == "octopoid" else root
        config, _ = load_config(root, getattr(args, "config", None))
    except (SourceError, ConfigError) as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    if info.name != "octopoid":  # another format's interventions are its own
        if info.run_action is not None:
            return info.run_action(args, root)
        if info.interventions is None:
            _err(f"refused: {info.name} queues are read-only here (no interventions)")
            return EXIT_REFUSED
        return run_through_interface(info, root, config, args)
    read_only = bool(getattr(args, "read_only", False) or config.read_only)
    if args.command not in PLANNERS and args.command not in ("undo", "log"):
        _err(f"refused: {args.command} is not an intervention on an octopoid queue")
        return EXIT_REFUSED
    try:
        if args.command == "log":
            return _cmd_log(root, args)
        writes = not getattr(args, "dry_run", False)
        if writes and read_only:
            raise Refused("read-only mode (--read-only or read_only = true in the config): "
                          "qwarden refuses every write")
        if writes:
            for aid, outcome in recover(root):
                _err(f"recovered interrupted action {aid}: {outcome}")
        if args.command == "undo":
            return _cmd_undo(root, args, read_only)
        return _cmd_action(root, config, args, read_only)
    except (Refused, StalePlan, SourceError) as exc:
        return refusal_exit(exc)


def refusal_exit(exc: Exception, also_refused: tuple[type[Exception], ...] = ()) -> int:
    """A write that did not happen, said on stderr in one line, as its exit code: refused
    (wrong state, live work, the server's no; ``also_refused``: a format's own, such as a
    lock another writer holds) or stale (1), unreadable (3)."""
    if isinstance(exc, StalePlan):
        _err(f"stale: {exc}")
        return EXIT_REFUSED
    if isinstance(exc, (Refused, *also_refused)):
        _err(f"refused: {exc}")
        return EXIT_REFUSED
    _err(str(exc))
    return EXIT_UNREADABLE


def _cmd_action(root: Path, config: Config, args: argparse.Namespace, read_only: bool) -> int:
    kind = args.command
    if args.task_id is None:
        raise UsageError(f"{kind}: which task? (TASK_ID)")
    task_id = args.task_id.removeprefix("TASK-")
    direction = getattr(args, "direction", None)
    if (kind not in TALKS_ONLY and not args.force) or (kind == "sync" and direction is None):
        j = judge_task(root, task_id, config)
        refusal = None if args.force else j.live_refusal(kind, task_id)
        if refusal:
            raise NeedsForce(refusal)
        direction = direction or j.sync_direction
    subtasks = [Subtask.parse(spec) for spec in getattr(args, "subtask", [])]
    plan = make_plan(root, kind, task_id, actor=_actor(), note=args.note, force=args.force,
                     queue=getattr(args, "queue", None), direction=direction,
                     msg_type=getattr(args, "msg_type", "warning"), subtasks=subtasks,
                     max_children=int(config.actions.get("split_max", 10)))  # type: ignore[call-overload]
    _show(plan)
    if args.dry_run:
        return EXIT_OK
    if not _confirm(f"Apply {kind} to TASK-{task_id}?", args):
        return EXIT_REFUSED
    if plan.warnings and not args.yes and not _confirm("Really? " + plan.warnings[0], args):
        return EXIT_REFUSED  # the explicit second confirmation of an unverified accept
    verify = config.actions.get("verify") if kind == "accept" else None
    if verify:
        _err(f"verify: {verify}")
        ok, _ = run_verify(str(verify), root, task_id, on_line=lambda ln: print(
            f"  verify| {clean_line(ln, 2000)}", file=sys.stderr, flush=True))
        if not ok:
            raise Refused("the verify command failed: not accepted")
    try:
        res = apply(root, plan, read_only=read_only,
                    busy_timeout_ms=max(config.limits.db_busy_timeout_ms, 1000))
    except StalePlan as exc:
        raise StalePlan(stale_message(root, plan, exc)) from None
    _done(res)
    return EXIT_OK


def _done(res: Result) -> None:
    hint = "" if res.plan.undoes else f"; `qwarden undo {res.action_id}` reverses it"
    print(f"done: action {res.action_id} ({res.elapsed_ms:.1f} ms){hint}")


def _cmd_undo(root: Path, args: argparse.Namespace, read_only: bool) -> int:
    with Journal(root) as j:
        a = j.get(args.action_id) if args.action_id is not None else j.last_undoable()
        if a is None:
            raise Refused("no such action" if args.action_id is not None else "nothing to undo")
        inv = inverse_plan(root, a, j, _actor())
    _show(inv)
    if args.dry_run:
        return EXIT_OK
    if not _confirm(f"Undo action {a.id} ({a.kind} TASK-{a.task_id})?", args):
        return EXIT_REFUSED
    try:
        res = apply(root, inv, read_only=read_only)
    except StalePlan as exc:
        raise Refused(f"cannot undo action {a.id}: the task changed since ({exc})") from None
    _done(res)
    return EXIT_OK


def _cmd_log(root: Path, args: argparse.Namespace, id_prefix: str = "TASK-") -> int:
    """The journal under ``root`` (``root/warden/``); ids shown with the format's prefix."""
    if not (root / "warden" / "journal.db").exists():
        print("no interventions yet")
        return EXIT_OK
    with Journal(root) as j:
        if args.json:
            for rec in j.read_audit(args.limit):
                if args.task and rec.get("task_id") != args.task:
                    continue
                print(json.dumps(rec, sort_keys=True))
            return EXIT_OK
        for a in reversed(j.recent(args.limit, args.task)):
            extra = f" (undone by {a.undone_by})" if a.undone_by else ""
            extra += f" — {a.error}" if a.error and a.state != "done" else ""
            note = f" “{a.note}”" if a.note else ""
            # notes, actors and errors are people's and agents' text: plain, one line
            print(clean_line(f"#{a.id:<4} {a.created_at[:19]}  {a.state:<11} {a.kind:<11} "
                             f"{id_prefix}{a.task_id}  {a.actor}{note}{extra}", 2000))
    return EXIT_OK


# ------------------------------------------------------------------ any format's interface

def write_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options a format's write path takes from the command line (``--api``,
    ``--direct-db``, ``--read-only``): ``FormatInfo.interventions``'s third argument."""
    return {"read_only": bool(getattr(args, "read_only", False)),
            "api_url": getattr(args, "api", None) or None,
            "direct_db": bool(getattr(args, "direct_db", False))}


def run_through_interface(info: Any, root: Path, config: Config,
                          args: argparse.Namespace) -> int:
    """``qwarden ACTION`` / ``undo`` on a format that has only the neutral interface
    (``core.actions.interface``): guard on one scan, plan, show, confirm, apply."""
    from qwarden.core.actions.guard import check_live_work
    from qwarden.core.actions.interface import ActionRequest, NeedsConfirmation, SubtaskSpec
    from qwarden.core.formats import open_engine

    try:
        if args.command == "log":
            src = info.open(root, config, False, False)  # where its journal lives; reads
            try:
                where, prefix = src.journal_root, src.semantics.id_prefix
            finally:
                src.close()
            if where is None:
                raise Refused(f"a {info.name} queue keeps no journal here")
            return _cmd_log(Path(where), args, prefix)
        writes = not getattr(args, "dry_run", False)
        iv = info.interventions(root, config, write_options(args))
        recover = getattr(iv, "recover", None)
        if writes and recover is not None:
            for aid, outcome in recover():
                _err(f"recovered interrupted action {aid}: {outcome}")
        if args.command == "undo":
            if not writes:
                print(f"undo {args.action_id or '(the newest action)'}: what it changed put "
                      "back as it was, if nothing changed since")
                return EXIT_OK
            if not _confirm("Undo?", args):
                return EXIT_REFUSED
            res = iv.undo(args.action_id, actor=_actor())
            print(f"done: {clean_line(res.summary, 300)} (action {res.action_id})")
            return EXIT_OK
        kind = args.command
        if kind not in iv.actions:
            raise Refused(f"a {info.name} queue takes {', '.join(iv.actions)}, undo; "
                          f"not {kind}")
        if args.task_id is None:
            raise UsageError(f"{kind}: which task? (TASK_ID)")
        task_id = args.task_id
        force = bool(getattr(args, "force", False))
        if kind not in TALKS_ONLY and not force:
            snap = open_engine(root, config, fmt=info.name).scan()  # the guard's snapshot
            check_live_work(kind, task_id, snap, config.thresholds)
        request = ActionRequest(
            kind=kind, task_id=task_id, actor=_actor(), note=getattr(args, "note", "") or "",
            force=force, subtasks=tuple(SubtaskSpec.parse(s)
                                        for s in getattr(args, "subtask", []) or []))
        try:
            plan = iv.plan(request)
        except NeedsConfirmation as exc:
            raise Refused(f"{exc}") from None
        for line in plan.describe():
            print(clean_line(line, 2000))
        if not writes:
            return EXIT_OK
        if not _confirm(f"Apply {kind} to {task_id}?", args):
            return EXIT_REFUSED
        warnings = list(getattr(plan, "warnings", ()))
        if warnings and not args.yes and not _confirm("Really? " + warnings[0], args):
            return EXIT_REFUSED
        res = iv.apply(plan)
        hint = (f"; `qwarden undo {res.action_id}` reverses it" if res.undoable
                else "; it cannot be undone")
        print(f"done: action {res.action_id} ({clean_line(res.summary, 300)}){hint}")
        return EXIT_OK
    except (Refused, StalePlan, SourceError, OSError) as exc:
        return refusal_exit(exc)

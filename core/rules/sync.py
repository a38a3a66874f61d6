"""Where the two copies disagree about where a task is: mismatch, orphan, corrupt, missing,
duplicate, stale file_path."""

from __future__ import annotations

from collections.abc import Iterable

from qwarden.core.liveness import mismatch_settled
from qwarden.core.model import Action, Finding, Severity, Side, TaskFile
from qwarden.core.rules.base import Judged, RuleContext, ev, finding
from qwarden.core.timefmt import from_epoch


def file_db_mismatch(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    rec, pf = j.task.record, j.task.primary_file
    if not j.state.mismatch or rec is None or pf is None or not pf.parseable:
        return ()
    if not mismatch_settled(j.task, ctx.judge):
        return ()
    mtime = from_epoch(pf.mtime)
    last = pf.last_event
    newer = j.state.newer_side  # None: the stamps are too close to order
    action = (Action.SYNC_DB if newer is Side.FILE else Action.SYNC_FILE if newer is Side.DB
              else Action.REVIEW)
    expected = "/".join(sorted(ctx.semantics.expected_places(rec.queue)))
    evidence = [
        ev("DB queue", rec.queue, rec.newest_change, Side.DB),
        ev("file directory", pf.queue, mtime, Side.FILE),
        ev("expected directory", expected),
    ]
    if last is not None:
        evidence.append(ev("last trail event", last.kind, last.at, Side.FILE))
    if newer is None:
        evidence.append(ev("newer side", "unknown (the stamps differ by less than their "
                                         "precision)"))
        summary = (f"DB says {rec.queue}, file is in {pf.queue}/; which side is newer cannot "
                   "be told: look before syncing")
    else:
        evidence.append(ev("newer side", newer.value))
        follow = pf.queue if newer is Side.FILE else rec.queue
        summary = (f"DB says {rec.queue}, file is in {pf.queue}/; the {newer.value} side is "
                   f"newer ({follow} is likely true)")
    return (finding("file_db_mismatch", j, Severity.WARNING, summary, evidence, action,
                    newer),)


def orphan_file(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    t = j.task
    if t.record is not None or not ctx.judge.has_db:
        return ()
    real = [f for f in t.files if f.parseable]
    if not real:
        return ()
    f = real[0]
    return (finding("orphan_file", j, Severity.WARNING,
                    f"{f.relpath} has no DB row", [
                        ev("file", f.relpath, from_epoch(f.mtime), Side.FILE),
                        ev("DB row", "none", None, Side.DB)], Action.REGISTER),)


def corrupt_task(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    t = j.task
    for f in t.files:
        if not f.parseable:
            break
    else:
        return ()  # the common case: every copy parses
    has_real = any(f.parseable for f in t.files)
    out = []
    for f in t.files:
        if f.parseable:
            continue
        if f.is_stub and (has_real or t.record is not None):
            continue  # a stub of a task that exists elsewhere: duplicate_file's business
        out.append(finding("corrupt_task", j, Severity.CRITICAL,
                           f"{f.relpath} cannot be parsed: {f.problem}", [
                               ev("file", f.relpath, from_epoch(f.mtime), Side.FILE),
                               ev("problem", f.problem),
                               ev("size", f"{f.size} bytes"),
                               ev("DB row", "yes" if t.record else "none", None, Side.DB)],
                           Action.QUARANTINE))
    return out[:1]


def missing_file(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    t = j.task
    rec = t.record
    if rec is None:
        return ()
    for f in t.files:
        if not f.is_stub:
            return ()
    evidence = [ev("DB queue", rec.queue, rec.newest_change, Side.DB),
                ev("DB file_path", rec.file_path or "-", None, Side.DB),
                ev("queue directories searched", "all")]
    if t.files:
        evidence.append(ev("only stubs", ", ".join(f.relpath for f in t.files)))
    return (finding("missing_file", j, Severity.CRITICAL,
                    f"DB row ({rec.queue}) but no task file in any queue directory",
                    evidence, Action.REVIEW),)


def duplicate_file(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    t = j.task
    if len(t.files) < 2:
        return ()
    dirs = {f.queue for f in t.files}
    if len(dirs) < 2:
        return ()
    primary = t.primary_file
    extras = [f for f in t.files if f is not primary]
    only_junk = all(not f.parseable for f in extras)
    def what(f: TaskFile) -> str:
        return "real" if f.parseable else "stub" if f.is_stub else "corrupt"
    evidence = [ev("copy", f"{f.relpath} ({what(f)})", from_epoch(f.mtime), Side.FILE)
                for f in t.files]
    return (finding("duplicate_file", j, Severity.WARNING,
                    f"task file in {len(dirs)} queue directories: {', '.join(sorted(dirs))}",
                    evidence, Action.QUARANTINE if only_junk else Action.REVIEW),)


def stale_file_path(j: Judged, ctx: RuleContext) -> Iterable[Finding]:
    """Informative: the DB's file_path names another directory than where the file is."""
    rec, pf = j.task.record, j.task.primary_file
    if rec is None or pf is None or not pf.parseable or rec.file_dir is None:
        return ()
    if rec.file_name is None and pf.task_id == rec.task_id and "\\" not in rec.file_dir:
        # the usual name: only the (shared) directory string needs a look
        d, q = rec.file_dir, pf.queue
        if d.endswith(q + "/") and (len(d) == len(q) + 1 or d[-len(q) - 2] == "/"):
            return ()
    norm = rec.file_path
    if not norm:
        return ()
    if "\\" in norm:
        norm = norm.replace("\\", "/")
    want = f"/{pf.queue}/{pf.relpath.rsplit('/', 1)[-1]}"  # "/<queue>/TASK-<id>.md"
    if norm.endswith(want) or norm == want[1:]:
        return ()
    return (finding("stale_file_path", j, Severity.INFO,
                    f"DB file_path points elsewhere than {pf.relpath}", [
                        ev("DB file_path", rec.file_path, None, Side.DB),
                        ev("file", pf.relpath, from_epoch(pf.mtime), Side.FILE)],
                    Action.SYNC_DB),)



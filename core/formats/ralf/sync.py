"""``qwarden sync`` for RALF: rewrite queue.yaml the way the planner would.

The plan (``plan_sync``) reads the state, then edits queue.yaml in ruamel.yaml's round-trip
mode, so the planner's comments, key order, quoting and entry shape stay as they were:

- entries whose task is finished (their file in ``completed/``, a trustworthy completed event,
  or a finished ``status``) are removed;
- tasks in ``active/`` that the queue does not list are added, from their header block, in
  the shape of the entries already there (``id`` or ``task_id``, the same key order);
- ``metadata.last_completed`` is set to the latest completion by run number and event order,
  ``current_depth`` to the entries still to do, ``last_updated``/``updated_by`` to this sync.

The result is parsed back and checked before anything is written (every removed id gone,
every added one there, the rest untouched and in order). ``apply_sync`` journals the plan
(``core.actions.journal``: the old bytes and the before/after sha256 of each file), refuses
if queue.yaml changed since the plan was made, writes a backup beside it
(``queue.yaml.backup.YYYYMMDD_HHMMSS``, the project's own naming), replaces queue.yaml
atomically and re-reads every file it wrote. ``undo_sync`` puts the old bytes back (only if
nothing changed queue.yaml since) and removes the backup.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from qwarden.core import safeio
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import FileOp, Plan, Refused, StalePlan, check_inside_root, sha256
from qwarden.core.atomicfile import fsync_dir, write_atomic
from qwarden.core.formats.ralf import layout as lay
from qwarden.core.formats.ralf.kinds import DONE_STATUSES
from qwarden.core.formats.ralf.parse import _yaml, header_get, parse_queue
from qwarden.core.formats.ralf.rules import RalfView, done_of
from qwarden.core.formats.ralf.source import MAX_COMM_BYTES, RalfSource
from qwarden.core.model import Task

KIND = "ralf-sync"
UNDO_KIND = "ralf-sync-undo"
ACTOR = "qwarden-sync"


@dataclass(frozen=True)
class SyncPlan:
    autonomous: Path  # the journal's root; every path below is relative to it
    queue_rel: str
    backup_rel: str
    before: bytes
    after: bytes
    removed: tuple[str, ...]
    added: tuple[str, ...]
    metadata: dict[str, tuple[str | None, str]]  # key -> (old, new), only those that change
    diff: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> bool:
        return self.before != self.after

    def describe(self) -> list[str]:
        out = [f"sync {self.queue_rel}: remove {len(self.removed)}, add {len(self.added)}, "
               f"metadata {len(self.metadata)}"]
        for tid in self.removed:
            out.append(f"  - {tid} (finished)")
        for tid in self.added:
            out.append(f"  + {tid} (in active/, not listed)")
        for k, (old, new) in self.metadata.items():
            out.append(f"  metadata.{k}: {old} -> {new}")
        for w in self.warnings:
            out.append(f"  ! {w}")
        if self.changes:
            out.append(f"  backup: {self.backup_rel}")
        return out

    def to_plan(self, note: str = "") -> Plan:
        return Plan(kind=KIND, task_id="queue", actor=ACTOR, note=note,
                    summary=self.describe()[0],
                    files=(FileOp(self.queue_rel, self.queue_rel, sha256(self.before),
                                  self.after),
                           FileOp(None, self.backup_rel, None, self.before)),
                    warnings=self.warnings,
                    extra={"removed": list(self.removed), "added": list(self.added),
                           "metadata": {k: list(v) for k, v in self.metadata.items()}})


def _now_iso(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backup_rel(auto: Path, queue_rel: str, now: datetime) -> str:
    base = f"{queue_rel}.backup.{now.astimezone(UTC).strftime('%Y%m%d_%H%M%S')}"
    rel, n = base, 1
    while os.path.lexists(auto / rel):
        rel = f"{base}.{n}"
        n += 1
    return rel


def _int_prefix(s: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", s or "")
    return int(m.group(1)) if m else None


def _new_entry(t: Task, template: CommentedMap | None, id_key: str, now: str) -> CommentedMap:
    pf = t.primary_file
    assert pf is not None
    h = pf.header.items()
    values: dict[str, Any] = {id_key: t.task_id}
    typ = header_get(h, "Type")
    if typ:
        values["type"] = typ.split()[0]
    values["title"] = pf.title or t.task_id
    pri = header_get(h, "Priority")
    if pri:
        values["priority"] = pri.split()[0].lower()
    est = _int_prefix(header_get(h, "Estimated Minutes"))
    if est is not None:
        values["estimated_minutes"] = est
    ctx = _int_prefix(header_get(h, "Context Level"))
    if ctx is not None:
        values["context_level"] = ctx
    values["added_at"] = header_get(h, "Created") or now
    values["status"] = "pending"
    values["source"] = f"qwarden sync from {pf.relpath}"
    entry = CommentedMap()
    order = [k for k in (template or {}) if k in values]
    if template is not None and id_key not in order:
        order.insert(0, id_key)
    for k in order + [k for k in values if k not in order]:
        entry[k] = values[k]
    return entry


def plan_sync(root: Path | str, as_of: datetime | None = None,
              source: RalfSource | None = None) -> SyncPlan:
    """What a sync would write, checked, nothing written. Raises ``Refused`` when there is
    no queue.yaml to sync or it does not parse (a corrupt queue is the operator's to mend)."""
    src = source or RalfSource(root)
    if source is None:
        src.scan()
    layout = src.layout
    now = as_of or datetime.now(UTC)
    qpath = layout.comm_file(lay.QUEUE)
    if qpath is None or not safeio.is_file(qpath):
        raise Refused("no queue.yaml to sync")
    check_inside_root(layout.autonomous, [os.path.relpath(qpath, layout.autonomous)])
    try:
        before, _ = safeio.read_whole(qpath, MAX_COMM_BYTES)
    except OSError as exc:
        raise Refused(f"{layout.rel(qpath)}: {exc.strerror or exc}") from None
    text = before.decode("utf-8")
    y = _yaml()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    _match_indent(y, text)
    try:
        doc = y.load(text)
    except Exception as exc:  # a YAML error of any kind: refuse, name it
        raise Refused(f"{layout.rel(qpath)} does not parse: {exc}") from None
    if not isinstance(doc, CommentedMap):
        raise Refused(f"{layout.rel(qpath)}: not a mapping at the top")
    queue = doc.get("queue")
    if queue is None:
        queue = CommentedSeq()
        doc["queue"] = queue
    if not isinstance(queue, CommentedSeq):
        raise Refused(f"{layout.rel(qpath)}: queue: is not a list")

    maps = [e for e in queue if isinstance(e, CommentedMap)]
    template = maps[0] if maps else _template_from(text)
    spaced = any(_trailing(e) is not None for e in maps)
    tasks = src.all_tasks()
    view = RalfView(as_of=now, tasks=tasks, agents=src.agents(), facts=src.facts())
    removed: list[str] = []
    listed: set[str] = set()
    keep_idx = []
    for i, e in enumerate(queue):
        tid = None
        if isinstance(e, dict):
            raw = e.get("id") or e.get("task_id")
            tid = str(raw).strip() if raw is not None else None
        t = tasks.get(tid) if tid else None
        status = str(e.get("status") or "").strip().lower() if isinstance(e, dict) else ""
        finished = status in DONE_STATUSES or (t is not None and done_of(view, t).done)
        if tid and finished:
            removed.append(tid)
            continue
        if tid:
            listed.add(tid)
        keep_idx.append(i)
    for i in sorted(set(range(len(queue))) - set(keep_idx), reverse=True):
        _delete_item(queue, i)

    id_keys = [("id" if "id" in e else "task_id") for e in queue if isinstance(e, dict)]
    id_key = max(sorted(set(id_keys)), key=id_keys.count) if id_keys else \
        ("id" if template is None or "id" in template else "task_id")
    added: list[str] = []
    for tid in sorted(tasks):
        t = tasks[tid]
        if t.record is not None or tid in listed or not t.files:
            continue
        if any(f.queue != "active" for f in t.files) or done_of(view, t).done:
            continue
        queue.append(_new_entry(t, template, id_key, _now_iso(now)))
        added.append(tid)
    if spaced and added:
        _space_entries(queue)

    meta = doc.get("metadata")
    changes: dict[str, tuple[str | None, str]] = {}
    depth = sum(1 for e in queue if isinstance(e, dict)
                and str(e.get("status") or "pending").lower() not in DONE_STATUSES)
    latest = view.fact("queue", "latest_completion")
    if isinstance(meta, CommentedMap) or removed or added or meta is None:
        if not isinstance(meta, CommentedMap):
            meta = CommentedMap()
            doc["metadata"] = meta
        want: dict[str, Any] = {}
        if latest is not None and str(meta.get("last_completed") or "") != latest.value:
            want["last_completed"] = latest.value
        if "current_depth" in meta or added or removed:
            old = meta.get("current_depth")
            if _int_prefix(str(old)) != depth or old is None:
                want["current_depth"] = depth
        if want or removed or added:
            want["last_updated"] = _now_iso(now)
            want["updated_by"] = ACTOR
        for k, v in want.items():
            old_v = meta.get(k)
            if old_v is not None and str(old_v) == str(v):
                continue
            changes[k] = (None if old_v is None else str(old_v), str(v))
            _set_keep_style(meta, k, v)
    if not (removed or added or changes):
        after = before
    else:
        buf = io.StringIO()
        y.dump(doc, buf)
        after = buf.getvalue().encode("utf-8")
    queue_rel = os.path.relpath(qpath, layout.autonomous).replace(os.sep, "/")
    plan = SyncPlan(
        autonomous=layout.autonomous, queue_rel=queue_rel,
        backup_rel=_backup_rel(layout.autonomous, queue_rel, now), before=before, after=after,
        removed=tuple(removed), added=tuple(added), metadata=changes,
        diff=tuple(difflib.unified_diff(
            text.splitlines(keepends=True), after.decode("utf-8").splitlines(keepends=True),
            f"a/{queue_rel}", f"b/{queue_rel}")),
        warnings=_warnings(view, tasks, removed))
    verify_plan(plan, depth, latest.value if latest is not None else None)
    return plan


def _warnings(view: RalfView, tasks: dict[str, Task], removed: list[str]) -> tuple[str, ...]:
    out = []
    for tid in removed:
        t = tasks.get(tid)
        if t is not None and not any(f.queue == "completed" for f in t.files):
            out.append(f"{tid}: finished by its event only (its file is not in completed/)")
    return tuple(out)


def _match_indent(y: Any, text: str) -> None:
    """Keep the file's sequence indentation: ``queue:\\n  - id`` (offset 2) or
    ``queue:\\n- id`` (offset 0)."""
    m = re.search(r"^queue:[ \t]*\n((?:[ \t]*#.*\n|[ \t]*\n)*)([ \t]*)- ", text, re.M)
    if m is None:
        return
    off = len(m.group(2))
    y.indent(mapping=2, sequence=off + 2, offset=off)


def _template_from(text: str) -> CommentedMap | None:
    """An entry's key order when the queue is empty now: the planner's usual shape."""
    order = ["id", "type", "title", "priority", "estimated_minutes", "context_level",
             "added_at", "status", "source"]
    m = CommentedMap()
    for k in order:
        m[k] = None
    return m


def _delete_item(seq: CommentedSeq, i: int) -> None:
    """Delete entry ``i``, keeping the comment that separated it from what follows on the
    entry before it (ruamel keeps a blank line or comment after an entry on its last key)."""
    del seq[i]


def _trailing(m: CommentedMap) -> Any:
    if not m:
        return None
    last = list(m.keys())[-1]
    return m.ca.items.get(last)


def _space_entries(seq: CommentedSeq) -> None:
    """Give every entry the blank line after it that the planner puts between entries."""
    for e in seq:
        if isinstance(e, CommentedMap) and e and _trailing(e) is None:
            _blank_after(e, list(e.keys())[-1])


def _blank_after(m: CommentedMap, key: Any) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    m.ca.items[key] = [None, None, CommentToken("\n\n", CommentMark(0), None), None]


def _set_keep_style(meta: CommentedMap, key: str, value: Any) -> None:
    """Set a metadata value keeping the old one's quoting (a quoted time stays quoted)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    old = meta.get(key)
    if isinstance(value, str):
        if isinstance(old, SingleQuotedScalarString):
            value = SingleQuotedScalarString(value)
        elif isinstance(old, DoubleQuotedScalarString):
            value = DoubleQuotedScalarString(value)
        elif key == "last_updated":
            value = SingleQuotedScalarString(value)
    meta[key] = value


def verify_plan(plan: SyncPlan, depth: int, latest: str | None) -> None:
    """The rewritten queue read back as qwarden reads it: it must say exactly what was
    planned, or the plan is refused (a sync never fails silently)."""
    if not plan.changes:
        return
    old = parse_queue(plan.before.decode("utf-8"))
    new = parse_queue(plan.after.decode("utf-8", errors="strict"))
    if new.problem:
        raise Refused(f"the rewritten queue does not parse: {new.problem}")
    want = [e.task_id for e in old.entries if e.task_id not in plan.removed] + list(plan.added)
    got = [e.task_id for e in new.entries]
    if got != want:
        raise Refused(f"the rewritten queue lists {got}, the plan wanted {want}")
    for k, (_, v) in plan.metadata.items():
        mv = new.metadata.get(k)
        if mv is None or mv.value != v:
            raise Refused(f"the rewritten queue's metadata.{k} is "
                          f"{mv.value if mv else None!r}, the plan wanted {v!r}")
    mv = new.metadata.get("current_depth")
    if mv is not None and _int_prefix(mv.value) != depth:
        raise Refused(f"the rewritten queue's current_depth is {mv.value}, not {depth}")
    if latest is not None and "last_completed" in new.metadata \
            and new.metadata["last_completed"].value != latest:
        raise Refused("the rewritten queue's last_completed is not the latest completion")
    kept_old = {e.task_id: e for e in old.entries if e.task_id not in plan.removed}
    for e in new.entries:
        o = kept_old.get(e.task_id)
        if o is not None and (o.status, o.title, o.id_key) != (e.status, e.title, e.id_key):
            raise Refused(f"the rewritten queue changed the kept entry {e.task_id}")


# -- applying and undoing ------------------------------------------------------------------

def _read_sha(path: Path) -> str | None:
    try:
        data, _ = safeio.read_whole(path, MAX_COMM_BYTES)
    except FileNotFoundError:
        return None
    return sha256(data)


def _write(path: Path, data: bytes, aid: int, no_clobber: bool) -> None:
    """``atomicfile.write_atomic``, then re-read: a write that does not hold is an error."""
    try:
        write_atomic(path, data, tag=f"qw{aid}", no_clobber=no_clobber)
    except FileExistsError:
        raise StalePlan(f"{path.name} appeared meanwhile") from None
    if _read_sha(path) != sha256(data):
        raise OSError(f"{path}: re-read after writing does not hold what was written")


def _check_paths(auto: Path, rels: list[str]) -> None:
    for rel in rels:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or "" in parts \
                or not any(rel.startswith(d + "/") for d in lay.COMMS_DIRS):
            raise Refused(f"plan touches a path outside the communications dir: {rel!r}")
    check_inside_root(auto, rels)


@dataclass(frozen=True)
class Applied:
    action_id: int
    backup: str


def apply_sync(plan: SyncPlan, note: str = "", read_only: bool = False) -> Applied:
    if read_only:
        raise Refused("read-only: qwarden writes nothing")
    if not plan.changes:
        raise Refused("queue.yaml is in sync already: nothing to write")
    auto = plan.autonomous
    _check_paths(auto, [plan.queue_rel, plan.backup_rel])
    p = plan.to_plan(note)
    qpath, bpath = auto / plan.queue_rel, auto / plan.backup_rel
    with Journal(auto) as j, j.lock():
        _recover(auto, j)
        if _read_sha(qpath) != sha256(plan.before):
            raise StalePlan(f"{plan.queue_rel} changed since the plan was made: plan again")
        if os.path.lexists(bpath):
            raise StalePlan(f"{plan.backup_rel} exists already")
        aid = j.begin(p, {"queue_sha": sha256(plan.before)},
                      {plan.queue_rel: plan.before, plan.backup_rel: None}, {})
        j.audit("apply", aid, kind=KIND, task_id="queue", removed=list(plan.removed),
                added=list(plan.added))
        try:
            _write(bpath, plan.before, aid, no_clobber=True)
            if _read_sha(qpath) != sha256(plan.before):  # the last look before replacing
                raise StalePlan(f"{plan.queue_rel} changed while the backup was written")
            _write(qpath, plan.after, aid, no_clobber=False)
        except BaseException as exc:
            _rollback(qpath, bpath, plan.before, aid)
            j.set_state(aid, "rolled_back", str(exc))
            j.audit("rolled_back", aid, error=str(exc))
            raise
        j.set_state(aid, "done")
        j.audit("done", aid)
    return Applied(aid, plan.backup_rel)


def _recover(auto: Path, j: Journal) -> list[int]:
    """Sync steps a killed qwarden left unfinished are rolled back from the journal: the
    queue gets its journaled bytes again unless someone wrote it since (then it is left
    alone and the row says so), a backup this step created is removed."""
    out = []
    for row in j.unfinished():
        if row.kind not in (KIND, UNDO_KIND):
            continue
        backups = j.file_backups(row.id)
        qop = row.plan.files[0]
        assert qop.src is not None
        qpath = auto / qop.src
        old = backups.get(qop.src)
        cur = _read_sha(qpath)
        note = "rolled back after an interrupted run"
        if old is not None and cur in (qop.after_sha, sha256(old)):
            if cur != sha256(old):
                _write(qpath, old, row.id, no_clobber=False)
        else:
            note = f"{qop.src} was written by someone else since: left as it is"
        if row.kind == KIND:
            bop = row.plan.files[1]
            if bop.dst is not None and old is not None \
                    and _read_sha(auto / bop.dst) == sha256(old):
                os.unlink(auto / bop.dst)
        j.set_state(row.id, "rolled_back", note)
        j.audit("recovered", row.id, note=note)
        out.append(row.id)
    return out


def _rollback(qpath: Path, bpath: Path, before: bytes, aid: int) -> None:
    cur = _read_sha(qpath)
    if cur is not None and cur != sha256(before):
        _write(qpath, before, aid, no_clobber=False)
    if _read_sha(bpath) == sha256(before):
        os.unlink(bpath)


def undo_sync(root: Path | str, action_id: int | None = None, note: str = "") -> int:
    """Reverse a done sync if queue.yaml still holds what it wrote; returns the undo's id."""
    layout = lay.discover(root)
    if layout is None:
        raise Refused(f"{root}: not a RALF state")
    auto = layout.autonomous
    with Journal(auto) as j, j.lock():
        _recover(auto, j)
        if action_id is None:
            rows = [r for r in j.recent(200) if r.kind == KIND and r.state == "done"]
            if not rows:
                raise Refused("no sync to undo")
            row = rows[0]
        else:
            got = j.get(action_id)
            if got is None or got.kind != KIND:
                raise Refused(f"action {action_id} is not a RALF sync")
            row = got
        if row.state != "done":
            raise Refused(f"action {row.id} is {row.state}, not done")
        qop, bop = row.plan.files
        assert qop.src is not None and bop.dst is not None and qop.after is not None
        qpath, bpath = auto / qop.src, auto / bop.dst
        _check_paths(auto, [qop.src, bop.dst])
        if _read_sha(qpath) != qop.after_sha:
            raise StalePlan(f"{qop.src} changed since the sync (action {row.id}): not undone")
        before = j.file_backups(row.id)[qop.src]
        if before is None or sha256(before) != qop.before_sha:
            raise Refused(f"the journal's copy of {qop.src} is missing or damaged")
        inv = Plan(kind=UNDO_KIND, task_id="queue", actor=ACTOR, note=note,
                   summary=f"undo sync {row.id}", undoes=row.id,
                   files=(FileOp(qop.src, qop.src, qop.after_sha, before),
                          FileOp(bop.dst, None, _read_sha(bpath), None)))
        current, _ = safeio.read_whole(qpath, MAX_COMM_BYTES)
        backup_now = None
        if os.path.lexists(bpath):
            backup_now, _ = safeio.read_whole(bpath, MAX_COMM_BYTES)
        aid = j.begin(inv, {"queue_sha": qop.after_sha}, {qop.src: current, bop.dst: backup_now},
                      {})
        j.audit("apply", aid, kind=UNDO_KIND, undoes=row.id)
        _write(qpath, before, aid, no_clobber=False)
        if backup_now is not None and sha256(backup_now) == qop.before_sha:
            os.unlink(bpath)
            fsync_dir(bpath.parent)
        j.set_state(aid, "done")
        j.mark_undone(row.id, aid)
        j.audit("done", aid)
        return aid


def render_plan(plan: SyncPlan, diff: bool = True) -> str:
    lines = plan.describe()
    if diff and plan.diff:
        lines.append("")
        lines.extend(d.rstrip("\n") for d in plan.diff)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m qwarden.core.formats.ralf.sync --root DIR [--dry-run] [--yes] [--undo [ID]]``
    (what ``qwarden sync --format ralf`` runs)."""
    import argparse

    ap = argparse.ArgumentParser(prog="qwarden sync --format ralf",
                                 description="rewrite queue.yaml the way the planner would")
    ap.add_argument("--root", required=True)
    ap.add_argument("--dry-run", action="store_true", help="show the plan and diff only")
    ap.add_argument("--yes", action="store_true", help="apply without asking")
    ap.add_argument("--note", default="")
    ap.add_argument("--read-only", action="store_true")
    ap.add_argument("--undo", nargs="?", const=-1, type=int, metavar="ACTION_ID")
    a = ap.parse_args(argv)
    try:
        if a.undo is not None:
            aid = undo_sync(a.root, None if a.undo == -1 else a.undo, a.note)
            print(f"undone (action {aid})")
            return 0
        plan = plan_sync(a.root)
        sys.stdout.write(render_plan(plan))
        if not plan.changes or a.dry_run:
            return 0
        if not a.yes:
            if not sys.stdin.isatty() or input("apply? [y/N] ").strip().lower() != "y":
                print("not applied")
                return 1
        done = apply_sync(plan, a.note, a.read_only)
        print(f"applied (action {done.action_id}); backup {done.backup}")
        return 0
    except (Refused, StalePlan) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

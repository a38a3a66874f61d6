"""Interventions on the coordination files, by the design's own rules.

``reset`` a dead worker's task to pending, ``reassign`` to a live worker with the skills,
``retry`` a failed task, ``cancel``, ``split`` into new tasks with instruction files, and
``repair`` the queue file. Each is planned from a fresh read (``plan``: what changes, entry by
entry and field by field, or refused), then applied (``apply``):

1. qwarden's own writer lock (the journal's), then the queue's advisory lock, the one the
   workers take (``task-queue.json.lock``, ``lock.queue_lock``);
2. under it the queue file and worker-status.json are read again: every entry the plan
   touches must be exactly as planned (else ``StalePlan``: a worker moved on, nothing is
   written), and no live worker may hold the task (``Refused``);
3. the journal records the intent and the bytes it replaces (the entry's own bytes; the
   whole file for a repair) before anything is written;
4. only the touched entries' bytes are replaced (every other entry keeps its bytes), new
   instruction files are created without clobbering, and the queue is replaced atomically
   (temp + fsync + rename + fsync of the directory);
5. the journal says done. ``undo`` is the same splice backwards, under the same locks, if
   the entries are still as qwarden left them: with nothing else changed, byte-identical.

A live worker's task is never written: its claimant must be dead (no sign of life for
``[coordination] dead_after_s``) or absent from worker-status.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan, Refused, StalePlan, check_inside_root
from qwarden.core.config import Config
from qwarden.core.formats.coordination import layout
from qwarden.core.formats.coordination.lock import (
    array_spans,
    create_exclusive,
    dump_queue,
    entry_indent,
    format_entry,
    queue_lock,
    write_atomic,
)
from qwarden.core.formats.coordination.parse import check_entry, norm_id, parse_queue, salvage
from qwarden.core.formats.coordination.rules import CoordView, worker_health
from qwarden.core.formats.coordination.source import (
    CoordState,
    context_files,
    instruction_rel,
    read_state,
    read_workers,
    worker_caps,
)
from qwarden.core.safeio import read_whole

ACTIONS = ("reset", "reassign", "retry", "cancel", "split", "repair")
CRASH_ENV = "QWARDEN_CRASH_AT"  # a step name: SIGKILL there (the crash tests)


def _crash(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def recover(root: Path | str, j: Journal | None = None) -> list[tuple[int, str]]:
    """Settle the coordination actions a crash left unfinished (state applying). The queue
    is replaced by one rename, so it holds either the plan's after bytes (the action
    happened: done) or not (rolled back: the instruction files it created are removed if
    still as written). Called under the locks by every apply and undo."""
    root = Path(root)
    own = j is None
    j = j or Journal(root)
    out = []
    try:
        for row in j.unfinished():
            ex = row.plan.extra
            if ex.get("format") != "coordination":
                continue
            try:
                data, _ = read_whole(root / layout.QUEUE, QUEUE_MAX)
            except OSError:
                data = b""
            if ex.get("after_sha") and _sha(data) == ex["after_sha"]:
                j.set_state(row.id, "done")
                out.append((row.id, "done (the queue was written before the crash)"))
                continue
            for c in ex.get("creates", ()):
                path = root / c["path"]
                try:
                    if _sha(read_whole(path, 64 * 1024 * 1024)[0]) == c["sha"]:
                        path.unlink()
                except OSError:
                    pass
            j.set_state(row.id, "rolled_back", "interrupted before the queue was written")
            out.append((row.id, "rolled back (the queue was not written)"))
    finally:
        if own:
            j.close()
    return out
QUEUE_MAX = 1024 * 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now_iso() -> str:
    return datetime.now().isoformat()


@dataclass
class CoordPlan:
    kind: str
    task_id: str  # "queue" for a repair
    summary: str
    note: str = ""
    actor: str = "qwarden-cli"
    changes: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    creates: list[tuple[str, bytes]] = field(default_factory=list)
    whole: bytes | None = None  # repair: the new file
    whole_before_sha: str | None = None
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    guard: list[str] = field(default_factory=list)  # task ids whose claimant must be dead

    def describe(self) -> list[str]:
        out = [f"{self.kind} {self.task_id}: {self.summary}"]
        if self.note:
            out.append(f"  note: {self.note}")
        out.extend(f"  ! {w}" for w in self.warnings)
        for tid, before, after in self.changes:
            for k in sorted(set(before) | set(after)):
                b, a = before.get(k), after.get(k)
                if b == a:
                    continue
                if isinstance(b, dict) and isinstance(a, dict):
                    for sub in sorted(set(b) | set(a)):
                        if b.get(sub) != a.get(sub):
                            out.append(f"  {layout.QUEUE}[{tid}].{k}.{sub}: "
                                       f"{_short(b.get(sub))} -> {_short(a.get(sub))}")
                    continue
                out.append(f"  {layout.QUEUE}[{tid}].{k}: {_short(b)} -> {_short(a)}")
        for e in self.inserts:
            out.append(f"  {layout.QUEUE} + entry {e['id']}: {_short(e.get('description'))}")
        for rel, data in self.creates:
            out.append(f"  file + {rel} ({len(data)} bytes)")
        if self.whole is not None:
            out.append(f"  {layout.QUEUE}: rewritten ({len(self.whole):,} bytes), the whole "
                       "file backed up in the journal and warden/backups/")
            out.extend(f"  - dropped {d}" for d in self.dropped)
        return out


def _short(v: Any, n: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------------------ planning

def _state(root: Path, config: Config) -> CoordState:
    return read_state(root, config.coordination)


def _view(st: CoordState, config: Config, as_of: datetime | None = None) -> CoordView:
    return CoordView(as_of=as_of or datetime.now(UTC), state=st, opts=config.coordination,
                     thresholds=config.thresholds)


def _entry(st: CoordState, tid: str) -> dict[str, Any]:
    if st.queue_error is not None:
        raise Refused(f"{layout.QUEUE} is not valid JSON ({st.queue_error.text()}): "
                      "repair it first (qwarden repair)")
    e = st.entries.get(tid)
    if e is None:
        raise Refused(f"no task {tid} in {layout.QUEUE}")
    if tid in st.queue.duplicates:
        raise Refused(f"{tid} appears {len(st.queue.duplicates[tid])} times in {layout.QUEUE}: "
                      "edit it by hand")
    return e.raw


def holder_refusal(view: CoordView, raw: dict[str, Any]) -> str | None:
    """Why the task may not be written (a live worker holds it), or None."""
    if raw.get("status") != "in_progress":
        return None
    name = raw.get("claimed_by")
    health, why, _ = worker_health(view, name if isinstance(name, str) else None)
    if health in ("live", "stale"):
        return (f"{why}: a live worker holds it (qwarden writes no task a worker may be "
                f"working on; dead after {view.opts.dead_after_s:g} s of silence)")
    return None


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    m = raw.get("metadata")
    return dict(m) if isinstance(m, dict) else {}


def _released(raw: dict[str, Any], counter: str) -> dict[str, Any]:
    """The entry back to pending, its claim cleared (the design's stale-task reset)."""
    new = dict(raw)
    new["status"] = "pending"
    new["claimed_by"] = None
    for k in ("claimed_at", "started_at"):
        if k in new:
            new[k] = None
    m = _meta(raw)
    m[counter] = int(m.get(counter, 0) or 0) + 1 if isinstance(m.get(counter, 0), int) else 1
    new["metadata"] = m
    return new


def plan(root: Path | str, action: str, task_id: str = "", *, note: str = "",
         actor: str = "qwarden-cli", to: str | None = None, subtasks: tuple[str, ...] = (),
         config: Config | None = None, as_of: datetime | None = None) -> CoordPlan:
    """What ``action`` would change, from a fresh read; raises ``Refused``."""
    config = config or Config()
    root = Path(root)
    if action not in ACTIONS:
        raise Refused(f"unknown action {action!r} (one of: {', '.join(ACTIONS)})")
    if action == "repair":
        return _plan_repair(root, config, note, actor)
    st = _state(root, config)
    view = _view(st, config, as_of)
    raw = _entry(st, task_id)
    status = raw.get("status")
    refusal = holder_refusal(view, raw)
    p = CoordPlan(kind=action, task_id=task_id, summary="", note=note, actor=actor,
                  guard=[task_id])
    if action == "reset":
        if status != "in_progress":
            raise Refused(f"{task_id} is {status}, not in_progress: nothing to reset")
        if refusal:
            raise Refused(refusal)
        new = _released(raw, "reset_count")
        p.summary = f"back to pending (claimed by {raw.get('claimed_by') or 'nobody'}, dead)"
    elif action == "reassign":
        if status not in ("pending", "in_progress"):
            raise Refused(f"{task_id} is {status}: only pending or in-progress tasks move")
        if refusal:
            raise Refused(refusal)
        need = {str(s) for s in (_meta(raw).get("required_skills") or [])
                if isinstance(s, (str, int))}
        able = [w for w in st.agents if need <= set(worker_caps(st, w))
                and worker_health(view, w)[0] == "live"]
        if to is None:
            if not able:
                raise Refused(f"no live worker has {', '.join(sorted(need)) or 'any skill'}")
            to = able[0]
        elif to not in able:
            if to not in st.agents:
                raise Refused(f"{to} is not in {layout.WORKERS}")
            lacking = sorted(need - set(worker_caps(st, to)))
            raise Refused(f"{to} lacks {', '.join(lacking)}" if lacking
                          else f"{to} is not live ({worker_health(view, to)[1]})")
        new = _released(raw, "reset_count") if status == "in_progress" else dict(raw)
        new["assigned_to"] = to
        p.summary = f"assigned to {to}" + (" and back to pending" if status == "in_progress"
                                           else "")
    elif action == "retry":
        if status != "failed":
            raise Refused(f"{task_id} is {status}, not failed: nothing to retry")
        new = dict(raw)
        m = _meta(raw)
        if raw.get("error") not in (None, ""):
            prev = m.get("previous_errors")
            m["previous_errors"] = [*(prev if isinstance(prev, list) else []), raw["error"]]
        m["retry_count"] = (m.get("retry_count") or 0) + 1 \
            if isinstance(m.get("retry_count", 0), int) else 1
        new.update(status="pending", claimed_by=None, completed_by=None, completed_at=None,
                   result=None, metadata=m)
        for k in ("claimed_at", "started_at"):
            if k in new:
                new[k] = None
        if "error" in new:
            new["error"] = None
        p.summary = "failed -> pending (the old error kept in metadata.previous_errors)"
    elif action == "cancel":
        if not note:
            raise Refused("cancel needs --note (the reason)")
        if status in ("completed", "cancelled"):
            raise Refused(f"{task_id} is {status}: nothing to cancel")
        if refusal:
            raise Refused(refusal)
        new = dict(raw)
        m = _meta(raw)
        m.update(cancelled_note=note, cancelled_at=_now_iso(), cancelled_from=status)
        new.update(status="cancelled", metadata=m)
        p.summary = f"{status} -> cancelled (workers claim only pending tasks)"
    else:  # split
        if len(subtasks) < 2:
            raise Refused("split needs at least two --subtask descriptions")
        if status in ("completed", "cancelled"):
            raise Refused(f"{task_id} is {status}: nothing to split")
        if refusal:
            raise Refused(refusal)
        new = _plan_split(root, st, p, raw, subtasks)
    p.changes.append((task_id, raw, new))
    return p


def _plan_split(root: Path, st: CoordState, p: CoordPlan, raw: dict[str, Any],
                subtasks: tuple[str, ...]) -> dict[str, Any]:
    tid = p.task_id
    as_str = isinstance(raw.get("id"), str)
    base = int(datetime.now().timestamp() * 1000)
    taken = set(st.entries)
    parent_rel = instruction_rel(st.entries[tid])
    try:
        parent_text = read_whole(root / parent_rel, 256 * 1024)[0].decode("utf-8", "replace")
    except OSError:
        parent_text = ""
    ids: list[Any] = []
    for i, desc in enumerate(subtasks):
        n = base + i
        while (f"task-{n}-split" if as_str else str(n)) in taken:
            n += 1
        new_id: Any = f"task-{n}-split" if as_str else n
        taken.add(str(new_id))
        ids.append(new_id)
        rel = layout.instruction_name(str(new_id))
        m = {k: v for k, v in _meta(raw).items() if k in ("required_skills", "working_directory",
                                                           "acceptance_criteria", "depends_on")}
        m["split_from"] = raw.get("id")
        p.inserts.append({
            "id": new_id, "description": desc, "instruction_file": rel,
            "context_files": list(context_files(st.entries[tid])), "assigned_to": None,
            "status": "pending", "created_at": _now_iso(), "claimed_by": None,
            "claimed_at": None, "completed_by": None, "completed_at": None, "result": None,
            "metadata": m})
        body = (f"# Task: {desc}\n\nSplit by qwarden from task {tid} (part {i + 1} of "
                f"{len(subtasks)}).\n\n## Objective\n{desc}\n")
        if parent_text:
            body += "\n## The parent task's instructions\n\n" + parent_text
        p.creates.append((rel, body.encode("utf-8")))
    new = dict(raw)
    m = _meta(raw)
    m.update(split_into=ids, cancelled_note=p.note or "split", cancelled_at=_now_iso(),
             cancelled_from=raw.get("status"))
    new.update(status="cancelled", metadata=m)
    p.summary = f"cancelled, split into {len(ids)} new pending tasks: " + \
        ", ".join(map(str, ids))
    return new


def _plan_repair(root: Path, config: Config, note: str, actor: str) -> CoordPlan:
    data, _ = _read_queue(root)
    new, dropped = repaired(data)
    if new is None:
        raise Refused(f"{layout.QUEUE} parses and every entry has an id and a status: "
                      "nothing to repair")
    p = CoordPlan(kind="repair", task_id="queue", note=note, actor=actor,
                  summary=f"keep {len(json.loads(new))} valid entries, drop {len(dropped)}",
                  whole=new, whole_before_sha=_sha(data), dropped=dropped)
    return p


def repaired(data: bytes) -> tuple[bytes | None, list[str]]:
    """The queue rebuilt from its valid entries (every one kept, in order, duplicates too:
    which copy is right is a person's call) and what was dropped; (None, []) when there is
    nothing to repair."""
    qp = parse_queue(data)
    if qp.error is None and not qp.invalid:
        return None, []
    dropped: list[str] = []
    if qp.error is None:
        obj = json.loads(data)
        items = obj["tasks"] if isinstance(obj, dict) else obj
    else:
        items = list(salvage(data))
        dropped.append(f"the bytes that do not parse ({qp.error.text()})")
    keep = []
    for i, it in enumerate(items):
        tid, why = check_entry(it)
        if tid is None:
            dropped.append(f"entry #{i}: {why}: {json.dumps(it, default=str)[:120]}")
        else:
            keep.append(it)
    return dump_queue(keep), dropped


# ------------------------------------------------------------------------------ applying

def _read_queue(root: Path) -> tuple[bytes, str]:
    data, _ = read_whole(root / layout.QUEUE, QUEUE_MAX)
    return data, data.decode("utf-8", errors="strict") if data else ""


def _fresh_view(root: Path, config: Config, now: datetime | None) -> CoordView:
    """Worker health as it is now (read under the lock), for the guard."""
    return _view(read_workers(root, config.coordination), config, now)


def apply(root: Path | str, p: CoordPlan, config: Config | None = None,
          now: datetime | None = None) -> int:
    """Apply a plan; returns the journal's action id. Raises StalePlan, Refused, LockTimeout.
    ``now``: the time the write guard judges the workers at (the clock; tests set it)."""
    config = config or Config()
    root = Path(root)
    check_inside_root(root, [layout.QUEUE, layout.LOCK, "warden/backups/",
                             *(rel for rel, _ in p.creates)])
    with Journal(root) as j, j.lock(), queue_lock(root, config.coordination.lock_timeout_s):
        recover(root, j)
        data, text = _read_queue(root)
        if p.whole is not None:
            return _apply_whole(root, j, p, data)
        try:
            spans, close = array_spans(text)
        except ValueError as exc:
            raise StalePlan(f"{layout.QUEUE} no longer parses ({exc}): re-plan") from None
        where: dict[str, tuple[int, int, Any]] = {}
        for s in spans:
            tid = norm_id(s[2].get("id")) if isinstance(s[2], dict) else None
            if tid is not None and tid not in where:
                where[tid] = s
        view = _fresh_view(root, config, now) if p.guard else None
        for tid, before, _ in p.changes:
            cur = where.get(tid)
            if cur is None:
                raise StalePlan(f"{tid} is gone from {layout.QUEUE} since the plan was made")
            if cur[2] != before:
                diff = sorted(k for k in set(before) | set(cur[2])
                              if before.get(k) != cur[2].get(k))
                raise StalePlan(f"{tid} changed since the plan was made ({', '.join(diff)}): "
                                "a worker moved on; re-plan and retry")
            if view is not None:
                why = holder_refusal(view, cur[2])
                if why:
                    raise Refused(why)
        for rel, _ in p.creates:
            if (root / rel).exists():
                raise StalePlan(f"{rel} exists already")
        pretty = "\n" in text
        edits = []
        out = text
        for tid, _, after in sorted(p.changes, key=lambda c: -where[c[0]][0]):
            start, end, _ = where[tid]
            after_text = format_entry(after, entry_indent(text, start), pretty)
            edits.append({"id": tid, "before_text": text[start:end], "after_text": after_text})
            out = out[:start] + after_text + out[end:]
        inserts = []
        if p.inserts:
            close = out.rstrip().rfind("]")
            last_end = len(out[:close].rstrip())
            first_start = spans[0][0] if spans else close
            indent = entry_indent(text, first_start) if spans else "  "
            sep = ("," + "\n" + indent) if pretty else ", "
            block = "".join((sep if (spans or k) else ("\n" + indent if pretty else ""))
                            + format_entry(e, indent, pretty) for k, e in enumerate(p.inserts))
            if not spans and pretty:
                block += "\n"
            out = out[:last_end] + block + out[last_end:]
            inserts.append({"text": block})
        new_bytes = out.encode("utf-8")
        jplan = Plan(kind=p.kind, task_id=p.task_id, actor=p.actor, note=p.note,
                     summary=p.summary, warnings=tuple(p.warnings),
                     extra={"format": "coordination", "edits": edits, "inserts": inserts,
                            "creates": [{"path": rel, "sha": _sha(b)} for rel, b in p.creates],
                            "before_sha": _sha(data), "after_sha": _sha(new_bytes)})
        backups: dict[str, bytes | None] = {
            f"{layout.QUEUE}#{e['id']}": e["before_text"].encode() for e in edits}
        backups.update({rel: None for rel, _ in p.creates})
        aid = j.begin(jplan, {"entries": {tid: b for tid, b, _ in p.changes}}, backups, {})
        try:
            for rel, b in p.creates:
                create_exclusive(root / rel, b)
            _crash("coord:before-replace")
            write_atomic(root / layout.QUEUE, new_bytes)
            _crash("coord:after-replace")
        except BaseException as exc:
            j.set_state(aid, "failed", str(exc)[:300])
            raise
        j.set_state(aid, "done")
        j.audit("applied", aid, kind=p.kind, task=p.task_id, summary=p.summary)
        return aid


def _apply_whole(root: Path, j: Journal, p: CoordPlan, data: bytes) -> int:
    if _sha(data) != p.whole_before_sha:
        raise StalePlan(f"{layout.QUEUE} changed since the repair was planned: re-plan")
    assert p.whole is not None
    jplan = Plan(kind=p.kind, task_id=p.task_id, actor=p.actor, note=p.note, summary=p.summary,
                 extra={"format": "coordination", "whole": True, "dropped": p.dropped,
                        "before_sha": _sha(data), "after_sha": _sha(p.whole)})
    aid = j.begin(jplan, {"sha": p.whole_before_sha}, {layout.QUEUE: data}, {})
    try:
        bdir = root / "warden" / "backups"
        bdir.mkdir(parents=True, exist_ok=True)
        write_atomic(bdir / f"{layout.QUEUE}.{aid}.bak", data)
        write_atomic(root / layout.QUEUE, p.whole)
    except BaseException as exc:
        j.set_state(aid, "failed", str(exc)[:300])
        raise
    j.set_state(aid, "done")
    j.audit("applied", aid, kind=p.kind, task=p.task_id, summary=p.summary,
            dropped=p.dropped, backup=f"warden/backups/{layout.QUEUE}.{aid}.bak")
    return aid


# ------------------------------------------------------------------------------ undo

def undo(root: Path | str, action_id: int | None = None, config: Config | None = None,
         actor: str = "qwarden-cli") -> int:
    """Reverse a finished action if what it wrote is still as it left it."""
    config = config or Config()
    root = Path(root)
    with Journal(root) as j, j.lock(), queue_lock(root, config.coordination.lock_timeout_s):
        recover(root, j)
        row = j.get(action_id) if action_id is not None else j.last_undoable()
        if row is None:
            raise Refused("no action to undo" if action_id is None
                          else f"no action {action_id}")
        if row.state != "done" or row.plan.extra.get("format") != "coordination":
            raise Refused(f"action {row.id} is {row.state}: not undoable here")
        ex = row.plan.extra
        data, text = _read_queue(root)
        if ex.get("whole"):
            if _sha(data) != ex["after_sha"]:
                raise StalePlan(f"{layout.QUEUE} changed since the repair: undo refused")
            before = j.file_backups(row.id)[layout.QUEUE]
            assert before is not None
            new_bytes = before
        else:
            out = text
            for ins in ex["inserts"]:
                if out.count(ins["text"]) != 1:
                    raise StalePlan("the entries qwarden added changed since: undo refused")
                out = out.replace(ins["text"], "", 1)
            try:
                spans, _ = array_spans(out)
            except ValueError as exc:
                raise StalePlan(f"{layout.QUEUE} does not parse ({exc})") from None
            where = {}
            for s in spans:
                tid = norm_id(s[2].get("id")) if isinstance(s[2], dict) else None
                if tid is not None and tid not in where:
                    where[tid] = s
            for e in sorted(ex["edits"], key=lambda e: -where.get(e["id"], (0,))[0]):
                cur = where.get(e["id"])
                if cur is None or out[cur[0]:cur[1]] != e["after_text"]:
                    raise StalePlan(f"{e['id']} changed since action {row.id}: undo refused")
                out = out[:cur[0]] + e["before_text"] + out[cur[1]:]
            for c in ex["creates"]:
                path = root / c["path"]
                try:
                    cur_b = read_whole(path, 64 * 1024 * 1024)[0]
                except FileNotFoundError:
                    continue
                if _sha(cur_b) != c["sha"]:
                    raise StalePlan(f"{c['path']} changed since action {row.id}: undo refused")
            new_bytes = out.encode("utf-8")
        uplan = Plan(kind="undo", task_id=row.task_id, actor=actor, summary=f"undo {row.id}",
                     undoes=row.id, extra={"format": "coordination", "undo_of": row.id})
        # what the undo replaces: the entries qwarden wrote (the whole file after a repair)
        ubackups: dict[str, bytes | None] = (
            {layout.QUEUE: data} if ex.get("whole")
            else {f"{layout.QUEUE}#{e['id']}": e["after_text"].encode() for e in ex["edits"]})
        uid = j.begin(uplan, {"after_sha": ex.get("after_sha")}, ubackups, {})
        if not ex.get("whole"):
            for c in ex["creates"]:
                (root / c["path"]).unlink(missing_ok=True)
        write_atomic(root / layout.QUEUE, new_bytes)
        j.set_state(uid, "done")
        j.mark_undone(row.id, uid)
        j.audit("undone", row.id, by=uid)
        return uid

"""Interventions on a task API queue: through the system's own HTTP API first.

``open_interventions(root, config, options)`` (``FormatInfo.interventions``) opens the write
path: the API (``options["api_url"]``, else ``[taskapi] api_url``), or SQL on the DB (SQLite,
or PostgreSQL through asyncpg) only with ``options["direct_db"]``; with neither (or
``read_only``) it raises ``ReadOnly``.

Every action is a short list of the API's own calls (``describe()`` shows them exactly):

- ``release`` (a zombie claim): ``unclaim`` as the admin -> pending, agent and worktree cleared;
- ``retry``: ``set-status pending`` where the blocked fields (or an in_review status) need
  clearing, ``unclaim`` as the admin where an agent or worktree is set, then ``update-notes``
  with the reason (``/ready`` offers a task only with no ``blocked_reason`` and no agent);
- ``accept``: in_review -> ``set-status done``, after the configured verify command (``[actions]
  verify``; ``{worktree}`` is the task's worktree) where the task has a worktree; when nothing
  will verify the work (no worktree, no verify command) ``NeedsConfirmation`` unless forced;
- ``cancel``: ``set-status blocked`` with the operator's reason, ``blocked_by`` the actor;
- ``split``: ``POST /api/tasks/`` per subtask (the parent's dependencies, priority, effort),
  then the parent ``set-status blocked`` on them;
- ``note``: ``update-notes``.

A plan records the task as ``GET /api/tasks/{id}`` showed it (status, agent, worktree, blocked
fields, completed, updated_at); ``apply`` reads it again and raises ``StalePlan`` if it moved,
then journals each call (intent before, the answer after) in qwarden's journal (``journal_root``)
and stops at the first refusal, saying which calls had been made. The API has no conditional
write: between that re-read and the calls a worker may still move (one round trip); the
server's own checks (409 on a held claim, 403) are its guard there, and they are never retried.

Undo goes through the API where the API can put the state back (a release is undone by
claiming again as the former agent with its worktree): what it cannot restore is said (a claim
replaces the notes; ``updated_at``). Where no API call is the inverse (``completed`` cannot be
cleared, notes cannot be removed, tasks cannot be deleted) the action is ``undoable=False`` and
``undo`` refuses saying why. With ``--direct-db`` every action is undone row for row
(``directdb``).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from qwarden.core.actions.interface import (
    ActionRequest,
    Applied,
    Interventions,
    NeedsConfirmation,
    PlannedChange,
    ReadOnly,
    Refused,
    ServerRefused,
    StalePlan,
    SubtaskSpec,
)
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan
from qwarden.core.config import Config
from qwarden.core.formats.taskapi import directdb
from qwarden.core.formats.taskapi.api import (
    ApiUnreachable,
    Call,
    TaskApi,
    normalise_url,
    task_path,
)
from qwarden.core.formats.taskapi.layout import journal_root
from qwarden.core.textsafe import clean_line

ACTIONS = ("release", "retry", "accept", "cancel", "split", "note")
# what a plan is made from, and what an apply checks again (updated_at moves on every write)
STATE_KEYS = ("status", "assigned_agent", "worktree", "blocked_reason", "blocked_by",
              "completed")
MADE_FROM_KEYS = (*STATE_KEYS, "updated_at")
READ_ONLY_SENTENCE = ("taskapi is read-only here: give --api URL or [taskapi] api_url "
                      "(or --direct-db)")
NOTES_LOST = "status_notes: the API only appends to them (and a claim replaces them)"
MAX_BLOCKED_BY = 50  # VARCHAR(50) in the schema (PostgreSQL enforces it)
MAX_TASK_ID = 50


# ------------------------------------------------------------------ where the journal lives

# (journal_root: the read side's, in layout.py: the source names it too)


# ------------------------------------------------------------------ the plan

@dataclass(frozen=True)
class TaskApiPlan:
    """One planned intervention: the API calls, in order, and what they were planned from.
    Plain data (``to_json``/``from_json``); ``describe()`` is what the dialog shows."""

    kind: str
    task_id: str
    actor: str
    summary: str
    calls: tuple[Call, ...]
    made_from: dict[str, Any]  # via api: MADE_FROM_KEYS of the GET; via db: the full rows
    via: str = "api"  # api | db
    note: str = ""
    warnings: tuple[str, ...] = ()
    verify: str | None = None  # the command an accept runs first ({worktree} substituted)
    worktree_dir: str | None = None
    undoable: bool = True
    not_undoable_why: str = ""
    lost: tuple[str, ...] = ()  # what an undo through the API cannot restore
    preview: tuple[str, ...] = ()  # via db: the column changes as planned
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """One line each (a call's body is JSON, so a newline or escape in a note is
        escaped there; the other untrusted text is cleaned to one plain line)."""
        out = [plain(f"{self.kind} {self.task_id}: {self.summary}")]
        if self.note:
            out.append("  note: " + plain(self.note))
        out.extend("  ! " + plain(w) for w in self.warnings)
        if self.verify:
            out.append("  run verify first: " + plain(self.verify, 1000))
        if self.via == "api":
            out.extend(f"  {c.line()}" for c in self.calls)
        else:
            out.append("  direct SQL on the DB (--direct-db), with the API's effects of:")
            out.extend(f"    ({c.line()})" for c in self.calls)
            out.extend("  " + plain(line, 1000) for line in self.preview)
        if not self.undoable:
            out.append("  not undoable: " + plain(self.not_undoable_why))
        elif self.lost:
            out.append("  undo cannot restore: " + plain("; ".join(self.lost), 1000))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "task_id": self.task_id, "actor": self.actor,
                "summary": self.summary, "calls": [c.to_json() for c in self.calls],
                "made_from": self.made_from, "via": self.via, "note": self.note,
                "warnings": list(self.warnings), "verify": self.verify,
                "worktree_dir": self.worktree_dir, "undoable": self.undoable,
                "not_undoable_why": self.not_undoable_why, "lost": list(self.lost),
                "preview": list(self.preview), "extra": self.extra}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TaskApiPlan:
        return cls(kind=d["kind"], task_id=d["task_id"], actor=d["actor"],
                   summary=d["summary"], calls=tuple(Call.from_json(c) for c in d["calls"]),
                   made_from=dict(d["made_from"]), via=d.get("via", "api"),
                   note=d.get("note", ""), warnings=tuple(d.get("warnings", ())),
                   verify=d.get("verify"), worktree_dir=d.get("worktree_dir"),
                   undoable=bool(d.get("undoable", True)),
                   not_undoable_why=d.get("not_undoable_why", ""),
                   lost=tuple(d.get("lost", ())), preview=tuple(d.get("preview", ())),
                   extra=dict(d.get("extra", {})))

    def journal_plan(self, undoes: int | None = None, **extra: Any) -> Plan:
        """The journal's record of this plan (core ``Plan``: kind, actor, note, the rest in
        ``extra``)."""
        return Plan(kind=self.kind, task_id=self.task_id, actor=self.actor, note=self.note,
                    summary=self.summary, warnings=self.warnings, undoes=undoes,
                    extra={"format": "taskapi", "via": self.via,
                           "taskapi": self.to_json(), **extra})


def plain(text: str, limit: int = 300) -> str:
    """One printable line: ``clean_line`` (escapes and controls gone), then what is still not
    printable (a bidi override, a line separator) shown as its code point."""
    s = clean_line(text, limit)
    return s if s.isprintable() else "".join(
        c if c.isprintable() else f"<U+{ord(c):04X}>" for c in s)


def _state(task: Mapping[str, Any], keys: tuple[str, ...] = MADE_FROM_KEYS) -> dict[str, Any]:
    out = {k: task.get(k) for k in keys}
    if "completed" in out:
        out["completed"] = bool(out["completed"])
    return out


def _moved(made: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    return [k for k in made if made[k] != now.get(k)]


# ------------------------------------------------------------------ calls

def _claim(tid: str, agent: str, worktree: str) -> Call:
    return Call("POST", task_path(tid, "claim"), {"agent_name": agent, "worktree": worktree})


def _unclaim(tid: str, agent: str) -> Call:
    return Call("POST", task_path(tid, "unclaim"), {"agent_name": agent})


def _set_status(tid: str, status: str, reason: str | None = None,
                by: str | None = None) -> Call:
    body: dict[str, Any] = {"status": status}
    if status == "blocked":
        body.update(blocked_reason=reason, blocked_by=by)
    return Call("POST", task_path(tid, "set-status"), body)


def _notes(tid: str, text: str) -> Call:
    return Call("POST", task_path(tid, "update-notes"), {"notes": text})


def restore_calls(tid: str, target: Mapping[str, Any], current: Mapping[str, Any],
                  admin: str) -> tuple[list[Call], list[str], str | None]:
    """The API calls that bring the task from ``current`` back to ``target`` (status, agent,
    worktree, blocked fields, completed): (calls, what stays lost, None), or (_, _, why the
    API cannot). The shortest sequence (up to three calls) of the API's own calls — unclaim as
    the admin, claim as the former agent, set-status — whose effects (``directdb.effect``,
    the API's column effects) give the target back; notes and ``updated_at`` never come
    back (a claim replaces the notes, every call appends or moves them)."""
    t = _state(target, STATE_KEYS)
    if s_completed(current) and not t["completed"]:
        return [], [], ("the API cannot clear completed (set-status done set it; no call "
                        "resets it)")
    prims: list[Call] = [_unclaim(tid, admin)]
    if t["assigned_agent"] and t["worktree"]:
        prims.append(_claim(tid, t["assigned_agent"], t["worktree"]))
    for c in (_set_status(tid, t["status"], t["blocked_reason"], t["blocked_by"]),
              _set_status(tid, "blocked", t["blocked_reason"], t["blocked_by"]),
              _set_status(tid, "pending")):
        if c not in prims:
            prims.append(c)
    start = {**dict(current), "completed": 1 if s_completed(current) else 0}
    now = datetime.now(UTC)
    best: tuple[list[str], list[Call]] | None = None
    for depth in range(4):
        for seq in itertools.product(prims, repeat=depth):
            sim: dict[str, Any] = start
            try:
                for c in seq:
                    sim = directdb.effect(c, sim, now, admin)
            except Refused:
                continue
            got = _state(sim, STATE_KEYS)
            diff = [k for k in STATE_KEYS if got[k] != t[k]]
            if not diff:
                return list(seq), ["updated_at"] if seq else [], None
            if best is None or len(diff) < len(best[0]):
                best = (diff, list(seq))
    assert best is not None
    diff, calls = best
    hard = [k for k in diff if k in ("status", "assigned_agent", "completed")]
    if hard:
        return [], [], ("no sequence of API calls brings back "
                        + ", ".join(f"{k} {t[k]!r}" for k in hard))
    lost = [f"{k} {t[k]!r} (no API call sets it back from here)" for k in diff]
    return calls, [*lost, "updated_at"] if calls else lost, None


def s_completed(task: Mapping[str, Any]) -> bool:
    return bool(task.get("completed"))


def _sub_id(parent: str, k: int) -> str:
    suffix = f"-S{k}"
    return parent[: MAX_TASK_ID - len(suffix)] + suffix


def _get_or_none(api: TaskApi, task_id: str) -> dict[str, Any] | None:
    """The task, or None when the API says it has none (a 404 "Not Found" is a wrong URL:
    refused as it is)."""
    try:
        return api.get_task(task_id)
    except ServerRefused as exc:
        if exc.status == 404 and exc.server_message == f"Task {task_id} not found":
            return None
        raise


def _subtask_body(parent: Mapping[str, Any], tid: str, spec: SubtaskSpec, actor: str,
                  default_effort: str) -> dict[str, Any]:
    desc = spec.context
    if spec.criteria:
        desc = (desc + "\n\n" if desc else "") + "Acceptance criteria:\n" + "\n".join(
            f"- {c}" for c in spec.criteria)
    desc = (desc + "\n\n" if desc else "") + f"Split from {parent['task_id']} by {actor}."
    body: dict[str, Any] = {"task_id": tid, "title": spec.title, "description": desc,
                            "priority": parent.get("priority") or "MEDIUM",
                            "estimated_effort": parent.get("estimated_effort")
                            or default_effort}
    if parent.get("dependencies"):
        body["dependencies"] = parent["dependencies"]
    if parent.get("instructions"):
        body["instructions"] = parent["instructions"]
    return body


# ------------------------------------------------------------------ the interventions

class TaskApiInterventions:
    """The ``Interventions`` of one taskapi root (through ``api_url``, or ``direct_db``)."""

    # an accept runs the configured verify command itself, in the task's worktree (the
    # console and the CLI do not run it again)
    verifies_accept = True

    def __init__(self, root: Path | str, config: Config, *, api_url: str | None = None,
                 direct_db: bool = False) -> None:
        self.root = root
        self.config = config
        self.opts = config.taskapi
        self.admin = self.opts.admin_name
        self.direct_db = direct_db
        self.journal_root = journal_root(root, config)
        self.api_url = None if api_url is None else normalise_url(api_url)  # refused now
        if direct_db:
            self.db: Path | str | None = root if "://" in os.fspath(root) else Path(root)
            if isinstance(self.db, Path) and not self.db.is_file():
                raise Refused(f"{self.db}: no such DB file to write (--direct-db)")
        else:
            self.db = None
            if not api_url:
                raise ReadOnly(READ_ONLY_SENTENCE)

    @property
    def actions(self) -> tuple[str, ...]:
        return ACTIONS

    @property
    def via(self) -> str:
        return "db" if self.direct_db else "api"

    def _tasks(self) -> directdb.Tasks:
        assert self.db is not None
        if isinstance(self.db, str):
            return directdb.open_tasks(self.db, self.opts.timeout_s)
        # SQLite: wait for a worker's write as the applier does ([limits], at least 1 s)
        return directdb.open_tasks(self.db, max(self.config.limits.db_busy_timeout_ms,
                                                1000) / 1000)

    @property
    def dialect(self) -> str:
        return "pg" if isinstance(self.db, str) else "sqlite"

    def _api(self) -> TaskApi:
        assert self.api_url is not None
        return TaskApi(self.api_url, self.opts.timeout_s)

    # -- reading the task ----------------------------------------------------
    def _read(self, task_id: str) -> dict[str, Any]:
        """The task as the write path sees it: the API's GET, or the DB row."""
        if self.db is not None:
            with self._tasks() as t:
                row = t.read_row(task_id)
                if row is None:
                    raise Refused(f"no task {task_id} in {t.where}")
            return row
        with self._api() as api:
            found = _get_or_none(api, task_id)
            if found is None:
                raise Refused(f"no task {task_id} at {api.url} (Task {task_id} not found)")
            return found

    def _new_ids(self, parent: str, n: int) -> list[str]:
        """``PARENT-S1``... ids no task has (one look each: a GET that answers 404, or the
        DB), never a listing of the whole queue."""
        out: list[str] = []
        k = 1
        if self.db is not None:
            with self._tasks() as t:
                while len(out) < n:
                    cand = _sub_id(parent, k)
                    if t.read_row(cand) is None:
                        out.append(cand)
                    k += 1
            return out
        with self._api() as api:
            while len(out) < n:
                cand = _sub_id(parent, k)
                if _get_or_none(api, cand) is None:
                    out.append(cand)
                k += 1
        return out

    # -- planning --------------------------------------------------------------
    # -- the protocol: every failure a refusal with a sentence, never a traceback --------
    def plan(self, request: ActionRequest) -> TaskApiPlan:
        with self._errors():
            return self._plan(request)

    def apply(self, plan: Any) -> Applied:
        with self._errors():
            return self._apply(plan)

    def undo(self, action_id: int | str | None = None, actor: str = "qwarden") -> Applied:
        with self._errors():
            return self._undo(action_id, actor)

    def recover(self) -> list[tuple[int, str]]:
        """Settle what a killed writer left unfinished (also done first by every apply and
        undo): direct-db entries rolled forward or back, API entries marked failed with the
        calls made and the one whose outcome is unknown. (action id, outcome) each."""
        with self._errors(), Journal(self.journal_root) as j, j.lock():
            return self._recover(j)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, directdb.PgError) as exc:
            where = self.db if self.db is not None else self.journal_root
            raise Refused(f"{directdb.safe_dsn(str(where))}: {exc} (nothing more was "
                          "written; the journal says what was)") from None
        except OSError as exc:
            raise Refused(f"{exc.filename or self.journal_root}: "
                          f"{exc.strerror or exc}") from None

    def _plan(self, request: ActionRequest) -> TaskApiPlan:
        kind, tid = request.kind, request.task_id
        if kind not in ACTIONS:
            raise Refused(f"taskapi has no action {kind!r} (one of: {', '.join(ACTIONS)})")
        if not tid:
            raise Refused(f"{kind}: which task?")
        task = self._read(tid)
        status = task.get("status")
        agent = task.get("assigned_agent")
        note = request.note.strip()
        actor = request.actor
        warnings: list[str] = []
        verify = worktree_dir = None
        calls: list[Call] = []
        if kind == "release":
            if status != "in_progress":
                raise Refused(f"{tid} is {status}, not in_progress: there is no claim to "
                              "release")
            calls.append(_unclaim(tid, self.admin))
            summary = f"unclaim as {self.admin}: in_progress ({agent or 'nobody'}) -> pending"
            if note:
                calls.append(_notes(tid, f"Released by {actor}: {note}"))
        elif kind == "retry":
            if status == "done":
                raise Refused(f"{tid} is done: a done task is not retried (unclaim would "
                              "recycle finished work back to pending)")
            blocked_fields = (task.get("blocked_reason") is not None
                              or task.get("blocked_by") is not None)
            held = bool(agent or task.get("worktree"))
            if status == "pending" and not blocked_fields and not held:
                raise Refused(f"{tid} is pending with nothing blocking it: already runnable, "
                              "nothing to retry")
            if status in ("blocked", "in_review") or blocked_fields:
                calls.append(_set_status(tid, "pending"))  # clears the blocked fields
            if held:
                calls.append(_unclaim(tid, self.admin))  # clears agent and worktree
            elif status == "in_progress" and not blocked_fields:
                calls.append(_set_status(tid, "pending"))
            calls.append(_notes(tid, f"Retry by {actor}" + (f": {note}" if note else "")))
            summary = (f"{status} -> pending, runnable again (blocked fields cleared, "
                       f"{'unclaimed from ' + agent if agent else 'no agent'})")
        elif kind == "accept":
            if status != "in_review":
                raise Refused(f"{tid} is {status}, not in_review: nothing to accept")
            verify, worktree_dir, unverified = self._verify_for(task)
            if unverified:
                # nothing will check the work (the retrospective's "merged unverified"): only
                # after an explicit second look
                if not request.force:
                    raise NeedsConfirmation(f"{tid}: {unverified}: unverified_completion; "
                                            "look first, then use --force")
                warnings.append(f"accepted WITHOUT verification ({unverified}; forced)")
            calls.append(_set_status(tid, "done"))
            summary = "in_review -> done (completed = 1)"
        elif kind == "cancel":
            if not note:
                raise Refused("cancel needs the reason (--note)")
            if status == "done":
                raise Refused(f"{tid} is done: nothing to cancel")
            calls.append(_set_status(tid, "blocked", note, actor[:MAX_BLOCKED_BY]))
            summary = f"{status} -> blocked by {actor[:MAX_BLOCKED_BY]}"
            if agent:
                warnings.append(f"{agent} stays assigned (a status change keeps the agent)")
        elif kind == "split":
            subs = request.subtasks
            limit = int(self.config.actions.get("split_max", 10))  # type: ignore[call-overload]
            if len(subs) < 2:
                raise Refused("split needs at least two subtasks")
            if len(subs) > limit:
                raise Refused(f"split into {len(subs)} is more than [actions] split_max "
                              f"({limit})")
            if status not in ("pending", "in_progress", "blocked"):
                raise Refused(f"{tid} is {status}: only a pending, in-progress or blocked task "
                              "is split")
            new_ids = self._new_ids(tid, len(subs))
            for nid, spec in zip(new_ids, subs, strict=True):
                calls.append(Call("POST", "/api/tasks/", _subtask_body(
                    task, nid, spec, actor, self.opts.subtask_effort)))
            reason = f"split into {', '.join(new_ids)} by {actor}" + (f": {note}" if note
                                                                     else "")
            calls.append(_set_status(tid, "blocked", reason, actor[:MAX_BLOCKED_BY]))
            summary = f"{len(new_ids)} new pending tasks, {tid} blocked on them"
            if agent:
                warnings.append(f"{agent} stays assigned to {tid} (a status change keeps "
                                "the agent)")
        else:  # note
            if not note:
                raise Refused("note needs the text (--note)")
            calls.append(_notes(tid, f"{actor}: {note}"))
            summary = "append a note"
        return self._finish(kind, tid, actor, note, summary, tuple(calls), task,
                            tuple(warnings), verify, worktree_dir)

    def _verify_for(self, task: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
        """(the verify command, the worktree it runs on, "") or (None, None, why nothing
        will verify the work); refused when a worktree is named but cannot be verified."""
        cmd = self.config.actions.get("verify")
        wt = task.get("worktree")
        if not wt:
            return None, None, "no worktree to verify (an unclaim clears it)"
        if not cmd:
            return None, None, f"no [actions] verify command to run on worktree {wt}"
        base = self.opts.worktree_base
        if base is None:
            if "://" in os.fspath(self.root):
                raise Refused(f"worktree {wt} is on the workers' host: set [taskapi] "
                              "worktree_base to where it is mounted here, to verify it")
            base = str(Path(self.root).absolute().parent.parent)
        where = Path(base).expanduser() / str(wt)
        if not where.is_dir():
            raise Refused(f"worktree {wt} not found at {where}: cannot verify (set [taskapi] "
                          "worktree_base)")
        import shlex

        return str(cmd).replace("{worktree}", shlex.quote(str(where))), str(where), ""

    def _finish(self, kind: str, tid: str, actor: str, note: str, summary: str,
                calls: tuple[Call, ...], task: dict[str, Any],
                warnings: tuple[str, ...], verify: str | None,
                worktree_dir: str | None) -> TaskApiPlan:
        """Work out the undo story (simulating the calls on the task as read) and, via db,
        the column changes; return the plan."""
        now = datetime.now(UTC)
        row = dict(task)
        if self.db is None:
            row["completed"] = 1 if task.get("completed") else 0
        try:
            ids = iter(range(-1, -1000, -1))  # placeholders: the real ids are taken at apply
            changes, after = directdb.simulate(
                calls, {tid: row, **{directdb.call_task(c): None for c in calls
                                     if c.path == "/api/tasks/"}},
                now, self.admin, lambda: next(ids), self.dialect)
        except Refused as exc:
            raise Refused(f"{kind} {tid}: the API would refuse: {exc}") from None
        creates = [c for c in calls if c.path == "/api/tasks/"]
        lost: list[str] = []
        undoable, why = True, ""
        if self.db is None:
            if creates:
                undoable, why = False, "the task API cannot delete the tasks a split creates"
            else:
                back, lost, no = restore_calls(tid, row, after[tid], self.admin)
                if no:
                    undoable, why = False, no
                elif not back:
                    undoable, why = False, ("the API cannot remove a note (update-notes "
                                            "only appends)")
                else:
                    lost.insert(0, NOTES_LOST)
        preview: tuple[str, ...] = ()
        if self.db is not None:
            preview = tuple(_preview(changes))
        made_from = ({"rows": {tid: directdb.enc_row(task)}} if self.db is not None
                     else _state(task))
        return TaskApiPlan(kind=kind, task_id=tid, actor=actor, summary=summary, calls=calls,
                           made_from=made_from, via=self.via, note=note, warnings=warnings,
                           verify=verify, worktree_dir=worktree_dir, undoable=undoable,
                           not_undoable_why=why, lost=tuple(lost), preview=preview)

    # -- applying --------------------------------------------------------------
    def _apply(self, plan: Any) -> Applied:
        if not isinstance(plan, TaskApiPlan):
            raise Refused("not a taskapi plan")
        if plan.via != self.via:
            raise Refused(f"the plan was made for the {plan.via} path, this is the {self.via} "
                          "path: plan again")
        t0 = time.perf_counter()
        if plan.verify:
            # verify what will be written: the task as planned (checked now, outside the
            # journal's lock, as the verify may take minutes), checked again under the lock
            self._check_unmoved(plan)
            self._run_verify(plan)
        with Journal(self.journal_root) as j, j.lock():
            self._recover(j)
            if self.db is not None:
                aid = self._apply_db(j, plan)
            else:
                aid = self._apply_api(j, plan)
        ms = (time.perf_counter() - t0) * 1000
        summary = f"{plan.kind} {plan.task_id}: {plan.summary}"
        if not plan.undoable:
            summary += f" (not undoable: {plan.not_undoable_why})"
        elif plan.lost:
            summary += "; an undo cannot restore " + "; ".join(plan.lost)
        return Applied(aid, plain(summary, 500), ms, undoable=plan.undoable)

    def _run_verify(self, plan: TaskApiPlan) -> None:
        from qwarden.core.actions.cli import run_verify

        assert plan.verify is not None
        vroot = Path(plan.worktree_dir or ".") if "://" in os.fspath(self.root) \
            else Path(self.root).absolute()
        ok, out = run_verify(plan.verify, vroot, plan.task_id)
        if not ok:
            tail = " | ".join(clean_line(x, 200) for x in out.splitlines()[-3:])
            raise Refused(f"the verify command failed: {plan.task_id} not accepted"
                          + (f" ({tail})" if tail else ""))

    def _check_unmoved(self, plan: TaskApiPlan) -> None:
        if self.db is not None:
            with self._tasks() as t:
                self._db_rows_unmoved(t, plan)
            return
        with self._api() as api:
            self._api_unmoved(api, plan)

    @staticmethod
    def _api_unmoved(api: TaskApi, plan: TaskApiPlan) -> dict[str, Any]:
        """The task now (the API's GET), or ``StalePlan`` if it moved since the plan."""
        now = _get_or_none(api, plan.task_id)
        if now is None:
            raise StalePlan(f"{plan.task_id} is gone since the plan was made")
        moved = _moved(plan.made_from, _state(now))
        if moved:
            k = moved[0]
            raise StalePlan(f"{plan.task_id}: {k} changed since the plan was made "
                            f"({plan.made_from[k]!r} -> {_state(now).get(k)!r}); plan again")
        return now

    def _apply_api(self, j: Journal, plan: TaskApiPlan) -> int:
        with self._api() as api:
            now = self._api_unmoved(api, plan)
            jplan = plan.journal_plan()
            aid = j.begin(jplan, {"task": plan.made_from}, {}, {f"tasks:{plan.task_id}": now})
            j.audit("intent", aid, kind=plan.kind, task_id=plan.task_id, actor=plan.actor,
                    note=plan.note, changes=[c.line() for c in plan.calls], via="api")
            _run_calls(j, aid, api, plan.calls, plan.task_id)
            j.set_state(aid, "done")
            j.audit("done", aid, kind=plan.kind, task_id=plan.task_id)
            return aid

    @staticmethod
    def _db_rows_unmoved(t: directdb.Tasks, plan: TaskApiPlan
                         ) -> dict[str, dict[str, Any] | None]:
        """The rows the plan was made from (and None for those a split adds), or
        ``StalePlan`` if any moved (every column, typed)."""
        rows = {k: directdb.dec_row(v) for k, v in plan.made_from["rows"].items()}
        for c in plan.calls:
            if c.path == "/api/tasks/":
                rows[directdb.call_task(c)] = None
        for tid, want in rows.items():
            cur = t.read_row(tid)
            if want is None and cur is not None:
                raise StalePlan(f"{tid} exists already (made since the plan)")
            if want is not None and not directdb.same(cur, want):
                raise StalePlan(f"{tid} changed since the plan was made; plan again")
        return rows

    def _apply_db(self, j: Journal, plan: TaskApiPlan) -> int:
        with self._tasks() as t:
            rows = self._db_rows_unmoved(t, plan)
            changes, _ = directdb.simulate(plan.calls, rows, datetime.now(UTC), self.admin,
                                           t.next_id, t.dialect)
            jplan = plan.journal_plan(changes=changes)
            return directdb.apply(t, j, jplan, changes)

    # -- undo ------------------------------------------------------------------
    def _undo(self, action_id: int | str | None, actor: str) -> Applied:
        t0 = time.perf_counter()
        with Journal(self.journal_root) as j, j.lock():
            self._recover(j)
            if action_id is not None:
                try:
                    aid = int(action_id)
                except (TypeError, ValueError):
                    raise Refused(f"no action {action_id!r}") from None
                a = j.get(aid)
            else:
                a = j.last_undoable()
            if a is None:
                raise Refused("nothing to undo" if action_id is None
                              else f"no action {action_id}")
            ex = a.plan.extra
            if ex.get("format") != "taskapi":
                raise Refused(f"action {a.id} is not a taskapi action")
            if a.undoes is not None:
                raise Refused(f"action {a.id} is itself an undo (of {a.undoes})")
            # a partly made API action (a refusal midway) is undone from what it did
            partial = (a.state == "failed" and ex.get("via") == "api"
                       and any(r.get("status") == "ok" for r in _results(j, a.id)))
            if a.state != "done" and not partial:
                raise Refused(f"action {a.id} is {a.state}: only a done action (or an API "
                              "action refused midway) is undone")
            p = TaskApiPlan.from_json(ex["taskapi"])
            if ex.get("via") == "db":
                if self.db is None:
                    raise Refused(f"action {a.id} wrote the DB directly: undo it with "
                                  "--direct-db")
                inv = directdb.inverse(ex["changes"])
                up = TaskApiPlan(kind="undo", task_id=a.task_id, actor=actor,
                                 summary=f"undo action {a.id} ({a.kind}): every row back as "
                                 "it was", calls=(), made_from={}, via="db",
                                 preview=tuple(_preview(inv)))
                try:
                    with self._tasks() as t:
                        uid = directdb.apply(t, j, up.journal_plan(undoes=a.id, changes=inv),
                                             inv)
                except StalePlan as exc:
                    raise Refused(f"cannot undo action {a.id}: the task changed since "
                                  f"({exc})") from None
                return Applied(uid, f"undid action {a.id} ({a.kind}) {a.task_id}: the rows "
                               "are as they were", (time.perf_counter() - t0) * 1000,
                               undoable=False)
            if partial:
                made = [Call.from_json(v["call"]) for k, v in _calls_of(j, a.id).items()
                        if k.endswith(":intent") and _calls_of(j, a.id).get(
                            k.replace(":intent", ":result"), {}).get("status") == "ok"]
                if any(c.path == "/api/tasks/" for c in made):
                    raise Refused(f"action {a.id} ({a.kind} {a.task_id}) cannot be undone: "
                                  "the task API cannot delete the tasks it created")
            elif not p.undoable:
                raise Refused(f"action {a.id} ({a.kind} {a.task_id}) cannot be undone: "
                              f"{p.not_undoable_why}")
            if self.api_url is None:
                raise Refused(f"action {a.id} went through the task API: undo it with --api")
            uid, lost = self._undo_api(j, a.id, p, actor)
        text = f"undid action {a.id} ({a.kind}) {a.task_id} through the API"
        if lost:
            text += "; not restored: " + "; ".join(lost)
        return Applied(uid, plain(text, 500), (time.perf_counter() - t0) * 1000, undoable=False)

    def _undo_api(self, j: Journal, aid: int, p: TaskApiPlan,
                  actor: str) -> tuple[int, list[str]]:
        results = _results(j, aid)
        after = next((r["task"] for r in reversed(results)
                      if r.get("task") and r["task"].get("task_id") == p.task_id), None)
        before = j.row_backups(aid).get(f"tasks:{p.task_id}")
        if after is None or before is None:
            raise Refused(f"action {aid}: the journal holds no answer of the API to undo from")
        with self._api() as api:
            now = api.get_task(p.task_id)
            moved = _moved(_state(after), _state(now))
            if moved:
                k = moved[0]
                raise Refused(f"cannot undo action {aid}: {p.task_id}.{k} changed since "
                              f"({_state(after).get(k)!r} -> {_state(now).get(k)!r})")
            calls, lost, no = restore_calls(p.task_id, before, now, self.admin)
            if no:
                raise Refused(f"cannot undo action {aid}: {no}")
            if not calls:
                raise Refused(f"cannot undo action {aid}: nothing the API can put back (its "
                              "status, agent and blocked fields are as before; notes only "
                              "append)")
            if any(c.path.endswith("/claim") for c in calls):
                lost.insert(0, "status_notes (the claim replaced them with 'Claimed by ...'; "
                            f"the notes before are in the journal, action {aid})")
            else:
                lost.insert(0, "status_notes (the API only appends: the action's lines stay)")
            up = TaskApiPlan(kind="undo", task_id=p.task_id, actor=actor,
                             summary=f"undo action {aid} ({p.kind})", calls=tuple(calls),
                             made_from=_state(now), lost=tuple(lost))
            uid = j.begin(up.journal_plan(undoes=aid), {"task": _state(now)}, {},
                          {f"tasks:{p.task_id}": now})
            j.audit("intent", uid, kind="undo", task_id=p.task_id, actor=actor,
                    changes=[c.line() for c in calls], via="api", undoes=aid)
            _run_calls(j, uid, api, up.calls, p.task_id)
            j.set_state(uid, "done")
            j.mark_undone(aid, uid)
            j.audit("undone", aid, by=uid)
            return uid, lost

    # -- recovery ----------------------------------------------------------------
    def _recover(self, j: Journal) -> list[tuple[int, str]]:
        out = recover_api(j)
        if self.db is not None and any(
                r.plan.extra.get("format") == "taskapi" and r.plan.extra.get("via") == "db"
                for r in j.unfinished()):
            with self._tasks() as t:
                out += directdb.recover(t, j)
        return out


def _preview(changes: list[dict[str, Any]]) -> list[str]:
    out = []
    for ch in changes:
        before, after = ch["before"], ch["after"]
        if ch["op"] == "insert":
            vals = ", ".join(f"{k}={_short(v)}" for k, v in (after or {}).items()
                             if v is not None and k not in ("id", "created_at", "updated_at"))
            out.append(f"db tasks + row {ch['task_id']}: {vals}")
        elif ch["op"] == "delete":
            out.append(f"db tasks - row {ch['task_id']} (id {ch['id']})")
        else:
            for k in after or {}:
                if (before or {}).get(k) != after[k]:
                    out.append(f"db tasks[{ch['task_id']}].{k}: "
                               f"{_short((before or {}).get(k))} -> {_short(after[k])}")
    return out


def _short(v: Any, n: int = 70) -> str:
    s = "NULL" if v is None else repr(v) if isinstance(v, str) else json.dumps(v)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------ journaled calls

def _record(j: Journal, aid: int, key: str, data: Mapping[str, Any]) -> None:
    """One step of an action's calls, durable in the journal (the backups table, what
    ``call``) before the next thing happens."""
    j.conn.execute("BEGIN IMMEDIATE")
    try:
        j.conn.execute("INSERT OR REPLACE INTO backups VALUES (?,?,?,?,?)",
                       (aid, "call", key, json.dumps(data, sort_keys=True, default=str), None))
    except BaseException:
        j.conn.execute("ROLLBACK")
        raise
    j.conn.execute("COMMIT")


def _calls_of(j: Journal, aid: int) -> dict[str, dict[str, Any]]:
    rows = j.conn.execute("SELECT key, data FROM backups WHERE action_id=? AND what='call' "
                          "ORDER BY key", (aid,)).fetchall()
    return {str(k): json.loads(d) for k, d in rows}


def _results(j: Journal, aid: int) -> list[dict[str, Any]]:
    return [v for k, v in _calls_of(j, aid).items() if k.endswith(":result")]


class ServerRefusedMidway(ServerRefused):
    """The API refused a call after earlier calls of the same action had been made: the
    server's words, and which calls were done (the action is journaled as failed)."""

    def __init__(self, status: int, message: str, call: str, done: list[str],
                 action_id: int) -> None:
        super().__init__(status, message, call)
        self.done_calls = done
        self.action_id = action_id
        done_s = "; ".join(done) if done else "none"
        self.args = (f"{self.args[0]}; calls already made: {done_s} (journal action "
                     f"{action_id})",)


def _run_calls(j: Journal, aid: int, api: TaskApi, calls: tuple[Call, ...],
               task_id: str) -> None:
    done: list[str] = []
    for i, c in enumerate(calls):
        _record(j, aid, f"{i:03d}:intent", {"call": c.to_json()})
        j.audit("call", aid, n=i, call=c.line())
        directdb.crash_point(f"api:send:{i}")
        try:
            answer = api.post(c)
            directdb.crash_point(f"api:answered:{i}")
        except ServerRefused as exc:
            _record(j, aid, f"{i:03d}:result", {"status": exc.status,
                                                "detail": exc.server_message})
            msg = (f"{c.line()} refused {exc.status}: {exc.server_message}; done before it: "
                   f"{'; '.join(done) or 'none'}")
            j.set_state(aid, "failed" if done else "rolled_back", msg)
            j.audit("refused", aid, n=i, status=exc.status, detail=exc.server_message,
                    done=done)
            if done:
                raise ServerRefusedMidway(exc.status, exc.server_message, exc.call, done,
                                          aid) from None
            raise
        except Refused as exc:  # unreachable, timed out, not the API
            _record(j, aid, f"{i:03d}:result", {"error": str(exc)})
            j.set_state(aid, "failed", f"{c.line()}: {exc}; done before it: "
                        f"{'; '.join(done) or 'none'}")
            j.audit("failed", aid, n=i, error=str(exc), done=done)
            if done:
                raise Refused(f"{exc}; calls already made: {'; '.join(done)} (journal action "
                              f"{aid}): re-read {task_id}") from None
            raise
        _record(j, aid, f"{i:03d}:result", {"status": "ok", "task": answer})
        j.audit("call-done", aid, n=i, updated_at=answer.get("updated_at"))
        done.append(c.line())


def recover_api(j: Journal) -> list[tuple[int, str]]:
    """An API action a crash left ``applying``: the calls journaled with an answer were made;
    one with an intent and no answer may or may not have reached the server. Nothing can be
    rolled back blindly, so the entry is marked failed, saying exactly that."""
    out = []
    for row in j.unfinished():
        ex = row.plan.extra
        if ex.get("format") != "taskapi" or ex.get("via") != "api":
            continue
        steps = _calls_of(j, row.id)
        made = [unquote(v["call"]["path"]) for k, v in steps.items() if k.endswith(":intent")
                and steps.get(k.replace(":intent", ":result"), {}).get("status") == "ok"]
        open_ = [unquote(v["call"]["path"]) for k, v in steps.items()
                 if k.endswith(":intent") and k.replace(":intent", ":result") not in steps]
        msg = (f"interrupted: calls made: {', '.join(made) or 'none'}"
               + (f"; outcome unknown: {', '.join(open_)} (re-read {row.task_id})"
                  if open_ else ""))
        j.set_state(row.id, "failed", msg)
        j.audit("recovered", row.id, kind=row.kind, task_id=row.task_id, outcome="failed",
                error=msg)
        out.append((row.id, "failed"))
    return out


# ------------------------------------------------------------------ the entry point

def open_interventions(root: Path | str, config: Config,
                       options: Mapping[str, Any]) -> TaskApiInterventions:
    """``FormatInfo.interventions`` for taskapi. ``options``: ``api_url`` (overrides
    ``[taskapi] api_url``), ``direct_db`` (SQL on the DB instead), ``read_only``.
    Raises ``ReadOnly`` (with the sentence the console shows) when there is no write path."""
    if options.get("read_only") or config.read_only:
        raise ReadOnly("read-only mode: qwarden refuses every write (drop --read-only / "
                       "read_only = false in the config)")
    direct = bool(options.get("direct_db"))
    url = options.get("api_url") or config.taskapi.api_url
    if not direct and not url:
        raise ReadOnly(READ_ONLY_SENTENCE)
    return TaskApiInterventions(root, config, api_url=None if direct else str(url),
                                direct_db=direct)


def _conforms(iv: TaskApiInterventions, plan: TaskApiPlan) -> tuple[Interventions,
                                                                    PlannedChange]:
    return iv, plan  # mypy proves the protocols are met


__all__ = ["ACTIONS", "READ_ONLY_SENTENCE", "ApiUnreachable", "ServerRefusedMidway",
           "TaskApiInterventions", "TaskApiPlan", "journal_root", "open_interventions",
           "restore_calls"]

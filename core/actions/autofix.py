"""The auto-fixer (Octopoid's queue-manager role, done carefully): one ``tick`` per poll.

Modes: ``observe`` (default) only reports what it would do; ``safe`` syncs mismatches by the
evidence's direction, clears stale errors, registers orphans, quarantines corrupt files and
repairs stale file_paths; ``aggressive`` also releases zombie claims and retries failures whose
error looks transient. Every fix is an ordinary journaled, undoable action (actor
``qwarden:autofix``). It never touches a live or split-brain-live task, fixes a task at most once
finding per ``actions.fix_once_per_s`` (default an hour), and when the same finding of the same
task is back within that window — the system undid the fix — it escalates to the human inbox
instead of fixing again. Before any write it asks the live-work guard (``core.actions.guard``):
nothing is written to a task an agent may still be working on.

Each tick writes ``ROOT/warden/autofix-notes.md`` (found / fixed / escalated),
``ROOT/warden/metrics.prom`` (Prometheus text format) and appends to
``ROOT/warden/metrics-history.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.actions.apply import apply
from qwarden.core.actions.guard import live_work_refusal
from qwarden.core.actions.journal import FIXES, ActionRow, Journal
from qwarden.core.actions.plan import Refused, StalePlan, check_inside_root
from qwarden.core.atomicfile import write_atomic
from qwarden.core.config import Config
from qwarden.core.formats.octopoid.actions import make_plan
from qwarden.core.formats.octopoid.reader import SourceError
from qwarden.core.model import Finding, Snapshot

MODES = ("observe", "safe", "aggressive")
OUTPUTS = ("autofix-notes.md", "metrics.prom", "metrics-history.jsonl")
ACTOR = "qwarden:autofix"
# Errors worth one automatic retry: the environment hiccupped, the task itself is fine.
TRANSIENT_RE = re.compile(
    r"timeout|timed out|rate.?limit|\b429\b|\b50[234]\b|connection (?:reset|refused|error)|"
    r"temporar(?:y|ily) (?:failure|unavailable)|overloaded|ECONNRESET|BrokenPipe", re.I)

# finding kind -> action (safe mode)
SAFE = {"stale_error": "clear-error", "orphan_file": "register", "corrupt_task": "quarantine",
        "stale_file_path": "repair-path", "file_db_mismatch": "sync"}
AGGRESSIVE = {"zombie_claim": "release"}
ORDER = ("corrupt_task", "orphan_file", "file_db_mismatch", "stale_file_path", "stale_error",
         "zombie_claim", "transient_failure")


@dataclass
class TickReport:
    at: datetime
    mode: str
    found: Counter[str] = field(default_factory=Counter)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    would_fix: list[dict[str, Any]] = field(default_factory=list)
    escalated: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "mode": self.mode, "found": dict(self.found),
                "fixed": self.fixed, "would_fix": self.would_fix, "escalated": self.escalated,
                "skipped": self.skipped}


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.astimezone()


class AutoFixer:
    def __init__(self, root: Path, config: Config | None = None, mode: str = "observe",
                 read_only: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"--fix {mode!r}: observe, safe or aggressive")
        self.root = Path(root)
        self.config = config or Config()
        self.mode = mode
        self.read_only = read_only or self.config.read_only
        self.paused = False
        self.window = timedelta(seconds=float(
            self.config.actions.get("fix_once_per_s", 3600)))  # type: ignore[arg-type]
        self.first_seen: dict[tuple[str, str], datetime] = {}
        self.totals: Counter[str] = Counter()

    # -- choosing ----------------------------------------------------------
    def _choice(self, f: Finding, snap: Snapshot) -> tuple[str, dict[str, Any]] | None:
        if f.kind in SAFE:
            kind = SAFE[f.kind]
            if kind == "sync":
                d = f.recommended_action.value
                return ("sync", {"direction": d}) if d in ("sync_db", "sync_file") else None
            return kind, {}
        if self.mode == "aggressive" and f.kind in AGGRESSIVE:
            return AGGRESSIVE[f.kind], {}
        return None

    def candidates(self, snap: Snapshot) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(task id, finding kind, action, options) in a fixed order: by task, then by the
        order the fixes must run in (a file is put right before its errors are tidied)."""
        out: dict[tuple[str, str], tuple[str, str, str, dict[str, Any]]] = {}
        for f in snap.findings:
            c = self._choice(f, snap)
            if c is not None:
                out.setdefault((f.task_id, c[0]), (f.task_id, f.kind, c[0], c[1]))
        if self.mode == "aggressive":
            for tid, v in snap.verdicts.items():
                if v.effective_state == "failed" and not any(k[0] == tid for k in out):
                    t = snap.tasks.get(tid)
                    pf = t.primary_file if t is not None else None
                    live = [e for e in (pf.errors if pf else ()) if not e.in_history]
                    if live and TRANSIENT_RE.search(live[-1].text):
                        out[(tid, "retry")] = (tid, "transient_failure", "retry", {})
        return sorted(out.values(), key=lambda c: (c[0], ORDER.index(c[1])))

    # -- one tick ------------------------------------------------------------
    def tick(self, snap: Snapshot, now: datetime | None = None) -> TickReport:
        now = _aware(now or datetime.now())
        rep = TickReport(now, "paused" if self.paused else self.mode)
        rep.found.update(f.kind for f in snap.findings if f.scored or f.kind in SAFE)
        for f in snap.findings:
            self.first_seen.setdefault((f.task_id, f.kind), now)
        if self.paused:
            self._write_outputs(rep)
            return rep
        # observing and read-only write nothing, not even the journal a fix would need
        writes = self.mode != "observe" and not self.read_only
        with Journal(self.root) if writes else contextlib.nullcontext() as j:
            # (task, finding) -> the fixer's last fix of it within the window, looked up once
            # per tick: a tick's own fixes are not "the finding came back"
            recent: dict[tuple[str, str], ActionRow | None] = {}
            for tid, fkind, action, opts in self.candidates(snap):
                item = {"task_id": tid, "finding": fkind, "action": action}
                refusal = live_work_refusal(action, tid, snap, self.config.thresholds)
                if refusal:
                    rep.skipped.append({**item, "why": f"never touched: {refusal}"})
                    continue
                if self.mode == "observe":
                    rep.would_fix.append(item)
                    continue
                if j is None:
                    rep.skipped.append({**item, "why": "read-only mode: nothing written"})
                    continue
                key = (tid, fkind)
                if key not in recent:
                    last = j.last_fix_of(tid, ACTOR, fkind)
                    recent[key] = (last if last is not None and now - datetime.fromisoformat(
                        last.created_at) < self.window else None)
                done = recent[key]
                if done is not None:
                    self._escalate_once(j, tid, fkind, done, now, rep, item)
                    continue
                self._fix(tid, fkind, action, opts, now, rep, item)
        self._write_outputs(rep)
        return rep

    def _fix(self, tid: str, fkind: str, action: str, opts: dict[str, Any], now: datetime,
             rep: TickReport, item: dict[str, Any]) -> None:
        try:
            plan = make_plan(self.root, action, tid, actor=ACTOR,
                             note=f"auto-fix ({self.mode}) of {fkind}",
                             now=now.replace(tzinfo=None), **opts)
            plan = dataclasses.replace(plan, extra={**plan.extra, FIXES: fkind})
            res = apply(self.root, plan, read_only=self.read_only)
        except (Refused, StalePlan, SourceError) as exc:
            rep.skipped.append({**item, "why": str(exc)})
            return
        seen = self.first_seen.pop((tid, fkind), now)
        rep.fixed.append({**item, "action_id": res.action_id,
                          "latency_ms": round(res.elapsed_ms, 2),
                          "detect_to_fix_s": round((now - seen).total_seconds(), 3)})
        self.totals[f"fix:{fkind}"] += 1

    def _escalate_once(self, j: Journal, tid: str, fkind: str, done: ActionRow, now: datetime,
                       rep: TickReport, item: dict[str, Any]) -> None:
        """This very finding was fixed within the window and is back: the system undid the
        fix. Tell a human (once per window), never fight the system in a loop."""
        for a in j.recent(20, tid):
            if (a.kind == "escalate" and a.actor == ACTOR and a.state == "done"
                    and now - datetime.fromisoformat(a.created_at) < self.window):
                rep.skipped.append({**item, "why": "already escalated"})
                return
        note = (f"The auto-fixer fixed {fkind} on TASK-{tid} with {done.kind} (action "
                f"{done.id}, {done.created_at[:19]}) and the finding is back: something keeps "
                "undoing the fix. A human should look.")
        try:
            plan = make_plan(self.root, "escalate", tid, actor=ACTOR, note=note,
                             now=now.replace(tzinfo=None), msg_type="warning")
            res = apply(self.root, plan, read_only=self.read_only)
        except (Refused, StalePlan, SourceError) as exc:
            rep.skipped.append({**item, "why": str(exc)})
            return
        rep.escalated.append({**item, "action_id": res.action_id})
        self.totals["escalations"] += 1

    # -- outputs -------------------------------------------------------------
    def _write_outputs(self, rep: TickReport) -> None:
        if self.read_only:
            return  # read-only: not even qwarden's own folder
        d = self.root / "warden"
        check_inside_root(self.root, [f"warden/{n}" for n in OUTPUTS])
        d.mkdir(parents=True, exist_ok=True)
        _atomic(d / "autofix-notes.md", notes_text(rep))
        _atomic(d / "metrics.prom", prometheus_text(rep, self.totals))
        with open(d / "metrics-history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rep.to_json(), sort_keys=True, default=str) + "\n")


def notes_text(rep: TickReport) -> str:
    lines = [f"# qwarden auto-fixer — {rep.at.isoformat(timespec='seconds')} ({rep.mode})", "",
             "## Found"]
    lines += [f"- {k}: {n}" for k, n in sorted(rep.found.items())] or ["- nothing"]
    for title, items in (("Fixed", rep.fixed), ("Would fix (observe)", rep.would_fix),
                         ("Escalated", rep.escalated), ("Left alone", rep.skipped)):
        if items:
            lines += ["", f"## {title}"]
            lines += [f"- TASK-{i['task_id']}: {i['finding']} -> {i['action']}"
                      + (f" (action {i['action_id']})" if "action_id" in i else "")
                      + (f" — {i['why']}" if "why" in i else "") for i in items]
    return "\n".join(lines) + "\n"


def prometheus_text(rep: TickReport, totals: Counter[str]) -> str:
    out = ["# HELP qwarden_findings Findings by kind at the last auto-fixer tick.",
           "# TYPE qwarden_findings gauge"]
    out += [f'qwarden_findings{{kind="{k}"}} {n}' for k, n in sorted(rep.found.items())]
    out += ["# HELP qwarden_autofix_fixes_total Fixes applied since start, by finding kind.",
            "# TYPE qwarden_autofix_fixes_total counter"]
    out += [f'qwarden_autofix_fixes_total{{kind="{k[4:]}"}} {n}'
            for k, n in sorted(totals.items()) if k.startswith("fix:")]
    out += ["# HELP qwarden_autofix_escalations_total Escalations since start.",
            "# TYPE qwarden_autofix_escalations_total counter",
            f"qwarden_autofix_escalations_total {totals['escalations']}"]
    waits = [i["detect_to_fix_s"] for i in rep.fixed]
    out += ["# HELP qwarden_autofix_detect_to_fix_seconds Detection to fix, last tick.",
            "# TYPE qwarden_autofix_detect_to_fix_seconds summary",
            f"qwarden_autofix_detect_to_fix_seconds_sum {sum(waits):.3f}",
            f"qwarden_autofix_detect_to_fix_seconds_count {len(waits)}"]
    return "\n".join(out) + "\n"


def _atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), tag="qw")

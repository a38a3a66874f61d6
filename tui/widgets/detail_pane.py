"""The selected task: DB side and file side side by side, the effective state, liveness with
its evidence, and each finding with its evidence and recommended action. Every string from the
queue goes through ``clean``/``clean_line`` and into ``Text``, never markup."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from qwarden.core.model import Evidence, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import age_text
from qwarden.tui.glossary import GLOSSARY, action_key, action_label
from qwarden.tui.keys import SCROLL_BINDINGS
from qwarden.tui.lanes import task_priority

SEV_STYLE = {"critical": "critical", "warning": "warning", "info": "info"}


def _t(value: object, limit: int = 200) -> Text:
    if value is None or value == "":
        return Text("—")
    return Text(clean_line(str(value), limit))


class DetailPane(VerticalScroll, can_focus=True):
    ALLOW_MAXIMIZE = True
    BINDINGS = [*SCROLL_BINDINGS]  # j/k/g/G as in the lists
    COMPONENT_CLASSES = {
        "detail-pane--heading", "detail-pane--label", "detail-pane--muted",
        "detail-pane--critical", "detail-pane--warning", "detail-pane--info",
        "detail-pane--ok", "detail-pane--mismatch",
    }

    def __init__(self, *, id: str | None = None, findings_first: bool = False) -> None:
        super().__init__(id=id)
        self.task_id: str | None = None
        # the full task view: findings and their evidence first, each recommended action
        # with the key that runs it, then liveness, then both sides
        self.findings_first = findings_first
        self._body = Static(id="detail-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def _st(self, name: str):  # type: ignore[no-untyped-def]
        return self.get_component_rich_style(f"detail-pane--{name}", partial=True)

    def _ago(self, snap: Snapshot, at: datetime | None) -> str:
        if at is None:
            return "—"
        return f"{age_text((snap.as_of - at).total_seconds())} ago"

    def show(self, snap: Snapshot | None, task_id: str | None) -> None:
        if task_id != self.task_id:
            self.scroll_to(y=0, animate=False)
        self.task_id = task_id
        if snap is None or task_id is None or task_id not in snap.tasks:
            self._body.update(Text("no task selected", style=self._st("muted")))
            return
        self._body.update(self.build(snap, task_id))

    def _evidence(self, snap: Snapshot, ev: Evidence) -> Text:
        line = Text("  · ")
        line.append(clean_line(ev.fact, 120), self._st("label"))
        line.append(": ")
        line.append(clean_line(ev.value, 300))
        if ev.at is not None:
            line.append(f"  ({self._ago(snap, ev.at)})", self._st("muted"))
        if ev.side is not None:
            line.append(f" [{ev.side.value}]", self._st("muted"))
        return line

    def build(self, snap: Snapshot, tid: str) -> RenderableType:
        head = self._head(snap, tid)
        sides: list[RenderableType] = [Text(""), self._sides(snap, tid)]
        live = self._liveness(snap, tid)
        findings = self._findings(snap, tid)
        if self.findings_first:
            parts = [*head, *findings, *live, *sides]
        else:
            parts = [*head, *sides, *live, *findings]
        if task_priority(snap.tasks[tid]) is None:
            parts.append(Text("no priority recorded", style=self._st("muted")))
        return Group(*parts)

    def _head(self, snap: Snapshot, tid: str) -> list[RenderableType]:
        task = snap.tasks[tid]
        v = snap.verdicts.get(tid)
        parts: list[RenderableType] = []
        head = Text()
        head.append(snap.label(tid), self._st("heading"))
        head.append("  ")
        head.append(clean_line(task.title, 300) or "(no title)")
        parts.append(head)
        if v is not None:
            state = Text()
            state.append("effective ", self._st("label"))
            state.append(v.effective_state, self._st("heading"))
            state.append("  liveness ", self._st("label"))
            state.append(v.liveness.value, self._st(_liveness_style(v.liveness.value)))
            if v.split_brain_live:
                state.append(" (split brain, live)", self._st("warning"))
            state.append("  action ", self._st("label"))
            state.append(v.recommended_action.value)
            parts.append(state)
        return parts

    def _sides(self, snap: Snapshot, tid: str) -> Table:
        """DB side and file side, side by side."""
        task = snap.tasks[tid]
        rec = task.record
        pf = task.primary_file
        table = Table(box=None, expand=True, padding=(0, 1), show_edge=False,
                      header_style=self._st("label"))
        table.add_column("", style=self._st("label"), no_wrap=True, min_width=10)
        table.add_column(snap.side_labels[0], ratio=2, overflow="fold")
        table.add_column(snap.side_labels[1], ratio=2, overflow="fold")
        last = pf.last_event if pf is not None else None
        file_claim = None
        if pf is not None:
            for ev in reversed(pf.trail):
                if ev.kind == "CLAIMED":
                    file_claim = ev.actor or ev.get("CLAIMED_BY")
                    break
        dup = [f.relpath for f in task.files if f is not pf]
        rows: list[tuple[str, object, object]] = [
            ("queue", rec.queue if rec else "(no row)", pf.queue if pf else "(no file)"),
            ("priority", rec.priority if rec else None,
             pf.header.get("PRIORITY") if pf else None),
            ("claimed by", rec.claimed_by if rec else None, file_claim),
            ("claimed", self._ago(snap, rec.claimed_at) if rec and rec.claimed_at_text else None,
             None),
            ("updated", self._ago(snap, rec.updated_at) if rec and rec.updated_at_text else None,
             age_text(snap.as_of.timestamp() - pf.mtime) + " ago" if pf else None),
            ("last event", None,
             f"{last.kind} {self._ago(snap, last.at)}" if last is not None else None),
            ("commits", rec.commits_count if rec else None,
             last.get("COMMITS_COUNT") if last is not None else None),
            ("attempts", rec.attempt_count if rec else None, None),
            ("rejections", rec.rejection_count if rec else None, None),
            ("errors", None, str(len(pf.errors)) if pf and pf.errors else None),
            ("blocked by", ", ".join(rec.blocked_by) if rec and rec.blocked_by else None,
             pf.header.get("BLOCKED_BY") if pf else None),
            ("path", rec.file_path if rec else None, pf.relpath if pf else None),
        ]
        if dup:
            rows.append(("other files", None, ", ".join(dup)))
        if pf is not None and pf.problem:
            rows.append(("problem", None, pf.problem))
        if rec is not None and rec.check_results:
            checks = ", ".join(f"{k}={d.get('status', '?')}" for k, d in
                               rec.check_results.items())
            rows.append(("checks", checks, None))
        for label, db, fl in rows:
            if db in (None, "") and fl in (None, ""):
                continue
            dbt, flt = _t(db), _t(fl)
            if label in ("queue", "claimed by") and db and fl and str(db) != str(fl):
                dbt.stylize(self._st("mismatch"))
                flt.stylize(self._st("mismatch"))
            table.add_row(Text(label), dbt, flt)
        return table

    def _liveness(self, snap: Snapshot, tid: str) -> list[RenderableType]:
        v = snap.verdicts.get(tid)
        if v is None:
            return []
        parts: list[RenderableType] = [Text("")]
        live = Text()
        live.append("liveness: ", self._st("label"))
        live.append(clean_line(v.reason, 400))
        if v.claimed_by:
            live.append(f"  (claimed by {clean_line(v.claimed_by, 80)})", self._st("muted"))
        parts.append(live)
        for fact in v.evidence:
            parts.append(self._evidence(snap, fact))
        return parts

    def _findings(self, snap: Snapshot, tid: str) -> list[RenderableType]:
        findings = snap.findings_for(tid)
        parts: list[RenderableType] = [Text("")]
        if not findings:
            parts.append(Text("no findings", style=self._st("ok")))
        for f in sorted(findings, key=lambda f: -f.severity.rank):
            sev = f.severity.value
            line = Text()
            line.append(f"{sev.upper()} ", self._st(SEV_STYLE.get(sev, "info")))
            line.append(f.kind, self._st("heading"))
            if not f.scored:
                line.append(" (informative)", self._st("muted"))
            parts.append(line)
            parts.append(Text("  " + clean_line(f.summary, 500)))
            for fact in f.evidence:
                parts.append(self._evidence(snap, fact))
            rec_line = Text("  → ")
            rec_line.append(action_label(f, snap), self._st("heading"))
            key = action_key(f, snap)
            if key is not None:
                rec_line.append(f"  (press {key})", self._st("label"))
            if f.newer_side is not None:
                rec_line.append(f"  (newer side: {f.newer_side.value})", self._st("muted"))
            parts.append(rec_line)
            if self.findings_first and f.kind in GLOSSARY:
                parts.append(Text(f"  {GLOSSARY[f.kind][1]}", style=self._st("muted")))
        return parts


def _liveness_style(value: str) -> str:
    return {"live": "ok", "at_risk": "warning", "dead": "critical", "unknown": "info",
            "idle": "muted"}.get(value, "muted")

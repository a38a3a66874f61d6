"""One lane's tasks, virtualized: severity, id, priority, liveness, age, title, finding kinds."""

from __future__ import annotations

from rich.text import Text

from qwarden.core.model import Liveness, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import age_text
from qwarden.tui.lanes import task_mtime, task_priority
from qwarden.tui.widgets.row_list import RowList

SEVERITY_GLYPH = {2: ("!!", "critical"), 1: ("! ", "warning"), 0: ("i ", "info")}
LIVENESS_GLYPH = {
    Liveness.LIVE: ("●", "live"),
    Liveness.AT_RISK: ("◐", "at-risk"),
    Liveness.DEAD: ("✗", "dead"),
    Liveness.UNKNOWN: ("?", "unknown"),
    Liveness.IDLE: ("·", "idle"),
}


class LaneList(RowList):
    """Rows are task ids of one lane (already sorted and filtered by the screen)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.empty_text = "scanning…"  # until the first snapshot sets the lane's own text
        self.marked: set[str] = set()  # task ids marked for a group action (the screen's)

    def render_row(self, key: str, width: int) -> Text:
        snap = self.snapshot
        if snap is None or key not in snap.tasks:
            return Text(key)
        task = snap.tasks[key]
        findings = snap.findings_for(key)
        worst = max((f.severity.rank for f in findings), default=-1)
        v = snap.verdicts.get(key)
        text = Text(no_wrap=True)
        glyph, sev = SEVERITY_GLYPH.get(worst, ("  ", ""))
        text.append(glyph, self.row_style(sev) if sev else None)
        text.append("*" if key in self.marked else " ", self.row_style("heading"))
        w = snap.id_width
        shown = clean_line(key, 200)  # an id is an agent's text too
        shown = shown if len(shown) <= w else shown[:w - 1] + "…"
        text.append(shown.ljust(w), self.row_style(sev) if sev else None)
        text.append(" ")
        text.append((task_priority(task) or "--")[:2].ljust(2))
        text.append(" ")
        if v is not None:
            lg, lstyle = LIVENESS_GLYPH.get(v.liveness, ("?", "unknown"))
            text.append(lg, self.row_style(lstyle))
        else:
            text.append(" ")
        mtime = task_mtime(task)
        age = age_text(snap.as_of.timestamp() - mtime) if mtime else "-"
        text.append(f" {age:>6} ", self.row_style("muted"))
        if findings:  # before the title: at 80 columns the title is what gets cut
            kinds = ",".join(sorted({f.kind for f in findings}))
            text.append(f"{kinds} ", self.row_style(sev) if sev else None)
        text.append(clean_line(task.title, 200) or "(no title)")
        return text

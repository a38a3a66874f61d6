"""Every finding grouped by kind (worst kinds first), virtualized like the lanes."""

from __future__ import annotations

from rich.text import Text

from qwarden.core.model import Finding, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.tui.glossary import action_label
from qwarden.tui.widgets.row_list import RowList


class FindingsList(RowList):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.findings: list[Finding] = []
        self.headings: dict[str, tuple[str, int, str]] = {}
        self.empty_text = "no findings"

    def load(self, snap: Snapshot) -> None:
        self.snapshot = snap
        groups: dict[str, list[Finding]] = {}
        for f in snap.findings:
            groups.setdefault(f.kind, []).append(f)

        def rank(kind: str) -> tuple[int, int, str]:
            fs = groups[kind]
            return (-max(f.severity.rank for f in fs), -int(any(f.scored for f in fs)), kind)

        rows: list[str] = []
        self.findings = []
        self.headings = {}
        for kind in sorted(groups, key=rank):
            fs = sorted(groups[kind], key=lambda f: (-f.severity.rank, f.task_id))
            worst = max(f.severity.value for f in fs) if fs else "info"
            worst = max(fs, key=lambda f: f.severity.rank).severity.value
            self.headings[f"h:{kind}"] = (kind, len(fs), worst)
            rows.append(f"h:{kind}")
            for f in fs:
                rows.append(f"f:{len(self.findings)}")
                self.findings.append(f)
        self.set_rows(rows)

    def finding(self, key: str | None) -> Finding | None:
        if key is None or not key.startswith("f:"):
            return None
        return self.findings[int(key[2:])]

    def render_row(self, key: str, width: int) -> Text:
        if key.startswith("h:"):
            kind, n, worst = self.headings[key]
            t = Text()
            t.append(f"{kind} ({n})", self.row_style("heading"))
            t.append(f"  {worst}", self.row_style(worst))
            return t
        f = self.findings[int(key[2:])]
        sev = f.severity.value
        t = Text("  ")
        t.append({"critical": "!!", "warning": "! ", "info": "i "}[sev], self.row_style(sev))
        t.append(f" {clean_line(f.task_id, 40):<8} ")
        label = action_label(f, self.snapshot) if self.snapshot is not None \
            else f.recommended_action.value
        t.append(f"{label:<20} ", self.row_style("muted"))
        t.append(clean_line(f.summary, 300))
        return t

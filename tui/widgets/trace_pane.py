"""The selected task's merged timeline (DB history, file trail, notes attempts, agent signals)
and a live tail of the claiming agent's stdout.log. Both come from the engine's API; logs keep
their colours through ``Text.from_ansi`` after every non-colour escape is stripped."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from qwarden.core.model import Snapshot, TrailEvent
from qwarden.core.textsafe import clean_ansi_log, clean_line
from qwarden.core.timefmt import age_text
from qwarden.tui.keys import SCROLL_BINDINGS

LOG_LINES = 40
VERIFY_LINES = 200  # kept per run; the pane shows the last LOG_LINES


class VerifyRun:
    """The config's verify command running (or run) before an accept, as the pane shows it."""

    __slots__ = ("command", "lines", "status")

    def __init__(self, command: str) -> None:
        self.command = command
        self.lines: list[str] = []
        self.status = "running"  # running | passed | failed


class TracePane(VerticalScroll, can_focus=True):
    ALLOW_MAXIMIZE = True
    BINDINGS = [*SCROLL_BINDINGS]  # j/k/g/G as in the lists
    COMPONENT_CLASSES = {
        "trace-pane--heading", "trace-pane--muted", "trace-pane--db", "trace-pane--file",
        "trace-pane--agent", "trace-pane--notes", "trace-pane--bad",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.task_id: str | None = None
        self.agent: str | None = None
        self.events: tuple[TrailEvent, ...] = ()
        self.log_text = ""
        self.verify_runs: dict[str, VerifyRun] = {}  # task id -> its latest verify run
        self._snap: Snapshot | None = None
        self._body = Static(id="trace-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def _st(self, name: str):  # type: ignore[no-untyped-def]
        return self.get_component_rich_style(f"trace-pane--{name}", partial=True)

    def show(self, snap: Snapshot | None, task_id: str | None,
             trace: Callable[[str], tuple[TrailEvent, ...]],
             log_tail: Callable[[str], str]) -> None:
        new_task = task_id != self.task_id
        self.task_id = task_id
        self._snap = snap
        if snap is None or task_id is None or task_id not in snap.tasks:
            self.events, self.agent, self.log_text = (), None, ""
            self._body.update(Text("no task selected", style=self._st("muted")))
            return
        self.events = trace(task_id)
        self.agent = claiming_agent(snap, task_id)
        self.log_text = log_tail(self.agent) if self.agent else ""
        self._body.update(self.build(snap))
        if new_task:
            self._to_end()

    def _to_end(self) -> None:
        """The newest events in view, whenever the new content is laid out: anchored to the
        bottom until the user scrolls (scrolling at once used the old height: a first task's
        trace stayed at its top, or not, by timing)."""
        if self.is_anchored:
            self._anchor_released = False  # (back to following the end)
        self.anchor()

    def refresh_log(self, snap: Snapshot | None, log_tail: Callable[[str], str]) -> None:
        """Re-read the log tail only (a timer calls this while a claimed task is selected)."""
        if snap is None or self.agent is None:
            return
        text = log_tail(self.agent)
        if text != self.log_text:
            at_end = self.scroll_y >= self.max_scroll_y - 1
            self.log_text = text
            self._body.update(self.build(snap))
            if at_end:
                self._to_end()

    # -- the verify command's output, streamed in while it runs (called on the UI thread)
    def verify_started(self, task_id: str, command: str) -> None:
        self.verify_runs[task_id] = VerifyRun(command)
        self._rebuild_for(task_id)

    def verify_line(self, task_id: str, line: str) -> None:
        run = self.verify_runs.get(task_id)
        if run is None:
            return
        run.lines.append(line)
        del run.lines[:-VERIFY_LINES]
        self._rebuild_for(task_id)

    def verify_done(self, task_id: str, ok: bool) -> None:
        run = self.verify_runs.get(task_id)
        if run is not None:
            run.status = "passed" if ok else "failed"
            self._rebuild_for(task_id)

    def _rebuild_for(self, task_id: str) -> None:
        if task_id != self.task_id or self._snap is None:
            return
        at_end = self.scroll_y >= self.max_scroll_y - 1
        self._body.update(self.build(self._snap))
        if at_end:
            self._to_end()

    def build(self, snap: Snapshot) -> RenderableType:
        parts: list[RenderableType] = [Text("timeline", style=self._st("heading"))]
        if not self.events:
            parts.append(Text("  no recorded events", style=self._st("muted")))
        for ev in self.events:
            line = Text(no_wrap=False)
            when = age_text((snap.as_of - ev.at).total_seconds()) if ev.at else "?"
            line.append(f"{when:>6} ", self._st("muted"))
            line.append(f"{ev.side.value:<5} ", self._st(ev.side.value))
            line.append(clean_line(ev.kind, 40))
            if ev.actor:
                line.append(f" {clean_line(ev.actor, 80)}", self._st("agent"))
            if ev.detail:
                line.append(f"  {clean_line(ev.detail, 300)}", self._st("muted"))
            parts.append(line)
        run = self.verify_runs.get(self.task_id) if self.task_id else None
        if run is not None:
            parts.append(Text(""))
            head = Text(f"verify ({run.status}): ", style=self._st("heading"))
            head.append(clean_line(run.command, 200),
                        self._st("bad") if run.status == "failed" else self._st("muted"))
            parts.append(head)
            for ln in run.lines[-LOG_LINES:]:
                parts.append(Text(f"  {clean_line(ln, 500)}"))
        if self.agent:
            parts.append(Text(""))
            parts.append(Text(f"stdout.log of {clean_line(self.agent, 80)}",
                              style=self._st("heading")))
            if not self.log_text:
                parts.append(Text("  (no log)", style=self._st("muted")))
            else:
                lines = self.log_text.splitlines()[-LOG_LINES:]
                log = Text.from_ansi(clean_ansi_log("\n".join(lines)), no_wrap=False)
                parts.append(log)
        return Group(*parts)


def claiming_agent(snap: Snapshot, task_id: str) -> str | None:
    v = snap.verdicts.get(task_id)
    if v is not None and v.claimed_by:
        return v.claimed_by
    for a in snap.agents.values():
        if a.current_task_id == task_id:
            return a.name
    return None

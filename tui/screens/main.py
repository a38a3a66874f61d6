"""The main screen: header, lane tabs, the current lane (virtualized), detail and trace panes.

It never reads files or the DB: the app hands it each snapshot (with the ids changed since the
last one it saw); the trace and log tail come through the engine's API.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from qwarden.core.model import Severity, Snapshot
from qwarden.tui.keys import ACTION_BINDINGS, MAIN_BINDINGS, MARK_BINDINGS, TRIAGE_KEYS
from qwarden.tui.lanes import ATTENTION, SYNC_SCAN, LaneFilter, LaneIndex
from qwarden.tui.marks import Marks
from qwarden.tui.screens.prompt import PromptScreen
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.header_bar import HeaderBar
from qwarden.tui.widgets.lane_list import LaneList
from qwarden.tui.widgets.lane_tabs import LaneTabs, Tab
from qwarden.tui.widgets.row_list import RowList
from qwarden.tui.widgets.trace_pane import TracePane

if TYPE_CHECKING:
    from qwarden.tui.app import QwardenApp

LANE_KEYS = [Binding(str((i + 1) % 10), f"lane({i})", f"Lane {i + 1}", show=False,
                     id=f"main.lane{i + 1}") for i in range(10)]
JUMP_WORDS = ("attention", "findings", "agents", "help", "quit")
WORK_STEP_S = 0.012  # one idle step of ordering / matching (under a frame at 60 Hz)


def void(_: object) -> None:
    """Prompt callbacks return nothing (the action's own result is only for tests)."""


class MainScreen(Screen[None]):
    ESCAPE_TO_MINIMIZE = False  # our esc (action_back) minimizes and returns to the list
    BINDINGS: ClassVar[list[BindingType]] = [*MAIN_BINDINGS, *LANE_KEYS, *TRIAGE_KEYS,
                                             *ACTION_BINDINGS, *MARK_BINDINGS]

    def __init__(self, root_label: str, read_only: bool) -> None:
        super().__init__()
        self.index = LaneIndex()
        self.snapshot: Snapshot | None = None
        self.lane: str | None = None
        self.filters: dict[str, LaneFilter] = {}
        self.cursor_memory: dict[str, str] = {}  # lane -> task id under the cursor
        self.marks = Marks(self.index)
        self._range_from: str | None = None  # the row a first ``v`` was pressed on
        self.root_label = root_label
        self.read_only = read_only
        self._detail_timer: Timer | None = None
        self._trace_timer: Timer | None = None
        self._work_timer: Timer | None = None
        self._work_queued = False  # a first step waits for the next paint
        self._grew_at = 0.0

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.qapp.closing:  # quitting: a key after q opens nothing (see QwardenApp)
            return False
        if action == "intervene" and parameters:
            from qwarden.tui.intervene import offers

            if not offers(self.qapp, str(parameters[0])):
                return False  # not an action of this queue's format: not in the footer
        return super().check_action(action, parameters)

    @property
    def qapp(self) -> QwardenApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar(self.qapp.engine, self.root_label, self.read_only, id="header")
        yield LaneTabs(id="lane-tabs")
        with Horizontal(id="body"):
            yield LaneList(id="lane-list")
            with Vertical(id="side"):
                yield DetailPane(id="detail")
                yield TracePane(id="trace")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.lane_list.marked = self.marks  # type: ignore[assignment]
        self.lane_list.focus()
        self._update_title()

    def on_screen_resume(self) -> None:
        # snapshots that arrived while a modal or another view was on top
        self.call_after_refresh(self.qapp.flush_snapshot)

    @property
    def is_live(self) -> bool:
        """Mounted with its widgets and the app not exiting: timers that fire during
        shutdown must find nothing to do rather than query widgets already removed."""
        app = self.app
        return (app.is_running and not app._exit and self.is_mounted
                and not self._closing and bool(self.children))

    @property
    def lane_list(self) -> LaneList:
        return self.query_one("#lane-list", LaneList)

    @property
    def header(self) -> HeaderBar:
        return self.query_one("#header", HeaderBar)

    # ------------------------------------------------------------------ snapshots
    def apply_snapshot(self, snap: Snapshot, changed: set[str] | None) -> None:
        """Take a new snapshot. ``changed``: task ids changed since the last one applied
        (None: everything)."""
        first = self.snapshot is None
        touched = self.index.update(snap, None if first else changed)
        self.snapshot = snap
        lst = self.lane_list
        lst.snapshot = snap
        if self.lane is None or self.lane not in self.views:
            self.lane = self.worst_lane()
        if first or self.lane in touched:
            self._refresh_rows()
        else:
            lst.refresh_rows()  # ages and glyphs may have moved
        self._update_chrome()
        self._start_work()
        current = lst.current_key
        if first or changed is None or (current is not None and current in changed):
            self._show_detail(trace=True)

    @property
    def views(self) -> list[str]:
        """What the tabs show: the attention view, then the lanes."""
        return [ATTENTION, *self.index.lanes]

    def worst_lane(self) -> str | None:
        """Where an operator should look first: the lane with the most tasks whose worst
        finding is critical, else warning, else the first lane with tasks."""
        ix = self.index
        for group in (0, 1):
            best = max(ix.lanes, key=lambda ln: ix.worst.get(ln, (0, 0))[group], default=None)
            if best is not None and ix.worst.get(best, (0, 0))[group]:
                return best
        return next((ln for ln in ix.lanes if ix.count(ln)), ix.lanes[0] if ix.lanes else None)

    def _refresh_rows(self, keep: str | None = None) -> None:
        lst = self.lane_list
        if self.lane is None:
            lst.set_rows([], keep)
            return
        flt = self.filters.get(self.lane)
        rows = self.index.rows(self.lane, flt)
        if flt is not None:
            # a filter shows its first screenful at once (a lane that small: all of it); the
            # rest is matched in idle steps, the title counting "n+ …" until it is exact
            if self.index.count(self.lane) <= SYNC_SCAN:
                rows.finish()
            else:
                rows.scan(SYNC_SCAN, want=max(lst.size.height, 40) + 1)  # type: ignore[attr-defined]
        lst.empty_text = "no tasks in this lane" if flt is None else (
            "no task matches the filter" if rows.complete else "matching…")
        lst.set_rows(rows, keep)
        self._update_title()
        self._start_work()

    def _start_work(self) -> None:
        """Order / match the rest of the current lane in small steps while the app is idle,
        then order the other lanes (so switching to one later shows it at once). The first
        step waits for the screen to be painted."""
        if self._work_timer is None and not self._work_queued:
            self._work_queued = True
            self.call_after_refresh(self._next_step)

    def _next_step(self) -> None:
        self._work_queued = False
        if self._work_timer is None:
            self._work_timer = self.set_timer(0.002, self._work_step)

    def _work_step(self) -> None:
        self._work_timer = None
        if not self.is_live:
            return
        lst = self.lane_list
        rows = lst.rows
        advance = getattr(rows, "advance", None)
        if advance is not None and not lst.rows_complete:
            n = len(rows)
            advance(WORK_STEP_S)
            now = time.monotonic()
            # the list and title follow a scan as it goes, a few times a second (repainting
            # after every step would cost as much as the scan); at once while it is short
            if lst.rows_complete or (len(rows) != n and (
                    n <= lst.size.height or now - self._grew_at >= 0.1)):
                self._grew_at = now
                if lst.rows_complete and not rows:
                    lst.empty_text = "no task matches the filter"
                lst.rows_grew()
                self._update_title()
            self._next_step()
        elif self.index.warm(WORK_STEP_S):
            self._next_step()

    def _update_title(self) -> None:
        lane = self.lane or "—"
        lst = self.lane_list
        shown = f"{len(lst.rows)}" if lst.rows_complete else f"{len(lst.rows)}+ …"
        flt = self.filters.get(lane)
        title = Content(f"{lane}[{shown}]")
        if flt is not None:
            total = self.index.count(lane)
            title = Content.assemble(title, f" </{flt.text}> of {total}")
        if self.marks:
            title = Content.assemble(title, f" · {self.marks.count()} marked")
        lst.border_title = title

    def _update_chrome(self) -> None:
        counts = [(ln, self.index.count(ln)) for ln in self.index.lanes]
        self.header.show(self.snapshot, counts)
        views = self.views
        cur = views.index(self.lane) if self.lane in views else 0
        crit = sum(c for c, _ in self.index.worst.values())
        warn = sum(w for _, w in self.index.worst.values())
        tabs = [Tab(ATTENTION, crit + warn, ATTENTION in self.filters,
                    Severity.CRITICAL if crit else (Severity.WARNING if warn else None),
                    crit or warn, key="!")]
        for i, (ln, n) in enumerate(counts):
            worst, n_worst = self.index.worst_of(ln)
            tabs.append(Tab(ln, n, ln in self.filters, worst, n_worst,
                            key=str(i + 1) if i < 9 else ("0" if i == 9 else " ")))
        self.query_one(LaneTabs).show(tabs, cur)
        self._update_title()

    # ------------------------------------------------------------------ detail + trace
    def on_row_list_highlighted(self, event: RowList.Highlighted) -> None:
        if event.row_list is not self.lane_list:
            return
        if self.lane is not None and event.key is not None:
            self.cursor_memory[self.lane] = event.key
        # debounced: holding j over 100 rows renders the detail once
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(0.03, lambda: self._show_detail(trace=False))
        if self._trace_timer is not None:
            self._trace_timer.stop()
        self._trace_timer = self.set_timer(0.12, self._show_trace)

    def _show_detail(self, trace: bool) -> None:
        if not self.is_live:
            return
        key = self.lane_list.current_key
        self.query_one(DetailPane).show(self.snapshot, key)
        if trace:
            self._show_trace()

    def _show_trace(self) -> None:
        if not self.is_live:
            return
        eng = self.qapp.engine
        self.query_one(TracePane).show(self.snapshot, self.lane_list.current_key, eng.trace,
                                       eng.log_tail)

    def refresh_log(self) -> None:
        self.query_one(TracePane).refresh_log(self.snapshot, self.qapp.engine.log_tail)

    def on_row_list_selected(self, event: RowList.Selected) -> None:
        """enter: the task on the whole screen (findings and evidence first)."""
        from qwarden.tui.screens.task import TaskScreen

        if self.snapshot is not None and event.key in self.snapshot.tasks:
            self.app.push_screen(TaskScreen(self.snapshot, event.key))

    # ------------------------------------------------------------------ lanes
    def switch_lane(self, lane: str) -> None:
        if lane == self.lane or lane not in self.views:
            return
        if self.lane is not None and self.lane_list.current_key is not None:
            self.cursor_memory[self.lane] = self.lane_list.current_key
        self.lane = lane
        self.lane_list.set_reactive(RowList.cursor, 0)
        self._refresh_rows(keep=self.cursor_memory.get(lane))
        self._update_chrome()
        self._show_detail(trace=True)

    def on_lane_tabs_clicked(self, event: LaneTabs.Clicked) -> None:
        views = self.views
        if 0 <= event.lane < len(views):
            self.switch_lane(views[event.lane])
        self.lane_list.focus()

    def action_attention(self) -> None:
        self.switch_lane(ATTENTION)

    def _criticals(self, lane: str) -> int:
        """How many rows at the top of ``lane`` are critical (they come first)."""
        if lane == ATTENTION:
            return sum(c for c, _ in self.index.worst.values())
        return self.index.worst.get(lane, (0, 0))[0]

    def _jump_critical(self, step: int) -> None:
        """The next (previous) critical row: on down the current view, then across the
        lanes in order, round to the start."""
        lst = self.lane_list
        here = self.lane
        filtered = here in self.filters
        if here is not None and not filtered:
            n = self._criticals(here)
            i = lst.cursor + step
            if 0 <= i < n:
                lst.move_to(i)
                return
        lanes = self.index.lanes
        if not any(self._criticals(ln) for ln in lanes):
            self.app.notify("no critical findings", markup=False)
            return
        start = lanes.index(here) if here in lanes else (-1 if step > 0 else 0)
        for k in range(1, len(lanes) + 1):
            lane = lanes[(start + k * step) % len(lanes)]
            n = self._criticals(lane)
            if n:
                self.filters.pop(lane, None)  # (a filter could hide its criticals)
                if lane != here:
                    self.switch_lane(lane)
                else:
                    self._refresh_rows()
                self.lane_list.move_to(0 if step > 0 else n - 1)
                self._update_chrome()
                return

    def action_next_critical(self) -> None:
        self._jump_critical(1)

    def action_prev_critical(self) -> None:
        self._jump_critical(-1)

    def action_lane(self, n: int) -> None:
        if 0 <= n < len(self.index.lanes):
            self.switch_lane(self.index.lanes[n])

    def _step_lane(self, step: int) -> None:
        lanes = self.views
        if not lanes:
            return
        cur = lanes.index(self.lane) if self.lane in lanes else 0
        self.switch_lane(lanes[(cur + step) % len(lanes)])

    def action_next_lane(self) -> None:
        self._step_lane(1)

    def action_prev_lane(self) -> None:
        self._step_lane(-1)

    # ------------------------------------------------------------------ panes
    def _panes(self) -> list:  # type: ignore[type-arg]
        return [self.lane_list, self.query_one(DetailPane), self.query_one(TracePane)]

    def _cycle(self, step: int) -> None:
        panes = self._panes()
        cur = panes.index(self.focused) if self.focused in panes else 0
        panes[(cur + step) % len(panes)].focus()

    def action_next_pane(self) -> None:
        self._cycle(1)

    def action_prev_pane(self) -> None:
        self._cycle(-1)

    def action_minimize(self) -> None:
        # Textual's own escape-to-minimize: back to the list as well
        self.minimize()
        self.lane_list.focus()

    def action_back(self) -> None:
        if self.maximized is not None:
            self.minimize()
            self.lane_list.focus()
        elif self.focused is not self.lane_list:
            self.lane_list.focus()
        elif self.marks or self._range_from is not None:
            self.clear_marks()
        elif self.lane is not None and self.lane in self.filters:
            self.set_filter(self.lane, "")

    # ------------------------------------------------------------------ filter
    def action_filter(self) -> None:
        if self.lane is None:
            return
        cur = self.filters.get(self.lane)
        lane = self.lane
        self.app.push_screen(
            PromptScreen("/", cur.text if cur else "", "regex  (!regex inverts; empty clears)"),
            lambda value: None if value is None else void(self.set_filter(lane, value)))

    def set_filter(self, lane: str, text: str) -> bool:
        """Set (empty: clear) a lane's filter; it is remembered for that lane."""
        try:
            flt = LaneFilter.parse(text)
        except re.error as exc:
            self.app.notify(f"bad filter: {exc}", severity="error", markup=False)
            return False
        if flt is None:
            self.filters.pop(lane, None)
        else:
            self.filters[lane] = flt
        if lane == self.lane:
            self._refresh_rows()
            self._update_chrome()
        return True

    # ------------------------------------------------------------------ jump
    def action_jump(self) -> None:
        self.app.push_screen(
            PromptScreen(":", "", "lane, task id, findings, agents, help, quit",
                         suggestions=[*self.index.lanes, *JUMP_WORDS]),
            lambda value: void(self.jump(value)) if value else None)

    def jump(self, text: str) -> bool:
        t = text.strip()
        low = t.lower()
        actions: dict[str, Callable[[], object]] = {
            "attention": self.action_attention, "findings": self.qapp.action_findings,
            "agents": self.qapp.action_agents,
            "help": self.qapp.action_help, "q": self.qapp.exit, "quit": self.qapp.exit,
        }
        if low in actions:
            actions[low]()
            return True
        lanes = self.index.lanes
        if low in lanes:
            self.switch_lane(low)
            return True
        snap = self.snapshot
        tid = t
        if snap is not None and tid:
            if tid in snap.tasks:
                return self.go_to_task(tid)
            # the prefix a format shows before its ids (Octopoid's TASK-) is optional
            pre = snap.id_prefix.lower()
            if pre and low.startswith(pre):
                tid = t[len(pre):]
                if tid in snap.tasks:
                    return self.go_to_task(tid)
            hits = [x for x in snap.tasks if x.startswith(tid)] if len(tid) >= 3 else []
            if len(hits) == 1:
                return self.go_to_task(hits[0])
        prefixed = [ln for ln in lanes if ln.startswith(low)]
        if len(prefixed) == 1:
            self.switch_lane(prefixed[0])
            return True
        self.app.notify(f"no lane or task matches {t!r}", severity="warning", markup=False)
        return False

    def go_to_task(self, tid: str) -> bool:
        lane = self.index.lane_of.get(tid)
        if lane is None:
            return False
        self.switch_lane(lane)
        flt = self.filters.get(lane)
        if flt is not None and not self.index.matches(tid, flt):
            self.filters.pop(lane)
            shown = self.snapshot.label(tid) if self.snapshot is not None else tid
            self.app.notify(f"filter of {lane} cleared to show {shown}", markup=False)
        self._refresh_rows(keep=tid)
        self._update_chrome()
        self.lane_list.focus()
        self._show_detail(trace=True)
        return True

    def action_intervene(self, action: str) -> None:
        from qwarden.tui.intervene import ACTIONS, GroupIntervention, GroupItem, Intervention

        if self.marks:
            kind = ACTIONS[action][0]
            items: list[GroupItem] = [(tid, kind, None) for tid in self.marks.resolve()]
            GroupIntervention(self.qapp, items, kind, on_done=self.clear_marks).start()
            return
        key = self.lane_list.current_key
        if key is None:
            self.app.notify("no task selected")
            return
        Intervention(self.qapp, action, key).start()

    def action_do_recommended(self) -> None:
        """``d``: each task's own recommended action (one task, or every marked one)."""
        from qwarden.tui.intervene import (
            GroupIntervention,
            GroupItem,
            Intervention,
            recommended_item,
        )

        snap = self.snapshot
        if snap is None:
            return
        if self.marks:
            items: list[GroupItem] = []
            none: list[str] = []
            for tid in self.marks.resolve():
                item = recommended_item(snap, tid)
                if item is not None:
                    items.append(item)
                else:
                    none.append(tid)
            group = GroupIntervention(self.qapp, items, "recommended actions",
                                      on_done=self.clear_marks)
            group.refused_up_front = [(t, "no action to run (look at it)") for t in none]
            group.start()
            return
        key = self.lane_list.current_key
        item = recommended_item(snap, key) if key is not None else None
        if key is None or item is None:
            self.app.notify("nothing to do for this task: its recommended action is to "
                            "look (review) or none", markup=False)
            return
        one = Intervention(self.qapp, item[1], key)
        one.direction = item[2]
        one.start()

    # ------------------------------------------------------------------ marks
    def clear_marks(self) -> None:
        self.marks.clear()
        self._range_from = None
        self.lane_list.refresh_rows()
        self._update_title()

    def action_toggle_mark(self) -> None:
        key = self.lane_list.current_key
        if key is None:
            return
        self.marks.toggle(key)
        self.lane_list.action_cursor_down()
        self.lane_list.refresh_rows()
        self._update_title()

    def action_mark_range(self) -> None:
        lst = self.lane_list
        key = lst.current_key
        if key is None:
            return
        if self._range_from is None:
            self._range_from = key
            self.app.notify("range: move to the other end and press v again", markup=False)
            return
        try:
            start = lst.rows.index(self._range_from)
        except ValueError:  # that row left the lane meanwhile
            start = lst.cursor
        lo, hi = sorted((start, lst.cursor))
        self.marks.mark([lst.rows[i] for i in range(lo, hi + 1)])
        self._range_from = None
        lst.refresh_rows()
        self._update_title()

    def action_mark_all(self) -> None:
        if self.lane is None:
            return
        self.marks.mark_all(self.lane, self.filters.get(self.lane))
        self.lane_list.refresh_rows()
        self._update_title()

"""The live console: ``QwardenApp`` over one ``Engine``, and ``run_tui`` for the CLI.

One snapshot feeds every view. The engine calls back on the event loop after each incremental
update or poll; a burst collapses into one render (the changed ids are accumulated), nothing is
rendered while a modal or another view is on top, and a failed poll keeps the last snapshot and
shows the engine's error in the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen

from qwarden.core.actions.interface import Refused
from qwarden.core.clihelp import EXIT_INTERNAL
from qwarden.core.config import Config
from qwarden.core.engine import Engine
from qwarden.core.formats import open_engine, open_interventions
from qwarden.core.model import Severity, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.tui.keys import APP_BINDINGS
from qwarden.tui.screens.agents import AgentsScreen
from qwarden.tui.screens.findings import FindingsScreen
from qwarden.tui.screens.help import HelpScreen
from qwarden.tui.screens.main import MainScreen
from qwarden.tui.themes import QWARDEN_THEMES, STATUS_DEFAULTS, STYLESHEET, choose_theme


class SnapshotArrived(Message):
    """Latest wins: a queued one is replaced by a newer one (the changed ids are kept apart)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


class QwardenApp(App[int]):
    CSS_PATH = str(STYLESHEET)
    TITLE = "qwarden"
    BINDINGS: ClassVar[list[BindingType]] = [*APP_BINDINGS]
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, engine: Engine, config: Config, theme: str | None = None,
                 read_only: bool = False, simulation: Any = None,
                 root_label: str | None = None, autofix: Any = None,
                 bell: bool = False, write_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.ring_on_critical = bell  # --bell: the terminal bell on each new critical
        self.criticals_seen: dict[str, set[str]] | None = None  # task -> critical kinds
        self.engine = engine
        self.config = config
        self.read_only = read_only or config.read_only
        self.simulation = simulation
        self.root_label = root_label if root_label is not None else str(engine.root)
        self._theme_choice = theme
        self._pending: Snapshot | None = None
        self._pending_changed: set[str] | None = set()
        self._seen_generation: int | None = None  # of the last snapshot handed to us
        self._unsubscribe: Any = None
        self._sim_stop: asyncio.Event | None = None
        # the queue's write path (the format's, through core.actions.interface), or why none
        self.interventions: Any = None
        self.no_interventions_reason = ""
        try:
            self.interventions = open_interventions(
                engine.source.format, engine.root, config,
                {**(write_options or {}), "read_only": self.read_only})
        except Refused as exc:
            self.no_interventions_reason = str(exc)
        # no write path at all: the header says READ-ONLY as for --read-only
        self.main_screen = MainScreen(self.root_label,
                                      self.read_only or self.interventions is None)
        self.autofix = autofix  # core.actions.autofix.AutoFixer, ticking after each poll
        self._fixed_poll: object = None
        self.start_error: str | None = None
        self.crash: BaseException | None = None
        for t in QWARDEN_THEMES:
            self.register_theme(t)
        self.theme = choose_theme(theme, config.theme, set(self.available_themes))
        if config.keys:
            self.set_keymap(dict(config.keys))

    @property
    def closing(self) -> bool:
        """Quitting: the screens are being taken down."""
        return bool(self._exit)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A key pressed after q (in the same burst) would open a screen that is never composed
        # and crash on its first query (issue 9): once quitting, no binding runs.
        if self.closing:
            return False
        return super().check_action(action, parameters)

    def _handle_exception(self, error: Exception) -> None:
        self.crash = error  # run_tui exits 70 (EXIT_INTERNAL) and says it in one line
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        if self.crash is not None and not os.environ.get("QWARDEN_DEBUG"):
            # the agreed one line, no traceback (QWARDEN_DEBUG=1 shows Textual's)
            self._exit_renderables.clear()
            msg = clean_line(f"{type(self.crash).__name__}: {self.crash}", 300)
            # the real stderr: the app may still be capturing print() while it shuts down
            err = sys.__stderr__ or sys.stderr
            print(f"qwarden: internal error in the console: {msg} "
                  "(QWARDEN_DEBUG=1 shows the traceback)", file=err, flush=True)
            return
        super()._print_error_renderables()

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(STATUS_DEFAULTS)

    # ------------------------------------------------------------------ lifecycle
    async def on_mount(self) -> None:
        await self.push_screen(self.main_screen)
        if self.autofix is not None:
            self.main_screen.header.autofix = self.autofix.mode
        self._unsubscribe = self.engine.subscribe(self._on_engine_snapshot)
        self.start_engine()
        # the cold scan's progress in the header until the first snapshot is on screen
        self._progress_timer = self.set_interval(0.25, self._show_scan_progress)
        if self.engine.live:
            self.set_interval(1.0, self._tick)

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def start_engine(self) -> None:
        try:
            await self.engine.start()
        except Exception as exc:  # unreadable root: say so, keep the console up
            self.start_error = f"cannot read the queue: {exc}"
            self.main_screen.header.error = self.start_error
            self.main_screen.lane_list.empty_text = "the queue could not be read (see above)"
            self.main_screen.lane_list.refresh()
            self.main_screen.header.refresh()
            return
        if self.simulation is not None:
            self._sim_stop = asyncio.Event()
            self.run_worker(self.simulation.run(self._sim_stop), group="simulation",
                            exit_on_error=False)

    async def on_unmount(self) -> None:
        if self._sim_stop is not None:
            self._sim_stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.engine.stop()

    # ------------------------------------------------------------------ snapshots
    def _on_engine_snapshot(self, snap: Snapshot) -> None:
        # A snapshot's ``changed`` is relative to the generation before it. The engine keeps
        # publishing while paused without handing those snapshots out, so after a gap what
        # changed in between is unknown: None (start the lanes again from this snapshot; the
        # same snapshot handed out twice, as on resume without news, is no gap).
        # Taking the newest ``changed`` alone left tasks in lanes they had left (issue 8).
        gap = self._seen_generation is not None and snap.generation > self._seen_generation + 1
        self._seen_generation = snap.generation
        if gap:
            self._pending_changed = None
        elif self._pending_changed is not None:
            self._pending_changed |= snap.changed
        self._pending = snap
        self.post_message(SnapshotArrived())

    def on_snapshot_arrived(self, _message: SnapshotArrived) -> None:
        self.flush_snapshot()

    @property
    def main_is_current(self) -> bool:
        return self.screen is self.main_screen

    def flush_snapshot(self) -> None:
        """Apply the pending snapshot, unless a modal or another view is on top (then it waits
        for the main screen to come back)."""
        if self._pending is None or not self.main_is_current or self._exit:
            return
        if not self.main_screen.is_live:
            return
        snap, changed = self._pending, self._pending_changed
        self._pending, self._pending_changed = None, set()
        try:
            with self.batch_update():
                self.main_screen.apply_snapshot(snap, changed)
        except NoMatches:  # shutting down: the screen's widgets are already gone
            pass
        self._alert_new_criticals(snap, changed)

    def _alert_new_criticals(self, snap: Snapshot, changed: set[str] | None) -> list[str]:
        """Ring (with --bell) and say so when a critical finding appears that was not there
        before; only the changed tasks are looked at. Returns the new ones (task: kind)."""
        crit = Severity.CRITICAL
        seen = self.criticals_seen  # task -> its critical kinds; None before the first

        def kinds(tid: str) -> set[str]:
            return {f.kind for f in snap.findings_for(tid) if f.severity is crit}

        new: list[tuple[str, str]] = []
        if seen is None or changed is None:
            now = {t: kinds(t) for t in snap.tasks_with(crit)}
            if seen is not None:
                new = sorted((t, k) for t, ks in now.items() for k in ks - seen.get(t, set()))
            self.criticals_seen = now
        else:
            for tid in changed:
                now_t = kinds(tid) if tid in snap.tasks else set()
                new += sorted((tid, k) for k in now_t - seen.get(tid, set()))
                if now_t:
                    seen[tid] = now_t
                else:
                    seen.pop(tid, None)
        if new:
            if self.ring_on_critical:
                self.bell()
            self.notify("new critical: " + ", ".join(f"{snap.label(t)} {k}" for t, k in new[:5])
                        + (" …" if len(new) > 5 else ""), severity="error", markup=False)
        return [f"{t}: {k}" for t, k in new]

    def _show_scan_progress(self) -> None:
        main = self.main_screen
        if main.snapshot is not None or self.start_error or not main.is_live:
            self._progress_timer.stop()
            return
        with contextlib.suppress(NoMatches):
            main.header.refresh()

    def _tick(self) -> None:
        """Once a second: the poll countdown and the log tail (never raises)."""
        if self.autofix is not None and self.engine.snapshot is not None \
                and self.engine.last_poll_at != self._fixed_poll:
            self._fixed_poll = self.engine.last_poll_at
            self.run_worker(self._autofix_tick(), group="autofix", exclusive=True,
                            exit_on_error=False)
        if not self.main_is_current or not self.main_screen.is_live:
            return
        try:
            self.main_screen.header.refresh()
            self.main_screen.refresh_log()
        except NoMatches:  # shutting down between the check and the query
            return
        except Exception as exc:  # a timer callback that raises would end the app
            with contextlib.suppress(NoMatches):
                self.main_screen.header.error = f"display: {exc!r}"

    # ------------------------------------------------------------------ actions
    @work(exclusive=True, group="poll", exit_on_error=False)
    async def action_poll_now(self) -> None:
        self.main_screen.header.refresh()
        await self.engine.poll_now()
        self.main_screen.header.refresh()

    async def _autofix_tick(self) -> None:
        """One auto-fixer tick per poll, in a thread; its fixes arrive as ordinary changes."""
        rep = await asyncio.to_thread(self.autofix.tick, self.engine.snapshot)
        if rep.fixed or rep.escalated:
            self.notify(f"auto-fixer ({rep.mode}): fixed {len(rep.fixed)}, escalated "
                        f"{len(rep.escalated)}", markup=False)

    def action_toggle_autofix(self) -> None:
        if self.autofix is None:
            self.notify("no auto-fixer running (start with --fix safe|aggressive)",
                        markup=False)
            return
        self.autofix.paused = not self.autofix.paused
        self.main_screen.header.autofix = "paused" if self.autofix.paused else self.autofix.mode
        self.main_screen.header.refresh()

    def action_toggle_pause(self) -> None:
        self.engine.set_paused(not self.engine.paused)
        self.main_screen.header.refresh()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.keymap_view()))

    def keymap_view(self) -> dict[str, str]:
        return dict(self.config.keys)

    def _push_view(self, screen: Screen[str | None]) -> None:
        def done(tid: str | None) -> None:
            if tid:
                self.main_screen.go_to_task(tid)
        self.push_screen(screen, done)

    def action_findings(self) -> None:
        snap = self.main_screen.snapshot
        if snap is not None and self.main_is_current:
            self._push_view(FindingsScreen(snap))

    def action_agents(self) -> None:
        snap = self.main_screen.snapshot
        if snap is not None and self.main_is_current:
            self._push_view(AgentsScreen(snap, self.config.thresholds.stale_after_s))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Findings", "Every finding grouped by kind", self.action_findings)
        yield SystemCommand("Agents", "Agents, their signals and claims", self.action_agents)
        yield SystemCommand("Poll now", "Full reconciliation now (ctrl+r)",
                            self.action_poll_now)
        yield SystemCommand("Pause / resume", "Stop or resume live updates (p)",
                            self.action_toggle_pause)
        yield SystemCommand("Keys", "Every key binding (?)", self.action_help)
        for lane in self.main_screen.index.lanes:
            yield SystemCommand(f"Lane: {lane}", f"Show the {lane} lane",
                                lambda lane=lane: self.main_screen.switch_lane(lane))




def run_tui(root: Path, config: Config, as_of: datetime | None, theme: str | None,
            simulation: Any = None, fix: str | None = None, bell: bool = False,
            fmt: str = "auto", write_options: dict[str, Any] | None = None) -> int:
    """Open the console on ``root`` (``qwarden``, ``qwarden demo``). Returns the exit code.
    ``write_options``: how the queue is written (``--api``, ``--direct-db``)."""
    engine = open_engine(root, config, as_of=as_of, fmt=fmt)
    home = os.path.expanduser("~")
    label = str(engine.root)
    if label.startswith(home + os.sep):
        label = "~" + label[len(home):]
    autofix = None
    if fix is not None and as_of is None:
        from qwarden.core.formats import autofix_refusal

        why = autofix_refusal(engine.source.format)
        if why is not None:
            engine.source.close()
            print(f"qwarden: refused: {why}", file=sys.stderr)
            return 1  # refused, as the CLI's interventions
    if fix is not None and as_of is None:
        from qwarden.core.actions.apply import recover
        from qwarden.core.actions.autofix import AutoFixer

        if fix != "observe" and not config.read_only:
            recover(engine.root)  # finish or undo what a killed writer left, first
        autofix = AutoFixer(engine.root, config, mode=fix, read_only=config.read_only)
    app = QwardenApp(engine, config, theme=theme, read_only=config.read_only,
                     simulation=simulation, root_label=label, autofix=autofix, bell=bell,
                     write_options=write_options)
    return exit_status(app, app.run())


def exit_status(app: QwardenApp, result: object) -> int:
    """The process's exit code once the console has closed: 70 after a crash (never 0)."""
    if app.crash is not None or (app.return_code or 0) != 0:
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0

"""The console driven by Pilot on real state dirs (files + SQLite): navigation, filters, jump,
detail, countdown and pause, a failed poll, and live updates from a file move and a DB write."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from qwarden.core.config import Config, LiveOptions
from qwarden.core.engine import Engine
from qwarden.core.formats import open_engine, open_source
from qwarden.core.timefmt import parse_as_of
from qwarden.tui.app import QwardenApp
from qwarden.tui.lanes import LaneFilter
from qwarden.tui.screens.help import HelpScreen
from qwarden.tui.screens.prompt import PromptScreen
from qwarden.tui.widgets.detail_pane import DetailPane
from qwarden.tui.widgets.header_bar import HeaderBar
from tests.builders import StateBuilder, generated_utc_state
from tests.pilot import frozen_app, ready, wait_until


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "gen", 300, seed=3)



def visible_rows(app: QwardenApp) -> list[str]:
    return list(app.main_screen.lane_list.rows)


async def test_first_paint_orders_lane_by_attention(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        snap = main.snapshot
        assert snap is not None
        # it opens on the lane with the most tasks whose worst finding is critical
        from collections import Counter

        from qwarden.core.model import Severity
        crit = snap.tasks_with(Severity.CRITICAL)
        by_lane = Counter(snap.verdicts[t].effective_state for t in crit)
        assert by_lane and by_lane[main.lane] == max(by_lane.values())
        rows = visible_rows(app)
        assert set(rows) == {t for t, v in snap.verdicts.items()
                             if v.effective_state == main.lane}
        ranks = [max((f.severity.rank for f in snap.findings_for(t)), default=-1)
                 for t in rows]
        assert ranks == sorted(ranks, reverse=True)  # findings first, worst first
        assert ranks[0] >= 1
        # the header counts every lane and the findings
        header = main.query_one(HeaderBar).render().plain
        assert f"{main.lane} {len(rows)}" in header
        assert "critical" in header and "(frozen)" in header


async def test_navigation_keys(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        app.main_screen.switch_lane("incoming")  # (it opens on the worst lane: a small one)
        lst = app.main_screen.lane_list
        n = len(lst.rows)
        assert n > 30
        await pilot.press("j", "j", "down")
        assert lst.cursor == 3
        await pilot.press("k")
        assert lst.cursor == 2
        await pilot.press("G")
        assert lst.cursor == n - 1
        assert lst.scroll_offset.y > 0  # the cursor row scrolled into view
        await pilot.press("g")
        assert lst.cursor == 0 and lst.scroll_offset.y == 0
        await pilot.press("pagedown")
        assert lst.cursor > 10
        await pilot.press("pageup")
        assert lst.cursor == 0
        # lanes: ] / [ and digits, the cursor remembered per lane
        await pilot.press("j", "j")
        first_lane, key = app.main_screen.lane, lst.current_key
        await pilot.press("right_square_bracket")
        assert app.main_screen.lane != first_lane
        await pilot.press(str(app.main_screen.index.lanes.index(first_lane) + 1))
        assert app.main_screen.lane == first_lane
        assert lst.current_key == key
        # enter: the task on the whole screen; esc: back to the list
        from qwarden.tui.screens.task import TaskScreen
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, TaskScreen) and app.screen.task_id == key
        await pilot.press("escape")
        assert app.screen is app.main_screen and app.focused is lst
        detail = app.main_screen.query_one(DetailPane)
        # tab cycles the panes
        await pilot.press("tab")
        assert app.focused is detail
        await pilot.press("tab", "tab")
        assert app.focused is lst


async def test_filter_invert_and_per_lane_memory(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        main.switch_lane("incoming")  # the biggest lane, with mismatches and orphans
        snap = main.snapshot
        assert snap is not None
        lane = main.lane
        all_rows = visible_rows(app)
        await pilot.press("slash")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"mismatch|orphan", "enter")
        await pilot.pause()
        matched = visible_rows(app)
        assert matched and len(matched) < len(all_rows)
        for tid in matched:
            kinds = {f.kind for f in snap.findings_for(tid)}
            assert kinds & {"file_db_mismatch", "orphan_file"} or \
                "orphan" in snap.tasks[tid].title.lower() or "mismatch" in tid
        title = main.lane_list.border_title or ""
        assert f"{lane}[{len(matched)}]" in title and "mismatch|orphan" in title
        # ! inverts: the complement, in the same order
        await pilot.press("slash")
        await pilot.press("ctrl+a", "exclamation_mark", "end", "enter")
        await pilot.pause()
        inverted = visible_rows(app)
        assert main.filters[lane].invert
        assert sorted(inverted + matched) == sorted(all_rows)
        assert not set(inverted) & set(matched)
        # another lane has no filter; coming back, the filter is still there
        await pilot.press("right_square_bracket")
        other = main.lane
        assert other not in main.filters
        assert len(visible_rows(app)) == main.index.count(other)
        await pilot.press("left_square_bracket")
        assert main.lane == lane and visible_rows(app) == inverted
        # esc clears the filter
        await pilot.press("escape")
        assert visible_rows(app) == all_rows and lane not in main.filters
        # a bad regex is refused, the app keeps running
        assert not main.set_filter(lane, "([")
        assert visible_rows(app) == all_rows


async def test_filter_matches_the_priority_the_row_shows(tmp_path: Path, utc_tz: None) -> None:
    b = StateBuilder(tmp_path)
    for i, prio in enumerate(["P0", "P1", "P3", "P3", "P2"]):
        b.task(f"pp{i:06d}", db={"priority": prio}, title=f"Task {i}")
    b.build()
    app = frozen_app(b.root, parse_as_of(b.now.isoformat()))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        assert main.set_filter(main.lane, "!P3")
        await ready(app, pilot)
        assert sorted(visible_rows(app)) == ["pp000000", "pp000001", "pp000004"]
        assert main.set_filter(main.lane, "P0|P1")
        await ready(app, pilot)
        assert sorted(visible_rows(app)) == ["pp000000", "pp000001"]


def test_filter_parse() -> None:
    assert LaneFilter.parse("") is None and LaneFilter.parse("!") is None
    f = LaneFilter.parse("!Zombie")
    assert f is not None and f.invert and f.pattern.flags & 2 == 0  # capitals: case-sensitive
    g = LaneFilter.parse("zomb")
    assert g is not None and not g.invert and g.pattern.search("ZOMBIE")


async def test_jump_to_lane_and_task(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        main = app.main_screen
        snap = main.snapshot
        assert snap is not None
        await pilot.press("colon", *"done", "enter")
        await pilot.pause()
        assert main.lane == "done"
        # a task in another lane, hidden by a filter there: the jump shows it anyway
        tid = next(t for t, v in snap.verdicts.items() if v.effective_state == "failed")
        main.filters["failed"] = LaneFilter.parse("!" + tid)  # type: ignore[assignment]
        await pilot.press("colon", *f"TASK-{tid}", "enter")
        await pilot.pause()
        assert main.lane == "failed"
        assert main.lane_list.current_key == tid
        assert "failed" not in main.filters
        await pilot.pause(0.1)
        assert main.query_one(DetailPane).task_id == tid
        # a unique id prefix works too; nonsense changes nothing
        other = next(t for t, v in snap.verdicts.items() if v.effective_state == "done")
        assert main.jump(other[:6]) or sum(t.startswith(other[:6]) for t in snap.tasks) > 1
        assert not main.jump("no-such-thing")


async def test_help_lists_every_key_with_keymap(generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    cfg = Config(keys={"app.poll": "ctrl+y", "list.down": "n,down"})
    app = QwardenApp(open_engine(root, cfg, as_of=as_of), cfg, root_label="demo")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        lst = app.main_screen.lane_list
        await pilot.press("n")
        assert lst.cursor == 1  # rebound
        await pilot.press("j")
        assert lst.cursor == 1  # the old key no longer moves
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(c) for row in app.screen.build().columns for c in row._cells)
        for needle in ("ctrl+y", "n down", "Filter", "Jump", "Pause", "Palette",
                       "Accept", "Retry", "Split", "Cancel task", "Release claim", "Escalate"):
            assert needle in text, needle
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_findings_and_agents_views_jump_to_task(
        generated: tuple[Path, datetime]) -> None:
    root, as_of = generated
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        await pilot.press("F")
        from qwarden.tui.screens.findings import FindingsScreen
        from qwarden.tui.widgets.findings_list import FindingsList
        assert isinstance(app.screen, FindingsScreen)
        fl = app.screen.query_one(FindingsList)
        assert fl.rows[0].startswith("h:")
        await pilot.press("j", "enter")
        await pilot.pause()
        f = fl.finding(fl.rows[1])
        assert f is not None
        assert app.screen is app.main_screen
        assert app.main_screen.lane_list.current_key == f.task_id
        await pilot.press("A")
        from qwarden.tui.screens.agents import AgentsScreen
        assert isinstance(app.screen, AgentsScreen)
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_failed_poll_keeps_snapshot_and_shows_error(tmp_path: Path,
                                                          utc_tz: None) -> None:
    b = StateBuilder(tmp_path)
    b.task("aaaa0001", db_queue="incoming")
    b.build()
    cfg = Config()
    app = QwardenApp(open_engine(b.root, cfg, as_of=b.now.astimezone()), cfg, root_label="demo")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(app, pilot)
        assert app.main_screen.lane_list.rows == ["aaaa0001"]
        (b.root / "state.db").write_bytes(b"this is not sqlite at all" * 100)
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.engine.last_error
        header = app.main_screen.query_one(HeaderBar).render().plain
        assert "ERROR" in header
        assert app.main_screen.lane_list.rows == ["aaaa0001"]  # last good snapshot kept


class FakeClockEngine(Engine):
    """A live-looking engine with a hand-set clock (the countdown without waiting)."""

    now: datetime

    def clock(self) -> datetime:
        return self.now


async def test_countdown_and_pause(tmp_path: Path, utc_tz: None) -> None:
    b = StateBuilder(tmp_path)
    b.task("aaaa0001", db_queue="incoming")
    b.build()
    cfg = Config(live=LiveOptions(poll_interval_s=300))
    eng = FakeClockEngine(open_source(b.root, config=cfg), cfg)
    t0 = datetime.now().astimezone()
    eng.now = t0
    app = QwardenApp(eng, cfg, root_label="demo", read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(app, pilot)
        header = app.main_screen.query_one(HeaderBar)
        eng.last_poll_at = t0
        eng.next_poll_at = t0 + timedelta(seconds=300)
        eng.now = t0 + timedelta(seconds=133)
        text = header.render().plain
        assert "last poll 2m13s ago · next in 2m47s" in text
        assert "READ-ONLY" in text and "PAUSED" not in text
        await pilot.press("p")
        assert eng.paused
        assert "PAUSED" in header.render().plain
        # paused: the engine publishes nothing, the screen keeps what it had
        gen = app.main_screen.snapshot.generation  # type: ignore[union-attr]
        q = b.root / "shared" / "queue"
        os.replace(q / "incoming" / "TASK-aaaa0001.md", q / "provisional" / "TASK-aaaa0001.md")
        await eng.poll_now()
        await pilot.pause(0.2)
        assert app.main_screen.snapshot.generation == gen  # type: ignore[union-attr]
        await pilot.press("p")
        await pilot.pause(0.2)
        assert not eng.paused
        assert app.main_screen.snapshot.generation > gen  # type: ignore[union-attr]


async def test_live_file_move_and_db_write_keep_cursor_and_filter(
        tmp_path: Path, utc_tz: None) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    for i in range(12):
        b.task(f"bb{i:06d}", db_queue="incoming", title=f"Backlog {i}")
    b.task("mv000001", db_queue="incoming", title="Mover")
    b.build()
    cfg = Config(live=LiveOptions(db_check_interval_s=0.2, rejudge_interval_s=0.5,
                                  debounce_ms=20))
    app = QwardenApp(open_engine(b.root, cfg), cfg, root_label="demo")
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.snapshot is not None)
        await wait_until(pilot, app.engine.caught_up.is_set)
        assert main.lane == "incoming"
        main.set_filter("incoming", "backlog|mover")
        await pilot.press("j", "j", "j")
        keep = main.lane_list.current_key
        assert keep is not None and keep != "mv000001"
        assert "mv000001" in main.lane_list.rows
        # an agent-like move of the file: incoming/ -> provisional/ (no DB write)
        q = b.root / "shared" / "queue"
        src = q / "incoming" / "TASK-mv000001.md"
        text = src.read_text() + f"\nSUBMITTED_AT: {datetime.now().isoformat()}\n"
        dst = q / "provisional" / "TASK-mv000001.md"
        dst.write_text(text)
        src.unlink()
        loop = asyncio.get_running_loop()
        t = loop.time()
        await wait_until(pilot, lambda: main.snapshot is not None and main.snapshot.tasks[
            "mv000001"].file_queue == "provisional")
        file_latency = loop.time() - t
        assert file_latency < 3.0
        # the cursor, the filter and the scroll survived
        assert main.lane_list.current_key == keep
        assert main.filters["incoming"].text == "backlog|mover"
        # a DB write: the row moves to provisional too, the row leaves the incoming lane
        with sqlite3.connect(b.root / "state.db", timeout=30) as conn:
            conn.execute("UPDATE tasks SET queue='provisional', commits_count=2 "
                         "WHERE id='mv000001'")
        await wait_until(pilot, lambda: "mv000001" not in main.lane_list.rows)
        assert main.index.lane_of["mv000001"] == "provisional"
        assert main.lane_list.current_key == keep
        assert main.index.count("provisional") == 1
        # the header shows the live countdown
        assert "next in" in main.query_one(HeaderBar).render().plain


async def test_no_render_while_modal_open(tmp_path: Path, utc_tz: None) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("aaaa0001", db_queue="incoming")
    b.task("aaaa0002", db_queue="incoming")
    b.build()
    cfg = Config(live=LiveOptions(db_check_interval_s=0.2))
    app = QwardenApp(open_engine(b.root, cfg), cfg, root_label="demo")
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.snapshot is not None)
        await pilot.press("question_mark")
        gen = main.snapshot.generation  # type: ignore[union-attr]
        with sqlite3.connect(b.root / "state.db", timeout=30) as conn:
            conn.execute("UPDATE tasks SET queue='done' WHERE id='aaaa0002'")
        await wait_until(pilot, lambda: app.engine.snapshot is not None
                         and app.engine.snapshot.verdicts["aaaa0002"].effective_state
                         != "incoming")
        await pilot.pause(0.1)
        assert main.snapshot.generation == gen  # type: ignore[union-attr]
        assert "aaaa0002" in main.lane_list.rows
        await pilot.press("escape")
        await wait_until(pilot, lambda: "aaaa0002" not in main.lane_list.rows)


def test_theme_choice_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwarden.tui.themes import choose_theme

    avail = {"qwarden-dark", "qwarden-light", "qwarden-contrast", "textual-dark"}
    monkeypatch.delenv("TEXTUAL_THEME", raising=False)
    assert choose_theme(None, None, avail) == "qwarden-dark"
    assert choose_theme(None, "qwarden-light", avail) == "qwarden-light"
    monkeypatch.setenv("TEXTUAL_THEME", "qwarden-contrast")
    assert choose_theme(None, "qwarden-light", avail) == "qwarden-contrast"
    assert choose_theme("textual-dark", "qwarden-light", avail) == "textual-dark"
    assert choose_theme("no-such-theme", None, avail) == "qwarden-contrast"


def test_stylesheet_uses_theme_variables_only() -> None:
    import re

    from qwarden.tui.themes import QWARDEN_THEMES, STATUS_DEFAULTS, STYLESHEET

    css = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(), flags=re.S)
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsl\(", css)
    for name in re.findall(r"\$(status-[a-z-]+)", css):
        assert name in STATUS_DEFAULTS
        for theme in QWARDEN_THEMES:
            assert name in theme.variables, (theme.name, name)


def test_core_never_imports_textual() -> None:
    import subprocess
    import sys

    code = ("import sys, core.engine, core.cli, core.report, core.judge\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')]")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])


async def test_no_color_still_shows_severity(generated: tuple[Path, datetime],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    root, as_of = generated
    app = frozen_app(root, as_of)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        lst = app.main_screen.lane_list
        first = lst.render_line(0).text
        assert first.startswith("!")  # the glyph carries the severity without colour

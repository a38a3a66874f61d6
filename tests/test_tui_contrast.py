"""The cursor row is readable in every theme (issue 12, defect 1): the contrast of every
visible character of the rendered row, computed from its segments' colours as WCAG does, is at
least 4.5:1 (AA), focused and unfocused, and under NO_COLOR (after the app's own monochrome
filter). Under NO_COLOR a critical row must not look weaker than a warning one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.color import Color

from qwarden.tui.app import QwardenApp
from tests.builders import generated_utc_state
from tests.pilot import frozen_app

AA = 4.5


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "contrast", 240, seed=7)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def ch(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = rgb
    return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)


def contrast(fg: tuple[int, int, int], bg: tuple[int, int, int]) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _pair(style: Style | None) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    assert style is not None and style.color is not None and style.bgcolor is not None
    fg = style.color.get_truecolor()
    bg = style.bgcolor.get_truecolor()
    if style.reverse:
        fg, bg = bg, fg
    return (fg.red, fg.green, fg.blue), (bg.red, bg.green, bg.blue)


def shown_segments(app: QwardenApp, y: int) -> list[Segment]:
    """Line ``y`` of the lane list as the terminal gets it (the app's filters applied)."""
    lst = app.main_screen.lane_list
    segments = list(lst.render_line(y))
    for f in app._filters:
        segments = f.apply(segments, Color(0, 0, 0))
    return [s for s in segments if s.text.strip()]


def assert_highlighted(cursor_row: list[Segment], other_row: list[Segment]) -> None:
    """The cursor row is one pair of colours, and its background is not the list's."""
    pairs = {_pair(s.style) for s in cursor_row}
    assert len(pairs) == 1, pairs
    (_, cursor_bg), = pairs
    assert all(_pair(s.style)[1] != cursor_bg for s in other_row), "cursor row not shown"


def worst_contrast(segments: list[Segment]) -> float:
    assert segments
    return min(contrast(*_pair(s.style)) for s in segments)


async def _cursor_contrasts(app: QwardenApp) -> tuple[float, float]:
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        main = app.main_screen
        # a lane with findings of several severities under the cursor in turn
        for i in range(5):
            main.action_lane(i)
            if main.index.count(main.lane or ""):
                break
        await pilot.press("j")
        await pilot.pause()
        lst = main.lane_list
        y = lst.cursor - int(lst.scroll_offset.y)
        other = 0 if y else 1
        focused = worst_contrast(shown_segments(app, y))
        assert_highlighted(shown_segments(app, y), shown_segments(app, other))
        await pilot.press("tab")  # the list loses focus: the other cursor style
        await pilot.pause()
        unfocused = worst_contrast(shown_segments(app, y))
        assert_highlighted(shown_segments(app, y), shown_segments(app, other))
    return focused, unfocused


@pytest.mark.parametrize("theme", ["qwarden-dark", "qwarden-light", "qwarden-contrast"])
async def test_cursor_row_contrast_in_every_theme(state: tuple[Path, datetime],
                                                  theme: str) -> None:
    root, as_of = state
    focused, unfocused = await _cursor_contrasts(frozen_app(root, as_of, theme=theme))
    assert focused >= AA, f"{theme}: focused cursor row {focused:.2f}:1"
    assert unfocused >= AA, f"{theme}: unfocused cursor row {unfocused:.2f}:1"


async def test_cursor_row_contrast_under_no_color(state: tuple[Path, datetime],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    root, as_of = state
    app = frozen_app(root, as_of)
    assert app.no_color
    focused, unfocused = await _cursor_contrasts(app)
    assert focused >= AA and unfocused >= AA, (focused, unfocused)


def _emphasis(style: Style) -> tuple[float, int]:
    weight = int(bool(style.bold)) + int(bool(style.reverse)) + int(bool(style.underline))
    return contrast(*_pair(style)), weight


async def test_no_color_critical_not_weaker_than_warning(
        state: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    root, as_of = state
    app = frozen_app(root, as_of)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        main = app.main_screen
        lst = main.lane_list
        glyphs: dict[str, Style] = {}
        for lane in main.index.lanes:
            main.switch_lane(lane)
            await pilot.pause()
            lst.move_to(len(lst.rows) - 1)  # the cursor away from the first rows
            await pilot.pause()
            for y in range(min(len(lst.rows), lst.size.height)):
                if y == lst.cursor - int(lst.scroll_offset.y):
                    continue
                segs = shown_segments(app, y)
                if segs and segs[0].text.strip() in ("!!", "!") and segs[0].style:
                    glyphs.setdefault(segs[0].text.strip(), segs[0].style)
        assert set(glyphs) == {"!!", "!"}, glyphs
        crit_contrast, crit_weight = _emphasis(glyphs["!!"])
        warn_contrast, warn_weight = _emphasis(glyphs["!"])
        assert crit_contrast >= AA
        assert crit_contrast >= warn_contrast - 0.01 and crit_weight >= warn_weight
        assert (crit_contrast, crit_weight) != (warn_contrast, warn_weight)

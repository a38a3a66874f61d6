"""Helpers for driving the console with Textual's Pilot on real state dirs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.tui.app import QwardenApp


def frozen_app(root: Path, as_of: datetime, **kw: Any) -> QwardenApp:
    """The console judging a state dir at ``as_of`` (no clock, no live updates)."""
    cfg = Config()
    return QwardenApp(open_engine(root, cfg, as_of=as_of), cfg, root_label="demo", **kw)


async def wait_until(pilot: Pilot[Any], pred: Callable[[], object],
                     timeout: float = 20.0) -> None:
    """Let the app run until ``pred()`` holds (a timeout fails the test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "timed out"
        await pilot.pause(0.02)


async def ready(app: QwardenApp, pilot: Pilot[Any]) -> None:
    """The first snapshot on screen and the workers done (a frozen console has settled)."""
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()

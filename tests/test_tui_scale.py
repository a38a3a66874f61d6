"""The console at scale: lanes ordered lazily and filters matched in steps give exactly what a
full sort and a full scan would, before, during and after live updates.

A generated 10,000-task state (its done lane has over 5,000 tasks); chunk sizes are made small
so every path (several groups, a heap, steps, restarts) is taken. No timing assertions.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace as struct_replace
from textual.pilot import Pilot

from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.core.model import Snapshot
from qwarden.tui import lanes
from qwarden.tui.lanes import ATTENTION, LaneFilter, LaneIndex, sort_key, worst_rank
from qwarden.tui.screens.main import MainScreen
from qwarden.tui.widgets.lane_list import LaneList
from tests.builders import generated_utc_state
from tests.pilot import frozen_app, wait_until


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    yield from generated_utc_state(tmp_path_factory, "big", 10000, seed=7)


@pytest.fixture(scope="module")
def big_snap(big: tuple[Path, datetime]) -> Snapshot:
    root, as_of = big
    return open_engine(root, Config(), as_of=as_of).scan()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "CHUNK", 64)
    monkeypatch.setattr(lanes, "SYNC_SCAN", 300)
    import qwarden.tui.screens.main as main_mod
    monkeypatch.setattr(main_mod, "SYNC_SCAN", 300)


def reference(snap: Snapshot, lane: str) -> list[str]:
    """The whole lane, sorted the obvious way (the attention view: every task whose worst
    finding is critical or warning)."""
    if lane == ATTENTION:
        ids = [t for t in snap.tasks if worst_rank(snap, t) >= 1]
    else:
        ids = [t for t, v in snap.verdicts.items()
               if v.effective_state == lane and t in snap.tasks]
    return sorted(ids, key=lambda t: sort_key(snap, t))


def matching(index: LaneIndex, ids: list[str], flt: LaneFilter) -> list[str]:
    return [t for t in ids if index.matches(t, flt)]


def mutate(snap: Snapshot, rng: random.Random, n: int) -> tuple[Snapshot, set[str]]:
    """A new snapshot with ``n`` tasks changed: lane moves, priorities, file ages and titles,
    removals."""
    tasks, verdicts = dict(snap.tasks), dict(snap.verdicts)
    changed: set[str] = set()
    for tid in rng.sample(sorted(tasks), n):
        task, kind = tasks[tid], rng.randrange(4)
        if kind == 0:
            verdicts[tid] = struct_replace(verdicts[tid],
                                           effective_state=rng.choice(snap.lanes[:4]))
        elif kind == 1 and task.record is not None:
            tasks[tid] = struct_replace(task, record=struct_replace(
                task.record, priority=rng.choice(["P0", "P3"])))
        elif kind == 2 and task.files:
            f0 = task.files[0]
            tasks[tid] = struct_replace(task, files=(struct_replace(
                f0, mtime=f0.mtime + rng.uniform(-1e5, 1e5), title=f"Fix the cache {tid}"),
                *task.files[1:]))
        else:
            del tasks[tid]
            del verdicts[tid]
        changed.add(tid)
    # without the engine's running summaries: the snapshot derives them from what changed
    return replace(snap, tasks=tasks, verdicts=verdicts, changed=frozenset(changed),
                   generation=snap.generation + 1, by_task=None, state_counts=None,
                   severity_counts=None, tasks_by_severity=None), changed


def test_lazy_order_matches_full_sort(big_snap: Snapshot, small_chunks: None) -> None:
    index = LaneIndex()
    index.update(big_snap, None)
    assert index.count("done") > 5000
    ref = reference(big_snap, "done")
    rows = index.rows("done")
    assert len(rows) == len(ref)
    assert rows[0] == ref[0]
    st = index._lanes["done"]
    assert len(st.ready) < 1000  # only what was read is ordered
    assert rows[5000] == ref[5000]
    assert rows.index(ref[4321]) == 4321
    assert ref[-1] in rows and "nope" not in rows
    assert list(rows) == ref and rows.complete
    for lane in [*index.lanes, ATTENTION]:
        assert index.ids(lane) == reference(big_snap, lane)
        assert index.count(lane) == len(reference(big_snap, lane))
    assert index.count(ATTENTION) > 100


def test_incremental_updates_keep_lazy_lanes_exact(big_snap: Snapshot,
                                                   small_chunks: None) -> None:
    rng = random.Random(11)
    index = LaneIndex()
    index.update(big_snap, None)
    snap = big_snap
    flt = LaneFilter.parse("fix|cache")
    assert flt is not None
    partial = {"done": 0, "incoming": 700, "provisional": 5000,  # opened to different depths
               ATTENTION: 40}
    for lane, depth in partial.items():
        rows = index.rows(lane)
        rows[min(depth, len(rows) - 1)]
    scan = index.rows("done", flt)
    scan.scan(200)
    for _ in range(6):
        snap, changed = mutate(snap, rng, 40)
        index.update(snap, changed)
        for lane in ("done", "incoming", "provisional", "claimed", ATTENTION):
            ref = reference(snap, lane)
            rows = index.rows(lane)
            assert len(rows) == len(ref), lane
            k = rng.randrange(len(ref))
            assert rows[k] == ref[k], lane
        # a filter started before the update, started again after it: exact
        scan = index.rows("done", flt)
        scan.scan(150)
        assert not scan.complete
        scan.finish()
        assert list(scan) == matching(index, reference(snap, "done"), flt)
    for lane in [*index.lanes, ATTENTION]:
        assert index.ids(lane) == reference(snap, lane), lane


@asynccontextmanager
async def done_lane(big: tuple[Path, datetime]
                    ) -> AsyncIterator[tuple[Pilot[Any], MainScreen, LaneList]]:
    """The console on the big state, its first snapshot in, the done lane open."""
    app = frozen_app(*big)
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.snapshot is not None)
        main.switch_lane("done")
        yield pilot, main, main.lane_list


async def test_filter_in_steps_exact_count_and_rows(big: tuple[Path, datetime],
                                                    small_chunks: None) -> None:
    async with done_lane(big) as (pilot, main, lst):
        main.set_filter("done", "fix|cache")
        # the first screenful at once, the count still going
        assert not lst.rows_complete
        assert 0 < len(lst.rows) < 300
        assert "+ …]" in str(lst.border_title)
        flt = main.filters["done"]
        snap = main.snapshot
        assert snap is not None
        want = matching(main.index, reference(snap, "done"), flt)
        assert len(want) > 500
        assert list(lst.rows[:len(lst.rows)]) == want[:len(lst.rows)]
        await wait_until(pilot, lambda: lst.rows_complete)
        assert list(lst.rows) == want
        assert f"done[{len(want)}] </fix|cache> of {main.index.count('done')}" in str(
            lst.border_title)
        # G goes to the last match; the cursor memory holds
        await pilot.press("G")
        assert lst.current_key == want[-1]
        # an inverted filter is the complement, in order
        main.set_filter("done", "!fix|cache")
        lst.action_cursor_bottom()  # finishes the scan
        assert lst.rows_complete
        assert sorted(list(lst.rows) + want) == sorted(reference(snap, "done"))
        assert list(lst.rows) == [t for t in reference(snap, "done") if t not in set(want)]


async def test_snapshot_during_filter_scan_stays_exact(big: tuple[Path, datetime],
                                                       small_chunks: None) -> None:
    async with done_lane(big) as (pilot, main, lst):
        main.set_filter("done", "fix|cache")
        assert not lst.rows_complete
        snap = main.snapshot
        assert snap is not None
        rng = random.Random(5)
        for _ in range(3):  # updates arriving while the scan goes on
            snap, changed = mutate(snap, rng, 60)
            main.apply_snapshot(snap, changed)
            await pilot.pause(0)
        assert main.snapshot is snap
        await wait_until(pilot, lambda: lst.rows_complete)
        flt = main.filters["done"]
        want = matching(main.index, reference(snap, "done"), flt)
        assert list(lst.rows) == want
        assert f"done[{len(want)}]" in str(lst.border_title)
        # the tabs and the header count the new snapshot
        assert main.index.count("done") == len(reference(snap, "done"))


async def test_cursor_deep_in_a_lazily_sorted_lane(big: tuple[Path, datetime],
                                                   small_chunks: None) -> None:
    async with done_lane(big) as (pilot, main, lst):
        snap = main.snapshot
        assert snap is not None
        ref = reference(snap, "done")
        assert len(lst.rows) == len(ref)
        lst.move_to(5000)
        await pilot.pause(0)
        assert lst.current_key == ref[5000]
        await pilot.press("j")
        assert lst.current_key == ref[5001]
        await pilot.pause(0.1)
        assert main.query_one("#detail").task_id == ref[5001]  # type: ignore[attr-defined]
        # away and back: the cursor is remembered on the same task
        main.switch_lane("incoming")
        main.switch_lane("done")
        assert lst.current_key == ref[5001] and lst.cursor == 5001
        await pilot.press("G")
        assert lst.current_key == ref[-1]


async def test_cursor_stays_on_its_task_when_rows_above_it_go(big: tuple[Path, datetime],
                                                              small_chunks: None) -> None:
    async with done_lane(big) as (pilot, main, lst):
        snap = main.snapshot
        assert snap is not None
        lst.move_to(300)
        await pilot.pause(0)
        ref = reference(snap, "done")
        keep = lst.current_key
        assert keep == ref[300]
        # ten tasks above the cursor leave the lane, one moves in at the top
        gone = set(ref[:10])
        verdicts = dict(snap.verdicts)
        for tid in gone:
            verdicts[tid] = struct_replace(verdicts[tid], effective_state="failed")
        newcomer = next(t for t, v in snap.verdicts.items() if v.effective_state == "incoming")
        verdicts[newcomer] = struct_replace(verdicts[newcomer], effective_state="done")
        snap2 = replace(snap, verdicts=verdicts, generation=snap.generation + 1)
        main.apply_snapshot(snap2, gone | {newcomer})
        await pilot.pause(0)
        ref2 = reference(snap2, "done")
        assert lst.current_key == keep
        assert lst.cursor == ref2.index(keep)
        assert list(lst.rows) == ref2

"""Conformance against the real task API sample in ../shared (skipped in a bare clone): a DB
made by comic-pile's own API at a28e4ef8. P = R = 1 on its truth.json, nothing else scored,
and the evidence names the columns."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qwarden.core.formats import detect, judge_once
from qwarden.core.timefmt import parse_as_of
from tests.taskapi_util import TASKAPI_SAMPLE, copy_sample, judged, sample_truth, tree, want

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not TASKAPI_SAMPLE.is_dir(), reason="../shared/fixtures absent"),
]


def test_sample_scored_kinds_match_truth_exactly(tmp_path: Path) -> None:
    truth = sample_truth()
    db = copy_sample(tmp_path / "s")
    before = tree(db.parent)
    assert judged(db, truth["as_of"]) == want(truth)  # P = R = 1, nothing else scored
    assert tree(db.parent) == before  # no byte, no mtime, no side file


def test_sample_evidence_names_columns_and_values(tmp_path: Path) -> None:
    truth = sample_truth()
    db = copy_sample(tmp_path / "s")
    findings, src = judge_once(db, parse_as_of(truth["as_of"]), fmt="taskapi")
    assert src.problems() == ()
    by = {(f.task_id, f.kind): f for f in findings}
    vals = lambda f: {e.fact: e.value for e in f.evidence}  # noqa: E731
    test1 = vals(by[("TEST-001", "zombie_claim")])
    assert test1["status"] == "in_progress" and test1["assigned_agent"] == "Charlie"
    assert test1["status_notes"].startswith("Claimed by Charlie at 2026-11-22T22:12:31.173435")
    assert "before this claim" in test1["last_heartbeat"]  # the backdated heartbeat
    assert test1["last_heartbeat"].startswith("2026-11-22 21:27:31")
    assert test1["silent for"].startswith("27m2")
    db4 = vals(by[("TASK-DB-004", "zombie_claim")])
    assert db4["last_heartbeat"].startswith("NULL") and db4["assigned_agent"] == "Dave"
    dep = vals(by[("TASK-DB-005", "blocked_by_stuck")])
    assert dep["dependencies"] == "TASK-DB-004" and "zombie" in dep["dependency TASK-DB-004"]
    ui = vals(by[("TASK-UI-001", "unverified_completion")])
    assert ui["status"] == "in_review" and "no such column" in ui["check_results"]
    assert "Unclaimed by Alice" in ui["status_notes (last line)"]
    assert all(f.evidence for f in findings)
    # FEAT-007 is blocked by a person (blocked_by names Bob, not a task): no claim to judge
    assert not [f for f in findings if f.task_id in ("TASK-FEAT-007", "TASK-FEAT-001")]


def test_sample_judged_an_instant_before_the_threshold_is_quiet(tmp_path: Path) -> None:
    """At 22:25 the claims are 12-13 min silent: at risk, not yet zombies (and the stale
    heartbeat of TEST-001, 58 min old, does not make its fresh claim look dead)."""
    db = copy_sample(tmp_path / "s")
    got = judged(db, "2026-11-22T22:25:00Z")
    assert got == {"TEST-001": {"stale_heartbeat"}, "TASK-DB-004": {"stale_heartbeat"},
                   "TASK-UI-001": {"unverified_completion"}}
    assert judged(db, "2026-11-22T22:20:00Z") == {"TASK-UI-001": {"unverified_completion"}}


def test_sample_is_detected_and_reported_by_the_cli(tmp_path: Path) -> None:
    truth = sample_truth()
    db = copy_sample(tmp_path / "s")
    info = detect(db)
    assert info is not None and info.name == "taskapi"
    before = tree(db.parent)
    out = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root",
                          str(db), "--as-of", truth["as_of"], "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr  # critical: the zombies
    rep = json.loads(out.stdout)
    assert rep["format"] == "taskapi" and rep["root"] == str(db)
    got: dict[str, set[str]] = {}
    for f in rep["findings"]:
        if f["scored"]:
            got.setdefault(f["task_id"], set()).add(f["kind"])
    assert got == want(truth)
    assert tree(db.parent) == before


def test_reading_a_wal_database_a_worker_has_open_creates_nothing(tmp_path: Path) -> None:
    """A live API keeps its DB in WAL mode with a connection open (the -wal and -shm exist):
    reading adds no file and changes no byte of the DB or its log."""
    db = copy_sample(tmp_path / "s")
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("UPDATE tasks SET last_heartbeat = '2026-11-22 22:39:00' "
                   "WHERE task_id = 'TEST-001'")
    writer.commit()
    try:
        before = tree(db.parent)
        assert {p for p in before} == {"comic_pile.db", "comic_pile.db-wal",
                                       "comic_pile.db-shm"}
        got = judged(db, "2026-11-22T22:40:00Z")
        assert "TEST-001" not in got  # the committed heartbeat in the -wal is seen
        assert {k: v[0] for k, v in tree(db.parent).items() if k != "comic_pile.db-shm"} \
            == {k: v[0] for k, v in before.items() if k != "comic_pile.db-shm"}
        assert set(tree(db.parent)) == set(before)
    finally:
        writer.close()


def test_a_following_engine_leaves_the_sample_untouched(tmp_path: Path) -> None:
    """The live engine (scan, change marker every 0.2 s, second looks, a full poll) on the
    sample for a while: no byte, no mtime, no side file."""
    import asyncio

    from qwarden.core.config import Config, LiveOptions
    from qwarden.core.formats import open_engine

    db = copy_sample(tmp_path / "s")
    before = tree(db.parent)
    config = Config(live=LiveOptions(db_check_interval_s=0.2))

    async def follow() -> None:
        engine = open_engine(db, config)
        await engine.start()
        await asyncio.sleep(1.5)
        await engine.poll_now()
        await asyncio.sleep(0.5)
        assert engine.last_error is None
        assert engine.snapshot is not None and len(engine.snapshot.tasks) == 6
        await engine.stop()

    asyncio.run(follow())
    assert tree(db.parent) == before

"""The auto-fixer on real states: observe writes nothing to the queue, safe fixes the routine
kinds, aggressive also releases zombies and retries transient failures; live work is never
touched; once per task per window, then escalation."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.actions.autofix import AutoFixer, TickReport, notes_text
from core.actions.journal import Journal
from core.config import Config
from core.demo.generate import generate
from core.engine import Engine
from core.model import Liveness
from core.timefmt import parse_as_of
from tests.test_actions_support import IDS, build_state, row, snapshot


def _snap(root: Path):  # type: ignore[no-untyped-def]
    return Engine(root, as_of=datetime.now().astimezone() + timedelta(seconds=1)).scan()


def test_observe_only_reports(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    before = snapshot(root)
    rep = AutoFixer(root, mode="observe").tick(_snap(root))
    assert snapshot(root) == before
    assert {i["task_id"] for i in rep.would_fix} == {
        IDS[k] for k in ("mismatch_db", "mismatch_file", "stale_error", "orphan", "corrupt",
                         "continuation")}
    assert rep.fixed == []
    notes = (root / "warden" / "autofix-notes.md").read_text()
    assert "Would fix (observe)" in notes and "file_db_mismatch: 3" in notes


def test_safe_then_aggressive_leaves_only_human_work(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    safe = AutoFixer(root, mode="safe")
    rep = safe.tick(_snap(root))
    fixed = {i["task_id"]: i["action"] for i in rep.fixed}
    assert fixed == {IDS["mismatch_db"]: "sync", IDS["mismatch_file"]: "sync",
                     IDS["stale_error"]: "clear-error", IDS["orphan"]: "register",
                     IDS["corrupt"]: "quarantine", IDS["continuation"]: "sync"}
    assert row(root, IDS["zombie"])["claimed_by"] == "ghost-agent"  # type: ignore[index]
    snap = _snap(root)
    assert {f.kind for f in snap.findings if f.scored} == {"zombie_claim",
                                                          "unverified_completion"}
    rep2 = AutoFixer(root, mode="aggressive").tick(snap)
    assert [(i["task_id"], i["action"]) for i in rep2.fixed] == [(IDS["zombie"], "release")]
    left = {f.kind for f in _snap(root).findings if f.scored}
    assert left == {"unverified_completion"}  # needs a human look, by design
    prom = (root / "warden" / "metrics.prom").read_text()
    assert 'qwarden_autofix_fixes_total{kind="zombie_claim"} 1' in prom
    hist = (root / "warden" / "metrics-history.jsonl").read_text().splitlines()
    assert len(hist) == 2 and json.loads(hist[0])["mode"] == "safe"


def test_never_touches_live_work(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    live_before = (root / "shared/queue/incoming" / f"TASK-{IDS['live']}.md").read_bytes()
    rep = AutoFixer(root, mode="aggressive").tick(_snap(root))
    assert IDS["live"] not in {i["task_id"] for i in rep.fixed}
    assert (root / "shared/queue/incoming" / f"TASK-{IDS['live']}.md").read_bytes() == \
        live_before
    assert row(root, IDS["live"])["claimed_by"] == "busy-agent"  # type: ignore[index]


def test_transient_failures_retried_in_aggressive_only(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    p = root / "shared/queue/failed" / f"TASK-{IDS['failed']}.md"
    p.write_text(p.read_text().replace("ValueError: boom 42", "TimeoutError: model call "
                                       "exceeded 600s"))
    assert IDS["failed"] not in {i["task_id"] for i in
                                 AutoFixer(root, mode="safe").tick(_snap(root)).fixed}
    rep = AutoFixer(root, mode="aggressive").tick(_snap(root))
    assert (IDS["failed"], "retry") in {(i["task_id"], i["action"]) for i in rep.fixed}
    assert row(root, IDS["failed"])["queue"] == "incoming"  # type: ignore[index]


def test_once_per_window_then_escalate(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    fixer = AutoFixer(root, mode="safe")
    fixer.tick(_snap(root))
    # the system undoes the sync: the DB goes back to incoming for the file in failed/
    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET queue='incoming', updated_at=? WHERE id=?",
                 ((datetime.now() - timedelta(hours=1)).isoformat(), IDS["mismatch_db"]))
    conn.commit()
    conn.close()
    old = datetime.now().timestamp() - 3600
    import os
    os.utime(root / "shared/queue/failed" / f"TASK-{IDS['mismatch_db']}.md", (old, old))
    rep = fixer.tick(_snap(root))
    assert [i["task_id"] for i in rep.escalated] == [IDS["mismatch_db"]]
    assert rep.fixed == []
    msgs = list((root / "messages").iterdir())
    assert len(msgs) == 1 and "keeps undoing the fix" in msgs[0].read_text()
    rep3 = fixer.tick(_snap(root))  # and only once per window
    assert rep3.escalated == [] and any(i["why"] == "already escalated" for i in rep3.skipped)
    # an hour later it may fix again
    later = datetime.now() + timedelta(hours=2)
    rep4 = fixer.tick(_snap(root), now=later)
    assert [i["task_id"] for i in rep4.fixed] == [IDS["mismatch_db"]]


def test_paused_and_read_only(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    before = snapshot(root)
    f = AutoFixer(root, mode="aggressive")
    f.paused = True
    assert f.tick(_snap(root)).mode == "paused"
    ro = AutoFixer(root, config=Config(read_only=True), mode="safe")
    rep = ro.tick(_snap(root))
    assert rep.fixed == [] and rep.skipped and "read-only" in rep.skipped[0]["why"]
    assert snapshot(root) == before
    with pytest.raises(ValueError):
        AutoFixer(root, mode="reckless")


def test_generated_state_safe_mode_spares_live_claims(tmp_path: Path) -> None:
    """On a generated state with every anomaly kind: no action lands on a live or
    split-brain-live task, and the routine kinds are gone afterwards."""
    truth = generate(tmp_path / "gen", 120, seed=5)
    root = tmp_path / "gen" / ".orchestrator"
    as_of = parse_as_of(truth["as_of"])
    snap = Engine(root, as_of=as_of).scan()
    live = {t for t, v in snap.verdicts.items()
            if v.liveness is Liveness.LIVE or v.split_brain_live}
    assert live
    rep = AutoFixer(root, mode="aggressive").tick(snap, now=as_of)
    assert rep.fixed
    with Journal(root) as j:
        touched = {a.task_id for a in j.recent(10000)}
    assert not touched & live
    after = Engine(root, as_of=as_of + timedelta(seconds=1)).scan()
    routine = {"orphan_file", "corrupt_task", "stale_error"}
    assert not routine & {f.kind for f in after.findings}


def test_notes_text_lists_everything() -> None:
    rep = TickReport(datetime(2026, 1, 1), "safe")
    rep.found.update({"zombie_claim": 2})
    rep.escalated.append({"task_id": "x", "finding": "stale_error", "action": "clear-error",
                          "action_id": 3})
    text = notes_text(rep)
    assert "- zombie_claim: 2" in text and "TASK-x: stale_error -> clear-error (action 3)" in text

"""The auto-fixer on real states: observe writes nothing to the queue, safe fixes the routine
kinds, aggressive also releases zombies and retries transient failures; live work is never
touched; once per task per window, then escalation."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from qwarden.core.actions.autofix import AutoFixer, TickReport, notes_text
from qwarden.core.actions.journal import Journal
from qwarden.core.config import Config
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid.generate import generate
from qwarden.core.model import Liveness
from qwarden.core.timefmt import parse_as_of
from tests.test_actions_support import IDS, build_state, row, snapshot


def _snap(root: Path):  # type: ignore[no-untyped-def]
    return open_engine(root, as_of=datetime.now().astimezone() + timedelta(seconds=1)).scan()


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


def _undo_the_sync(root: Path) -> None:
    """The system undoes the fixer's sync: the DB goes back to incoming for the file in
    failed/, both settled an hour ago."""
    import os

    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET queue='incoming', updated_at=? WHERE id=?",
                 ((datetime.now() - timedelta(hours=1)).isoformat(), IDS["mismatch_db"]))
    conn.commit()
    conn.close()
    old = datetime.now().timestamp() - 3600
    os.utime(root / "shared/queue/failed" / f"TASK-{IDS['mismatch_db']}.md", (old, old))


def test_once_per_window_then_escalate(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    fixer = AutoFixer(root, mode="safe")
    fixer.tick(_snap(root))
    _undo_the_sync(root)
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
    snap = open_engine(root, as_of=as_of).scan()
    live = {t for t, v in snap.verdicts.items()
            if v.liveness is Liveness.LIVE or v.split_brain_live}
    assert live
    rep = AutoFixer(root, mode="aggressive").tick(snap, now=as_of)
    assert rep.fixed
    with Journal(root) as j:
        touched = {a.task_id for a in j.recent(10000)}
    assert not touched & live
    after = open_engine(root, as_of=as_of + timedelta(seconds=1)).scan()
    routine = {"orphan_file", "corrupt_task", "stale_error"}
    assert not routine & {f.kind for f in after.findings}


def test_notes_text_lists_everything() -> None:
    rep = TickReport(datetime(2026, 1, 1), "safe")
    rep.found.update({"zombie_claim": 2})
    rep.escalated.append({"task_id": "x", "finding": "stale_error", "action": "clear-error",
                          "action_id": 3})
    text = notes_text(rep)
    assert "- zombie_claim: 2" in text and "TASK-x: stale_error -> clear-error (action 3)" in text


def test_the_window_is_per_finding_a_new_finding_is_fixed_not_escalated(tmp_path: Path
                                                                        ) -> None:
    # The fixer cleared TASK-X's stale error; then X's DB file_path goes stale. That finding
    # was never fixed: it is fixed now, and nothing says "the finding is back".
    root, _ = build_state(tmp_path)
    tid = IDS["stale_error"]
    fixer = AutoFixer(root, mode="safe")
    rep = fixer.tick(_snap(root))
    assert (tid, "clear-error") in {(i["task_id"], i["action"]) for i in rep.fixed}
    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET file_path='/elsewhere/shared/queue/failed/TASK-' || id || "
                 "'.md' WHERE id=?", (tid,))
    conn.commit()
    conn.close()
    rep2 = fixer.tick(_snap(root))
    assert rep2.escalated == []
    assert [(i["task_id"], i["finding"], i["action"]) for i in rep2.fixed] == [
        (tid, "stale_file_path", "repair-path")]
    assert not (root / "messages").exists() or not list((root / "messages").iterdir())


def test_escalation_names_the_fix_that_was_undone(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path)
    fixer = AutoFixer(root, mode="safe")
    first = {i["task_id"]: i for i in fixer.tick(_snap(root)).fixed}[IDS["mismatch_db"]]
    _undo_the_sync(root)
    fixer.tick(_snap(root))
    (msg,) = list((root / "messages").iterdir())
    assert f"with sync (action {first['action_id']}," in msg.read_text()


def test_safe_fixer_never_writes_to_a_task_an_agent_still_names(tmp_path: Path) -> None:
    # The task looks finished and idle (a7 submitted it, it was accepted) and its DB file_path
    # is stale, which safe mode repairs. But a7 still names it with a signal a second old:
    # it may still be writing; no fix may land under it.
    from tests.builders import StateBuilder

    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("t1", db_queue="done", file_queues=("done",),
           trail=[("CLAIMED_BY", "a7"), ("CLAIMED_AT", 900), ("SUBMITTED_AT", 5),
                  ("COMMITS_COUNT", 2), ("ACCEPTED_AT", 2)],
           db={"commits_count": 2,
               "file_path": "/elsewhere/.orchestrator/shared/queue/incoming/TASK-t1.md"})
    b.agent("a7", started_age=900, heartbeat_age=1, status=("t1", 1), current_task="t1")
    root = b.build()
    before = snapshot(root)
    snap = _snap(root)
    assert "stale_file_path" in {f.kind for f in snap.findings_for("t1")}
    rep = AutoFixer(root, mode="safe").tick(snap)
    assert rep.fixed == []
    assert any(i["task_id"] == "t1" and "a7" in i["why"] for i in rep.skipped)
    assert {k: v for k, v in snapshot(root).items() if "warden" not in k} == \
        {k: v for k, v in before.items() if "warden" not in k}
